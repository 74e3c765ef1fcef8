"""Models, timm-style: one class per method, a builder, named configs (including tiny ``*_test`` ones).

``create_model(name, **overrides)`` builds any registered config; ``list_models()`` lists them.
"""

from mernb.models.registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model"]
