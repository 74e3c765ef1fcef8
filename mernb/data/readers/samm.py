"""SAMM reader: ``SAMM_Micro_FACS_Codes_v2.xlsx`` (header below ~13 preamble rows, found by scanning) or a CSV
export, plus optional frame folders ``root/006/006_1_2/006_05562.jpg``.

Subject ``6`` / ``'006'`` -> ``006``; labels are lower-cased and ``Other`` becomes ``others``. The two apex values
outside [onset, offset] of the official v2 file are fixed from ``corrections.csv``. ``Objective Classes`` is
kept in ``meta['objective_class']``. The SAMM Long Videos spotting file (no emotion column) is rejected with a
clear error: it is not an emotion annotation. 200 fps.
Used by the MPT, HLoRA and MA2MI notebooks, SynthME and ``mernb data check --dataset samm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import Problem, SheetSpec, read_sheet_dataset, resolve
from mernb.data.records import Sample

FPS = 200.0
LABELS = frozenset({"anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "others"})
LAYOUT = "root/006/006_1_2/006_05562.jpg"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    return [resolve(root, [s["subject"], s["clip"]])]


SPEC = SheetSpec(
    name="samm",
    fps=FPS,
    columns={
        "subject": ["Subject"],
        "clip": ["Filename"],
        "onset": ["Onset Frame", "Onset", "OnsetFrame"],
        "apex": ["Apex Frame", "Apex", "ApexFrame"],
        "offset": ["Offset Frame", "Offset", "OffsetFrame"],
        "aus": ["Action Units", "AU"],
        "emotion": ["Estimated Emotion", "Emotion"],
        "objective_class": ["Objective Classes", "Objective Class"],
        "notes": ["Notes"],
        "type": ["Micro", "Type"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"other": "others", "happy": "happiness", "sad": "sadness", "angry": "anger"},
    layout=LAYOUT,
    annotation_patterns=("SAMM_Micro_FACS_Codes_v2*.xlsx", "SAMM_*Micro_FACS_Codes*.xls*", "SAMM_*Micro_FACS_Codes*.csv"),
    frame_dirs=_frame_dirs,
    hint=(
        "A file with Onset/Apex/Offset/Type but no 'Estimated Emotion' is the SAMM Long Videos spotting "
        "annotation (SAMM_LongVideos_V2_Release), which has no emotion labels; samm reads SAMM_Micro_FACS_Codes_v2.xlsx"
    ),
    meta_fields=("objective_class", "notes", "type"),
)


def read_samm(
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
    """SAMM samples (159 rows in v2); ``problems`` (a list) receives what was noticed."""
    return read_sheet_dataset(SPEC, root, annotation, on_missing=on_missing, fps=fps, problems=problems,
                              corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
