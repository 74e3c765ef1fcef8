"""One preview figure of a SynthME (or real) clip: onset, apex and the amplified |apex − onset|.

Used by the book's data pages and the SynthME notebook cells that show what the motion looks like.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def _load(image: np.ndarray | str | Path) -> np.ndarray:
    array = np.asarray(Image.open(image).convert("RGB")) if isinstance(image, str | Path) else np.asarray(image)
    return array.astype(np.float32)


def preview_figure(
    onset: np.ndarray | str | Path,
    apex: np.ndarray | str | Path,
    *,
    gain: float = 10.0,
    title: str | None = None,
) -> Figure:
    """Figure with three panels: onset frame, apex frame and ``|apex − onset| × gain`` (grey, clipped)."""
    a, b = _load(onset), _load(apex)
    if a.shape != b.shape:
        raise ValueError(f"onset and apex frames differ in shape: {a.shape} vs {b.shape}")
    diff = np.abs(b - a)
    diff = diff.mean(-1) if diff.ndim == 3 else diff
    fig = Figure(figsize=(7.5, 2.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, image, name in zip(axes[:2], (a, b), ("onset", "apex"), strict=True):
        ax.imshow(image.astype(np.uint8), cmap="gray" if image.ndim == 2 else None)
        ax.set_title(name)
    axes[2].imshow(np.clip(diff * gain, 0, 255), cmap="gray", vmin=0, vmax=255)
    axes[2].set_title(f"|apex − onset| × {gain:g}")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig
