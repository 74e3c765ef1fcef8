"""MPT: Motion Prompt Tuning for micro-expression recognition (one class, every ablation as an option).

A frozen timm ViT sees the clip's **dynamic image** (rank-pooled RGB image) as patch tokens; a motion
prompt generator turns the **magnified motion sequence** into K prompt tokens; the tokens
``[class, K prompts, patches]`` run through the ViT with a group adapter after each block's
feed-forward; a linear head classifies the class token. Only the prompt generator, adapters and head
train by default.

Options (config fields, one :class:`MPT` class covers MPT Tables VI-XI):

* ``prompt``: ``"motion"`` (paper), ``"vpt_shallow"`` / ``"vpt_deep"`` (random learnable prompts at the
  input / at every layer, VPT), ``"none"``;  ``num_prompts`` K (5 in the paper, Fig. 5 varies it).
* ``adapter``: ``"group"`` (paper: separate class / prompt / visual bottleneck branches; without prompts
  there is no prompt branch), ``"primitive"`` (one bottleneck for all tokens, Houlsby), ``"none"``;
  ``reduction`` r (8; Table XI).
* ``finetune``: ``"frozen"`` (backbone frozen; prompts, adapters, head train), ``"head"`` (only the head
  trains), ``"full"`` (everything trains). With ``weights=None`` and ``"full"``: "w/o pretraining".
* ``backbone`` / ``weights``: timm name and local checkpoint key (Table IX: ViT-B/16, ViT-B/32 on
  ImageNet-21k, CLIP ViT-B/16, CLIP ViT-B/32). ``alpha`` etc. (``magnify``) set the motion sequence.
* ``dynamic_image``: ``"rankpool"`` (official rank-pooling weights, zero sum: motion only) or
  ``"rankpool_port"`` (the Python port's weights, sum T: keeps the facial appearance); Table VI runs both.

Paper components as implemented:

* Motion prompt generation (III-B): the motion sequence (B, T, C, H, W) is embedded per frame by a
  convolution (kernel = stride = ``motion_patch`` 16, ``motion_dim`` 128 channels) and a global average
  pooling (eq. 8) -> (B, T, 128); two linear layers on the flattened (T x 128) features predict K means
  (sigmoid, in normalised time [0, 1]) and K variances (softplus) of temporal Gaussian kernels
  (eqs. 9-10); prompt k = Linear(sum_t w_k(t) e_t), w_k the Gaussian normalised over t (eqs. 11-12).
* Group adapter (III-C): after the feed-forward of every block, before the residual addition
  (Houlsby placement): h <- h + up(GELU(down(h))) per token group, hidden = dim / r; up-projections are
  zero-initialised so training starts from the pretrained ViT.

Deviations/choices (the paper has no code; its equations were lost in extraction):

* **Visual input = the dynamic image.** Section III-A: "we follow [32] to aggregate the sequence into a
  single RGB image by rank-pooling" and then patch-embeds "the calculated RGB image" (eq. 2); the
  "facial appearance RGB tokens" of the introduction are those patches. So the ViT sees the rank-pooled
  image (:func:`mernb.models.vit.dynamic_image_input`), not the apex frame. The official rank-pooling
  weights sum to zero and cancel the appearance the paper says the image keeps; ``dynamic_image=
  "rankpool_port"`` uses the widely copied Python port's weights (sum T), which keep it (issue 7).
* **Motion sequence = amplified band-passed motion only** (``motion_source="motion"``, default): eq. 7
  reconstructs the magnified filtered levels into "the motion sequence"
  (:func:`mernb.motion.magnify.motion_sequence` on the 16 sampled frames, fed unnormalised). Table X's
  text reads otherwise: alpha = 0 is "without motion magnification" (not "without motion") and a large
  alpha "damages the original ME sequence (textures, appearances)", which fits the magnified *video*
  (frames + motion, standard EVM output); ``motion_source="magnified"`` feeds that instead. With
  ``"motion"`` and alpha = 0 the prompts carry no motion (constant prompts, VPT-like).
* **Prompt tokens get no position/type embedding** (as in VPT); they are inserted after the class token
  once position embeddings are added to class and patch tokens (timm's ``_pos_embed``), before
  ``norm_pre`` (CLIP's pre-norm sees them too). Their Gaussian means already make them distinct.
* **Adapter branches are per-token bottlenecks.** The text also mentions "the average of the class,
  vision and motion tokens"; without the equations we read each branch as acting on every token of its
  group (the standard adapter), which also reproduces the paper's parameter counts (see below).
* Sizes of the prompt generator (conv patch 16, 128 channels) are ours, chosen so its parameters are
  ~0.2M and its cost ~0.3 GMACs, matching Tables V-VI (5.5M, 18.7 GFLOPs, motion prompt 0.2M).
* Parameter counts (ViT-B/16, 3 classes): MPT 5.56M (paper 5.5M), motion prompt only 0.22M (0.2M),
  group adapter without prompts 3.56M (two branches; paper 3.5M), primitive adapter + motion prompts
  2.00M (2.0M), VPT-deep with 50 prompts/layer + group adapter 5.80M (5.8M); VPT-shallow gives 5.38M with
  50 prompts vs the paper's 5.5M (the paper does not state its VPT prompt count).

Inputs: ``model({"image": (B,3,S,S), "motion": (B,T,C,S,S)})`` or ``model((image, motion))``; without
motion prompts a bare image tensor works too. ``prepare_input(clip, fps)`` builds both from a clip,
``example_input(batch)`` gives a random one (the :mod:`mernb.models.info` convention).
Used by ``notebooks/mpt/*`` (Tables I-XI, Figs. 4-9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from timm.models import checkpoint
from torch import nn

from mernb.errors import ConfigError
from mernb.models.backbones import create_backbone
from mernb.models.registry import register_model
from mernb.models.vit import (
    CLIP_B16,
    CLIP_B32,
    DYNAMIC_IMAGES,
    IN21K_B16,
    IN21K_B32,
    TINY_VIT,
    TINY_VIT_KWARGS,
    DynamicImageKind,
    backbone_data_config,
    dynamic_image_input,
)
from mernb.motion.magnify import magnify, magnify_params, motion_sequence

__all__ = [
    "MPT",
    "MotionPromptGenerator",
    "VisualPrompts",
    "Bottleneck",
    "GroupAdapter",
    "PAPER_SETTINGS",
]

PromptKind = Literal["motion", "vpt_shallow", "vpt_deep", "none"]
AdapterKind = Literal["group", "primitive", "none"]
FinetuneKind = Literal["frozen", "head", "full"]
MotionSource = Literal["motion", "magnified"]

# MPT section IV-A (SMIC/CASME II/SAMM, LOSO).
PAPER_SETTINGS: dict = dict(
    backbone=IN21K_B16,
    optimizer="adam",
    lr=3e-4,
    batch_size=16,
    img_size=224,
    num_frames=16,
    alpha=20.0,
    low=0.4,
    high=4.0,
    temporal_filter="butterworth band-pass",
    reduction=8,
    num_prompts=5,
    protocol="LOSO",
)


class MotionPromptGenerator(nn.Module):
    """Temporal Gaussian tokenization: motion sequence (B, T, C, H, W) -> K prompt tokens (B, K, D)."""

    def __init__(
        self,
        embed_dim: int,
        *,
        num_prompts: int = 5,
        num_frames: int = 16,
        in_chans: int = 3,
        motion_dim: int = 128,
        motion_patch: int = 16,
        min_var: float = 1e-4,
    ) -> None:
        super().__init__()
        self.num_prompts = num_prompts
        self.num_frames = num_frames
        self.min_var = min_var
        self.embed = nn.Conv2d(in_chans, motion_dim, kernel_size=motion_patch, stride=motion_patch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mean = nn.Linear(num_frames * motion_dim, num_prompts)
        self.var = nn.Linear(num_frames * motion_dim, num_prompts)
        self.proj = nn.Linear(motion_dim, embed_dim)
        self._init_kernels()

    @torch.no_grad()
    def _init_kernels(self) -> None:
        # start with K kernels spread over the clip, width ~ 1/K of its length
        if self.mean.weight.is_meta:
            return
        centres = torch.linspace(0.1, 0.9, self.num_prompts) if self.num_prompts > 1 else torch.tensor([0.5])
        self.mean.weight.mul_(0.01)
        self.mean.bias.copy_(torch.logit(centres))
        var0 = (1.0 / (2 * self.num_prompts)) ** 2
        self.var.weight.mul_(0.01)
        self.var.bias.fill_(math.log(math.expm1(var0)))

    def kernels(self, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame features (B, T, E) and the Gaussian means and variances (B, K) in normalised time."""
        b, t = motion.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"motion sequence has {t} frames; this model was built for num_frames={self.num_frames}")
        feats = self.pool(self.embed(motion.flatten(0, 1))).view(b, t, -1)
        flat = feats.flatten(1)
        mean = torch.sigmoid(self.mean(flat))
        var = F.softplus(self.var(flat)) + self.min_var
        return feats, mean, var

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        feats, mean, var = self.kernels(motion)
        t = torch.linspace(0.0, 1.0, feats.shape[1], device=feats.device, dtype=feats.dtype)
        logits = -((t.view(1, 1, -1) - mean.unsqueeze(-1)) ** 2) / (2 * var.unsqueeze(-1))
        weights = torch.softmax(logits, dim=-1)  # Gaussian normalised over time, (B, K, T)
        return self.proj(torch.einsum("bkt,bte->bke", weights, feats))


