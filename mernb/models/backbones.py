"""timm backbone factory with pretrained weights from a local file only, loaded strictly.

Used by the MPT, HLoRA-MER and baseline-ViT models (and so by their notebooks).
"""

from __future__ import annotations

from pathlib import Path

import timm
from torch import nn

from mernb.config import load_config
from mernb.errors import ConfigError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".npz")


def resolve_weights(weights: str | Path | None) -> Path | None:
    """A checkpoint path: a file path as is, or a key of ``weights:`` in the user config."""
    if weights is None or weights == "":
        return None
    candidate = Path(str(weights)).expanduser()
    if candidate.suffix in WEIGHT_SUFFIXES or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"checkpoint file {str(candidate)!r} does not exist (mernb never downloads weights)")
        return candidate
    return load_config().weight(str(weights))


def create_backbone(name: str, *, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with weights from a local checkpoint, or random init.

    ``weights`` is a file or a user-config key. timm's own checkpoint filter adapts the file to the
    model (e.g. resampling position embeddings for another ``img_size``); any other key mismatch fails.
    A classifier head whose size differs from ``num_classes`` is re-initialised (timm's rule).
    """
    path = resolve_weights(weights)
    if path is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except RuntimeError as exc:  # strict load_state_dict mismatch
        raise ConfigError(f"checkpoint {path} does not fit timm model {name!r}: {exc}") from exc
