"""Eulerian motion magnification (Wu et al., SIGGRAPH 2012), vectorised in torch (CPU or CUDA).

Per frame a Laplacian pyramid (binomial-5 filter), a temporal Butterworth band-pass on every level,
amplification by ``alpha`` (optionally attenuated per level by the spatial cut-off ``lambda_c``, as in
the MIT code), reconstruction. :func:`motion_sequence` returns only the amplified band-passed motion
(the MPT paper's motion sequence, eqs. 4-7, which MPT tokenizes); :func:`magnify` adds it to the
frames (optionally after chroma attenuation) and clips to [0, 1].

**Cut-off convention: true Hz.** ``low``/``high`` are the -3 dB frequencies in Hz at the frame rate
``fps`` of the frames passed in (``scipy.signal.butter(..., fs=fps)``). The MIT MATLAB code calls
``butter(1, f/samplingRate)``, which MATLAB reads relative to *Nyquist*, so its real cut-offs are f/2;
to reproduce a MATLAB setting pass half its frequencies. When a clip is resampled in time (e.g. MPT's
16 frames at regular intervals), ``fps`` is the rate of the resampled frames.

Temporal filters (``filter=``): ``"butter"`` (default) a Butterworth band-pass of ``order``
(``scipy.signal.butter(order, [low, high], "bandpass", fs=fps)``, order 1 = a 2nd-order IIR, gain 1 at
sqrt(low*high)); ``"mit"`` the MIT reference, the difference of two first-order Butterworth low-passes
LP(high) - LP(low). Both run as a causal recursion with the state at its steady value for the first
frame, so a static clip gives exactly zero motion.

Amplification: with ``lambda_c=None`` (default, MPT eq. 6) every level, residual included, is amplified
by ``alpha``. Because the pyramid, the filter and the reconstruction are all linear, the result then
equals ``alpha * bandpass(frames)`` exactly, and the code takes that shortcut (no pyramid is built).
With ``lambda_c`` set, the MIT rule applies: level alpha = min(alpha, 2 * (lambda / delta / 8 - 1)),
delta = lambda_c / 8 / (1 + alpha), lambda = sqrt(H^2 + W^2) / 3 at the coarsest level, halving per finer
level; the finest and coarsest levels get 0.

Caching is the caller's job (clip cache); :func:`magnify_params` gives the validated settings as a
stable dict for the cache key. Used by the MPT notebooks (motion prompts) and the magnification figure.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from scipy import signal

__all__ = [
    "magnify",
    "motion_sequence",
    "magnify_params",
    "laplacian_pyramid",
    "reconstruct_pyramid",
    "temporal_filter",
    "filter_coefficients",
    "level_alphas",
]

MAGNIFY_VERSION = 1
TemporalFilter = Literal["butter", "mit"]

# RGB -> YIQ (NTSC), as in the MIT code (rgb2ntsc)
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def magnify_params(
    fps: float,
    *,
    alpha: float = 20.0,
    low: float = 0.4,
    high: float = 4.0,
    levels: int = 4,
    filter: TemporalFilter = "butter",
    order: int = 1,
    lambda_c: float | None = None,
    chrom_attenuation: float = 1.0,
) -> dict:
    """The validated settings as a plain, stable dict (for cache keys); raises ValueError on bad ones."""
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    nyquist = fps / 2
    if not (low > 0):
        raise ValueError(f"low cut-off must be > 0 Hz, got {low}")
    if not (low < high):
        raise ValueError(f"low cut-off ({low} Hz) must be below high cut-off ({high} Hz)")
    if high >= nyquist:
        raise ValueError(
            f"high cut-off {high} Hz is not below the Nyquist frequency {nyquist} Hz of {fps} fps frames "
            f"(lower 'high' or pass frames at a higher rate)"
        )
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels}")
    if filter not in ("butter", "mit"):
        raise ValueError(f"filter must be 'butter' or 'mit', got {filter!r}")
    if int(order) != order or order < 1:
        raise ValueError(f"order must be a positive integer, got {order}")
    if filter == "mit" and order != 1:
        raise ValueError("filter='mit' is the MIT pair of first-order low-passes; order must be 1")
    if lambda_c is not None and lambda_c <= 0:
        raise ValueError(f"lambda_c must be positive (or None for no per-level attenuation), got {lambda_c}")
    if not (0 <= chrom_attenuation):
        raise ValueError(f"chrom_attenuation must be >= 0, got {chrom_attenuation}")
    return dict(
        version=MAGNIFY_VERSION,
        fps=fps,
        alpha=float(alpha),
        low=float(low),
        high=float(high),
        levels=int(levels),
        filter=filter,
        order=int(order),
        lambda_c=None if lambda_c is None else float(lambda_c),
        chrom_attenuation=float(chrom_attenuation),
        cutoff_convention="hz",
    )


def filter_coefficients(fps: float, low: float, high: float, filter: TemporalFilter = "butter", order: int = 1):
    """IIR coefficients (b, a) of the temporal band-pass, true-Hz cut-offs (float64 numpy)."""
    if filter == "butter":
        b, a = signal.butter(order, [low, high], btype="bandpass", fs=fps)
    else:  # MIT: LP(high) - LP(low) as one filter: (b_h a_l - b_l a_h) / (a_h a_l)
        b_h, a_h = signal.butter(1, high, btype="low", fs=fps)
        b_l, a_l = signal.butter(1, low, btype="low", fs=fps)
        b = np.polysub(np.polymul(b_h, a_l), np.polymul(b_l, a_h))
        a = np.polymul(a_h, a_l)
    return np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64)


def temporal_filter(x: torch.Tensor, b: np.ndarray, a: np.ndarray, dim: int = 1) -> torch.Tensor:
    """Causal IIR filter along ``dim`` (direct form II transposed), state at steady value for the first sample."""
    b = np.asarray(b, dtype=np.float64) / a[0]
    a = np.asarray(a, dtype=np.float64) / a[0]
    n = max(len(a), len(b))
    b = np.pad(b, (0, n - len(b)))
    a = np.pad(a, (0, n - len(a)))
    zi = signal.lfilter_zi(b, a)
    xt = x.movedim(dim, 0)
    if n == 1:
        return (xt * float(b[0])).movedim(0, dim)
    z = [float(zi[i]) * xt[0] for i in range(n - 1)]
    out = torch.empty_like(xt)
    for t in range(xt.shape[0]):
        xn = xt[t]
        y = float(b[0]) * xn + z[0]
        for i in range(n - 2):
            z[i] = float(b[i + 1]) * xn + z[i + 1] - float(a[i + 1]) * y
        z[n - 2] = float(b[n - 1]) * xn - float(a[n - 1]) * y
        out[t] = y
    return out.movedim(0, dim)


def _pad_edge(x: torch.Tensor, dim: int, pad: int) -> torch.Tensor:
    """Replicate ``pad`` border samples on both sides of ``dim``."""
    n = x.shape[dim]
    first = x.narrow(dim, 0, 1).expand(*[pad if d == dim % x.dim() else -1 for d in range(x.dim())])
    last = x.narrow(dim, n - 1, 1).expand(*[pad if d == dim % x.dim() else -1 for d in range(x.dim())])
    return torch.cat([first, x, last], dim=dim)


def _down_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Binomial-5 blur along ``dim`` (replicate borders), keeping every second sample."""
    n = x.shape[dim]
    xp = _pad_edge(x, dim, 2)
    m = (n + 1) // 2

    def tap(k: int) -> torch.Tensor:
        return xp.narrow(dim, k, 2 * m - 1)[(slice(None),) * (dim % x.dim()) + (slice(None, None, 2),)]

    return (tap(0) + tap(4) + 4 * (tap(1) + tap(3)) + 6 * tap(2)) / 16


