"""Full-precision regions inside mixed-precision (autocast) models.

Differences of nearly equal activations (HLoRA-MER's IFFA edge features ``W(F_i - F_j)``, MA2MI's
frame difference) lose most of their significant bits in bfloat16: at a 1 % frame-to-frame change the
IFFA output was off by 14 % (issue 7). :func:`fp32_region` switches autocast off for a block of code and
:func:`fp32_forward` does it for a module's ``forward``, casting floating-point tensor arguments to
float32, so the backbone keeps running in bf16 while the small fusion modules run in fp32.

Used by :mod:`mernb.models.hlora` (the HFM of every HLoRA-MER notebook); meant for MA2MI's frame
difference as well.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["fp32_region", "fp32_forward", "to_fp32"]

F = TypeVar("F", bound=Callable[..., Any])


def _autocast_device_types() -> list[str]:
    types = ["cpu"]
    if torch.cuda.is_available():
        types.append("cuda")
    return types


@contextlib.contextmanager
def fp32_region() -> Iterator[None]:
    """Disable autocast (CPU and, when present, CUDA) inside the block; outside it nothing changes.

    Tensors created by the block's own ops are float32 when their inputs are; cast bf16/fp16 inputs with
    :func:`to_fp32` first (autocast off does not cast them).
    """
    with contextlib.ExitStack() as stack:
        for device_type in _autocast_device_types():
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield


def to_fp32(value: Any) -> Any:
    """``value`` with every floating-point tensor (also inside tuples, lists and dicts) cast to float32."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float64 else value
    if isinstance(value, tuple):
        return tuple(to_fp32(v) for v in value)
    if isinstance(value, list):
        return [to_fp32(v) for v in value]
    if isinstance(value, dict):
        return {k: to_fp32(v) for k, v in value.items()}
    return value


def fp32_forward(fn: F) -> F:
    """Decorator for a ``forward``: run it in :func:`fp32_region` on float32 copies of its tensor arguments."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fp32_region():
            return fn(*to_fp32(args), **to_fp32(kwargs))

    return wrapper  # type: ignore[return-value]
