"""``mernb data check``: what a dataset folder / annotation file holds and what is wrong with it.

``mernb data check --dataset NAME [--root DIR] [--annotation FILE] [--json]`` reads the dataset in skip mode
and prints samples, subjects, label counts, the class counts of every protocol of that dataset, and the
problems found (apex fallbacks, corrections applied, frame gaps, skipped rows, missing frames when --root is
given). Root and annotation default to the user config (``datasets.<name>.root`` / ``.annotation``).
Exit status: 0 when every row was read, 1 when rows were skipped, 2 on errors (wrong root, no header...).
:func:`summarize` returns the same summary as a dict (used by ``notebooks/data/datasets.ipynb``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mernb.config import load_config
from mernb.data.protocols import protocols_for
from mernb.data.readers import DATASETS, read_dataset_report
from mernb.errors import ConfigError, DatasetError

FATAL_KINDS = ("skipped_row", "missing_frames")


def _from_config(name: str) -> tuple[str | None, str | None]:
    config = load_config()
    entry = config.datasets.get(name) or {}
    if not entry.get("root") and not entry.get("annotation"):
        config.dataset(name)  # raises the ConfigError naming datasets.<name>.root
        raise ConfigError(f"set datasets.{name}.root or datasets.{name}.annotation in {config.source}")
    return entry.get("root"), entry.get("annotation")


def summarize(dataset: str, root: str | Path | None = None, annotation: str | Path | None = None) -> dict[str, Any]:
    """Summary of one dataset: counts, per-protocol class counts and problems (what ``mernb data check`` prints).
    Root/annotation default to the user config when both are None."""
    name = dataset.lower()
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if root is None and annotation is None:
        root, annotation = _from_config(name)
    samples, problems = read_dataset_report(name, root, annotation, on_missing="skip")
    kinds = Counter(p.kind for p in problems)
    protocols = {}
    for p in protocols_for(name):
        selected = p.select(samples) if any(s.dataset in p.datasets for s in samples) else []
        protocols[p.name] = {
            "classes": {c: sum(1 for s in selected if s.label == c) for c in p.classes},
            "samples": len(selected),
            "subjects": len({s.subject_key for s in selected}),
        }
        if len({s.dataset for s in selected}) > 1:
            protocols[p.name]["per_dataset"] = p.dataset_counts(selected)
    return {
        "dataset": name,
        "root": str(root) if root is not None else None,
        "annotation": str(annotation) if annotation is not None else None,
        "frames_checked": root is not None,
        "samples": len(samples),
        "subjects": len({s.subject_key for s in samples}),
        "labels": dict(sorted(Counter(s.label for s in samples).items(), key=lambda kv: (-kv[1], kv[0]))),
        "with_frames": sum(1 for s in samples if s.frame_paths),
        "protocols": protocols,
        "problem_counts": dict(kinds),
        "problems": [p.as_dict() for p in problems],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`summarize`'s dict."""
    lines = [f"dataset {summary['dataset']}"]
    if summary["annotation"]:
        lines.append(f"  annotation  {summary['annotation']}")
    lines.append(f"  root        {summary['root'] or '(none: frames not checked)'}")
    lines.append(f"  samples     {summary['samples']}  subjects {summary['subjects']}"
                 + (f"  with frames {summary['with_frames']}" if summary["frames_checked"] else ""))
    lines.append("  labels      " + ", ".join(f"{k or '(none)'} {v}" for k, v in summary["labels"].items()))
    for name, info in summary["protocols"].items():
        classes = ", ".join(f"{c} {n}" for c, n in info["classes"].items())
        lines.append(f"  protocol {name}: {info['samples']} samples, {info['subjects']} subjects ({classes})")
        for dataset, counts in info.get("per_dataset", {}).items():
            lines.append(f"    {dataset}: {sum(counts.values())} (" + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")")
    if summary["problems"]:
        counts = ", ".join(f"{k} {v}" for k, v in summary["problem_counts"].items())
        lines.append(f"problems ({counts}):")
        lines.extend(f"  [{p['kind']}] {p['message']}" for p in summary["problems"])
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def main(args: Any) -> int:
    """Entry point of ``mernb data check`` (arguments parsed in ``mernb.cli``)."""
    summary = summarize(args.dataset, args.root, args.annotation)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 1 if any(summary["problem_counts"].get(k) for k in FATAL_KINDS) else 0
