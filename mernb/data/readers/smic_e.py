"""SMIC-E (long videos) reader: ``SMIC-HS-E_annotation.xlsx``, sheet ``HS`` (or a CSV export of it), plus optional
frames ``root/s01/s1_ne_01/image090823.jpg``.

Columns used: Subject (int -> ``s01``), Filename (``s1_ne_01``), OnsetF, OffsetF, FirstF, LastF, Emotion and,
in the 2019 version, ApexF. Frame numbers are absolute image indices. Without ApexF the apex falls back to the
midpoint (``meta['apex_fallback']``). ``meta['first_frame']`` is FirstF (clip-relative onset = OnsetF - FirstF).
Rows below the table that hold free text are ignored and reported. 100 fps (HS).

A MEGC-style SMIC-HS list (``data, subject, clip, label`` with labels 0 negative / 1 positive / 2 surprise, a
header row or none, optionally onset/apex/offset frame columns) is read too: without onset/offset each clip
is every frame of its folder, found as above or in the SMIC-HS release layout ``root/s1/micro/negative/s1_ne_01``.
Used by ``mernb data check --dataset smic_e`` and by notebooks that need SMIC onsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import (
    MEGC_CODES,
    Problem,
    SheetSpec,
    normalise_smic_clip,
    parse_int,
    read_sheet_dataset,
    resolve,
)
from mernb.data.records import Sample

FPS = 100.0
LABELS = frozenset({"negative", "positive", "surprise"})
LAYOUT = "root/s01/s1_ne_01/image090823.jpg"


def _frame_dirs(root: Path, s: dict[str, Any]) -> list[Path | None]:
    unpadded = "s" + s["subject"][1:].lstrip("0")
    release = [resolve(root, [*top, unpadded, "micro", s["label"], s["clip"]]) for top in ([], ["HS"])]
    return [resolve(root, [s["subject"], s["clip"]]), resolve(root, [unpadded, s["clip"]]), *release]


def _extra(cells: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("first_frame", "last_frame"):
        try:
            value = parse_int(cells.get(key))
        except ValueError:
            value = None
        if value is not None:
            out[key] = value
    return out


SPEC = SheetSpec(
    name="smic_e",
    fps=FPS,
    columns={
        "subject": ["Subject"],
        "clip": ["Filename"],
        "onset": ["OnsetF", "Onset"],
        "apex": ["ApexF", "Apex"],
        "offset": ["OffsetF", "Offset"],
        "first_frame": ["FirstF"],
        "last_frame": ["LastF"],
        "emotion": ["Emotion"],
    },
    required=("subject", "clip", "onset", "offset", "emotion"),
    labels=LABELS,
    label_aliases={"ne": "negative", "po": "positive", "sur": "surprise", **MEGC_CODES},
    layout=LAYOUT,
    annotation_patterns=("SMIC-HS-E_annotation*.xlsx", "SMIC-HS-E_annotation*.csv"),
    frame_dirs=_frame_dirs,
    sheets=("HS",),
    clip_form=normalise_smic_clip,
    extra=_extra,
    list_names=("smic", "smic_hs", "smic_e", "smic_e_hs"),
)


def read_smic_e(
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
    """SMIC-E HS samples (162 in the file as received); ``problems`` (a list) receives what was noticed."""
    return read_sheet_dataset(SPEC, root, annotation, on_missing=on_missing, fps=fps, problems=problems,
                              corrections=corrections, columns=columns, labels=labels,
                              duplicates=duplicates)
