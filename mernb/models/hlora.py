"""HLoRA-MER (Shao et al., The Visual Computer 2024): high-level LoRA on DINOv2 + hierarchical fusion.

A clip of t frames (B, t, 3, H, W), each frame normalised with the backbone's mean/std, goes frame by
frame through a DINOv2 ViT (timm); the per-frame feature is the final-norm class token F_k (d=1536 for
ViT-g/14). HLoRA adapts W_Q and W_V (not W_K) of the last N_l blocks with rank-r LoRA (peft, via
:mod:`mernb.models.lora`); every other backbone weight is frozen. The hierarchical fusion module (HFM)
fuses {F_0..F_{t-1}}: IFFA (graph attention over frames, eqs. 8-11) and STFA (a t/2 x t/2 convolution
over the d x t feature map, ReLU, pooling, eq. 12), concatenated into a linear classifier (eq. 13).

Named configs: ``hlora_vitg14`` (paper), ``hlora_vitg14_reg`` (DINOv2 with 4 registers, the checkpoint
the authors' README links) and ``hlora_test`` (tiny random DINOv2-style ViT for CPU). Ablations are
overrides: ``hfm="iffa"`` (w/o STFA), ``"stfa"`` (w/o IFFA), ``"none"`` (w/o HFM: linear on the mean
frame feature), ``finetune="full"`` (Table 8), ``n_lora_blocks=0..4`` (Fig. 3); ``iffa="gat"`` and
``stfa="code"`` swap in the authors' operators (below).

Speed by design: the blocks below the LoRA blocks are frozen, so their output (the token sequence
entering block ``depth - N_l``) is the same in every epoch and fold. :meth:`HLoRAMER.prefix_features`
computes it with timm's ``forward_intermediates`` (the output of block ``depth - N_l - 1``, later blocks
not run), :class:`mernb.models.feature_cache.PrefixCache` stores it per clip (and per flip), and
:meth:`HLoRAMER.forward_from_prefix` runs only the last N_l blocks + HFM (with timm's checkpointing).

Choices (where the paper is silent or the authors' code differs; methods.md §1):

* Neighbours (IFFA): the paper says they are "adaptively learned instead of being predefined as
  adjacent frames"; the authors' code uses a fixed chain (self, t-1, t+1). Default ``"learned"``
  follows the paper: every frame may attend to every frame, and a learnable t x t matrix of
  adjacency logits (zero-init, added to the attention logits before the softmax) learns which
  neighbours count. ``"chain"`` (authors' code) and ``"all"`` (no learned bias) are options.
* Attention (eq. 9) is taken literally: f'_i + e'_ij is a d'-vector, so a_ij is per channel; the
  (B, t, t) map for Fig. 5 is its channel mean (``last_attention``). W has no bias, so
  e'_ij = W(F_i - F_j) = f'_i - f'_j; d' = d by default (``iffa_dim``).
* Pooling (eqs. 11, 12): max over the t frames (the authors' code uses max pooling). STFA: one
  Conv2d(1, 1, (t/2, t/2)) over the d x t map, then ReLU (the paper's h; the code has none), then
  max over time: d - t/2 + 1 features. Fusion: concatenation, then one Linear (eq. 13).
* LoRA scaling: ``lora_alpha=1`` (scaling 1/r), the authors' loralib default; the paper gives none.
  Dropout 0, B zero-initialised, qkv biases frozen: 196,608 LoRA parameters for ViT-g, r=16, N_l=2.
* Model selection: none here; the LOSO runner trains a fixed schedule (the authors' code picks the
  best epoch on the test subject, which we do not copy).
* Precision: the HFM always runs in float32 with autocast off (:mod:`mernb.models._precision`); the
  backbone may run in bf16. IFFA's ``F_i - F_j`` of near-equal frames loses ~14 % in bf16 at a 1 %
  frame-to-frame change (issue 7).

The authors' operator (``iffa="gat"``, ``stfa="code"``; github CYF-cuber/HLoRA_MER_dinov2,
``dinov2_mer.py`` + ``GraphAttention/``), for measuring what the paper's equations vs their code are worth:

* IFFA = a standard GAT (Velickovic et al.), two layers, no edge features ``F_i - F_j``. Layer 1: three
  heads, each ``h_i = ELU(sum_j a_ij W h_j)`` with ``a_ij = softmax_{j in N_i} LeakyReLU_{0.01}(a_1 . W h_i
  + a_2 . W h_j)`` (W: d -> hidden, 1000 for d = 1536; here ``gat_hidden``, default round(d * 1000/1536)),
  heads concatenated. Layer 2: one head, 3*hidden -> d, then ELU and a log-softmax over the d channels.
  Neighbours: the fixed chain (self, t-1, t+1). Dropout 0.1 on the input, the hidden features and the
  attention (training only). Then a max-pool over (5 channels x all t frames), stride 2 over channels:
  ``(d - 5) // 2 + 1`` features (766 for d = 1536). ``last_attention`` is the layer-2 attention.
* STFA (``stfa="code"``): the same t/2 x t/2 Conv2d without ReLU, then a max-pool over (5 channels x all
  remaining t - k + 1 columns), stride 2 over channels: ``(d - k + 1 - 5) // 2 + 1`` features (765).
* Together: ``Linear(766 + 765 = 1531, C)`` for ViT-g, t = 8, exactly as in their code.

Used by the notebooks under ``notebooks/hlora/`` (Tables 3-9, Figs. 3-5).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.models import checkpoint
from torch import nn

from mernb.errors import ConfigError
from mernb.models._precision import fp32_forward
from mernb.models.backbones import create_backbone, resolve_weights
from mernb.models.lora import apply_lora, is_lora_param, merge_lora
from mernb.models.registry import register_model

__all__ = [
    "HLoRAMER", "IFFA", "GATLayer", "GATIFFA", "STFA", "HierarchicalFusion", "PAPER_SETTINGS", "merge_lora",
    "DINOV2_G14", "DINOV2_G14_REG",
]

# timm names with pretrained tag; the same string is the default ``weights:`` key of the user config.
DINOV2_G14 = "vit_giant_patch14_dinov2.lvd142m"
DINOV2_G14_REG = "vit_giant_patch14_reg4_dinov2.lvd142m"

# Settings stated in the paper (§4.1.3).
PAPER_SETTINGS: dict[str, Any] = dict(
    backbone=DINOV2_G14, optimizer="adam", lr=1e-3, lr_schedule="fixed", batch_size=36, num_frames=8,
    frame_sampling="uniform", img_size=224, alignment="similarity", augmentation=("hflip",),
    lora_rank=16, n_lora_blocks=2, lora_targets=("q", "v"), loss="cross_entropy",
)
# Settings the paper leaves out, as in the authors' code (reference/methods.md §1.2, §1.4).

HFM = Literal["full", "iffa", "stfa", "none"]
Neighbours = Literal["learned", "chain", "all"]
IFFAKind = Literal["paper", "gat"]
STFAKind = Literal["paper", "code"]
# the authors' GAT hidden width (1000) for the ViT-g width (1536); scaled by d for other backbones
GAT_HIDDEN_RATIO = 1000 / 1536
CODE_POOL = 5  # channel window of the authors' max-pooling (stride 2)
Finetune = Literal["lora", "full", "frozen"]


def neighbour_mask(num_frames: int, neighbours: str) -> torch.Tensor:
    """Boolean (t, t) mask, True where frame j is a neighbour of frame i (self included)."""
    if neighbours == "chain":
        idx = torch.arange(num_frames)
        return (idx[:, None] - idx[None, :]).abs() <= 1
    if neighbours in ("all", "learned"):
        return torch.ones(num_frames, num_frames, dtype=torch.bool)
    raise ConfigError(f"neighbours must be 'learned', 'chain' or 'all', got {neighbours!r}")


class IFFA(nn.Module):
    """Inter-frame feature aggregator (eqs. 8-11): graph attention over the t frame features.

    ``f'_i = W F_i``, ``e'_ij = W (F_i - F_j)``, ``a_ij = softmax_{j in N_i} ReLU(f'_i + e'_ij)`` (per
    channel, plus learned adjacency logits when ``neighbours="learned"``), ``F'_i = ReLU(sum_j a_ij e'_ij)``,
    then max over frames. Input (B, t, d), output (B, d'). ``last_attention``: (B, t, t) channel-mean a_ij.
    """

    def __init__(self, dim: int, num_frames: int, out_dim: int | None = None, neighbours: Neighbours = "learned"):
        super().__init__()
        self.num_frames = num_frames
        self.neighbours = neighbours
        self.out_dim = out_dim or dim
        self.proj = nn.Linear(dim, self.out_dim, bias=False)
        self.register_buffer("mask", neighbour_mask(num_frames, neighbours), persistent=False)
        self.adjacency_logits = nn.Parameter(torch.zeros(num_frames, num_frames)) if neighbours == "learned" else None
        self.last_attention: torch.Tensor | None = None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[1] != self.num_frames:
            raise ValueError(f"IFFA was built for t={self.num_frames} frames, got {feats.shape[1]}")
        f = self.proj(feats)  # (B, t, d')
        e = f[:, :, None, :] - f[:, None, :, :]  # e'_ij = W(F_i - F_j), (B, t, t, d')
        logits = F.relu(f[:, :, None, :] + e)
        if self.adjacency_logits is not None:
            logits = logits + self.adjacency_logits[None, :, :, None]
        logits = logits.masked_fill(~self.mask[None, :, :, None], float("-inf"))
        attn = logits.softmax(dim=2)
        self.last_attention = attn.mean(-1).detach()
        out = F.relu((attn * e).sum(dim=2))  # F'_i, (B, t, d')
        return out.amax(dim=1)


class GATLayer(nn.Module):
    """One graph-attention layer (Velickovic et al. 2018), as in the authors' ``GraphAttentionLayer``.

    ``Wh = h W``; ``e_ij = LeakyReLU(a_1 . Wh_i + a_2 . Wh_j)`` for j in the neighbours of i (``mask``);
    ``a_ij = softmax_j e_ij`` (dropout in training); output ``sum_j a_ij Wh_j`` (ELU when ``concat``).
    Input (B, t, in_dim), output (B, t, out_dim); ``last_attention`` (B, t, t).
    """

    def __init__(self, in_dim: int, out_dim: int, *, slope: float = 0.01, dropout: float = 0.1, concat: bool = True):
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_dim, out_dim))
        self.a = nn.Parameter(torch.empty(2 * out_dim, 1))
        self.slope, self.dropout, self.concat, self.out_dim = slope, dropout, concat, out_dim
        if not self.W.is_meta:
            nn.init.xavier_uniform_(self.W, gain=1.414)
            nn.init.xavier_uniform_(self.a, gain=1.414)
        self.last_attention: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        wh = h @ self.W
        src, dst = wh @ self.a[: self.out_dim], wh @ self.a[self.out_dim :]  # (B, t, 1) each
        e = F.leaky_relu(src + dst.transpose(1, 2), self.slope)
        attn = e.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        self.last_attention = attn.detach()
        out = F.dropout(attn, self.dropout, self.training) @ wh
        return F.elu(out) if self.concat else out


class GATIFFA(nn.Module):
    """The authors' IFFA (``iffa="gat"``; module docstring): 2-layer GAT over a fixed frame graph, then
    a max-pool over (5 channels x t frames), stride 2 over channels. Input (B, t, d), output (B, (d'-5)//2+1)."""

    def __init__(
        self, dim: int, num_frames: int, out_dim: int | None = None, neighbours: Neighbours = "chain",
        hidden: int | None = None, heads: int = 3, dropout: float = 0.1, slope: float = 0.01,
    ):
        super().__init__()
        if neighbours == "learned":
            raise ConfigError("iffa='gat' uses a fixed graph: neighbours must be 'chain' (authors) or 'all'")
        self.num_frames = num_frames
        self.hidden = hidden or max(1, round(dim * GAT_HIDDEN_RATIO))
        self.gat_dim = out_dim or dim
        if self.gat_dim < CODE_POOL:
            raise ConfigError(f"iffa='gat' pools {CODE_POOL} channels: the GAT width {self.gat_dim} is too small")
        self.dropout = dropout
        self.heads = nn.ModuleList(
            GATLayer(dim, self.hidden, slope=slope, dropout=dropout, concat=True) for _ in range(heads)
        )
        self.out_layer = GATLayer(heads * self.hidden, self.gat_dim, slope=slope, dropout=dropout, concat=False)
        self.register_buffer("mask", neighbour_mask(num_frames, neighbours), persistent=False)
        self.out_dim = (self.gat_dim - CODE_POOL) // 2 + 1

    @property
    def last_attention(self) -> torch.Tensor | None:
        """Layer-2 attention (B, t, t) of the last forward (Fig. 5)."""
        return self.out_layer.last_attention

    def node_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The GAT output per frame before pooling: (B, t, d'), log-softmax over channels."""
        if feats.shape[1] != self.num_frames:
            raise ValueError(f"IFFA was built for t={self.num_frames} frames, got {feats.shape[1]}")
        x = F.dropout(feats, self.dropout, self.training)
        x = torch.cat([head(x, self.mask) for head in self.heads], dim=-1)
        x = F.dropout(x, self.dropout, self.training)
        return F.log_softmax(F.elu(self.out_layer(x, self.mask)), dim=-1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.node_features(feats).transpose(1, 2).unsqueeze(1)  # (B, 1, d', t)
        return F.max_pool2d(x, (CODE_POOL, self.num_frames), stride=(2, 1)).flatten(1)


class STFA(nn.Module):
    """Spatio-temporal feature aggregator (eq. 12): Conv2d over the d x t map, ReLU, max over time.

    The filter is ``kernel`` x ``kernel`` (t/2 by default). Input (B, t, d), output (B, channels*(d-k+1)).
    ``pooling="code"`` (the authors' code): no ReLU, max-pool over (5 channels x all t-k+1 columns) with
    stride 2 over channels, output (B, channels*((d-k+1-5)//2+1)).
    """

    def __init__(
        self, dim: int, num_frames: int, kernel: int | None = None, channels: int = 1, pooling: STFAKind = "paper"
    ):
        super().__init__()
        if pooling not in ("paper", "code"):
            raise ConfigError(f"stfa must be 'paper' or 'code', got {pooling!r}")
        k = kernel or max(1, num_frames // 2)
        if k > min(dim, num_frames):
            raise ConfigError(f"STFA kernel {k} larger than the d x t = {dim} x {num_frames} feature map")
        self.kernel = k
        self.pooling = pooling
        self.conv = nn.Conv2d(1, channels, (k, k))
        rows = dim - k + 1
        if pooling == "code" and rows < CODE_POOL:
            raise ConfigError(f"stfa='code' pools {CODE_POOL} channels: only {rows} rows after the conv")
        self.out_dim = channels * (rows if pooling == "paper" else (rows - CODE_POOL) // 2 + 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.conv(feats.transpose(1, 2).unsqueeze(1))  # F^c: (B, 1, d, t) -> (B, c, d-k+1, t-k+1)
        if self.pooling == "code":
            return F.max_pool2d(x, (CODE_POOL, x.shape[-1]), stride=(2, 1)).flatten(1)
        return F.relu(x).amax(dim=-1).flatten(1)


class HierarchicalFusion(nn.Module):
    """HFM (eq. 13): ``g(F_iffa ⊕ F_stfa)`` with ⊕ concatenation and g one Linear; variants drop a branch.

    ``mode``: "full" (IFFA+STFA), "iffa" (w/o STFA), "stfa" (w/o IFFA), "none" (w/o HFM: Linear on the
    mean frame feature). ``iffa``: "paper" (eqs. 8-11, :class:`IFFA`) or "gat" (the authors' code,
    :class:`GATIFFA`); ``stfa``: "paper" (eq. 12) or "code". Input (B, t, d), output logits (B, num_classes).
    Always runs in float32 with autocast off (inputs cast up): see :mod:`mernb.models._precision`.
    """

    def __init__(
        self,
        dim: int,
        num_frames: int,
        num_classes: int,
        mode: HFM = "full",
        neighbours: Neighbours | None = None,
        iffa_dim: int | None = None,
        stfa_kernel: int | None = None,
        *,
        iffa: IFFAKind = "paper",
        stfa: STFAKind = "paper",
        gat_hidden: int | None = None,
        gat_heads: int = 3,
    ):
        super().__init__()
        if mode not in ("full", "iffa", "stfa", "none"):
            raise ConfigError(f"hfm must be 'full', 'iffa', 'stfa' or 'none', got {mode!r}")
        if iffa not in ("paper", "gat"):
            raise ConfigError(f"iffa must be 'paper' or 'gat', got {iffa!r}")
        neighbours = neighbours or default_neighbours(iffa)
        neighbour_mask(num_frames, neighbours)  # validates the name
        self.mode = mode
        self.iffa: IFFA | GATIFFA | None = None
        if mode in ("full", "iffa"):
            self.iffa = (
                IFFA(dim, num_frames, iffa_dim, neighbours) if iffa == "paper"
                else GATIFFA(dim, num_frames, iffa_dim, neighbours, hidden=gat_hidden, heads=gat_heads)
            )
        self.stfa = STFA(dim, num_frames, stfa_kernel, pooling=stfa) if mode in ("full", "stfa") else None
        fused = (self.iffa.out_dim if self.iffa else 0) + (self.stfa.out_dim if self.stfa else 0)
        self.classifier = nn.Linear(fused or dim, num_classes)

    @fp32_forward
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return self.classifier(feats.mean(dim=1))
        parts = [m(feats) for m in (self.iffa, self.stfa) if m is not None]
        return self.classifier(torch.cat(parts, dim=1))


def default_neighbours(iffa: str) -> Neighbours:
    """IFFA neighbours when none are given: "learned" for the paper's IFFA, the authors' "chain" for the GAT."""
    return "chain" if iffa == "gat" else "learned"


class HLoRAMER(nn.Module):
    """HLoRA-MER: DINOv2 ViT (timm, local weights) with LoRA on q/v of the last N_l blocks, plus HFM.

    Input (B, t, 3, H, W) normalised frames (``data_config`` has mean/std/size); output logits.
    ``finetune``: "lora" (paper), "full" (every backbone weight trains, no LoRA; Table 8) or "frozen"
    (no LoRA, frozen backbone; the same as ``n_lora_blocks=0``).
    """

    def __init__(
        self,
        backbone: str = DINOV2_G14,
        *,
        weights: str | Path | None = DINOV2_G14,
        img_size: int = 224,
        num_frames: int = 8,
        num_classes: int = 5,
        n_lora_blocks: int = 2,
        lora_rank: int = 16,
        lora_alpha: float = 1.0,
        lora_targets: tuple[str, ...] = ("q", "v"),
        lora_dropout: float = 0.0,
        finetune: Finetune = "lora",
        hfm: HFM = "full",
        neighbours: Neighbours | None = None,
        iffa_dim: int | None = None,
        stfa_kernel: int | None = None,
        iffa: IFFAKind = "paper",
        stfa: STFAKind = "paper",
        gat_hidden: int | None = None,
        grad_checkpointing: bool = False,
        **backbone_kwargs,
    ) -> None:
        super().__init__()
        if finetune not in ("lora", "full", "frozen"):
            raise ConfigError(f"finetune must be 'lora', 'full' or 'frozen', got {finetune!r}")
        if iffa not in ("paper", "gat"):
            raise ConfigError(f"iffa must be 'paper' or 'gat', got {iffa!r}")
        neighbours = neighbours or default_neighbours(iffa)
        if num_classes < 1 or num_frames < 1:
            raise ConfigError(f"num_classes and num_frames must be positive, got {num_classes}, {num_frames}")
        self.backbone = create_backbone(backbone, weights=weights, num_classes=0, img_size=img_size, **backbone_kwargs)
        depth = len(self.backbone.blocks)
        if finetune == "lora" and not 0 <= n_lora_blocks <= depth:
            raise ConfigError(f"n_lora_blocks must be in 0..{depth} for {backbone}, got {n_lora_blocks}")
        self.config: dict[str, Any] = dict(
            backbone=backbone, weights=None if weights is None else str(weights), img_size=img_size,
            num_frames=num_frames, num_classes=num_classes, n_lora_blocks=n_lora_blocks if finetune == "lora" else 0,
            lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=tuple(lora_targets), lora_dropout=lora_dropout,
            finetune=finetune, hfm=hfm, neighbours=neighbours, iffa_dim=iffa_dim, stfa_kernel=stfa_kernel,
            iffa=iffa, stfa=stfa, gat_hidden=gat_hidden,
            backbone_kwargs=dict(backbone_kwargs),
        )
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.img_size = img_size
        self.finetune = finetune
        self.n_lora_blocks = self.config["n_lora_blocks"]
        self._weights_file = resolve_weights(weights)
        self._signature: str | None = None
        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        self.data_config = dict(
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
            input_size=(3, img_size, img_size),
        )

        if finetune == "full":
            self.backbone.requires_grad_(True)
            self.prefix_depth = 0
        else:
            self.backbone.requires_grad_(False)
            first = depth - self.n_lora_blocks
            apply_lora(
                self.backbone, range(first, depth), rank=lora_rank, alpha=lora_alpha,
                targets=lora_targets, dropout=lora_dropout,
            )
            self.prefix_depth = first
        self.set_grad_checkpointing(grad_checkpointing)
        self.hfm = HierarchicalFusion(
            self.backbone.num_features, num_frames, num_classes, hfm, neighbours, iffa_dim, stfa_kernel,
            iffa=iffa, stfa=stfa, gat_hidden=gat_hidden,
        )

    # --- backbone -------------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch (kept on the backbone): in training, recompute each trained block's activations in
        backward, on the full path (timm's own loop) and from cached prefix tokens alike. The frozen prefix
        (timm's ``forward_intermediates``) checkpoints too, but runs under no_grad, where that saves nothing."""
        self.backbone.set_grad_checkpointing(enable)

    @property
    def grad_checkpointing(self) -> bool:
        """Whether :meth:`set_grad_checkpointing` is on."""
        return bool(getattr(self.backbone, "grad_checkpointing", False))

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected frames (B, t, 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.num_frames:
            raise ValueError(f"model built for t={self.num_frames} frames, got {x.shape[1]}")
        return x.flatten(0, 1)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame features F_k: final-norm class tokens, (B, t, d), through the whole backbone."""
        b = x.shape[0]
        tokens = self.backbone.forward_features(self._frames(x))
        return tokens[:, 0].reshape(b, self.num_frames, -1)

    @property
    def prefix_frozen(self) -> bool:
        """Whether everything below block ``prefix_depth`` is frozen (so its output may be cached)."""
        return self.finetune != "full"

    def prefix_features(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Tokens entering block ``prefix_depth`` (the first trainable one): (B, t, N, D), prefix tokens
        (class, registers) first, then the patch tokens, before any norm.

        They come from timm's ``forward_intermediates`` (the output of block ``prefix_depth - 1``, blocks
        after it not run); with ``prefix_depth == 0`` (``finetune="full"`` or every block adapted) from
        :meth:`_stem`. Runs without autograd when the prefix is frozen; ``chunk`` bounds the images per
        pass. When no block trains (N_l=0, ``finetune="frozen"``) only the class token is kept (N=1): the
        final norm is per token, so nothing else is needed.
        """
        b = x.shape[0]
        imgs = self._frames(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.prefix_frozen):
            tokens = torch.cat([self._prefix_tokens(part) for part in imgs.split(chunk or imgs.shape[0])])
        return tokens.reshape(b, self.num_frames, *tokens.shape[1:])

    def _prefix_tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """Tokens entering block ``prefix_depth`` for images (n, 3, H, W): (n, N, D) (N=1 at full depth)."""
        bb = self.backbone
        if self.prefix_depth == 0:
            return self._stem(imgs)
        out = bb.forward_intermediates(
            imgs, indices=[self.prefix_depth - 1], stop_early=True, intermediates_only=True, output_fmt="NLC",
            output_dict=True, return_prefix_tokens=True, norm=False,
        )
        patches = out["image_intermediates"][0]
        prefix = out.get("image_intermediates_prefix")  # absent when the backbone has no prefix tokens
        if prefix is None:
            return patches[:, :1] if self.prefix_depth == len(bb.blocks) else patches
        if self.prefix_depth == len(bb.blocks):
            return prefix[0][:, :1]  # the class token
        return torch.cat([prefix[0], patches], dim=1)

    def _stem(self, imgs: torch.Tensor) -> torch.Tensor:
        """The tokens timm's ``forward_features``/``forward_intermediates`` feed into block 0 (patch embedding,
        class/register tokens + position embedding, patch dropout, pre-norm). timm has no public call for
        this alone (``forward_intermediates`` returns block outputs only), so it repeats those four steps."""
        bb = self.backbone
        return bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(imgs))))

    def features_from_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, t, d) from prefix tokens (B, t, N, D): last blocks + final norm + class token.

        With :meth:`set_grad_checkpointing` on, each block goes through timm's ``checkpoint``, always
        non-reentrant: cached tokens carry no gradient, and reentrant checkpointing (timm's
        ``TIMM_REENTRANT_CKPT=1``) would then silently give the LoRA weights no gradient.
        """
        b, t = tokens.shape[:2]
        return self.tokens_from_prefix(tokens.flatten(0, 1))[:, 0].reshape(b, t, -1)

    def tokens_from_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final-norm tokens (n, N, D) of images from their prefix tokens (n, N, D): the last blocks (through
        timm's ``checkpoint`` when on, see :meth:`features_from_prefix`) and the backbone's final norm.
        Also used for HLoRA Fig. 4's patch tokens (``mernb.experiments.hlora``)."""
        h = tokens
        use_checkpoint = self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
        for blk in self.backbone.blocks[self.prefix_depth :]:
            h = checkpoint(blk, h, use_reentrant=False) if use_checkpoint else blk(h)
        return self.backbone.norm(h)

    # --- full model -----------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor | None = None, return_attention: bool = False, *, tokens: torch.Tensor | None = None
    ):
        """Logits (B, num_classes) from frames ``x``, or from cached prefix ``tokens`` (so a dataset yielding
        ``{"tokens": ...}`` works with the generic train loop); with ``return_attention`` also the IFFA map
        (B, t, t) (None without IFFA)."""
        if (x is None) == (tokens is None):
            raise ValueError("pass exactly one of frames x or prefix tokens")
        if tokens is not None:
            return self.forward_from_prefix(tokens, return_attention)
        return self._head(self.frame_features(x), return_attention)

    def forward_from_prefix(self, tokens: torch.Tensor, return_attention: bool = False):
        """Same as :meth:`forward` from cached :meth:`prefix_features` tokens."""
        return self._head(self.features_from_prefix(tokens), return_attention)

    def _head(self, feats: torch.Tensor, return_attention: bool):
        logits = self.hfm(feats)
        return (logits, self.last_attention) if return_attention else logits

    @property
    def last_attention(self) -> torch.Tensor | None:
        """IFFA attention (B, t, t) of the last forward (channel mean of a_ij); None without IFFA (Fig. 5)."""
        return self.hfm.iffa.last_attention if self.hfm.iffa is not None else None

    def merge_lora(self) -> HLoRAMER:
        """Fold the LoRA adapters into W_Q/W_V and re-fuse qkv (inference; same outputs). In place."""
        merge_lora(self.backbone)
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors (LoRA + HFM, or everything with ``finetune="full"``): a small per-fold
        checkpoint; the frozen backbone comes from the weights file. Load with :meth:`load_trainable`."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`trainable_state_dict`; any missing or unexpected trained key is an error."""
        expected = set(self.trainable_state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ConfigError(f"trainable checkpoint does not fit: missing {missing[:5]}, unexpected {extra[:5]}")
        self.load_state_dict(state, strict=False)

    # --- reporting --------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, int]:
        """Parameter counts: trainable ``lora``, ``backbone`` (full fine-tuning), ``hfm`` (IFFA+STFA), ``head``
        (classifier), and ``frozen`` (everything not trained)."""
        groups = dict(lora=0, backbone=0, hfm=0, head=0, frozen=0)
        for name, p in self.named_parameters():
            if not p.requires_grad:
                key = "frozen"
            elif name.startswith("backbone."):
                key = "lora" if is_lora_param(name) else "backbone"
            elif name.startswith("hfm.classifier."):
                key = "head"
            else:
                key = "hfm"
            groups[key] += p.numel()
        return groups

    def example_input(self, batch: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
        """A random input batch (batch, t, 3, S, S) (used by ``mernb model info``)."""
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(batch, self.num_frames, 3, self.img_size, self.img_size, device=device)

    def prefix_signature(self) -> str:
        """Hex key of what determines :meth:`prefix_features`: backbone, kwargs, size, depth and weights.

        With a weights file: its resolved path, size and mtime; with random init: a hash of the prefix
        parameters (so two random backbones never share a cache).
        """
        if self._signature is None:
            if not self.prefix_frozen:
                raise ConfigError("finetune='full' trains the whole backbone: its prefix cannot be cached")
            ident: dict[str, Any] = dict(
                backbone=self.config["backbone"], kwargs=self.config["backbone_kwargs"], img_size=self.img_size,
                prefix_depth=self.prefix_depth,
            )
            if self._weights_file is not None:
                st = self._weights_file.stat()
                ident["weights"] = [str(self._weights_file.resolve()), st.st_size, st.st_mtime_ns]
            else:
                h = hashlib.sha1()
                for name, t in self._prefix_state():
                    h.update(name.encode())
                    h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
                ident["params"] = h.hexdigest()
            self._signature = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
        return self._signature

    def _prefix_state(self):
        bb = self.backbone
        blocks = {f"blocks.{i}." for i in range(self.prefix_depth, len(bb.blocks))}
        for name, t in bb.state_dict().items():
            if name.startswith(("norm.", "head.", "fc_norm.")) or any(name.startswith(b) for b in blocks):
                continue
            yield name, t


def _create_hlora(variant: str, defaults: dict[str, Any], **overrides) -> HLoRAMER:
    """Build a config: HLoRAMER arguments and timm backbone kwargs (``depth=``...) may be given flat or in
    ``backbone_kwargs``; overrides win over defaults."""
    defaults, overrides = dict(defaults), dict(overrides)
    kwargs = {**defaults.pop("backbone_kwargs", {}), **defaults}
    kwargs.update(overrides.pop("backbone_kwargs", None) or {})
    kwargs.update(overrides)
    try:
        return HLoRAMER(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{variant}: bad config override ({exc})") from exc


@register_model
def hlora_vitg14(**overrides) -> HLoRAMER:
    """Paper: DINOv2 ViT-g/14 at 224², LoRA r=16 on q/v of the last 2 blocks, full HFM, t=8, 5 classes."""
    return _create_hlora("hlora_vitg14", dict(backbone="vit_giant_patch14_dinov2", weights=DINOV2_G14), **overrides)


@register_model
def hlora_vitg14_reg(**overrides) -> HLoRAMER:
    """As ``hlora_vitg14`` on DINOv2 ViT-g/14 with 4 register tokens (the checkpoint the authors' README links)."""
    return _create_hlora(
        "hlora_vitg14_reg", dict(backbone="vit_giant_patch14_reg4_dinov2", weights=DINOV2_G14_REG), **overrides
    )


@register_model
def hlora_test(**overrides) -> HLoRAMER:
    """Tiny random DINOv2-style ViT (depth 4, width 64, 2 heads, 56², patch 14) for CPU smoke runs and tests."""
    defaults = dict(
        backbone="vit_small_patch14_dinov2", weights=None, img_size=56, lora_rank=4, lora_alpha=4.0,
        backbone_kwargs=dict(depth=4, embed_dim=64, num_heads=2, init_values=1.0),
    )
    return _create_hlora("hlora_test", defaults, **overrides)