class VisualPrompts(nn.Module):
    """VPT prompts: (depth, N, D) learnable tokens, depth 1 (shallow) or one set per layer (deep)."""

    def __init__(self, embed_dim: int, num_prompts: int, depth: int, patch_dim: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(depth, num_prompts, embed_dim))
        if not self.tokens.is_meta:
            bound = math.sqrt(6.0 / float(patch_dim + embed_dim))  # VPT's xavier-uniform init
            nn.init.uniform_(self.tokens, -bound, bound)

    def forward(self, layer: int, batch: int) -> torch.Tensor:
        return self.tokens[layer].unsqueeze(0).expand(batch, -1, -1)


class Bottleneck(nn.Module):
    """Adapter branch: x + up(GELU(down(x))), up zero-initialised (identity at start)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class GroupAdapter(nn.Module):
    """Type-aware adapter: one bottleneck per token group (class, prompt, visual); 'primitive': one for all."""

    def __init__(self, dim: int, hidden: int, *, groups: Sequence[str] = ("cls", "prompt", "visual")) -> None:
        super().__init__()
        self.branches = nn.ModuleDict({g: Bottleneck(dim, hidden) for g in groups})

    def forward(self, x: torch.Tensor, num_prefix: int, num_prompts: int) -> torch.Tensor:
        if len(self.branches) == 1:
            return next(iter(self.branches.values()))(x)
        parts = {
            "cls": x[:, :num_prefix],
            "prompt": x[:, num_prefix : num_prefix + num_prompts],
            "visual": x[:, num_prefix + num_prompts :],
        }
        out = [self.branches[g](parts[g]) if g in self.branches else parts[g] for g in ("cls", "prompt", "visual")]
        return torch.cat(out, dim=1)


class MPT(nn.Module):
    """Motion Prompt Tuning on a timm ViT; every ablation of the paper is an option (module docstring)."""

    def __init__(
        self,
        backbone: str = IN21K_B16,
        *,
        num_classes: int = 3,
        img_size: int = 224,
        weights: str | Path | None = None,
        prompt: PromptKind = "motion",
        adapter: AdapterKind = "group",
        finetune: FinetuneKind = "frozen",
        num_prompts: int = 5,
        reduction: int = 8,
        num_frames: int = 16,
        in_chans: int = 3,
        motion_dim: int = 128,
        motion_patch: int = 16,
        alpha: float = 20.0,
        low: float = 0.4,
        high: float = 4.0,
        magnify: Mapping | None = None,
        motion_source: MotionSource = "motion",
        dynamic_image: DynamicImageKind = "rankpool",
        grad_checkpointing: bool = False,
        **backbone_kwargs,
    ) -> None:
        super().__init__()
        if prompt not in ("motion", "vpt_shallow", "vpt_deep", "none"):
            raise ConfigError(f"prompt must be 'motion', 'vpt_shallow', 'vpt_deep' or 'none', got {prompt!r}")
        if adapter not in ("group", "primitive", "none"):
            raise ConfigError(f"adapter must be 'group', 'primitive' or 'none', got {adapter!r}")
        if finetune not in ("frozen", "head", "full"):
            raise ConfigError(f"finetune must be 'frozen', 'head' or 'full', got {finetune!r}")
        if prompt != "none" and num_prompts < 1:
            raise ConfigError(f"num_prompts must be >= 1 with prompt={prompt!r} (use prompt='none' for none)")
        if motion_source not in ("motion", "magnified"):
            raise ConfigError(f"motion_source must be 'motion' or 'magnified', got {motion_source!r}")
        if dynamic_image not in DYNAMIC_IMAGES:
            raise ConfigError(f"dynamic_image must be one of {sorted(DYNAMIC_IMAGES)}, got {dynamic_image!r}")
        if reduction < 1 or num_classes < 1 or num_frames < 2:
            raise ConfigError("reduction and num_classes must be >= 1 and num_frames >= 2")
        self.prompt_kind = prompt
        self.adapter_kind = adapter
        self.finetune = finetune
        self.num_classes = num_classes
        self.img_size = img_size
        self.num_frames = num_frames
        self.in_chans = in_chans
        self.num_prompts = 0 if prompt == "none" else num_prompts
        self.magnify_settings = dict(alpha=alpha, low=low, high=high, **dict(magnify or {}))
        self.motion_source = motion_source
        self.dynamic_image = dynamic_image

        self.backbone = create_backbone(backbone, weights=weights, num_classes=0, img_size=img_size, **backbone_kwargs)
        blocks = list(self.backbone.blocks)
        for blk in blocks:
            if not all(hasattr(blk, a) for a in ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")):
                raise ConfigError(f"backbone {backbone!r}: MPT needs timm ViT pre-norm blocks, got {type(blk).__name__}")
        dim = self.backbone.embed_dim
        self.num_prefix = self.backbone.num_prefix_tokens
        patch = self.backbone.patch_embed.patch_size
        patch_dim = in_chans * patch[0] * patch[1]

        self.prompt_generator = (
            MotionPromptGenerator(
                dim, num_prompts=num_prompts, num_frames=num_frames, in_chans=in_chans,
                motion_dim=motion_dim, motion_patch=motion_patch,
            )
            if prompt == "motion" else None
        )
        self.vpt = (
            VisualPrompts(dim, num_prompts, len(blocks) if prompt == "vpt_deep" else 1, patch_dim)
            if prompt in ("vpt_shallow", "vpt_deep") else None
        )
        if adapter == "none":
            self.adapters = None
        else:
            groups = ("all",) if adapter == "primitive" else (
                ("cls", "prompt", "visual") if self.num_prompts else ("cls", "visual")
            )
            self.adapters = nn.ModuleList(GroupAdapter(dim, dim // reduction, groups=groups) for _ in blocks)
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        self.data_config = backbone_data_config(self.backbone, img_size)
        self._set_trainable()
        self.set_grad_checkpointing(grad_checkpointing)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch (kept on the backbone): in training, recompute each block's activations in backward."""
        self.backbone.set_grad_checkpointing(enable)

    @property
    def grad_checkpointing(self) -> bool:
        """Whether :meth:`set_grad_checkpointing` is on."""
        return bool(getattr(self.backbone, "grad_checkpointing", False))

    def _set_trainable(self) -> None:
        if self.finetune == "full":
            self.requires_grad_(True)
            return
        self.requires_grad_(False)
        self.head.requires_grad_(True)
        if self.finetune == "frozen":
            for module in (self.prompt_generator, self.vpt, self.adapters):
                if module is not None:
                    module.requires_grad_(True)

    # -- inputs -------------------------------------------------------------------------------------
    def _split_inputs(self, inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(inputs, Mapping):
            image, motion = inputs.get("image"), inputs.get("motion")
        elif isinstance(inputs, (tuple, list)):
            if len(inputs) != 2:
                raise ValueError("MPT input tuple must be (image, motion)")
            image, motion = inputs
        elif torch.is_tensor(inputs):
            image, motion = inputs, None
        else:
            raise TypeError(f"MPT input must be a dict, an (image, motion) tuple or an image tensor, got {type(inputs)}")
        if image is None or image.dim() != 4:
            raise ValueError("MPT needs an image batch (B, 3, H, W) under 'image'")
        if self.prompt_kind == "motion":
            if motion is None or motion.dim() != 5:
                raise ValueError("prompt='motion' needs a motion sequence batch (B, T, C, H, W) under 'motion'")
            if motion.shape[0] != image.shape[0]:
                raise ValueError(f"image batch {image.shape[0]} and motion batch {motion.shape[0]} differ")
        return image, motion

    def magnify_params(self, fps: float) -> dict:
        """Validated magnification settings at ``fps`` plus ``source`` (the clip cache key of the motion input)."""
        return magnify_params(fps, **self.magnify_settings) | {"source": self.motion_source}

    def prepare_input(self, clip: torch.Tensor | np.ndarray, fps: float) -> dict[str, torch.Tensor]:
        """One clip (uint8 (T,H,W,3) or float (T,3,H,W), T = num_frames) -> {'image', 'motion'} (no batch dim).

        ``fps`` is the frame rate of the given (already temporally sampled) frames. Motion is computed on
        the frames resized to ``img_size``; callers cache it keyed by :meth:`magnify_params`.
        """
        frames = torch.as_tensor(clip)
        if frames.dtype == torch.uint8:
            frames = frames.permute(0, 3, 1, 2).float() / 255.0
        if frames.dim() != 4 or frames.shape[0] != self.num_frames:
            raise ValueError(f"expected a clip of {self.num_frames} frames (T, 3, H, W), got {tuple(frames.shape)}")
        image = dynamic_image_input(
            frames, mean=self.data_config["mean"], std=self.data_config["std"], img_size=self.img_size,
            method=self.dynamic_image,
        )
        out = {"image": image}
        if self.prompt_kind == "motion":
            resized = F.interpolate(frames.float(), size=(self.img_size, self.img_size), mode="bilinear",
                                    align_corners=False, antialias=True)
            if self.motion_source == "motion":
                out["motion"] = motion_sequence(resized, fps, **self.magnify_settings)
            else:
                out["motion"] = magnify(resized, fps, **self.magnify_settings)
        return out

    def example_input(self, batch: int = 1, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Random inputs of the right shapes (used by ``mernb model info``)."""
        device = device if device is not None else next(self.parameters()).device
        s = self.img_size
        out = {"image": torch.randn(batch, 3, s, s, device=device)}
        if self.prompt_kind == "motion":
            out["motion"] = 0.1 * torch.randn(batch, self.num_frames, self.in_chans, s, s, device=device)
        return out

    # -- forward ------------------------------------------------------------------------------------
    def prompts(self, motion: torch.Tensor | None, layer: int, batch: int) -> torch.Tensor | None:
        """Prompt tokens (B, K, D) entering block ``layer`` (None: keep the previous ones / no prompts)."""
        if self.prompt_generator is not None:
            return self.prompt_generator(motion) if layer == 0 else None
        if self.vpt is not None and (layer == 0 or self.prompt_kind == "vpt_deep"):
            return self.vpt(layer, batch)
        return None

    def forward_features(self, inputs) -> torch.Tensor:
        """All output tokens (B, prefix + K + patches, D) after the final norm."""
        image, motion = self._split_inputs(inputs)
        bb = self.backbone
        x = bb.patch_embed(image)
        x = bb._pos_embed(x)
        x = bb.patch_drop(x)
        npre, k = self.num_prefix, self.num_prompts
        first = self.prompts(motion, 0, x.shape[0])
        if first is not None:
            x = torch.cat([x[:, :npre], first.to(x.dtype), x[:, npre:]], dim=1)
        x = bb.norm_pre(x)
        for i in range(len(bb.blocks)):
            if i > 0:
                deep = self.prompts(motion, i, x.shape[0])
                if deep is not None:
                    x = torch.cat([x[:, :npre], deep.to(x.dtype), x[:, npre + k :]], dim=1)
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = checkpoint(self.block, i, x)
            else:
                x = self.block(i, x)
        return bb.norm(x)

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Backbone block ``i`` with the group adapter after its feed-forward, before the residual addition."""
        blk = self.backbone.blocks[i]
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))
        h = blk.ls2(blk.mlp(blk.norm2(x)))
        if self.adapters is not None:
            h = self.adapters[i](h, self.num_prefix, self.num_prompts)
        return x + blk.drop_path2(h)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class-token features (B, D) or logits (B, num_classes)."""
        bb = self.backbone
        feats = bb.fc_norm(tokens[:, 0])
        feats = bb.head_drop(feats)
        return feats if pre_logits else self.head(feats)

    def forward(self, inputs) -> torch.Tensor:
        return self.forward_head(self.forward_features(inputs))


@register_model
def mpt_base_patch16(num_classes: int = 3, img_size: int = 224, **kwargs) -> MPT:
    """MPT paper model: ViT-B/16 ImageNet-21k (local checkpoint key ``vit_base_patch16_224.augreg_in21k``)."""
    kwargs.setdefault("weights", IN21K_B16)
    return MPT(IN21K_B16, num_classes=num_classes, img_size=img_size, **kwargs)


@register_model
def mpt_base_patch32(num_classes: int = 3, img_size: int = 224, **kwargs) -> MPT:
    """Table IX: ViT-B/32 ImageNet-21k backbone."""
    kwargs.setdefault("weights", IN21K_B32)
    return MPT(IN21K_B32, num_classes=num_classes, img_size=img_size, **kwargs)


@register_model
def mpt_clip_base_patch16(num_classes: int = 3, img_size: int = 224, **kwargs) -> MPT:
    """Table IX: CLIP ViT-B/16 image tower (OpenAI weights, local checkpoint)."""
    kwargs.setdefault("weights", CLIP_B16)
    return MPT(CLIP_B16, num_classes=num_classes, img_size=img_size, **kwargs)


@register_model
def mpt_clip_base_patch32(num_classes: int = 3, img_size: int = 224, **kwargs) -> MPT:
    """Table IX: CLIP ViT-B/32 image tower (OpenAI weights, local checkpoint)."""
    kwargs.setdefault("weights", CLIP_B32)
    return MPT(CLIP_B32, num_classes=num_classes, img_size=img_size, **kwargs)


@register_model
def mpt_test(num_classes: int = 3, img_size: int = 112, **kwargs) -> MPT:
    """Tiny random MPT for CPU: ViT depth 2, width 64, 112x112 input, 8 frames, motion features 16."""
    kwargs.setdefault("weights", None)
    kwargs.setdefault("num_frames", 8)
    kwargs.setdefault("motion_dim", 16)
    kwargs.setdefault("reduction", 8)
    for key, value in TINY_VIT_KWARGS.items():
        kwargs.setdefault(key, value)
    return MPT(TINY_VIT, num_classes=num_classes, img_size=img_size, **kwargs)
