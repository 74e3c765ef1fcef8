"""MEVIEW reader (no public schema): a user-supplied CSV plus a frame folder or a video file per clip.

MEVIEW (Husák et al., CVWW 2017: poker and TV-interview footage, about 31 clips, 16 people, 25 fps) ships no
annotation format we could confirm, so mernb defines one. The CSV (or xlsx) has a header row with columns

=========  ====================================================================================
subject    person id, kept as text (e.g. ``p01``)
clip       clip name; the frame folder ``root/<clip>/`` or video ``root/<clip>.mp4`` (.avi/.mov/.mkv)
onset      first frame of the expression (frame numbers of the files, or 0-based video frame index)
apex       apex frame; empty, ``/``, -1, 0 or outside [onset, offset] -> midpoint fallback
offset     last frame of the expression
emotion    happiness/positive, surprise, negative, anger, contempt, disgust, fear, sadness, others
aus        optional, AU string (``4+L10``)
fps        optional, per-clip frame rate (default 25)
path       optional, frame folder or video file relative to root (overrides ``clip``)
=========  ====================================================================================

With a frame folder the frames onset..offset are mapped by the last number in the file name; with a video
file ``frame_paths`` is ``(video,)``, ``frame_numbers`` is empty and ``meta['video']`` names it (the clip
loader decodes onset..offset). This reader claims no fidelity to the release.
Used by the HLoRA MEVIEW notebook and ``mernb data check --dataset meview``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mernb.data.readers._common import (
    VIDEO_SUFFIXES,
    Problem,
    SheetSpec,
    _Collector,
    _listdir,
    attach_frames,
    cell_text,
    check_root,
    find_annotation,
    name_key,
    read_sheet_dataset,
    resolve,
)
from mernb.data.records import Sample
from mernb.errors import DatasetError

FPS = 25.0
LABELS = frozenset({"happiness", "positive", "surprise", "negative", "anger", "contempt", "disgust", "fear", "sadness", "others"})
LAYOUT = "root/<clip>/<N>.jpg or root/<clip>.mp4, with meview.csv (subject, clip, onset, apex, offset, emotion)"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    return [resolve(root, Path(s["meta"].get("path") or s["clip"]).parts)]


SPEC = SheetSpec(
    name="meview",
    fps=FPS,
    columns={
        "subject": ["subject"],
        "clip": ["clip", "filename", "video"],
        "onset": ["onset", "onsetframe"],
        "apex": ["apex", "apexframe"],
        "offset": ["offset", "offsetframe"],
        "emotion": ["emotion", "label"],
        "aus": ["aus", "au", "action units"],
        "fps": ["fps"],
        "path": ["path"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"happy": "happiness", "sad": "sadness", "other": "others", "angry": "anger"},
    layout=LAYOUT,
    annotation_patterns=("meview*.csv", "meview*.xlsx"),
    frame_dirs=_frame_dirs,
    meta_fields=("path",),
)


def _video(root: Path, s: Sample) -> Path | None:
    rel = Path(s.meta.get("path") or s.clip)
    parent = resolve(root, rel.parts[:-1]) if len(rel.parts) > 1 else root
    if parent is None:
        return None
    candidates = [rel.name] if rel.suffix.lower() in VIDEO_SUFFIXES else [rel.name + ext for ext in sorted(VIDEO_SUFFIXES)]
    for name in candidates:
        for entry in _listdir(parent):
            if entry.is_file() and name_key(entry.name) == name_key(name):
                return entry
    return None


def read_meview(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
    columns: Mapping[str, Any] | None = None,
    labels: Mapping[Any, Any] | None = None,
    duplicates: str = "drop",
) -> list[Sample]:
    """MEVIEW samples from the CSV described in the module docstring; frames or a video per clip under root."""
    base = check_root(root, "meview", LAYOUT) if root is not None else None
    if annotation is None:
        annotation = find_annotation(base, SPEC.annotation_patterns, "meview")
    samples = read_sheet_dataset(SPEC, None, annotation, fps=fps, on_missing=on_missing, problems=problems,
                                 corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
    if base is None:
        return samples
    collect = _Collector(on_missing, problems)
    located = [(s, resolve(base, Path(s.meta.get("path") or s.clip).parts), _video(base, s)) for s in samples]
    if samples and not any((folder is not None and folder.is_dir()) or video for _, folder, video in located):
        raise DatasetError(f"meview: wrong root {base}? no clip folder or video of {annotation} found (layout {LAYOUT})")
    out: list[Sample] = []
    for s, folder, video in located:
        where = f"{Path(annotation).name} row {s.meta.get('row')} ({s.subject} {s.clip})"
        if folder is not None and folder.is_dir():
            fields = {**s.__dict__, "meta": dict(s.meta)}
            if attach_frames(fields, [folder], collect, where, LAYOUT):
                out.append(Sample(**fields))
        elif video is not None:
            out.append(replace(s, frame_paths=(video,), meta={**s.meta, "video": str(video)}))
        else:
            collect.fail("missing_frames", f"{where}: neither a frame folder nor a video for clip "
                         f"{cell_text(s.clip)!r} under {base} (layout {LAYOUT})", sample_id=s.sample_id)
    return out
