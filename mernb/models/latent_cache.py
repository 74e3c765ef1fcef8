"""Cache of frozen-VAE posteriors per frame, so MA2MI pre-training never re-encodes pixels.

The VAE is frozen, so a frame's posterior (mean and log-variance, (8, s, s)) is the same in every epoch:
:class:`LatentCache` encodes each frame once and keeps it in memory and, with a folder, on disk under
``<dir>/<vae digest>/<frame digest[:2]>/<frame digest>.npy``. The key is the sha256 of the frame's uint8
pixels and shape plus the VAE weights digest (:func:`mernb.models.ma2mi.vae_digest`), so another VAE or a
changed frame can never reuse a stale latent. The latent itself is sampled from the cached posterior at
training time (:func:`mernb.models.ma2mi.sample_latent`), as ``latent_dist.sample()`` would.

Used by :mod:`mernb.experiments.ma2mi` (pre-training, ``notebooks/ma2mi/*``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mernb.models.ma2mi import vae_digest, vae_moments

__all__ = ["LatentCache", "frame_digest"]


def frame_digest(frame: np.ndarray) -> str:
    """sha256 (32 hex) of a uint8 (S, S, 3) frame's shape and pixels."""
    frame = np.ascontiguousarray(frame)
    h = hashlib.sha256(str(frame.shape).encode() + str(frame.dtype).encode())
    h.update(frame.tobytes())
    return h.hexdigest()[:32]


class LatentCache:
    """``moments(frames)`` -> (N, 8, s, s) float32 VAE posteriors of uint8 frames (N, S, S, 3), encoded once."""

    def __init__(self, vae: nn.Module, directory: str | Path | None = None, *, batch_size: int = 32,
                 device: torch.device | str = "cpu") -> None:
        self.vae = vae
        self.digest = vae_digest(vae)
        self.dir = Path(directory) / self.digest if directory is not None else None
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.memory: dict[str, torch.Tensor] = {}
        self.encoded = 0  # frames that went through the VAE (not found in memory or on disk)

    def _path(self, key: str) -> Path | None:
        return self.dir / key[:2] / f"{key}.npy" if self.dir is not None else None

    def _load(self, key: str) -> torch.Tensor | None:
        if key in self.memory:
            return self.memory[key]
        path = self._path(key)
        if path is not None and path.is_file():
            value = torch.from_numpy(np.load(path))
            self.memory[key] = value
            return value
        return None

    def _store(self, key: str, value: torch.Tensor) -> None:
        self.memory[key] = value
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")  # atomic across parallel notebooks
            np.save(tmp, value.numpy())
            tmp.replace(path)

    def moments(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Posteriors of ``frames`` (uint8 (S, S, 3) each), from the cache or encoded now (in batches)."""
        keys = [frame_digest(f) for f in frames]
        found = {k: v for k in dict.fromkeys(keys) if (v := self._load(k)) is not None}
        todo = [i for i, k in enumerate(keys) if k not in found and keys.index(k) == i]
        self.vae.to(self.device)
        for start in range(0, len(todo), self.batch_size):
            part = todo[start:start + self.batch_size]
            x = torch.from_numpy(np.stack([frames[i] for i in part])).permute(0, 3, 1, 2).float() / 255.0
            out = vae_moments(self.vae, x.to(self.device)).cpu()
            self.encoded += len(part)
            for i, value in zip(part, out, strict=True):
                self._store(keys[i], value.clone())
                found[keys[i]] = self.memory[keys[i]]
        return torch.stack([found[k] for k in keys])
