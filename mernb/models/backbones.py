"""timm backbone factory with pretrained weights from a local file only, loaded strictly.

Used by the MPT, HLoRA-MER and baseline-ViT models (and so by their notebooks).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from mernb.config import load_config
from mernb.errors import ConfigError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".npz")
WRAPPER_KEYS = ("state_dict", "model", "module", "model_ema")


def resolve_weights(weights: str | Path | None) -> Path | None:
    """A checkpoint path: a file path as is, or a key of ``weights:`` in the user config."""
    if weights is None or weights == "":
        return None
    from mernb.paths import project_path

    candidate = project_path(str(weights))  # a relative file is relative to the project root
    if candidate.suffix in WEIGHT_SUFFIXES or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"checkpoint file {str(candidate)!r} does not exist (mernb never downloads weights)")
        return candidate
    return load_config().weight(str(weights))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pth/.pt/.bin/.safetensors checkpoint, unwrapped from {'model': ...}-style containers."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise ConfigError(f"checkpoint {path} cannot be read as a torch state dict: {exc}") from exc
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {path} holds no state dict of tensors")
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load ``path`` into a timm ``model`` strictly (only the classifier may differ or be absent).

    The model family's own ``checkpoint_filter_fn`` adapts official checkpoints (e.g. resamples position
    embeddings for another ``img_size``, converts original DINOv2/CLIP layouts). JAX ``.npz`` files go
    through timm's ``load_pretrained``. Any other missing or unexpected key is an error.
    """
    if path.suffix == ".npz":
        if not hasattr(model, "load_pretrained"):
            raise ConfigError(f"{path}: .npz checkpoints are supported for timm ViTs only")
        model.load_pretrained(str(path))
        return
    state = read_state_dict(path)
    module = importlib.import_module(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head")
    classifiers = classifier if isinstance(classifier, (list, tuple)) else [classifier]

    def is_classifier(key: str) -> bool:
        return any(key == c or key.startswith(c + ".") for c in classifiers)

    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (is_classifier(k) and (k not in own or own[k].shape != v.shape))}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not is_classifier(k)]
    unexpected = [k for k in result.unexpected_keys if not is_classifier(k)]
    if missing or unexpected:
        raise ConfigError(
            f"checkpoint {path} does not fit {type(model).__name__}: "
            f"missing {missing[:8]}{' …' if len(missing) > 8 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:8]}{' …' if len(unexpected) > 8 else ''} ({len(unexpected)})"
        )


def create_backbone(name: str, *, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with weights from a local checkpoint, or random init.

    ``weights`` is a file or a user-config key; see :func:`load_backbone_weights` for what "strict"
    means. A classifier head whose size differs from ``num_classes`` (or absent with ``num_classes=0``)
    is left as built.
    """
    path = resolve_weights(weights)
    model = timm.create_model(name, pretrained=False, **kwargs)
    if path is not None:
        try:
            load_backbone_weights(model, path)
        except RuntimeError as exc:  # shape mismatch inside load_state_dict
            raise ConfigError(f"checkpoint {path} does not fit timm model {name!r}: {exc}") from exc
    return model
