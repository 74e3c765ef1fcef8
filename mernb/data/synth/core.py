"""SynthME entry point: render a whole dataset (frames + annotation file) in a real release's layout.

Used by the smoke plan (data generated on the fly into ``runs/``), the tests of the readers, clips,
magnification and training code, and the book's data pages.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mernb.data.synth.faces import Subject, make_subject
from mernb.data.synth.layouts import LAYOUTS, Layout, Row
from mernb.data.synth.motion import Event, aus_for_row, render_clip
from mernb.errors import ConfigError, DatasetError

DATASETS = tuple(LAYOUTS)
MARKER = "SYNTHME.json"
PARTIAL_MARKER = ".SYNTHME.partial"  # a generation in progress (or interrupted)
BASE_SIZE = 112  # amplitudes below are in pixels at this frame side and scale with ``size``
MICRO_AMPLITUDE = (0.6, 1.4)  # px at apex per AU (times the AU's intensity letter), clipped to 0.3..2
MACRO_GAIN = (5.0, 20.0)  # macro-expressions: micro amplitude times this, capped to stay fold-free
MAX_SECONDS = 30.0  # longest span rendered per row (longer rows: the first 30 s + apex + offset frame)
BROKEN_WINDOW_S = 1.5  # rows with offset < onset: frames within ±1.5 s of each annotated number


@dataclass(frozen=True)
class SynthInfo:
    """What :func:`generate` wrote: frames ``root``, ``annotation`` file (None for SMIC), counts, timing.

    ``apex_displacement_px`` holds, per frame folder, the largest facial displacement (px) rendered.
    """

    root: Path
    annotation: Path | None
    n_samples: int
    n_frames: int
    seconds: float
    dataset: str = ""
    rows: str = ""
    apex_displacement_px: tuple[float, ...] = ()


def default_fixtures_dir() -> Path:
    """``../shared/fixtures/annotations`` beside the repository checkout (may not exist)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "annotations"


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _select(rows: list[Row], max_subjects: int | None, max_per_subject: int | None) -> list[Row]:
    order: list[str] = []
    kept: dict[str, int] = {}
    out = []
    for row in rows:
        if row.subject not in kept:
            if max_subjects is not None and len(order) >= max_subjects:
                continue
            order.append(row.subject)
            kept[row.subject] = 0
        if max_per_subject is not None and kept[row.subject] >= max_per_subject:
            continue
        kept[row.subject] += 1
        out.append(row)
    return out


def _row_frames(layout: Layout, row: Row) -> tuple[list[int], Event | None, int, int]:
    """Frames to render for one row, its event span (lo, hi) and apex.

    Valid rows get onset..offset (onset 0 counts as 1: there is no frame 0), at most ``MAX_SECONDS``
    of it plus the apex and offset frames. Broken rows (offset before onset, offset 0) get windows of
    ±``BROKEN_WINDOW_S`` around each annotated number, so corrected values (readers' patch tables) and
    the real release's full videos both find their frames.
    """
    values = [v for v in (row.onset, row.apex, row.offset) if v is not None and v >= 1]
    if row.onset is not None and row.onset == 0 and row.offset is not None and row.offset >= 1:
        values.append(1)
    if not values:
        return [], None, 0, 0
    lo = max(row.onset, 1) if row.onset is not None and row.onset >= 0 else min(values)
    hi = row.offset if row.offset is not None else -1
    if hi >= lo:
        apex = row.apex if row.apex is not None and lo <= row.apex <= hi else (lo + hi) // 2
        frames = list(range(lo, min(hi, lo + round(MAX_SECONDS * layout.fps) - 1) + 1)) + [apex, hi]
    else:
        lo, hi = min(values), max(values)
        apex = row.apex if row.apex is not None and lo <= row.apex <= hi else (lo + hi) // 2
        half = round(BROKEN_WINDOW_S * layout.fps)
        frames = [f for v in set(values) for f in range(max(1, v - half), v + half + 1)]
    return frames, Event(lo, apex, hi, (), ()), lo, hi


def _thin(frames: list[int], keep: set[int], step: int, max_frames: int | None) -> list[int]:
    """Every ``step``-th frame (or fewer, to stay under ``max_frames``), always keeping ``keep``."""
    frames = sorted(set(frames))
    if max_frames is not None and max_frames > 0:
        step = max(step, math.ceil(len(frames) / max_frames))
    if step <= 1:
        return frames
    first = frames[0]
    return sorted({f for f in frames if (f - first) % step == 0} | (keep & set(frames)))


