"""Shared steps of every training notebook: data for a protocol, one LOSO table row, run info.

Used by the MPT and HLoRA-MER recipes (notebooks/mpt/*, notebooks/hlora/*) and every notebook's run info.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mernb.data.cache import ClipCache
from mernb.data.clips import PrepareReport, prepare_all
from mernb.data.protocols import protocol as get_protocol
from mernb.data.records import Sample
from mernb.data.sources import load_samples
from mernb.errors import MernbError
from mernb.report.results import train_or_load
from mernb.train.loso import Experiment, run_loso


@dataclass
class ProtocolData:
    """A protocol's samples with their prepared clips (uint8 (T, S, S, 3), keyed by sample id)."""

    dataset: str
    protocol: str
    classes: list[str]
    samples: list[Sample]
    clips: dict[str, np.ndarray] = field(repr=False)
    prepare: PrepareReport | None = None
    problems: list = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        counts = {c: sum(s.label == c for s in self.samples) for c in self.classes}
        subjects = len({s.subject_key for s in self.samples})
        lines = [f"{self.dataset} / {self.protocol}: {len(self.samples)} samples, {subjects} subjects, {counts}"]
        if self.prepare is not None:
            lines.append(f"clips: {self.prepare}")
        lines += [f"reader: {p}" for p in self.problems]
        return "\n".join(lines)


def prepare_protocol_data(
    dataset: str,
    protocol: str,
    *,
    data_root: str | Path | None,
    cache_dir: str | Path,
    num_frames: int = 16,
    size: int = 224,
    align: bool = True,
    align_fallback: str = "error",
    mode: str = "uniform",
    n_workers: int = 1,
) -> ProtocolData:
    """Read ``dataset`` (SynthME under ``data_root`` or the user config), select ``protocol``, prepare clips.

    Clips that cannot be prepared (unreadable frames, no face found with ``align_fallback='error'``) are
    dropped and listed in ``dropped``; everything else is cached in ``cache_dir`` so no clip is prepared
    twice across notebooks and runs.
    """
    samples, problems = load_samples(dataset, data_root)
    proto = get_protocol(protocol)
    selected = proto.select(samples)
    if not selected:
        raise MernbError(f"protocol {protocol!r} selects no sample of {dataset!r}")
    cache = ClipCache(Path(cache_dir) / "clips")
    options = dict(num_frames=num_frames, size=size, align=align, fallback=align_fallback, mode=mode)
    report = prepare_all(selected, cache=cache, n_workers=n_workers, keep=True, **options)
    failed = dict(report.failures)
    kept = [s for s in selected if s.sample_id not in failed]
    clips = {s.sample_id: report.clips[s.sample_id] for s in kept}
    return ProtocolData(dataset, protocol, list(proto.classes), kept, clips, report, list(problems),
                        sorted(failed.items()))


def run_loso_row(
    results_path: str | Path,
    experiment: Experiment,
    data: ProtocolData,
    *,
    seed: int = 0,
    force: bool = False,
    plan: str | None = None,
    notebook: str | None = None,
) -> dict[str, Any]:
    """One table row: LOSO over ``data`` (fold-level resume under ``<results_path stem>/``), train-or-load.

    Returns the results document (``result`` holds pooled predictions and metrics; ``origin`` says
    whether it was loaded or computed).
    """
    results_path = Path(results_path)
    fold_dir = results_path.with_suffix("")
    config = {**experiment.config, "dataset": data.dataset, "protocol": data.protocol, "classes": data.classes,
              "n_samples": len(data.samples), "seed": seed}

    def compute() -> dict[str, Any]:
        return run_loso(experiment, data.samples, data.classes, fold_dir, seed=seed, force=force).to_dict()

    return train_or_load(results_path, compute, force=force, config=config, plan=plan, notebook=notebook,
                         seeds=[seed])


def run_info(**params: Any) -> str:
    """A one-paragraph description of the run (plan, group, device, package versions) for a notebook."""
    import torch

    from mernb.report.results import provenance

    prov = provenance()
    device = params.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    keys = ", ".join(f"{k}={v!r}" for k, v in params.items() if k not in ("groups",))
    return (f"{keys}\ndevice in use: {device} ({prov.get('device')}); mernb {prov['packages'].get('mernb')}, "
            f"torch {prov['packages'].get('torch')}, timm {prov['packages'].get('timm')}; "
            f"commit {prov.get('git_commit')}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