def _up_axis(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Zero-insertion upsampling by 2 along ``dim`` + binomial-5 interpolation (polyphase), cropped to ``size``."""
    n = x.shape[dim]
    xp = _pad_edge(x, dim, 1)
    prev, mid, nxt = xp.narrow(dim, 0, n), xp.narrow(dim, 1, n), xp.narrow(dim, 2, n)
    even = (prev + 6 * mid + nxt) / 8
    odd = (mid + nxt) / 2
    d = dim % x.dim()
    return torch.stack([even, odd], dim=d + 1).flatten(d, d + 1).narrow(d, 0, size)


def _down(x: torch.Tensor) -> torch.Tensor:
    return _down_axis(_down_axis(x, -1), -2)


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return _up_axis(_up_axis(x, -1, size[1]), -2, size[0])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of (N, C, H, W): ``levels - 1`` band-pass levels (finest first) + the low-pass residual."""
    if min(x.shape[-2:]) < 2 ** (levels - 1):
        raise ValueError(
            f"{levels} pyramid levels need frames of at least {2 ** (levels - 1)} px per side, got {tuple(x.shape[-2:])}"
        )
    pyramid = []
    current = x
    for _ in range(levels - 1):
        smaller = _down(current)
        pyramid.append(current - _up(smaller, current.shape[-2:]))
        current = smaller
    pyramid.append(current)
    return pyramid


def reconstruct_pyramid(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`laplacian_pyramid` (exact up to float rounding)."""
    current = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        current = band + _up(current, band.shape[-2:])
    return current


def level_alphas(levels: int, height: int, width: int, alpha: float, lambda_c: float | None) -> list[float]:
    """Amplification per pyramid level (finest first): all ``alpha``, or the MIT lambda_c rule."""
    if lambda_c is None:
        return [float(alpha)] * levels
    delta = lambda_c / 8 / (1 + alpha)
    lam = math.sqrt(height**2 + width**2) / 3  # coarsest level
    out = []
    for level in range(levels - 1, -1, -1):  # coarsest -> finest
        current = 2 * (lam / delta / 8 - 1)
        if level in (0, levels - 1):
            current = 0.0
        out.append(float(min(alpha, current)))
        lam /= 2
    return out[::-1]


def _as_batched(frames: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not torch.is_tensor(frames) or not frames.is_floating_point():
        raise TypeError("frames must be a float tensor (T, C, H, W) or (B, T, C, H, W) in [0, 1]")
    if frames.dim() == 4:
        return frames.unsqueeze(0), True
    if frames.dim() == 5:
        return frames, False
    raise ValueError(f"frames must be (T, C, H, W) or (B, T, C, H, W), got shape {tuple(frames.shape)}")


def _colour_matrix(chrom_attenuation: float, frames: torch.Tensor) -> torch.Tensor | None:
    if chrom_attenuation == 1.0:
        return None
    if frames.shape[-3] != 3:
        raise ValueError("chrom_attenuation needs RGB frames (C = 3)")
    m = np.linalg.inv(_RGB2YIQ) @ np.diag([1.0, chrom_attenuation, chrom_attenuation]) @ _RGB2YIQ
    return torch.tensor(m, dtype=frames.dtype, device=frames.device)


def motion_sequence(frames: torch.Tensor, fps: float, **settings) -> torch.Tensor:
    """The amplified band-passed motion of ``frames`` (T, C, H, W) or (B, T, C, H, W): same shape.

    Settings as :func:`magnify_params` (alpha=20, low=0.4, high=4.0 Hz, levels=4, filter='butter', ...).
    """
    params = magnify_params(fps, **settings)
    x, squeeze = _as_batched(frames)
    bsz, t_len, c, h, w = x.shape
    if t_len < 2:
        raise ValueError(f"temporal filtering needs at least 2 frames, got {t_len}")
    b, a = filter_coefficients(params["fps"], params["low"], params["high"], params["filter"], params["order"])
    alphas = level_alphas(params["levels"], h, w, params["alpha"], params["lambda_c"])
    if min(h, w) < 2 ** (params["levels"] - 1):
        raise ValueError(f"{params['levels']} pyramid levels need frames of at least {2 ** (params['levels'] - 1)} px per side, got {(h, w)}")
    if len(set(alphas)) == 1:  # uniform gain: the pyramid is a linear no-op (see module docstring)
        motion = temporal_filter(x, b, a, dim=1) * alphas[0]
    else:
        pyramid = laplacian_pyramid(x.reshape(bsz * t_len, c, h, w), params["levels"])
        bands = []
        for level, gain in zip(pyramid, alphas, strict=True):
            if gain == 0.0:
                bands.append(torch.zeros_like(level))
                continue
            lv = level.view(bsz, t_len, *level.shape[1:])
            bands.append((temporal_filter(lv, b, a, dim=1) * gain).reshape_as(level))
        motion = reconstruct_pyramid(bands).view(bsz, t_len, c, h, w)
    colour = _colour_matrix(params["chrom_attenuation"], x)
    if colour is not None:
        motion = torch.einsum("ij,btjhw->btihw", colour, motion)
    return motion[0] if squeeze else motion


def magnify(frames: torch.Tensor, fps: float, *, clip: bool = True, **settings) -> torch.Tensor:
    """Motion-magnified frames: ``frames + motion_sequence(frames, fps, **settings)``, clipped to [0, 1]."""
    out = frames + motion_sequence(frames, fps, **settings)
    return out.clamp(0.0, 1.0) if clip else out
