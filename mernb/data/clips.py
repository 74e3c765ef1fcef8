"""Frames → clips → tensors: loading, temporal sampling, alignment, caching.

``prepare_clip(sample)`` gives a uint8 clip (T, size, size, 3): frames picked from onset..offset
(``mode="uniform"``: exactly T at regular intervals, interpolated when the clip is shorter, as MPT
(T=16) and HLoRA-MER (T=8) sample; ``"onset_apex"``: the two frames MA2MI uses; ``"all"``), aligned
with one similarity transform per clip (:mod:`mernb.data.align`) and cached on disk
(:class:`~mernb.data.cache.ClipCache`). The recipes turn prepared clips into float tensors
(T, 3, H, W) for training. Used by every paper notebook and the data notebooks.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from mernb.data.align import AlignmentError, Fallback, align_clip
from mernb.data.cache import ClipCache
from mernb.data.records import Sample
from mernb.errors import DatasetError, MernbError

Mode = Literal["uniform", "onset_apex", "all"]
Norm = str | tuple[Sequence[float], Sequence[float]] | None
JPEG_SUFFIXES = (".jpg", ".jpeg")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Named mean/std pairs for :func:`normalize` (``"half"``: to [-1, 1], as DiT-style models use).
NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (CLIP_MEAN, CLIP_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


# ---------------------------------------------------------------- loading


def load_frame(path: str | Path) -> np.ndarray:
    """One image file as (H, W, 3) uint8 RGB (grey images get 3 equal channels); DatasetError if unreadable
    or a truncated JPEG."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: frame file missing or unreadable ({exc.strerror or exc})") from exc
    if data.size > 2 and path.suffix.lower() in JPEG_SUFFIXES and bytes(data[:2]) == b"\xff\xd8" and not jpeg_complete(data):
        raise DatasetError(f"{path}: truncated JPEG (no end-of-image marker; the file was cut short)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image (empty or corrupt file, or unknown format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def jpeg_complete(data: np.ndarray | bytes) -> bool:
    """True when JPEG bytes end with the end-of-image marker (FF D9, allowing trailing padding).

    Some OpenCV/libjpeg builds decode a cut-off JPEG without an error, filling the lost part grey; the
    marker cannot occur inside the compressed data (0xFF is byte-stuffed there), so its absence near the
    end means truncation.
    """
    tail = bytes(np.asarray(data, np.uint8)[-1024:]) if not isinstance(data, bytes) else data[-1024:]
    return b"\xff\xd9" in tail


def load_frames(paths: Sequence[str | Path]) -> np.ndarray:
    """Image files as (T, H, W, 3) uint8 RGB; all frames must share one size (else DatasetError naming the file)."""
    if len(paths) == 0:
        raise DatasetError("load_frames: no frame files given")
    frames = [load_frame(paths[0])]
    for p in paths[1:]:
        f = load_frame(p)
        if f.shape != frames[0].shape:
            raise DatasetError(
                f"{p}: frame size {f.shape[:2]} differs from {frames[0].shape[:2]} of {paths[0]}"
            )
        frames.append(f)
    return np.stack(frames)


# ---------------------------------------------------------------- temporal sampling


def uniform_positions(n: int, num_frames: int) -> np.ndarray:
    """``num_frames`` regularly spaced positions (float) over frames 0..n-1: first 0 (onset), last n-1 (offset)."""
    if n < 1 or num_frames < 1:
        raise ValueError(
            f"uniform_positions needs n >= 1 and num_frames >= 1 (got n={n}, num_frames={num_frames})"
        )
    if num_frames == 1:
        return np.zeros(1)
    return np.linspace(0.0, n - 1, num_frames)


def sampling_positions(n: int, num_frames: int) -> np.ndarray:
    """Uniform positions, rounded to the nearest whole frame (halves up: 2.5 -> 3) when the clip is long
    enough (n >= num_frames); kept fractional (to interpolate) when it is shorter."""
    pos = uniform_positions(n, num_frames)
    return np.floor(pos + 0.5) if n >= num_frames else pos


def interpolate_frames(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Frames at (fractional) positions along axis 0, linearly blended between neighbours.

    Integer inputs are rounded back to their dtype; float inputs are blended exactly.
    """
    frames = np.asarray(frames)
    positions = np.asarray(positions, np.float64)
    lo = np.clip(np.floor(positions).astype(int), 0, len(frames) - 1)
    hi = np.minimum(lo + 1, len(frames) - 1)
    w = positions - lo
    if np.all(w == 0):
        return frames[lo]
    shape = (-1,) + (1,) * (frames.ndim - 1)
    w = w.reshape(shape)
    out = (1.0 - w) * frames[lo].astype(np.float64) + w * frames[hi].astype(np.float64)
    if np.issubdtype(frames.dtype, np.integer):
        info = np.iinfo(frames.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
    return out.astype(frames.dtype)


def sample_uniform(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Exactly ``num_frames`` frames at regular intervals over the clip (onset..offset), interpolating
    linearly between neighbouring frames when the clip has fewer frames. MPT: 16, HLoRA-MER: 8."""
    return interpolate_frames(frames, sampling_positions(len(frames), num_frames))


def onset_apex_indices(sample: Sample) -> tuple[int, int]:
    """Indices into ``sample.frame_paths`` of the onset frame and the apex frame (MA2MI's input pair).

    The apex is ``sample.apex_frame`` (the middle of onset..offset when the annotation has none),
    matched to the nearest frame on disk; without frame numbers, the middle frame.
    """
    n = len(sample.frame_paths)
    if n == 0:
        raise DatasetError(f"{sample.sample_id}: no frame files (frame_paths is empty)")
    apex = sample.apex_frame
    numbers = sample.frame_numbers
    if apex is None or len(numbers) != n:
        return 0, (n - 1) // 2
    return 0, int(np.argmin(np.abs(np.asarray(numbers) - apex)))


# ---------------------------------------------------------------- spatial helpers and tensors


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Every frame resized to ``size`` (int: square; or (height, width)); area filter when shrinking."""
    h, w = (size, size) if isinstance(size, int) else size
    shrink = frames.shape[1] > h or frames.shape[2] > w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float32 tensor (T, 3, H, W) in [0, 1]."""
    arr = np.ascontiguousarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"to_tensor expects (T, H, W, 3) frames, got shape {arr.shape}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor, norm: Norm = "imagenet") -> torch.Tensor:
    """Channel-wise (x - mean) / std on (..., 3, H, W); ``norm``: a name in :data:`NORMS`, (mean, std) or None."""
    if norm is None:
        return x
    if isinstance(norm, str):
        if norm not in NORMS:
            raise ValueError(
                f"unknown normalisation {norm!r}; choose one of {sorted(NORMS)} or pass (mean, std)"
            )
        norm = NORMS[norm]
    mean = torch.as_tensor(norm[0], dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(norm[1], dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean) / std


def flip_clip(clip: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Horizontal flip of every frame: tensor (T, C, H, W) or array (T, H, W, C)."""
    if isinstance(clip, torch.Tensor):
        return clip.flip(-1)
    return np.ascontiguousarray(clip[:, :, ::-1])


# ---------------------------------------------------------------- clip preparation


def _source_positions(n: int, mode: Mode, num_frames: int, sample: Sample) -> np.ndarray:
    if mode == "uniform":
        return sampling_positions(n, num_frames)
    if mode == "onset_apex":
        return np.asarray(onset_apex_indices(sample), np.float64)
    if mode == "all":
        return np.arange(n, dtype=np.float64)
    raise ValueError(f"mode must be 'uniform', 'onset_apex' or 'all', not {mode!r}")


def _prepare(
    sample: Sample, num_frames: int, size: int, align: bool, fallback: Fallback, mode: Mode
) -> np.ndarray:
    paths = sample.frame_paths
    positions = _source_positions(len(paths), mode, num_frames, sample)
    # load only the frames that the positions touch (their floor and ceil)
    needed = np.union1d(np.floor(positions), np.ceil(positions)).astype(int)
    frames = load_frames([paths[i] for i in needed])
    if align:
        result = align_clip(
            frames, size=size, paths=[paths[i] for i in needed], reference=0, fallback=fallback
        )
        if result.method != "dlib":
            warnings.warn(f"{sample.sample_id}: {result.reason}; centre crop used instead", stacklevel=3)
        frames = result.frames
    else:
        frames = resize_frames(frames, size)
    return interpolate_frames(frames, np.interp(positions, needed, np.arange(len(needed))))


def prepare_clip(
    sample: Sample,
    *,
    num_frames: int = 16,
    size: int = 224,
    align: bool = True,
    fallback: Fallback = "error",
    mode: Mode = "uniform",
    cache: ClipCache | None = None,
) -> np.ndarray:
    """A sample's clip as uint8 (T, size, size, 3), prepared once and then read from ``cache``.

    ``mode``: ``"uniform"`` (T = ``num_frames`` frames over onset..offset, interpolated if shorter),
    ``"onset_apex"`` (2 frames) or ``"all"``. ``align``: dlib face alignment (one transform per clip,
    estimated on the onset; ``fallback="center_crop"`` instead of an AlignmentError when no face is
    found); ``align=False`` resizes whole frames (for releases' cropped faces). Missing or unreadable
    frames raise DatasetError naming the file. The cache key covers the source files and every
    parameter that changes the output (``num_frames`` only in uniform mode, ``fallback`` only when
    aligning).
    """
    if not sample.frame_paths:
        raise DatasetError(
            f"{sample.sample_id}: no frame files (frame_paths is empty; was the frame folder found?)"
        )
    params: dict[str, Any] = {
        "num_frames": num_frames if mode == "uniform" else None,
        "size": size,
        "align": align,
        "fallback": fallback if align else None,
        "mode": mode,
        "template": "arcface5" if align else None,
    }
    create = functools.partial(_prepare, sample, num_frames, size, align, fallback, mode)
    if cache is None:
        return create()
    return cache.get_or_create(sample.frame_paths, params, create)


@dataclass
class PrepareReport:
    """What :func:`prepare_all` did: ``failures`` lists (sample_id, reason) of the clips that could not be
    prepared (dropped), in the order of the samples given; :meth:`as_dict` is the JSON form for results."""

    n: int
    hits: int = 0
    misses: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    clips: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # with keep=True

    @property
    def ok(self) -> int:
        return self.n - len(self.failures)

    @property
    def dropped(self) -> list[dict[str, str]]:
        """The clips that could not be prepared: ``[{'sample_id': ..., 'reason': ...}]`` (reason names the file)."""
        return [{"sample_id": sid, "reason": reason} for sid, reason in self.failures]

    def as_dict(self) -> dict[str, Any]:
        """Counts and dropped clips, JSON-ready (no arrays): n, ok, hits, misses, seconds, dropped."""
        return {"n": self.n, "ok": self.ok, "hits": self.hits, "misses": self.misses,
                "seconds": round(self.seconds, 3), "dropped": self.dropped}

    def __str__(self) -> str:
        lines = [
            f"{self.ok}/{self.n} clips ready ({self.hits} from cache, {self.misses} prepared) in {self.seconds:.1f} s"
        ]
        lines += [f"  FAILED {sid}: {reason}" for sid, reason in self.failures]
        return "\n".join(lines)


def _worker_context() -> BaseContext:
    """forkserver (the server imports this module once, workers fork from it), else spawn."""
    if "forkserver" in get_all_start_methods():
        ctx = get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return get_context("spawn")


def _init_worker() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _prepare_one(sample: Sample, cache_dir: str, kwargs: dict[str, Any],
                 keep: bool = False) -> tuple[str, str, str, np.ndarray | None]:
    cache = ClipCache(cache_dir)
    try:
        clip = prepare_clip(sample, cache=cache, **kwargs)
    except MernbError as exc:
        return sample.sample_id, "failed", str(exc), None
    except (OSError, cv2.error) as exc:  # a file system or decoder error on one clip drops that clip only
        return sample.sample_id, "failed", f"{exc.__class__.__name__}: {exc}", None
    return sample.sample_id, "hit" if cache.hits else "miss", "", clip if keep else None


def prepare_all(
    samples: Sequence[Sample],
    *,
    cache: ClipCache,
    n_workers: int = 1,
    progress: bool = True,
    keep: bool = False,
    **prepare_kwargs: Any,
) -> PrepareReport:
    """Prepare and cache many clips (tqdm bar), collecting failures instead of stopping at the first.

    ``prepare_kwargs`` go to :func:`prepare_clip`; ``n_workers > 1`` uses worker processes (forked
    from a forkserver that imported mernb once; each worker loads the face models once, so workers
    pay off from a few hundred clips on; scripts need an ``if __name__ == "__main__":`` guard).
    ``cache.hits``/``misses`` are updated; ``keep=True`` also returns the clips in ``report.clips``
    (sample id → array), so a caller that needs them all does not look each one up again. Used before
    training by every paper recipe (mernb.experiments.common.prepare_protocol_data).
    """
    from tqdm.auto import tqdm

    report = PrepareReport(n=len(samples))
    start = time.perf_counter()
    bar = tqdm(total=len(samples), desc="preparing clips", unit="clip", disable=not progress)

    def record(sample_id: str, status: str, reason: str, clip: np.ndarray | None) -> None:
        if clip is not None:
            report.clips[sample_id] = clip
        if status == "failed":
            report.failures.append((sample_id, reason))
        elif status == "hit":
            report.hits += 1
        else:
            report.misses += 1
        bar.update(1)

    try:
        if n_workers <= 1:
            for s in samples:
                record(*_prepare_one(s, str(cache.directory), prepare_kwargs, keep))
        else:
            with ProcessPoolExecutor(
                n_workers, mp_context=_worker_context(), initializer=_init_worker
            ) as pool:
                futures = [
                    pool.submit(_prepare_one, s, str(cache.directory), prepare_kwargs, keep) for s in samples
                ]
                for fut in as_completed(futures):
                    record(*fut.result())
    finally:
        bar.close()
    order = {s.sample_id: i for i, s in enumerate(samples)}
    report.failures.sort(key=lambda f: order.get(f[0], len(order)))
    cache.hits += report.hits
    cache.misses += report.misses
    report.seconds = time.perf_counter() - start
    return report


# ---------------------------------------------------------------- dataset


__all__ = [
    "AlignmentError",
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipCache",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMS",
    "PrepareReport",
    "flip_clip",
    "interpolate_frames",
    "load_frame",
    "load_frames",
    "normalize",
    "onset_apex_indices",
    "prepare_all",
    "prepare_clip",
    "resize_frames",
    "sample_uniform",
    "sampling_positions",
    "to_tensor",
    "uniform_positions",
]
