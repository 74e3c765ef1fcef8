"""Registry of named model configs (``mpt_base_patch16``, ``mpt_test``, ``hlora_vitg14``, ...).

A model module registers builder functions with ``@register_model``; the registry imports the model
modules lazily so ``create_model`` works without importing them by hand. Used by every training
notebook and by ``mernb model info``.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable

from torch import nn

from mernb.errors import ConfigError

# Modules that register models; imported on first use.
MODEL_MODULES = ("mernb.models.vit", "mernb.models.mpt", "mernb.models.hlora", "mernb.models.ma2mi")

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_loaded = False


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its own name as a model config."""
    if fn.__name__ in _BUILDERS and _BUILDERS[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _BUILDERS[fn.__name__] = fn
    return fn


def _load_modules() -> None:
    global _loaded
    if _loaded:
        return
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency, not a model module not written yet
                raise
    _loaded = True


def list_models(pattern: str = "*") -> list[str]:
    """Registered config names matching a shell-style pattern."""
    _load_modules()
    return sorted(name for name in _BUILDERS if fnmatch.fnmatch(name, pattern))


def model_entry(name: str) -> Callable[..., nn.Module]:
    """The builder function of a config name (clear error listing the known names)."""
    _load_modules()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model config {name!r}; known: {', '.join(sorted(_BUILDERS)) or 'none'}")
    return _BUILDERS[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build the model of a registered config, with keyword overrides (e.g. ``num_classes=3``)."""
    return model_entry(name)(**overrides)
