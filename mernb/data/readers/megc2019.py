"""MEGC 2019 composite list reader (CASME II + SAMM + SMIC-HS, 3 classes): a published sample list such as
``combined_3_class_gt.csv`` (``data, subject, clip, label``) or HTNet's ``combined_3_class2_for_optical_flow.csv``
(``dataset, sub, filename_o, label, ...``). Labels 0/1/2 = negative/positive/surprise (text labels accepted).

Samples keep their source dataset (``casme2``, ``samm``, ``smic``) with subjects and clips in that release's
folder form (``sub01``, ``006``, ``s1``/``s1_ne_01``), so ``subject_key`` is unique per dataset; ``label`` is the
3-class name and ``meta['composite'] = 'megc2019'``. The list has no frame numbers (onset/apex/offset None).
With ``root`` (a folder holding ``CASME2/``, ``SAMM/`` and ``SMIC/`` in their release layouts, names matched
case-insensitively), each clip's frames are all frames of its folder and onset/offset their first/last number.

To build the composite from the three releases' own annotations use ``protocol('megc2019_3class')``, whose
rules + exceptions reproduce this list exactly.
Used by the MPT/HLoRA composite notebooks and ``mernb data check --dataset megc2019``.
"""

from __future__ import annotations

from pathlib import Path

from mernb.data.readers._common import (
    Problem,
    _Collector,
    cell_text,
    check_root,
    frame_index,
    normalise_smic_clip,
    normalise_subject,
    read_table,
    resolve,
)
from mernb.data.records import Sample
from mernb.errors import DatasetError

CLASSES = ("negative", "positive", "surprise")
FPS = {"casme2": 200.0, "samm": 200.0, "smic": 100.0}
LAYOUT = "root/CASME2/sub01/EP02_01f/, root/SAMM/006/006_1_2/, root/SMIC/s1/micro/negative/s1_ne_01/"
COLUMNS = {
    "dataset": ["data", "dataset"],
    "subject": ["subject", "sub"],
    "clip": ["clip", "filename_o", "filename"],
    "label": ["label", "emotion"],
}


def _clip_dir(root: Path, s: Sample) -> Path | None:
    if s.dataset == "casme2":
        return resolve(root, ["CASME2", s.subject, s.clip])
    if s.dataset == "samm":
        return resolve(root, ["SAMM", s.subject, s.clip])
    return resolve(root, ["SMIC", s.subject, "micro", s.label, s.clip]) or resolve(
        root, ["SMIC", "HS", s.subject, "micro", s.label, s.clip]
    )


def read_megc2019(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
) -> list[Sample]:
    """The composite samples of a MEGC 2019 list file (442 rows in the official list)."""
    collect = _Collector(on_missing, problems)
    base = check_root(root, "megc2019", LAYOUT) if root is not None else None
    if annotation is None:
        from mernb.data.readers._common import find_annotation

        annotation = find_annotation(base, ("combined_3_class*.csv", "megc2019*.csv"), "megc2019")
    table = read_table(annotation, COLUMNS, ("dataset", "subject", "clip", "label"))
    name = Path(annotation).name
    samples: list[Sample] = []
    for rownum, cells in table.rows:
        where = f"{name} row {rownum}"
        dataset = str(cells["dataset"] or "").strip().lower().replace("_", "")
        if not dataset:
            continue
        if dataset not in FPS:
            collect.fail("skipped_row", f"{where}: unknown dataset {dataset!r} (expected casme2, samm or smic)", row=rownum)
            continue
        raw = str(cells["label"]).strip().lower().removesuffix(".0")
        label = CLASSES[int(raw)] if raw.isdigit() and int(raw) < 3 else raw
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
        samples.append(Sample(
            dataset=dataset, subject=subject, clip=clip, onset=None, apex=None, offset=None, label=label,
            fps=float(fps if fps is not None else FPS[dataset]),
            meta={"source": str(annotation), "row": rownum, "composite": "megc2019", "emotion": label},
        ))
    if base is None:
        return samples
    dirs = [_clip_dir(base, s) for s in samples]
    if samples and not any(dirs):
        raise DatasetError(f"megc2019: wrong root {base}? none of the clip folders was found (expected layout {LAYOUT})")
    out = []
    for s, folder in zip(samples, dirs, strict=True):
        index = frame_index(folder) if folder is not None else {}
        if not index:
            collect.fail("missing_frames", f"{name} row {s.meta['row']}: no frames for {s.dataset} {s.subject} {s.clip} "
                         f"under {base} (expected layout {LAYOUT})", sample_id=s.sample_id)
            continue
        numbers = sorted(index)
        out.append(Sample(
            dataset=s.dataset, subject=s.subject, clip=s.clip, onset=numbers[0], apex=None, offset=numbers[-1],
            label=s.label, fps=s.fps, frame_paths=tuple(index[n] for n in numbers), frame_numbers=tuple(numbers),
            sample_id=s.sample_id, meta={**s.meta, "apex_fallback": "the composite list has no apex"},
        ))
    return out
