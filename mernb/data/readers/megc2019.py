"""MEGC 2019 composite list reader (CASME II + SAMM + SMIC-HS, 3 classes): a published sample list such as
``combined_3_class_gt.csv`` (``data, subject, clip, label``) or HTNet's ``combined_3_class2_for_optical_flow.csv``
(``dataset, sub, filename_o, label, ...``), or the official ground truth, which has no header row
(``casme2,sub01,EP02_01f,1``). Labels 0/1/2 = negative/positive/surprise (text labels accepted). Optional
``onset_frame, apex_frame, offset_frame`` columns (after the label when headerless) and frame-path columns
(kept in ``meta['frame_files']``). Exact duplicate rows are dropped and reported (``duplicate_row``).

Samples keep their source dataset (``casme2``, ``samm``, ``smic``) with subjects and clips in that release's
folder form (``sub01``, ``006``, ``s1``/``s1_ne_01``), so ``subject_key`` is unique per dataset; ``label`` is the
3-class name and ``meta['composite'] = 'megc2019'``. Without frame columns onset/apex/offset are None.
With ``root`` (a folder holding ``CASME2/``, ``SAMM/`` and ``SMIC/`` in their release layouts, names matched
case-insensitively), each clip's frames are the frames of its folder (within onset..offset when given) and
onset/offset default to their first/last number.

To build the composite from the three releases' own annotations use ``protocol('megc2019_3class')``, whose
rules + exceptions reproduce this list exactly.
Used by the MPT/HLoRA composite notebooks and ``mernb data check --dataset megc2019``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mernb.data.readers._common import (
    Problem,
    _Collector,
    cell_text,
    check_root,
    find_annotation,
    frame_index,
    list_positional,
    norm_key,
    normalise_smic_clip,
    normalise_subject,
    parse_int,
    read_table,
    resolve,
)
from mernb.data.records import Sample
from mernb.errors import ConfigError, DatasetError

CLASSES = ("negative", "positive", "surprise")
FPS = {"casme2": 200.0, "samm": 200.0, "smic": 100.0}
#: Names of the three datasets in a list's ``data`` column (:func:`norm_key` form).
DATASET_NAMES = {"casme2": "casme2", "casmeii": "casme2", "samm": "samm", "smic": "smic", "smichs": "smic"}
LAYOUT = "root/CASME2/sub01/EP02_01f/, root/SAMM/006/006_1_2/, root/SMIC/s1/micro/negative/s1_ne_01/"
COLUMNS = {
    "dataset": ["data", "dataset"],
    "subject": ["subject", "sub"],
    "clip": ["clip", "filename_o", "filename"],
    "label": ["label", "emotion"],
    "onset": ["onset_frame", "onset", "onsetframe"],
    "apex": ["apex_frame", "apex", "apexframe"],
    "offset": ["offset_frame", "offset", "offsetframe"],
    "onset_path": ["onset_path", "onset_image"],
    "apex_path": ["apex_path", "apex_image"],
    "offset_path": ["offset_path", "offset_image"],
    "image": ["imagename", "image_path", "image_name"],
}


def _clip_dir(root: Path, s: Sample) -> Path | None:
    if s.dataset == "casme2":
        return resolve(root, ["CASME2", s.subject, s.clip])
    if s.dataset == "samm":
        return resolve(root, ["SAMM", s.subject, s.clip])
    return resolve(root, ["SMIC", s.subject, "micro", s.label, s.clip]) or resolve(
        root, ["SMIC", "HS", s.subject, "micro", s.label, s.clip]
    )


def _columns(columns: Mapping[str, Any] | None) -> dict[str, list[str]]:
    out = {f: list(v) for f, v in COLUMNS.items()}
    for f, header in (columns or {}).items():
        if f not in out:
            raise ConfigError(f"datasets.megc2019.columns: unknown field {f!r} (fields: {', '.join(COLUMNS)})")
        out[f] = [str(header)]
    return out


def _label_map(labels: Mapping[Any, Any] | None) -> dict[str, str]:
    out = {str(i): c for i, c in enumerate(CLASSES)}
    for raw, label in (labels or {}).items():
        if cell_text(label).lower() not in CLASSES:
            raise ConfigError(f"datasets.megc2019.labels: {raw!r} maps to {label!r}, not one of {CLASSES}")
        out[cell_text(raw).lower()] = cell_text(label).lower()
    return out


def _frame_numbers(cells: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    out = []
    for key in ("onset", "apex", "offset"):
        try:
            out.append(parse_int(cells.get(key)))
        except ValueError:
            out.append(None)
    onset, apex, offset = out
    if onset is None or offset is None or offset < onset:
        return None, (apex if apex else None), None
    return onset, (apex if apex and onset <= apex <= offset else None), offset


def read_megc2019(
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
    """The composite samples of a MEGC 2019 list file (442 rows in the official list); ``columns``/``labels``
    map other headers or label codes (user config), ``duplicates="drop"`` drops rows repeating one exactly."""
    if duplicates not in {"drop", "keep"}:
        raise ValueError(f"duplicates must be 'drop' or 'keep', not {duplicates!r}")
    collect = _Collector(on_missing, problems)
    base = check_root(root, "megc2019", LAYOUT) if root is not None else None
    if annotation is None:
        annotation = find_annotation(base, ("combined_3_class*.csv", "megc2019*.csv"), "megc2019")
    table = read_table(annotation, _columns(columns), ("dataset", "subject", "clip", "label"),
                       positional=list_positional(DATASET_NAMES, "label"), dataset="megc2019")
    codes = _label_map(labels)
    name = Path(annotation).name
    samples: list[Sample] = []
    contents: dict[tuple[Any, ...], int] = {}
    for rownum, cells in table.rows:
        where = f"{name} row {rownum}"
        raw_dataset = cell_text(cells["dataset"])
        if not raw_dataset:
            continue
        dataset = DATASET_NAMES.get(norm_key(raw_dataset))
        if dataset is None:
            collect.fail("skipped_row", f"{where}: unknown dataset {raw_dataset!r} (expected casme2, samm or smic)", row=rownum)
            continue
        raw = cell_text(cells["label"]).lower()
        label = codes.get(raw, raw)
        if label not in CLASSES:
            collect.fail("skipped_row", f"{where}: unknown label {cells['label']!r} (expected 0/1/2 or {CLASSES})", row=rownum)
            continue
        try:
            subject = normalise_subject(dataset, cells["subject"])
        except ValueError:
            collect.fail("skipped_row", f"{where}: subject {cells['subject']!r} is not a {dataset} subject id", row=rownum)
            continue
        clip = cell_text(cells["clip"])
        if dataset == "smic":
            clip = normalise_smic_clip(clip)
        onset, apex, offset = _frame_numbers(cells)
        content = (dataset, subject, clip, label, onset, apex, offset)
        if duplicates == "drop" and content in contents:
            collect.note("duplicate_row", f"{where}: repeats row {contents[content]} exactly; dropped", row=rownum)
            continue
        contents.setdefault(content, rownum)
        meta: dict[str, Any] = {"source": str(annotation), "row": rownum, "composite": "megc2019", "emotion": label}
        files = {f: cell_text(v) for f, v in cells.items()
                 if (f.endswith("_path") or f.startswith("path_") or f == "image") and cell_text(v)}
        if files:
            meta["frame_files"] = files
        samples.append(Sample(
            dataset=dataset, subject=subject, clip=clip, onset=onset, apex=apex, offset=offset, label=label,
            fps=float(fps if fps is not None else FPS[dataset]), meta=meta,
        ))
    if base is None:
        return samples
    dirs = [_clip_dir(base, s) for s in samples]
    if samples and not any(dirs):
        raise DatasetError(f"megc2019: wrong root {base}? none of the clip folders was found (expected layout {LAYOUT})")
    out = []
    for s, folder in zip(samples, dirs, strict=True):
        index = frame_index(folder) if folder is not None else {}
        lo, hi = (s.onset, s.offset) if s.onset is not None else (-(2**62), 2**62)
        numbers = sorted(n for n in index if lo <= n <= hi)
        if not numbers:
            collect.fail("missing_frames", f"{name} row {s.meta['row']}: no frames for {s.dataset} {s.subject} {s.clip} "
                         f"under {base} (expected layout {LAYOUT})", sample_id=s.sample_id)
            continue
        apex = s.apex if s.apex is not None and numbers[0] <= s.apex <= numbers[-1] else None
        meta = dict(s.meta)
        if apex is None:
            meta["apex_fallback"] = "the composite list has no apex" if s.apex is None else f"apex {s.apex} outside the clip"
        out.append(Sample(
            dataset=s.dataset, subject=s.subject, clip=s.clip, onset=s.onset if s.onset is not None else numbers[0],
            apex=apex, offset=s.offset if s.offset is not None else numbers[-1], label=s.label, fps=s.fps,
            frame_paths=tuple(index[n] for n in numbers), frame_numbers=tuple(numbers), sample_id=s.sample_id, meta=meta,
        ))
    return out
