"""Approximate rank pooling: the dynamic image of a clip (Bilen et al., TPAMI 2017).

The dynamic image is ``DI = sum_t alpha_t * frame_t`` with the official coefficients of
``hbilen/dynamic-image-nets`` (``vl_nnarpooltemporal.m``)::

    alpha_t = 2 (T - t + 1) - (T + 1) (H_T - H_{t-1}),   t = 1..T,  H_n = sum_{k<=n} 1/k

They sum to zero, so static appearance cancels and a static clip pools to zero (T = 1: weight 1):
measured on a micro-expression-like clip, the dynamic image correlates ~0.05 with the mean frame.

``variant="port"`` gives the weights of the widely copied Python port
(``tcvrick/dynamic-images-for-action-recognition``), ``sum_{k=t..T} (2k - T) / k``: the official weights
plus ``H_T - H_{t-1}``, which sum to T, so the image also holds T x a (front-weighted) mean frame, i.e. the
"facial texture and appearance" the MPT paper says its dynamic image keeps (correlation ~0.7 with the
mean frame on the same clip). Models select it with ``dynamic_image="rankpool_port"`` (issue 7).

Before the ViT's normalisation the dynamic image is rescaled to an RGB image in [0, 1] by a
**per-image, per-channel min-max** (:func:`to_rgb`), which is what the dynamic-image code does before
using the image as an RGB input (it min-max normalises each channel to 0..255); a channel without any
variation becomes 0.5 (mid-grey).

Used by the MPT notebooks (the ViT's visual input, MPT paper eq. 1) and by the baseline ViT rows of
MPT Table VI (:mod:`mernb.models.vit`).
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["rank_pool", "rank_pool_weights", "to_rgb", "dynamic_image", "RankPoolVariant"]

RankPoolVariant = Literal["official", "port"]


def rank_pool_weights(
    num_frames: int, *, variant: RankPoolVariant = "official", dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """The T approximate-rank-pooling coefficients ``alpha_1..alpha_T``: official formula (sum 0) or the
    Python ``"port"`` (sum T)."""
    if variant not in ("official", "port"):
        raise ValueError(f"rank pooling variant must be 'official' or 'port', got {variant!r}")
    if num_frames < 1:
        raise ValueError(f"rank pooling needs at least one frame, got {num_frames}")
    t_count = num_frames
    if t_count == 1:
        return torch.ones(1, dtype=dtype, device=device)
    k = torch.arange(1, t_count + 1, dtype=torch.float64)
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1.0 / k, 0)])  # H_0..H_T
    t = k
    tail = harmonic[t_count] - harmonic[:-1]  # H_T - H_{t-1}
    alpha = 2.0 * (t_count - t + 1) - (t_count + 1) * tail
    if variant == "port":
        alpha = alpha + tail
    return alpha.to(dtype=dtype, device=device)


def rank_pool(frames: torch.Tensor, *, time_dim: int = -4, variant: RankPoolVariant = "official") -> torch.Tensor:
    """Dynamic image of ``frames`` (..., T, C, H, W) float -> (..., C, H, W) (unnormalised).

    ``time_dim`` names the time axis when the layout differs (default: 4th from the end); ``variant`` the
    weights (:func:`rank_pool_weights`).
    """
    if not torch.is_tensor(frames) or not frames.is_floating_point():
        raise TypeError("rank_pool expects a float tensor (..., T, C, H, W); convert uint8 frames with .float()/255")
    if frames.dim() < 4:
        raise ValueError(f"rank_pool expects (..., T, C, H, W), got shape {tuple(frames.shape)}")
    frames = frames.movedim(time_dim, -1)
    weights = rank_pool_weights(frames.shape[-1], variant=variant, dtype=frames.dtype, device=frames.device)
    return frames @ weights


def to_rgb(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image, per-channel min-max rescaling of (..., C, H, W) to [0, 1]; flat channels -> 0.5."""
    flat = image.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    span = hi - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.full_like(flat, 0.5))
    return out.view_as(image)


def dynamic_image(frames: torch.Tensor, variant: RankPoolVariant = "official") -> torch.Tensor:
    """``to_rgb(rank_pool(frames))``: the dynamic image of (..., T, C, H, W) as an RGB image in [0, 1]."""
    return to_rgb(rank_pool(frames, variant=variant))
