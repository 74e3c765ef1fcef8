"""Shared steps of every training notebook: data for a protocol, train-or-load a row shared by key, run info.

**Train-or-load a row, shared by key** (:class:`SharedRow`) is the one mechanism the three papers use for a
table row: an experiment on a protocol's samples, split into folds (LOSO, subject k-fold or a holdout split),
trained once and read by every table and figure that asks for the same thing. Its key is a digest of the
experiment's config, the protocol, the seed, the split and everything the model sees of each sample (id,
label, onset/apex/offset, frame numbers and a digest of the prepared clip), so a corrected label or a
changed frame is never answered by a stale result. Layout, under ``runs/<plan>/results/<paper>/shared/``::

    <name>-<key>.json            results document (pooled predictions, metrics, provenance, dropped clips)
    <name>-<key>/folds/          one JSON per finished fold (resume after a kill)
    <name>-<key>/checkpoints/    per-fold trainable weights (+ buffers), written atomically
    <name>-<key>/features/       per-fold held-out features (t-SNE), when the row has a ``features_fn``

Used by the MPT, HLoRA-MER and MA2MI recipes (notebooks/mpt/*, notebooks/hlora/*, notebooks/ma2mi/*) and
every notebook's run info.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mernb.data.cache import ClipCache
from mernb.data.clips import PrepareReport, prepare_all
from mernb.data.protocols import protocol as get_protocol
from mernb.data.records import HIDDEN_LABEL, Sample
from mernb.data.sources import load_samples
from mernb.errors import MernbError
from mernb.io import digest, save_torch_atomic, write_atomic
from mernb.paths import project_path
from mernb.report.results import train_or_load
from mernb.train.loso import Experiment, Fold, label_index, loso_folds, run_folds, sample_fingerprint


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
    _digests: dict[str, str] = field(default_factory=dict, repr=False)

    def input_digests(self) -> dict[str, str]:
        """``{sample_id: digest of its prepared clip}`` (content, shape and dtype), computed once."""
        for sid, clip in self.clips.items():
            if sid not in self._digests:
                array = np.ascontiguousarray(clip)
                h = hashlib.sha1(f"{array.dtype}{array.shape}".encode())
                h.update(array.tobytes())
                self._digests[sid] = h.hexdigest()
        return {sid: self._digests[sid] for sid in self.clips}

    def digest(self, samples: Sequence[Sample] | None = None) -> str:
        """Digest of what a model sees of ``samples`` (default: all): fingerprints + prepared-clip digests."""
        clips = self.input_digests()
        rows = sorted([*sample_fingerprint(s), clips.get(s.sample_id)] for s in (samples or self.samples))
        return digest([self.dataset, self.protocol, self.classes, rows])

    def drop(self, reasons: dict[str, str]) -> None:
        """Remove samples (``{sample_id: reason}``) and list them in ``dropped`` (shown with the results)."""
        if not reasons:
            return
        self.samples = [s for s in self.samples if s.sample_id not in reasons]
        self.clips = {sid: c for sid, c in self.clips.items() if sid not in reasons}
        self.dropped = sorted([*self.dropped, *reasons.items()])

    def summary(self) -> str:
        counts = {c: sum(s.label == c for s in self.samples) for c in self.classes}
        subjects = len({s.subject_key for s in self.samples})
        lines = [f"{self.dataset} / {self.protocol}: {len(self.samples)} samples, {subjects} subjects, {counts}"]
        if self.prepare is not None:
            lines.append(f"clips: {self.prepare}")
        lines += [f"reader: {p}" for p in self.problems]
        lines += [f"dropped {sid}: {why}" for sid, why in self.dropped]
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
    cache = ClipCache(project_path(cache_dir) / "clips")
    options = dict(num_frames=num_frames, size=size, align=align, fallback=align_fallback, mode=mode)
    report = prepare_all(selected, cache=cache, n_workers=n_workers, keep=True, **options)
    failed = dict(report.failures)
    kept = [s for s in selected if s.sample_id not in failed]
    clips = {s.sample_id: report.clips[s.sample_id] for s in kept}
    return ProtocolData(dataset, protocol, list(proto.classes), kept, clips, report, list(problems),
                        sorted(failed.items()))


def keep_first_subjects(data: ProtocolData, max_subjects: int | None) -> ProtocolData:
    """Keep the first ``max_subjects`` subjects in natural order (smoke plans only; None keeps all)."""
    if max_subjects:
        keep = [f.test_subjects[0] for f in loso_folds(data.samples)][: int(max_subjects)]
        data.samples = [s for s in data.samples if s.subject_key in keep]
        data.clips = {s.sample_id: data.clips[s.sample_id] for s in data.samples}
    return data


def shared_dir(results_dir: str | Path) -> Path:
    """``runs/<plan>/results/<paper>/shared`` from any notebook's ``results_dir`` (``.../<paper>/<notebook>``;
    relative to the project root, whatever the working directory)."""
    return project_path(results_dir).parent / "shared"


def trainable_state(model: Any) -> dict[str, Any]:
    """What a fold trained: parameters with ``requires_grad`` and every buffer (BatchNorm statistics...)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    names |= {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}


