"""Original SMIC-HS reader: labels come from folders, there is no spreadsheet and no apex.

Layout: ``root/s1/micro/negative/s1_ne_01/<frames>`` (raw ``image036237.bmp`` or cropped ``reg_image036237.bmp``);
``root`` may also be the folder holding ``HS/``. Each clip folder holds the onset..offset frames only, so onset
and offset are the first and last frame numbers found; ``apex=None`` with ``meta['apex_fallback']`` (the
midpoint is used, as in MEB). ``non_micro/`` branches are skipped. 164 clips from 16 subjects, 100 fps.
Used by the MPT notebooks (SMIC 3-class), the MEGC 2019 composite and ``mernb data check --dataset smic``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mernb.data.readers._common import Problem, _Collector, _listdir, check_root, child_dir, frame_index, nfc
from mernb.data.records import Sample
from mernb.errors import DatasetError

FPS = 100.0
LABELS = ("negative", "positive", "surprise")
LAYOUT = "root/s1/micro/negative/s1_ne_01/image036237.bmp"
_SUBJECT = re.compile(r"(?i)s0*(\d+)")


def _subject_dirs(root: Path) -> list[tuple[str, Path]]:
    return [(f"s{int(m.group(1))}", e) for e in _listdir(root) if e.is_dir() and (m := _SUBJECT.fullmatch(e.name))]


def read_smic(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
) -> list[Sample]:
    """SMIC-HS clips found under ``root`` (annotation must be None: the release has none)."""
    collect = _Collector(on_missing, problems)
    if annotation is not None:
        raise DatasetError(
            f"smic: the original SMIC-HS release has no annotation file (labels come from folders); got {annotation}. "
            "For SMIC-HS-E_annotation.xlsx use dataset 'smic_e'"
        )
    if root is None:
        raise DatasetError(f"smic: labels come from the folder tree, so root is required (layout {LAYOUT})")
    base = check_root(root, "smic", LAYOUT)
    subjects = _subject_dirs(base)
    if not subjects and (hs := child_dir(base, "HS")) is not None:
        base, subjects = hs, _subject_dirs(hs)
    if not subjects:
        raise DatasetError(f"smic: wrong root {base}? no subject folders s1..s20 found (expected layout {LAYOUT})")
    samples: list[Sample] = []
    for subject, sdir in sorted(subjects, key=lambda t: int(t[0][1:])):
        micro = child_dir(sdir, "micro")
        if micro is None:
            collect.note("note", f"smic: {sdir} has no micro/ folder", file=str(sdir))
            continue
        for edir in _listdir(micro):
            if not edir.is_dir():
                continue
            label = edir.name.lower()
            if label not in LABELS:
                collect.fail("skipped_row", f"smic: unknown label folder {edir} (expected one of {list(LABELS)})", file=str(edir))
                continue
            for cdir in _listdir(edir):
                if not cdir.is_dir():
                    continue
                index = frame_index(cdir)
                if not index:
                    collect.fail("missing_frames", f"smic: clip folder {cdir} holds no frames", file=str(cdir))
                    continue
                numbers = sorted(index)
                onset, offset = numbers[0], numbers[-1]
                meta = {"source": str(cdir), "apex_fallback": "no apex in the SMIC release"}
                absent = offset - onset + 1 - len(numbers)
                if absent:
                    meta["missing_frames"] = absent
                    collect.note("frame_gaps", f"smic: {absent} frames absent in {cdir}", file=str(cdir))
                samples.append(Sample(
                    dataset="smic", subject=subject, clip=nfc(cdir.name), onset=onset, apex=None, offset=offset,
                    label=label, fps=float(fps if fps is not None else FPS),
                    frame_paths=tuple(index[n] for n in numbers), frame_numbers=tuple(numbers), meta=meta,
                ))
    if samples:
        collect.note("apex_fallback", f"smic: no apex in the release; apex falls back to the midpoint for all {len(samples)} clips")
    return samples
