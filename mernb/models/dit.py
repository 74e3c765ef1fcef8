"""Compact DiT (Peebles & Xie 2023) conditioned on a vector through adaLN-Zero, for MA2MI pre-training.

MA2MI (paper §3.2.1, eq. 8) predicts the VAE latent of frame I_{t+k} from the latent of I_t with a DiT-B
conditioned on MIACNet's action vector c. This module is a DiT built on timm's ``Attention``, ``Mlp`` and
``PatchEmbed``:

* tokens: ``PatchEmbed`` of the input latent plus a fixed 2-D sin-cos position embedding (not trained);
* each block: ``x += gate_msa * Attn(LN(x) * (1 + scale_msa) + shift_msa)`` and the same for the MLP,
  with ``(shift, scale, gate) x 2 = Linear(SiLU(cond))`` (adaLN-Zero); LayerNorms without affine weights;
* final layer: adaLN shift/scale, then ``Linear(hidden, p * p * out_chans)`` and unpatchify;
* ``initialize_weights`` follows DiT: xavier linears, the patch projection like a linear, every adaLN
  linear and the final linear zeroed, so every block is the identity at init and the output is zero.

Deviations from DiT (methods.md §5): the condition is one vector ``cond`` of hidden size (MA2MI's projection of
c replaces DiT's ``t_embedder(t) + y_embedder(y)``); there is **no diffusion** (no timestep, no noise
schedule, no learned sigma): the paper's loss is an L1 regression of the next latent (eq. 9), so the DiT is a
deterministic conditional predictor and ``out_chans = in_chans``. diffusers' ``DiTTransformer2DModel``
(0.42.1) takes only integer class labels plus a timestep through its ``LabelEmbedding``, not a vector, so it
is not used.

Used by :mod:`mernb.models.ma2mi` (and so by ``notebooks/ma2mi/*``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from timm.layers import Mlp, PatchEmbed
from timm.models.vision_transformer import Attention
from torch import nn

__all__ = ["DiT", "DiTBlock", "FinalLayer", "sincos_2d", "DIT_CONFIGS"]

# depth, hidden size, heads (facebookresearch/DiT models.py)
DIT_CONFIGS: dict[str, tuple[int, int, int]] = {
    "S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16), "test": (2, 32, 2),
}


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """DiT's fixed 2-D sin-cos position embedding, (grid*grid, dim): half the channels encode the row,
    half the column, each as [sin(pos * w), cos(pos * w)] with w = 1 / 10000^(i / (dim/4))."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs dim divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def embed(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # DiT's grid is meshgrid(w, h) stacked, so the first half encodes the column index
    return torch.from_numpy(np.concatenate([embed(xs), embed(ys)], axis=1)).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """One DiT block with adaLN-Zero conditioning (identity when its adaLN linear is zero)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads=heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(cond).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """adaLN shift/scale, then a linear map of each token to its ``patch * patch * out_chans`` values."""

    def __init__(self, dim: int, patch: int, out_chans: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_chans)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """``DiT(x, cond) -> prediction`` of the same shape as ``x`` (B, C, S, S); ``cond`` is (B, hidden)."""

    def __init__(self, input_size: int = 28, patch_size: int = 2, in_chans: int = 4, hidden_size: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"DiT input side {input_size} is not a multiple of the patch size {patch_size}")
        self.input_size, self.patch_size, self.in_chans, self.hidden_size = input_size, patch_size, in_chans, hidden_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_chans, hidden_size, bias=True)
        grid = input_size // patch_size
        self.register_buffer("pos_embed", sincos_2d(hidden_size, grid).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, in_chans)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears, zeroed adaLN and final linears (each block starts as the identity)."""

        def basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(basic)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embedding, (B, N, hidden)."""
        return self.x_embedder(x) + self.pos_embed.to(x.dtype)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, p*p*C) -> (B, C, S, S)."""
        p, c = self.patch_size, self.in_chans
        g = int(math.isqrt(x.shape[1]))
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.tokens(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.unpatchify(self.final_layer(h, cond))