def load_trainable_state(model: Any, state: dict[str, Any], source: str | Path) -> Any:
    """Load a :func:`trainable_state` strictly: a missing or unexpected trained tensor is an error naming
    ``source`` (the frozen rest comes from the weights file or the seed, as in training)."""
    expected = set(trainable_state(model))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise MernbError(f"{source} does not fit this model: missing trained tensors {missing[:4]}, unexpected "
                         f"{extra[:4]}; re-run the row with force=True")
    model.load_state_dict(state, strict=False)
    return model


WEIGHT_KEYS = ("weights", "backbone_weights", "vae")


def weight_files(config: Any) -> dict[str, list[int] | None]:
    """``{value: [size, mtime_ns]}`` of every weight file a (nested) config names under a key of
    :data:`WEIGHT_KEYS` (a path or a user-config weights key); None where it does not resolve to a file."""
    found: dict[str, list[int] | None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in WEIGHT_KEYS and isinstance(v, str) and v:
                    found[v] = _file_stamp(v)
                else:
                    walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)

    walk(config)
    return found


def _file_stamp(value: str) -> list[int] | None:
    from mernb.errors import ConfigError
    from mernb.models.backbones import resolve_weights

    try:
        path = resolve_weights(value)
    except (ConfigError, OSError):
        path = None
    if path is None or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


@dataclass
class SharedRow:
    """One table row: ``experiment`` on ``data`` split into ``folds``, trained once and shared by :attr:`key`.

    ``paper``/``name``: the results file is ``<results_dir>/../shared/<name>-<key>.json``. ``folds``
    default to LOSO over ``data.samples``; a holdout or k-fold row passes its ``samples`` order, ``folds``
    and a ``split`` name. ``checkpoints`` (True, False or fold names) says which folds keep their trained
    weights; ``features_fn(model, samples)`` (optional) gives held-out features stored per fold.
    """

    name: str
    experiment: Experiment
    data: ProtocolData
    results_dir: str | Path
    seed: int = 0
    split: str = "loso"
    samples: list[Sample] | None = None
    folds: list[Fold] | None = None
    checkpoints: bool | Sequence[str] = True
    features_fn: Callable[[Any, list[Sample]], np.ndarray] | None = field(default=None, repr=False)
    doc: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.samples is None:
            self.samples = list(self.data.samples)
        if self.folds is None:
            self.folds = loso_folds(self.samples)

    # --- identity -------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Digest of the experiment config, protocol, classes, seed, split, the samples' inputs and the
        weight files the config names (size and modification time: a re-trained checkpoint is a new row)."""
        config = self.experiment.config
        return digest({"experiment": self.experiment.name, "config": config, "seed": self.seed,
                       "split": self.split, "folds": [[f.name, len(f.train_idx), len(f.test_idx)] for f in self.folds],
                       "data": self.data.digest(self.samples), "weights": weight_files(config)})

    @property
    def path(self) -> Path:
        return shared_dir(self.results_dir) / f"{self.name}-{self.key}.json"

    @property
    def folder(self) -> Path:
        return self.path.with_suffix("")

    def checkpoint(self, fold: str) -> Path:
        return self.folder / "checkpoints" / f"{fold}.pt"

    # --- training -------------------------------------------------------------------------------
    def _keeps(self, fold: str) -> bool:
        return self.checkpoints is True or (not isinstance(self.checkpoints, bool) and fold in self.checkpoints)

    def _on_fold_end(self, fold: Fold, model: Any, info: dict[str, Any]) -> None:
        if self._keeps(fold.name):
            save_torch_atomic(self.checkpoint(fold.name), trainable_state(model))
        if self.features_fn is not None:
            test = [self.samples[i] for i in fold.test_idx]
            self._save_features(fold.name, self.features_fn(model, test))

    def _save_features(self, fold: str, feats: Any) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        write_atomic(self.folder / "features" / f"{fold}.npy", lambda handle: np.save(handle, feats))
        return feats

    def run(self, *, force: bool = False, plan: str | None = None, notebook: str | None = None) -> dict[str, Any]:
        """Train-or-load the row (fold-level resume). Returns the results document with ``path`` and
        ``origin`` ("loaded" or "computed"); clips dropped at preparation are listed in ``extra.dropped``."""
        self.experiment.on_fold_end = self._on_fold_end
        config = {**self.experiment.config, "dataset": self.data.dataset, "protocol": self.data.protocol,
                  "classes": self.data.classes, "n_samples": len(self.samples), "seed": self.seed,
                  "split": self.split}
        digests = self.data.input_digests()

        def compute() -> dict[str, Any]:
            return run_folds(self.experiment, self.samples, self.folds, self.data.classes, self.folder,
                             seed=self.seed, force=force, progress=False, input_digests=digests).to_dict()

        extra = {"row_key": self.key, "row": self.name, "dropped": [list(d) for d in self.data.dropped]}
        doc = train_or_load(self.path, compute, force=force, config=config, plan=plan, notebook=notebook,
                            seeds=[self.seed], extra=extra)
        self.doc = {**doc, "path": str(self.path)}
        return self.doc

    # --- trained models and features ------------------------------------------------------------
    def fold(self, name: str) -> Fold:
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise MernbError(f"row {self.name!r} has no fold {name!r} (folds: {[f.name for f in self.folds][:8]}...)")

    def fold_model(self, name: str) -> Any:
        """The trained model of fold ``name`` in eval mode: from its checkpoint, else trained again (same
        seed, same fold: the same model, since randomness is per fold) and its checkpoint written."""
        fold = self.fold(name)
        path = self.checkpoint(name)
        if path.is_file():
            import torch

            from mernb.train.runtime import set_seed

            set_seed(self.seed)
            model = self.experiment.model_fn(len(self.data.classes))
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated or foreign file
                raise MernbError(f"checkpoint {path} cannot be read ({exc}); delete it to retrain that fold") from exc
            return load_trainable_state(model, state, path).eval()
        exp = self.experiment
        train = [self.samples[i] for i in fold.train_idx]
        test = [dataclasses.replace(self.samples[i], label=HIDDEN_LABEL) for i in fold.test_idx]
        exp.on_fold_end, exp.keep_model = None, True
        try:
            exp.fit_predict(train, test, seed=self.seed, fold=fold)
        finally:
            exp.keep_model = False
        model = exp.models.pop(name)
        save_torch_atomic(path, trainable_state(model))
        return model.eval()

    def features(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """Held-out features pooled over folds (N, D), true labels (N,), sample ids and fold names."""
        if self.features_fn is None:
            raise MernbError(f"row {self.name!r} has no features_fn")
        feats, y, ids, fold_names = [], [], [], []
        for fold in self.folds:
            path = self.folder / "features" / f"{fold.name}.npy"
            test = [self.samples[i] for i in fold.test_idx]
            if path.is_file():
                feats.append(np.load(path))
            else:
                feats.append(self._save_features(fold.name, self.features_fn(self.fold_model(fold.name), test)))
            ids += [s.sample_id for s in test]
            y += [label_index(s, self.data.classes) for s in test]
            fold_names += [fold.name] * len(test)
        return np.concatenate(feats), np.asarray(y), ids, fold_names


SCALAR_METRICS = ("acc", "uf1", "uar", "war")


def metrics_over_seeds(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each scalar metric over the seeds' results documents, with ``<metric>_std`` (sample standard
    deviation, ddof=1; 0 for one seed), ``seeds`` and ``n_seeds``; ``confusion`` is summed over the seeds.
    Tables show the mean ± std and take the Δ to the paper on the mean."""
    if not docs:
        raise MernbError("metrics_over_seeds needs at least one results document")
    out: dict[str, Any] = {}
    for key in SCALAR_METRICS:
        values = np.asarray([float(d["result"]["metrics"][key]) for d in docs])
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out["confusion"] = np.sum([np.asarray(d["result"]["metrics"]["confusion"]) for d in docs], axis=0).tolist()
    out["seeds"] = [d["result"]["seed"] for d in docs]
    out["n_seeds"] = len(docs)
    return out


