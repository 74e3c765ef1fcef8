"""Cache of frozen-prefix backbone tokens per clip (and per horizontal flip), in memory and/or on disk.

A model with a frozen prefix (HLoRA-MER: every block below the LoRA blocks) offers
``prefix_signature()``, ``prefix_features(frames)`` and ``forward_from_prefix(tokens)``. The prefix output
is identical in every epoch and LOSO fold, so it is computed once per clip and flip and reused::

    cache = PrefixCache(runs_dir / "prefix_cache")           # or PrefixCache() for memory only
    tokens = cache.tokens(model, keys, frames, flips)         # (B, t, N, D), computed only where missing
    logits = model.forward_from_prefix(tokens)

Entries are keyed by the clip's cache key (e.g. ``Sample.sample_id`` plus the clip-pipeline settings),
the flip flag and the model's prefix signature (backbone name and kwargs, input size, prefix depth,
weights file identity). Flipping is done here (``frames.flip(-1)``), so the caller passes unflipped frames.
Size: ViT-g/14 at 224² with N_l >= 1 keeps 257 tokens x 1536 per frame, 12.6 MB per 8-frame clip in
float32 (``dtype=torch.float16`` halves it); with N_l = 0 only the class token is kept (49 kB per clip).
Used by the HLoRA-MER training notebooks through :mod:`mernb.train`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mernb.io import save_torch_atomic

__all__ = ["PrefixCache"]

Frames = torch.Tensor | Callable[[list[int]], torch.Tensor]


class PrefixCache:
    """Prefix tokens per (model signature, clip key, flip): in memory (``in_memory``) and/or under ``directory``.

    ``dtype`` (e.g. ``torch.float16``) stores tokens at lower precision to halve memory and disk
    (outputs then differ slightly from the uncached path); None keeps the computed dtype.
    ``chunk`` bounds the number of images per prefix pass.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        in_memory: bool = True,
        dtype: torch.dtype | None = None,
        chunk: int | None = 256,
    ) -> None:
        if directory is None and not in_memory:
            raise ValueError("PrefixCache needs a directory or in_memory=True")
        self.directory = Path(directory) if directory is not None else None
        self.in_memory = in_memory
        self.dtype = dtype
        self.chunk = chunk
        self._memory: dict[tuple[str, str, bool], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def _file(self, signature: str, key: str, flip: bool) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()[:24]
        return self.directory / signature[:16] / f"{digest}_{int(flip)}.pt"

    def get(self, signature: str, key: str, flip: bool) -> torch.Tensor | None:
        """Cached tokens (t, N, D) on CPU, or None."""
        entry = self._memory.get((signature, key, flip))
        if entry is None and self.directory is not None:
            path = self._file(signature, key, flip)
            if path.is_file():
                try:
                    entry = torch.load(path, map_location="cpu", weights_only=True)
                except Exception as exc:  # truncated or foreign file: recompute it
                    warnings.warn(f"prefix-token cache file {path} is unreadable ({exc}); recomputing it", stacklevel=2)
                    return None
                if self.in_memory:
                    self._memory[(signature, key, flip)] = entry
        return entry

    def put(self, signature: str, key: str, flip: bool, tokens: torch.Tensor) -> None:
        """Store tokens (t, N, D) (atomic file write; the signature's folder gets a ``signature.json``)."""
        tokens = tokens.detach().to("cpu", self.dtype or tokens.dtype).contiguous()
        if self.in_memory:
            self._memory[(signature, key, flip)] = tokens
        if self.directory is not None:
            path = self._file(signature, key, flip)
            path.parent.mkdir(parents=True, exist_ok=True)
            meta = path.parent / "signature.json"
            if not meta.exists():
                meta.write_text(json.dumps(dict(signature=signature), indent=1))
            save_torch_atomic(path, tokens.clone())

    def tokens(
        self,
        model: torch.nn.Module,
        keys: Sequence[str],
        frames: Frames,
        flips: Sequence[bool] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prefix tokens (B, t, N, D) on the model's device for clips ``keys``; misses are computed and stored.

        ``frames``: the unflipped batch (B, t, 3, H, W), or a function from a list of batch indices to
        those frames (so cached clips are never loaded). ``flips[i]`` flips clip i horizontally.
        """
        signature = model.prefix_signature()
        flips = [False] * len(keys) if flips is None else [bool(f) for f in flips]
        if len(flips) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(flips)} flip flags")
        device = next(model.parameters()).device
        out: list[torch.Tensor | None] = [self.get(signature, k, f) for k, f in zip(keys, flips, strict=True)]
        missing = [i for i, t in enumerate(out) if t is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            batch = frames(missing) if callable(frames) else frames[missing]
            batch = batch.to(device)
            flip_mask = torch.tensor([flips[i] for i in missing], device=device)
            batch = torch.where(flip_mask[:, None, None, None, None], batch.flip(-1), batch)
            with torch.no_grad():
                computed = model.prefix_features(batch, chunk=self.chunk)
            for j, i in enumerate(missing):
                self.put(signature, keys[i], flips[i], computed[j])
                out[i] = computed[j] if self.dtype is None else computed[j].to(self.dtype)
        return torch.stack([t.to(device) for t in out]).to(self._compute_dtype(model))

    @staticmethod
    def _compute_dtype(model: torch.nn.Module) -> torch.dtype:
        return next(model.parameters()).dtype

    def __len__(self) -> int:
        return len(self._memory)

    def clear_memory(self) -> None:
        """Drop the in-memory entries (files stay)."""
        self._memory.clear()
