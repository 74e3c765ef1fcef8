"""Baseline ViT classifiers on the dynamic (rank-pooled) image: MPT Table VI, rows 1-3.

* ``vit_b16_scratch``  - "w/o pretraining": ViT-B/16, random init, every parameter trains.
* ``vit_b16_full``     - "full fine-tuning": ViT-B/16 from a local ImageNet-21k checkpoint, all trainable.
* ``vit_b16_partial``  - "partial fine-tuning": same weights, only the classification head trains.
* ``vit_test``         - tiny random ViT (depth 2, width 64, 112x112) for CPU smoke runs and tests.

The model's input is the clip's dynamic image (:mod:`mernb.motion.rankpool`), rescaled to RGB in
[0, 1] and normalised with the backbone's mean/std: :func:`dynamic_image_input` (or the model's
``prepare_input``) turns a clip into it. ``dynamic_image="rankpool"`` (default: the official zero-sum
weights, motion only) or ``"rankpool_port"`` (the Python port's weights, which keep the appearance). Each model exposes ``data_config`` (mean, std, input size) and
``example_input(batch)`` (the convention :mod:`mernb.models.info` relies on).

Weights come only from local files (``weights=`` a file or a ``weights:`` key of the user config,
see :func:`mernb.models.backbones.create_backbone`). Used by ``notebooks/mpt/table6`` and the MPT
Grad-CAM / t-SNE figures (baseline rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mernb.errors import ConfigError
from mernb.models.backbones import create_backbone
from mernb.models.registry import register_model
from mernb.motion.rankpool import RankPoolVariant, dynamic_image

__all__ = ["DynamicImageViT", "dynamic_image_input", "DYNAMIC_IMAGES", "IN21K_B16", "IN21K_B32", "CLIP_B16", "CLIP_B32"]

# timm names with pretrained tag; the same string is the default ``weights:`` key of the user config.
IN21K_B16 = "vit_base_patch16_224.augreg_in21k"
IN21K_B32 = "vit_base_patch32_224.augreg_in21k"
CLIP_B16 = "vit_base_patch16_clip_224.openai"
CLIP_B32 = "vit_base_patch32_clip_224.openai"
# A tiny ViT for CPU: timm's ViT-Ti/16 layout shrunk (kwargs override depth/width/heads).
TINY_VIT = "vit_tiny_patch16_224"
TINY_VIT_KWARGS = dict(depth=2, embed_dim=64, num_heads=2)

Finetune = Literal["full", "head"]
DynamicImageKind = Literal["rankpool", "rankpool_port"]
# model option -> rank-pooling weights (mernb.motion.rankpool)
DYNAMIC_IMAGES: dict[str, RankPoolVariant] = {"rankpool": "official", "rankpool_port": "port"}


def check_dynamic_image(method: str) -> RankPoolVariant:
    """The rank-pooling variant of a ``dynamic_image`` option; ValueError for an unknown one."""
    if method not in DYNAMIC_IMAGES:
        raise ValueError(f"dynamic_image must be one of {sorted(DYNAMIC_IMAGES)}, got {method!r}")
    return DYNAMIC_IMAGES[method]


def dynamic_image_input(
    clip: torch.Tensor | np.ndarray,
    *,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    img_size: int | None = None,
    method: DynamicImageKind = "rankpool",
) -> torch.Tensor:
    """Model input from a clip: dynamic image -> per-channel min-max to [0, 1] -> resize -> normalise.

    ``clip`` is uint8 (T, H, W, 3) (frames as read from disk) or float (..., T, 3, H, W) in [0, 1].
    Returns float32 (3, S, S) (or (..., 3, S, S) for batched float input); ``img_size`` None keeps H x W.
    ``method``: "rankpool" (official weights) or "rankpool_port" (keeps appearance), see ``DYNAMIC_IMAGES``.
    """
    variant = check_dynamic_image(method)
    frames = torch.as_tensor(clip)
    if frames.dtype == torch.uint8:
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 clips must be (T, H, W, 3), got {tuple(frames.shape)}")
        frames = frames.permute(0, 3, 1, 2).float() / 255.0
    elif not frames.is_floating_point():
        raise TypeError(f"clip must be uint8 (T,H,W,3) or float (T,3,H,W), got dtype {frames.dtype}")
    if frames.dim() < 4 or frames.shape[-3] != 3:
        raise ValueError(f"float clips must be (..., T, 3, H, W), got {tuple(frames.shape)}")
    image = dynamic_image(frames.float(), variant)
    if img_size is not None and tuple(image.shape[-2:]) != (img_size, img_size):
        lead = image.shape[:-3]
        image = F.interpolate(
            image.reshape(-1, *image.shape[-3:]), size=(img_size, img_size), mode="bilinear",
            align_corners=False, antialias=True,
        ).reshape(*lead, 3, img_size, img_size)
    m = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return (image - m) / s


def backbone_data_config(backbone: nn.Module, img_size: int) -> dict:
    """mean, std and input size of a timm backbone (from its pretrained config)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return dict(
        mean=tuple(cfg.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(cfg.get("std", (0.5, 0.5, 0.5))),
        input_size=(3, img_size, img_size),
    )


class DynamicImageViT(nn.Module):
    """A timm ViT (features only) plus a linear head, applied to the normalised dynamic image (B, 3, S, S)."""

    def __init__(
        self,
        backbone: str = IN21K_B16,
        *,
        num_classes: int = 3,
        img_size: int = 224,
        weights: str | Path | None = None,
        finetune: Finetune = "full",
        dynamic_image: DynamicImageKind = "rankpool",
        **backbone_kwargs,
    ) -> None:
        super().__init__()
        if finetune not in ("full", "head"):
            raise ConfigError(f"finetune must be 'full' or 'head', got {finetune!r}")
        if dynamic_image not in DYNAMIC_IMAGES:
            raise ConfigError(f"dynamic_image must be one of {sorted(DYNAMIC_IMAGES)}, got {dynamic_image!r}")
        self.dynamic_image = dynamic_image
        if num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        self.backbone = create_backbone(backbone, weights=weights, num_classes=0, img_size=img_size, **backbone_kwargs)
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        self.num_classes = num_classes
        self.img_size = img_size
        self.finetune = finetune
        self.data_config = backbone_data_config(self.backbone, img_size)
        if finetune == "head":
            self.backbone.requires_grad_(False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled (class-token) features (B, D)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def prepare_input(self, clip: torch.Tensor | np.ndarray) -> torch.Tensor:
        """One clip -> (3, S, S) input with this backbone's mean/std and size."""
        return dynamic_image_input(
            clip, mean=self.data_config["mean"], std=self.data_config["std"], img_size=self.img_size,
            method=self.dynamic_image,
        )

    def example_input(self, batch: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
        """A random input batch of the right shape (used by ``mernb model info``)."""
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(batch, 3, self.img_size, self.img_size, device=device)


@register_model
def vit_b16_scratch(num_classes: int = 3, img_size: int = 224, **kwargs) -> DynamicImageViT:
    """Table VI 'w/o pretraining': ViT-B/16, random init, all parameters train."""
    kwargs.setdefault("weights", None)
    return DynamicImageViT("vit_base_patch16_224", num_classes=num_classes, img_size=img_size, finetune="full", **kwargs)


@register_model
def vit_b16_full(num_classes: int = 3, img_size: int = 224, **kwargs) -> DynamicImageViT:
    """Table VI 'full fine-tuning': ViT-B/16 ImageNet-21k (local checkpoint), all parameters train."""
    kwargs.setdefault("weights", IN21K_B16)
    return DynamicImageViT(IN21K_B16, num_classes=num_classes, img_size=img_size, finetune="full", **kwargs)


@register_model
def vit_b16_partial(num_classes: int = 3, img_size: int = 224, **kwargs) -> DynamicImageViT:
    """Table VI 'partial fine-tuning': ViT-B/16 ImageNet-21k (local checkpoint), only the head trains."""
    kwargs.setdefault("weights", IN21K_B16)
    return DynamicImageViT(IN21K_B16, num_classes=num_classes, img_size=img_size, finetune="head", **kwargs)


@register_model
def vit_test(num_classes: int = 3, img_size: int = 112, **kwargs) -> DynamicImageViT:
    """Tiny random ViT (depth 2, width 64, patch 16) for CPU smoke runs; ``finetune`` 'full' by default."""
    kwargs.setdefault("weights", None)
    kwargs.setdefault("finetune", "full")
    for key, value in TINY_VIT_KWARGS.items():
        kwargs.setdefault(key, value)
    return DynamicImageViT(TINY_VIT, num_classes=num_classes, img_size=img_size, **kwargs)
