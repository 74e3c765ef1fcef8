"""``mernb data check``: what a dataset folder / annotation file holds and what is wrong with it.

``mernb data check --dataset NAME [--root DIR] [--annotation FILE] [--full] [--json]`` reads the dataset in skip
mode and prints samples, subjects, label counts, the class counts of every protocol of that dataset, and the
problems found (apex fallbacks, corrections applied, duplicate rows, frame gaps, skipped rows; with --root also
missing frames, duplicate frame numbers, and frames that do not decode or differ in size from the rest of their
clip: every frame's size is read, and the first, apex and last frame of each clip decoded, all frames with
``--full``). Root and annotation default to the user config (``datasets.<name>.root`` / ``.annotation``).
Exit status: 0 when the data is usable as read, 1 when rows were skipped or clips would fail at preparation
(missing, corrupt or odd-sized frames) or no sample was read at all, 2 on errors (wrong root, no header...).
:func:`summarize` returns the same summary as a dict (used by ``notebooks/data/datasets.ipynb``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mernb.config import load_config
from mernb.data.protocols import protocols_for
from mernb.data.readers import DATASETS, Problem, read_dataset_report
from mernb.data.readers._common import VIDEO_SUFFIXES
from mernb.data.records import Sample
from mernb.errors import ConfigError, DatasetError

FATAL_KINDS = ("skipped_row", "missing_frames", "corrupt_frame", "frame_size", "no_samples")
#: Frames decoded per clip without ``--full``: first, apex (nearest on disk) and last.
SAMPLE_FRAMES = "first, apex, last"


def _from_config(name: str) -> tuple[str | None, str | None]:
    config = load_config()
    entry = config.datasets.get(name) or {}
    if not entry.get("root") and not entry.get("annotation"):
        config.dataset(name)  # raises the ConfigError naming datasets.<name>.root
        raise ConfigError(f"set datasets.{name}.root or datasets.{name}.annotation in {config.source}")
    return entry.get("root"), entry.get("annotation")


def _decoded_indices(sample: Sample, full: bool) -> list[int]:
    from mernb.data.clips import onset_apex_indices

    n = len(sample.frame_paths)
    if full:
        return list(range(n))
    return sorted({0, onset_apex_indices(sample)[1], n - 1})


def check_frames(samples: Sequence[Sample], full: bool = False) -> list[Problem]:
    """Problems with the frame files of samples read with a root: ``corrupt_frame`` (not an image, or a
    truncated JPEG) and ``frame_size`` (frames of another size than most of their clip). Every frame's size
    is read from its header; the first, apex and last frame of each clip are decoded (all with ``full``),
    as clip preparation decodes them (:func:`mernb.data.clips.load_frame`). Video clips are skipped."""
    from PIL import Image, UnidentifiedImageError

    from mernb.data.clips import load_frame  # torch and cv2: imported only when frames are checked

    problems: list[Problem] = []
    for s in samples:
        paths = s.frame_paths
        if not paths or paths[0].suffix.lower() in VIDEO_SUFFIXES:
            continue
        bad: dict[int, str] = {}
        sizes: dict[int, tuple[int, int]] = {}
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    sizes[i] = im.size
            except (OSError, UnidentifiedImageError) as exc:
                bad[i] = f"not a readable image ({exc.__class__.__name__})"
        for i in _decoded_indices(s, full):
            if i in bad:
                continue
            try:
                load_frame(paths[i])
            except DatasetError as exc:
                bad[i] = str(exc).removeprefix(f"{paths[i]}: ")
        for i, reason in sorted(bad.items()):
            problems.append(Problem("corrupt_frame", f"{s.sample_id}: {paths[i]}: {reason}", sample_id=s.sample_id))
        if sizes:
            (common, _), = Counter(sizes.values()).most_common(1)
            odd = [i for i, size in sorted(sizes.items()) if size != common]
            if odd:
                shown = ", ".join(f"{paths[i].name} {sizes[i][0]}x{sizes[i][1]}" for i in odd[:4])
                problems.append(Problem(
                    "frame_size", f"{s.sample_id}: {len(odd)} of {len(paths)} frames differ in size from the "
                    f"clip's {common[0]}x{common[1]} ({shown}{', ...' if len(odd) > 4 else ''}) in {paths[0].parent}",
                    sample_id=s.sample_id))
    return problems


def summarize(
    dataset: str, root: str | Path | None = None, annotation: str | Path | None = None, *, full: bool = False
) -> dict[str, Any]:
    """Summary of one dataset: counts, per-protocol class counts and problems (what ``mernb data check`` prints).
    Root/annotation default to the user config when both are None; with a root the frames are checked
    (:func:`check_frames`, every frame decoded with ``full``)."""
    name = dataset.lower()
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if root is None and annotation is None:
        root, annotation = _from_config(name)
    samples, problems = read_dataset_report(name, root, annotation, on_missing="skip")
    if root is not None:
        problems += check_frames(samples, full)
    if not samples and not any(p.kind == "no_samples" for p in problems):
        problems.append(Problem("no_samples", "no sample was read (0 samples): "
                                + ("every row was skipped (see above)" if problems else "the file holds no data rows")))
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
        "frames_decoded": ("all" if full else SAMPLE_FRAMES) if root is not None else None,
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
    if summary.get("frames_decoded"):
        more = "" if summary["frames_decoded"] == "all" else "; --full decodes all"
        lines.append(f"  frames      sizes of all read, decoded: {summary['frames_decoded']} of each clip{more}")
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
    summary = summarize(args.dataset, args.root, args.annotation, full=bool(getattr(args, "full", False)))
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 1 if any(summary["problem_counts"].get(k) for k in FATAL_KINDS) else 0
