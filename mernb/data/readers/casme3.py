"""CAS(ME)^3 Part A reader: the ME label sheet (``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` sheet ``label``,
the v1 ``.xls``, third-party corrected copies, CSV exports such as HTNet's edited list) plus optional frames.

Layout: ``root/spNO.1/a/color/355.jpg`` (full videos; ``<N>.jpg`` absolute); also accepted
``root/spNO.1/a/<N>.jpg`` and ``root/frame/spNO.1_a_355/`` (the ``Part_A_ME_clip`` copy). Folder names match
case-insensitively (``spNo``/``spNO``, ``J``/``j``). Clip letters are stored lower case. ``Others`` -> ``others``.
The errors of the official v2 sheet (apex < onset, onset > offset, offset 0, onset/apex 0) are fixed from
``corrections.csv``. Several MEs share one video: the sample id includes the onset (``casme3/spNO.1/e/62``), and
a repeated onset gets a ``#2`` suffix. Most videos lack their first 7-8 frames (upstream issue #3): such gaps are
reported, not fatal. The all-expressions workbook ``CAS(ME)3_part_A_v2.xls`` has no emotion column and is
rejected. 30 fps.
Used by the HLoRA notebooks and ``mernb data check --dataset casme3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import Problem, SheetSpec, read_sheet_dataset, resolve
from mernb.data.records import Sample

FPS = 30.0
LABELS = frozenset({"disgust", "surprise", "others", "fear", "anger", "sad", "happy"})
LAYOUT = "root/spNO.1/a/color/355.jpg"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    subject, clip = s["subject"], s["clip"]
    return [
        resolve(root, [subject, clip, "color"]),
        resolve(root, [subject, clip]),
        resolve(root, ["frame", f"{subject}_{clip}_{s['onset']}"]),
    ]


SPEC = SheetSpec(
    name="casme3",
    fps=FPS,
    columns={
        "subject": ["Subject", "sub"],
        "clip": ["Filename"],
        "onset": ["Onset", "OnsetFrame"],
        "apex": ["Apex", "ApexFrame"],
        "offset": ["Offset", "OffsetFrame"],
        "aus": ["AU", "Action Units"],
        "emotion": ["emotion", "Estimated Emotion"],
        "objective_class": ["Objective class", "Objective Classes"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"other": "others", "happiness": "happy", "sadness": "sad"},
    layout=LAYOUT,
    annotation_patterns=(
        "cas(me)3_part_A_ME_label_JpgIndex_v2*.xlsx", "cas(me)3_part_A_ME_label_JpgIndex_v1*.xls",
        "cas(me)3_part_A_ME_label*.csv",
    ),
    frame_dirs=_frame_dirs,
    list_names=("cas(me)^3", "casme^3", "cas(me)3"),
    sheets=("label",),
    clip_form=lambda c: c.strip().lower(),
    hint="CAS(ME)3_part_A_v2.xls (all expressions + blinks) has no emotion column; use the ME label sheet "
    "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
)


def read_casme3(
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
    """CAS(ME)^3 Part A ME samples (860 in v2, 921 in v1); ``problems`` (a list) receives what was noticed."""
    return read_sheet_dataset(SPEC, root, annotation, on_missing=on_missing, fps=fps, problems=problems,
                              corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
