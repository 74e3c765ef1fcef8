"""LoRA on selected projections of timm ViT attention, through peft, and merging back for inference.

timm's ``Attention`` has one fused ``qkv`` Linear, and peft cannot adapt a slice of a layer
(huggingface/peft#1705). :func:`split_qkv` therefore replaces a block's ``attn.qkv`` by
:class:`SplitQKV`, whose three Linear children ``q``, ``k`` and ``v`` hold the slices of the fused
weight (same output; timm's attention forward is untouched), so peft can target ``q`` and ``v`` only.
:func:`merge_lora` folds the adapters into the base weights (peft's per-layer ``merge``, as
``merge_and_unload`` does) and re-fuses q/k/v into one ``nn.Linear``: the module structure and
state-dict keys are then those of the plain timm model again.

peft (and the transformers it imports, ~5 s) is imported only where LoRA is built or looked for, so
importing the model registry (MPT, ViT) does not pay for it.

Used by :mod:`mernb.models.hlora` (HLoRA-MER notebooks: tables 3-9, Figs. 3-5).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from peft.tuners.tuners_utils import BaseTunerLayer

from mernb.errors import ConfigError

QKV_NAMES = ("q", "k", "v")


class SplitQKV(nn.Module):
    """A fused ``qkv`` Linear as three Linear children ``q``, ``k``, ``v``; output ``cat([q, k, v], -1)``."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        if fused.out_features % 3:
            raise ValueError(f"fused qkv has {fused.out_features} outputs, not a multiple of 3")
        dim = fused.out_features // 3
        bias = fused.bias is not None
        kw = dict(device=fused.weight.device, dtype=fused.weight.dtype)
        self.q, self.k, self.v = (nn.Linear(fused.in_features, dim, bias=bias, **kw) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(fused.weight[i * dim : (i + 1) * dim])
                lin.weight.requires_grad_(fused.weight.requires_grad)
                if bias:
                    lin.bias.copy_(fused.bias[i * dim : (i + 1) * dim])
                    lin.bias.requires_grad_(fused.bias.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)

    def fuse(self) -> nn.Linear:
        """One ``nn.Linear`` with the stacked q/k/v weights (call after LoRA layers are merged away)."""
        parts = [getattr(self, n) for n in QKV_NAMES]
        if any(_is_tuner_layer(p) for p in parts):
            raise RuntimeError("SplitQKV.fuse: merge the LoRA adapters first (merge_lora)")
        w = parts[0].weight
        fused = nn.Linear(w.shape[1], 3 * w.shape[0], bias=parts[0].bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts], 0))
            if fused.bias is not None:
                fused.bias.copy_(torch.cat([p.bias for p in parts], 0))
        fused.requires_grad_(any(p.requires_grad for p in self.parameters()))
        return fused


def split_qkv(blocks: Iterable[nn.Module]) -> None:
    """Replace ``blk.attn.qkv`` of each block by a :class:`SplitQKV` (no-op where already split)."""
    for blk in blocks:
        qkv = blk.attn.qkv
        if isinstance(qkv, SplitQKV):
            continue
        if not isinstance(qkv, nn.Linear):
            raise TypeError(f"expected blk.attn.qkv to be nn.Linear, got {type(qkv).__name__}")
        blk.attn.qkv = SplitQKV(qkv)


def apply_lora(
    backbone: nn.Module,
    block_indices: Sequence[int],
    *,
    rank: int = 16,
    alpha: float = 16.0,
    targets: Sequence[str] = ("q", "v"),
    dropout: float = 0.0,
) -> nn.Module:
    """Split ``qkv`` of ``backbone.blocks[i]`` for ``i`` in ``block_indices`` and inject peft LoRA on ``targets``.

    Every backbone parameter except the LoRA A/B matrices is frozen (peft's rule). Scaling is
    ``alpha / rank``; B starts at zero, so the adapted model first computes exactly the original one.
    Returns ``backbone`` (modified in place). With no blocks, nothing is injected.
    """
    bad = [t for t in targets if t not in QKV_NAMES]
    if bad or not targets:
        raise ConfigError(f"lora_targets must be a non-empty subset of {QKV_NAMES}, got {tuple(targets)}")
    if rank < 1:
        raise ConfigError(f"lora_rank must be >= 1, got {rank}")
    block_indices = sorted(set(int(i) for i in block_indices))
    if not block_indices:
        return backbone
    depth = len(backbone.blocks)
    if block_indices[0] < 0 or block_indices[-1] >= depth:
        raise ConfigError(f"LoRA block indices {block_indices} outside 0..{depth - 1}")
    split_qkv(backbone.blocks[i] for i in block_indices)
    pattern = r"blocks\.({})\.attn\.qkv\.({})".format(
        "|".join(map(str, block_indices)), "|".join(re.escape(t) for t in targets)
    )
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
    return inject_adapter_in_model(config, backbone)


def _is_tuner_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a peft adapter layer (without importing peft when nothing imported it yet)."""
    if "peft" not in sys.modules:  # no adapter can exist before peft is imported
        return False
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def lora_layers(model: nn.Module) -> dict[str, BaseTunerLayer]:
    """Name → peft LoRA layer, for every adapted Linear inside ``model``."""
    return {name: m for name, m in model.named_modules() if _is_tuner_layer(m)}


def is_lora_param(name: str) -> bool:
    """Whether a parameter name belongs to a LoRA A/B matrix."""
    return ".lora_A." in name or ".lora_B." in name or ".lora_embedding_" in name


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base weight and re-fuse split q/k/v into one ``nn.Linear``.

    Same effect as peft's ``merge_and_unload`` (per layer: ``merge(safe_merge=True)`` then replace by
    the base layer), followed by :meth:`SplitQKV.fuse`. In place; returns ``model``.
    """
    for name, layer in list(lora_layers(model).items()):
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    for name, module in list(model.named_modules()):
        if isinstance(module, SplitQKV):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.fuse())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model