def row_metrics(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A row's metrics for a table: the mean over its seeds when it ran several (``doc["over_seeds"]``), else
    its pooled metrics; ``{}`` for a missing row. Used by every results notebook."""
    if doc is None:
        return {}
    return dict(doc.get("over_seeds") or doc["result"]["metrics"])


def reference_metrics(data: ProtocolData, doc: dict[str, Any] | None, *, difference: bool = True
                      ) -> dict[str, dict[str, Any]]:
    """Reference rows for a results table, on the folds of the row ``doc`` (its test samples per fold; the
    rest of ``data`` trains): majority class, chance and the linear onset–apex difference baseline
    (:func:`mernb.experiments.baselines.reference_rows`). ``{}`` when the row did not run. Used by the
    results notebooks of the three papers."""
    from mernb.experiments.baselines import reference_rows

    if doc is None:
        return {}
    by_id = {s.sample_id: i for i, s in enumerate(data.samples)}
    tested: dict[str, list[int]] = {}
    for p in doc["result"]["predictions"]:
        if p["sample_id"] in by_id:
            tested.setdefault(p["fold"], []).append(by_id[p["sample_id"]])
    row_ids = [by_id[p["sample_id"]] for p in doc["result"]["predictions"] if p["sample_id"] in by_id]
    in_row = set(range(len(data.samples))) if doc.get("config", {}).get("split", "loso") != "loso" else set(row_ids)
    folds = [(np.array(sorted(in_row - set(test))), np.array(sorted(test))) for test in tested.values()]
    return reference_rows(data.samples, folds, data.classes, difference=difference)


def seed_list(seed: int, seeds: Sequence[int] | None) -> list[int]:
    """The seeds a row runs with: the plan's ``seeds`` (paper plan: three), else the single ``seed``."""
    out = [int(s) for s in (seeds if seeds else [seed])]
    if len(set(out)) != len(out):
        raise MernbError(f"seeds must be distinct, got {out}")
    return out


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
