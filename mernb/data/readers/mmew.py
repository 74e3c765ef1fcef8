"""MMEW reader: ``MMEW_Micro_Exp.xlsx`` (or ``_v2``, or a CSV export such as HTNet's ``*_delete_others.csv``)
plus optional frames ``root/<emotion>/<Filename>/<N>.jpg`` (no subject level; ``root`` may also be
``MMEW_Final`` holding ``Micro_Expression/``).

The catch-all label is stored as ``others``; its folder is ``others`` in some copies and ``repression`` in
others, so both are tried (a ``repression`` label is read as ``others``). Subject ``1`` -> ``S01`` (the prefix of
clip names such as ``S01-01-001``). 90 fps.
Used by the MA2MI notebooks and ``mernb data check --dataset mmew``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import Problem, SheetSpec, read_sheet_dataset, resolve
from mernb.data.records import Sample

FPS = 90.0
LABELS = frozenset({"happiness", "surprise", "disgust", "fear", "sadness", "anger", "others"})
LAYOUT = "root/<emotion>/<Filename>/<N>.jpg, e.g. root/happiness/S01-01-001/1.jpg"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    emotions = ["others", "repression"] if s["label"] == "others" else [s["label"]]
    bases = [root, resolve(root, ["Micro_Expression"])]
    return [resolve(base, [e, s["clip"]]) for base in bases if base is not None for e in emotions]


SPEC = SheetSpec(
    name="mmew",
    fps=FPS,
    columns={
        "subject": ["Subject"],
        "clip": ["Filename"],
        "onset": ["OnsetFrame", "Onset Frame", "Onset"],
        "apex": ["ApexFrame", "Apex Frame", "Apex"],
        "offset": ["OffsetFrame", "Offset Frame", "Offset"],
        "aus": ["Action Units", "AU"],
        "emotion": ["Estimated Emotion", "Emotion"],
        "remarks": ["remarks"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"other": "others", "repression": "others", "happy": "happiness", "sad": "sadness"},
    layout=LAYOUT,
    annotation_patterns=("MMEW_Micro_Exp*.xlsx", "MMEW_Micro_Exp*.xls", "MMEW_Micro_Exp*.csv"),
    frame_dirs=_frame_dirs,
    meta_fields=("remarks",),
)


def read_mmew(
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
    """MMEW micro-expression samples (300 in the release); ``problems`` (a list) receives what was noticed."""
    return read_sheet_dataset(SPEC, root, annotation, on_missing=on_missing, fps=fps, problems=problems,
                              corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