def _write(path: Path, frame: np.ndarray, grayscale: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = frame[..., 0] if grayscale else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(path.suffix, image, [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else [])
    if not ok:
        raise DatasetError(f"SynthME could not encode {path}")
    path.write_bytes(data.tobytes())


def generate(
    dataset: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    size: int = 112,
    rows: str = "auto",
    fixtures_dir: str | Path | None = None,
    max_subjects: int | None = None,
    max_samples_per_subject: int | None = None,
    frame_step: int = 1,
    max_clip_frames: int | None = None,
    overwrite: bool = False,
) -> SynthInfo:
    """Render SynthME ``dataset`` (``casme2``, ``samm``, ``smic``, ``casme3``, ``mmew``, ``dfew``) into ``out_dir``.

    ``rows``: ``"fixtures"`` uses the real annotation rows under ``fixtures_dir`` (default
    :func:`default_fixtures_dir`), ``"generated"`` invents rows of the same format, ``"auto"`` takes
    the fixtures when the file is there. ``max_subjects``/``max_samples_per_subject`` keep the first
    ones (for generated rows they set the set's size). ``frame_step`` > 1 or ``max_clip_frames`` write
    only every k-th frame of each clip (onset, apex and offset always kept; numbering stays absolute).
    ``size`` is the frame side: at 112 the face's dlib HOG box is about 90 px (≥ 80 needed).
    Same arguments → byte-identical files. A finished set with the same arguments is reused; other
    content in the target paths is replaced only with ``overwrite=True``, except a set left unfinished by an
    interrupted run, which is redone. ``SYNTHME.json`` records paths relative to its own folder.
    """
    if dataset not in LAYOUTS:
        raise ConfigError(f"SynthME dataset {dataset!r} unknown; choose one of {', '.join(DATASETS)}")
    if rows not in ("auto", "fixtures", "generated"):
        raise ConfigError(f"rows must be 'auto', 'fixtures' or 'generated', not {rows!r}")
    if size < 32 or frame_step < 1:
        raise ConfigError(f"size must be ≥ 32 and frame_step ≥ 1 (got size={size}, frame_step={frame_step})")
    start = time.perf_counter()
    layout = LAYOUTS[dataset]
    out = Path(out_dir)
    fixture = Path(fixtures_dir) if fixtures_dir is not None else default_fixtures_dir()
    fixture_file = fixture / layout.fixture if layout.fixture else None
    if rows == "fixtures" and (fixture_file is None or not fixture_file.is_file()):
        raise ConfigError(f"SynthME rows='fixtures' for {dataset}: no fixture file "
                          f"{fixture_file or '(none exists for this dataset)'}; use rows='generated'")
    use_fixture = rows != "generated" and fixture_file is not None and fixture_file.is_file()
    params = {"dataset": dataset, "seed": seed, "size": size, "rows": "fixtures" if use_fixture else "generated",
              "fixture": str(fixture_file) if use_fixture else None, "max_subjects": max_subjects,
              "max_samples_per_subject": max_samples_per_subject, "frame_step": frame_step,
              "max_clip_frames": max_clip_frames, "version": 1}
    marker = out / MARKER
    partial = out / PARTIAL_MARKER  # written before rendering, removed when the marker is: an interrupted run
    root = out / layout.root_name
    if marker.is_file() and not overwrite:
        saved = json.loads(marker.read_text())
        if saved.get("params") == params and root.is_dir():
            info = saved["info"]
            return SynthInfo(**{**info, "root": out / info["root"],
                                "annotation": out / info["annotation"] if info["annotation"] else None,
                                "apex_displacement_px": tuple(info["apex_displacement_px"])})
    if root.exists():
        if not (overwrite or partial.is_file()):
            raise DatasetError(f"{root} already exists and was not made by SynthME with these arguments; "
                               "replace it with `mernb synth PLAN --force` (overwrite=True)")
        shutil.rmtree(root)  # ours from an interrupted run (redone from scratch: output is deterministic)
    marker.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    partial.write_text(json.dumps({"params": params}, indent=1))

    if use_fixture:
        all_rows = _select(layout.read_fixture(fixture_file), max_subjects, max_samples_per_subject)  # type: ignore[arg-type]
    else:
        all_rows = layout.generate_rows(_rng(seed, dataset, "rows"), max_subjects or layout.default_subjects,
                                        max_samples_per_subject or layout.default_per_subject)
    root.mkdir(parents=True, exist_ok=True)
    annotation = layout.write_annotation(out, root, all_rows)

    folders: dict[tuple[str, str], list[Row]] = {}
    for row in all_rows:
        folders.setdefault(layout.folder_key(row), []).append(row)
    subjects: dict[str, Subject] = {}
    field_caches: dict[str, dict] = {}
    scale = size / BASE_SIZE
    n_frames, peaks = 0, []
    for key, group in folders.items():
        rng = _rng(seed, dataset, *key)
        subject_id = group[0].subject
        if subject_id not in subjects:
            subjects[subject_id] = make_subject(_rng(seed, dataset, "subject", subject_id), size,
                                                grayscale=layout.grayscale)
        frames, keep, events = [], set(), []
        for row in group:
            row_frames, event, lo, hi = _row_frames(layout, row)
            if event is None:
                continue
            aus = aus_for_row(row.aus, row.emotion, rng)
            amps = []
            for au in aus:
                amp = float(np.clip(rng.uniform(*MICRO_AMPLITUDE) * au.gain, 0.3, 2.0)) * scale
                if not layout.micro:
                    amp = min(amp * rng.uniform(*MACRO_GAIN), 0.6 * 0.22 * subjects[subject_id].iod)
                amps.append(amp)
            events.append(Event(event.onset, event.apex, event.offset, tuple(aus), tuple(amps)))
            frames += row_frames
            keep |= {lo, event.apex, hi}
        if not events:
            continue
        numbers = np.array(_thin(frames, keep, frame_step, max_clip_frames))
        images, peak = render_clip(subjects[subject_id], events, numbers, rng, jitter_px=0.15 * scale,
                                   noise_sigma=1.6, field_cache=field_caches.setdefault(subject_id, {}))
        peaks.append(round(peak, 3))
        for number, image in zip(numbers, images, strict=True):
            _write(layout.frame_path(root, group[0], int(number)), image, layout.grayscale)
        n_frames += len(numbers)
    info = SynthInfo(root, annotation, len(all_rows), n_frames, round(time.perf_counter() - start, 3), dataset,
                     params["rows"], tuple(peaks))
    # Paths relative to the marker's folder: a moved or copied runs/ folder still reads its own data.
    saved_info = {**asdict(info), "root": os.path.relpath(root, out),
                  "annotation": os.path.relpath(annotation, out) if annotation else None}
    tmp = out / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"params": params, "info": saved_info}, indent=1))
    os.replace(tmp, marker)
    partial.unlink()
    return info
