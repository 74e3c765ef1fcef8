"""``mernb model info CONFIG``: parameters (total / trainable) per top-level module and MACs per sample.

Convention every registered model follows (vit.py, mpt.py, hlora.py, ...), so this works for any config:

* the builder accepts ``weights=None`` (build without a checkpoint: counts do not depend on weights);
* the model has ``example_input(batch=1, device=None)`` returning what ``forward`` takes as its single
  argument (a tensor, or a dict/tuple of tensors), e.g. ``model(model.example_input(1))``;
* trainability is set at construction (``requires_grad``), so "trainable" means what the optimizer gets.

By default the model is built on the ``meta`` device (no memory, no init cost: full-size ViT-B or
ViT-g count in seconds); MACs come from :class:`torch.utils.flop_counter.FlopCounterMode` on a batch of
one (MACs = FLOPs / 2, matmuls and convolutions, attention included). A model whose forward cannot run on
``meta`` is rebuilt on the CPU. Used by the MPT/HLoRA efficiency tables (paper Table V) and the CLI.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mernb.errors import ConfigError
from mernb.models.registry import create_model

__all__ = ["model_info", "count_macs", "format_table", "main"]


def _example(model: nn.Module, input_example: Any, device: torch.device | None) -> Any:
    if input_example is not None:
        return input_example
    make = getattr(model, "example_input", None)
    if make is None:
        raise ConfigError(
            f"{type(model).__name__} has no example_input(batch); pass input_example= (see mernb.models.info)"
        )
    return make(batch=1, device=device)


def _describe(example: Any) -> Any:
    if torch.is_tensor(example):
        return list(example.shape)
    if isinstance(example, Mapping):
        return {k: _describe(v) for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return [_describe(v) for v in example]
    return type(example).__name__


def count_macs(model: nn.Module, example: Any) -> tuple[int, dict[str, int]]:
    """Total MACs of ``model(example)`` and MACs per top-level child (ops outside children: '(other)')."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    total = counter.get_total_flops()
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    per_child: dict[str, int] = {}
    for child, _ in model.named_children():
        prefix = f"{root}.{child}"
        keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
        # outermost called modules only (a parent's count already includes its children's)
        outer = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
        per_child[child] = sum(counts[k] for k in outer) // 2
    per_child["(other)"] = max(0, total // 2 - sum(per_child.values()))
    return total // 2, per_child


def model_info(
    model_or_config: nn.Module | str,
    input_example: Any = None,
    *,
    macs: bool = True,
    device: str | torch.device = "meta",
    **overrides,
) -> dict:
    """Parameter counts per top-level module (total, trainable) and MACs per sample (batch 1).

    ``model_or_config`` is a model or a registered config name (built with ``weights=None`` and
    ``overrides`` on ``device``, 'meta' by default, falling back to CPU if its forward fails on meta).
    """
    config = model_or_config if isinstance(model_or_config, str) else None
    if config is not None:
        overrides.setdefault("weights", None)
        with torch.device(device):
            model = create_model(config, **overrides)
    else:
        model = model_or_config
    params = list(model.parameters())
    seen: set[int] = set()
    rows = []
    for name, child in model.named_children():
        child_params = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in child_params)
        rows.append(dict(
            name=name,
            params=sum(p.numel() for p in child_params),
            trainable=sum(p.numel() for p in child_params if p.requires_grad),
        ))
    own = [p for p in params if id(p) not in seen]
    if own:
        rows.append(dict(name="(own)", params=sum(p.numel() for p in own),
                         trainable=sum(p.numel() for p in own if p.requires_grad)))
    info: dict[str, Any] = dict(
        config=config or type(model).__name__,
        model_class=type(model).__name__,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        modules=rows,
        macs=None,
        input=None,
    )
    if hasattr(model, "parameter_groups"):  # e.g. HLoRA-MER: LoRA / HFM / head / frozen counts
        info["groups"] = {k: int(v) for k, v in model.parameter_groups().items()}
    if macs:
        dev = params[0].device if params else torch.device("cpu")
        example = _example(model, input_example, dev)
        try:
            total, per_child = count_macs(model, example)
        except (NotImplementedError, RuntimeError) as exc:
            if config is None or dev.type != "meta":
                raise
            return model_info(config, None, macs=True, device="cpu", **overrides) | {"meta_fallback": str(exc)[:200]}
        info["macs"] = total
        info["input"] = _describe(example)
        for row in rows:
            row["macs"] = per_child.get(row["name"], 0)
        if per_child.get("(other)"):
            rows.append(dict(name="(other ops)", params=0, trainable=0, macs=per_child["(other)"]))
    return info


def _human(n: int | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def format_table(info: dict) -> str:
    """A readable table of :func:`model_info`'s result."""
    lines = [f"{info['config']} ({info['model_class']})"]
    if info.get("input") is not None:
        lines.append(f"input (batch 1): {json.dumps(info['input'])}")
    header = f"{'module':<22}{'params':>12}{'trainable':>12}{'MACs':>12}"
    lines += [header, "-" * len(header)]
    for row in info["modules"]:
        lines.append(f"{row['name']:<22}{_human(row['params']):>12}{_human(row['trainable']):>12}{_human(row.get('macs')):>12}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<22}{_human(info['total_params']):>12}{_human(info['trainable_params']):>12}{_human(info['macs']):>12}")
    if info.get("groups"):
        lines.append("groups: " + ", ".join(f"{k} {v:,}" for k, v in info["groups"].items()))
    lines.append(
        f"trainable {info['trainable_params']:,} of {info['total_params']:,} parameters"
        + (f"; {info['macs'] / 1e9:.2f} GMACs per sample" if info["macs"] is not None else "")
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``mernb model info CONFIG [--json] [--no-macs]``."""
    info = model_info(args.config, macs=not getattr(args, "no_macs", False))
    print(json.dumps(info, indent=2) if getattr(args, "json", False) else format_table(info))
    return 0
