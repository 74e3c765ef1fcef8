"""CASME II reader: ``CASME2-coding-*.xlsx`` (any version, or a CSV export) plus optional frame folders.

Layout: ``root/sub01/EP02_01f/img46.jpg`` (raw) or ``root/sub01/EP02_01f/reg_img46.jpg`` (cropped); frame
numbers are absolute and match OnsetFrame/OffsetFrame. Subject ``1`` / ``'01'`` -> ``sub01``. The 2014 sheet's
``/`` apex (sub04 EP12_01f) becomes ``apex=None`` with ``meta['apex_fallback']``. 200 fps.
Used by the MPT, HLoRA and MA2MI notebooks, SynthME and ``mernb data check --dataset casme2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import Problem, SheetSpec, read_sheet_dataset, resolve
from mernb.data.records import Sample

FPS = 200.0
LABELS = frozenset({"happiness", "disgust", "repression", "surprise", "others", "fear", "sadness"})
LAYOUT = "root/sub01/EP02_01f/img46.jpg"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    return [resolve(root, [s["subject"], s["clip"]])]


SPEC = SheetSpec(
    name="casme2",
    fps=FPS,
    columns={
        "subject": ["Subject", "sub"],
        "clip": ["Filename", "Material", "clip"],
        "onset": ["OnsetFrame", "Onset Frame", "Onset"],
        "apex": ["ApexFrame", "Apex Frame", "Apex", "Apex frame 1"],
        "offset": ["OffsetFrame", "Offset Frame", "Offset"],
        "aus": ["Action Units", "AU", "AUs"],
        "emotion": ["Estimated Emotion", "Emotion"],
        "objective_class": ["Objective Class", "Objective Classes"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"other": "others", "happy": "happiness", "sad": "sadness"},
    layout=LAYOUT,
    annotation_patterns=("CASME2-coding-*.xlsx", "CASME2-coding*.xls", "CASME2_label*.xls*", "CASME2-coding*.csv"),
    frame_dirs=_frame_dirs,
    list_names=("casme_ii", "casme_2"),
)


def read_casme2(
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
    """CASME II samples (255 rows in the 2014 sheet); ``problems`` (a list) receives what was noticed."""
    return read_sheet_dataset(SPEC, root, annotation, on_missing=on_missing, fps=fps, problems=problems,
                              corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
