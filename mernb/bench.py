"""``mernb bench CONFIG``: training-step and inference speed of a model config on the present device.

Measures, at a given batch size: step time (median of timed steps after warm-up), samples/s, peak memory,
the FLOPs of one training step (forward + backward as executed, counted with
torch's FLOP formulas (:func:`count_flops`), so frozen parts count only what really runs), achieved
FLOP/s, and on a GPU the utilisation against the device's dense bf16 peak (:data:`BF16_PEAK_TFLOPS`).
HLoRA configs can be timed on the cached path (``--kwargs '{"cached": true}'``: the LoRA blocks and HFM
on precomputed prefix tokens, as the recipe trains) or uncached (frames through the whole backbone).

Random weights (``weights=None``): speed does not depend on the values. Used by the CLI and by
``mernb.preflight`` (the GPU peak table); figures go to ``docs/benchmarks.md`` with device and date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from mernb.errors import ConfigError

#: Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by a name fragment of ``torch.cuda.get_device_name``
#: (vendor data sheets); the first matching fragment wins, so specific names come first.
BF16_PEAK_TFLOPS: dict[str, float] = {
    "GH200": 989.0, "H200": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H800": 989.0,
    "B200": 2250.0, "B100": 1750.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0,
    "A40": 150.0, "A30": 165.0, "A10G": 70.0, "A10": 125.0, "RTX 6000 Ada": 364.0, "RTX A6000": 155.0,
    "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0, "MI300X": 1307.0, "MI250X": 383.0,
}


def bf16_peak(name: str | None) -> float | None:
    """Dense bf16 peak in FLOP/s for a GPU name (e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"A100"``), else None.

    V100 and T4 have no bf16 units: their fp16 tensor peak is given (what autocast would use instead).
    """
    if not name:
        return None
    low = name.lower()
    for fragment, tflops in BF16_PEAK_TFLOPS.items():
        if fragment.lower() in low:
            return tflops * 1e12
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _to(x: Any, device: torch.device) -> Any:
    if torch.is_tensor(x):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _call(model: nn.Module, x: Any) -> torch.Tensor:
    """``model(x)``, with a dict carrying only ``tokens`` passed as keyword (HLoRA's cached path)."""
    if isinstance(x, Mapping) and set(x) == {"tokens"}:
        return model(tokens=x["tokens"])
    return model(x)


def bench_model(model: nn.Module, example: Any, *, batch_size: int, steps: int = 10, warmup: int = 2,
                device: str | torch.device | None = None, amp: bool = True,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """Time ``steps`` training steps (Adam on the trainable parameters) and inference passes of ``model``.

    ``example``: one batch of ``batch_size`` inputs (a tensor, or a dict of tensors). Returns a dict with
    ``train`` and ``infer`` sections (median step seconds, samples/s, FLOPs per step, achieved FLOP/s,
    utilisation of the bf16 peak on a GPU) and ``peak_memory_bytes``.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_amp = amp and device.type == "cuda"
    model = model.to(device)
    example = _to(example, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("the model has no trainable parameters: nothing to train")
    optimizer = torch.optim.Adam(trainable, lr=1e-4)
    loss_fn = loss_fn or nn.functional.cross_entropy
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else _null

    def train_step() -> None:
        with autocast():
            logits = _call(model, example)
            loss = loss_fn(logits.float(), torch.zeros(logits.shape[0], dtype=torch.long, device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.no_grad(), autocast():
            _call(model, example)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train_flops = count_flops(train_step)
    train_s = _time(train_step, steps, warmup, device)
    model.eval()
    infer_flops = count_flops(infer_step)
    infer_s = _time(infer_step, steps, warmup, device)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
    name = device_name(device)
    peak_flops = bf16_peak(name) if device.type == "cuda" else None

    def section(seconds: float, flops: int) -> dict[str, Any]:
        achieved = flops / seconds if seconds > 0 else None
        return {"step_s": seconds, "samples_per_s": batch_size / seconds if seconds > 0 else None,
                "flops_per_step": flops, "achieved_flops": achieved,
                "utilisation": achieved / peak_flops if (achieved and peak_flops) else None}

    return {
        "device": str(device), "device_name": name, "bf16_peak_flops": peak_flops, "amp_bf16": use_amp,
        "batch_size": batch_size, "steps": steps, "warmup": warmup,
        "params": sum(p.numel() for p in model.parameters()), "trainable_params": sum(p.numel() for p in trainable),
        "train": section(train_s, train_flops), "infer": section(infer_s, infer_flops),
        "peak_memory_bytes": int(peak),
        "peak_memory_kind": "CUDA max allocated" if device.type == "cuda" else "process peak RSS",
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _FlopCount(TorchDispatchMode):
    """Total FLOPs of the aten ops that run (torch's own formulas: matmuls, convolutions, attention).

    ``FlopCounterMode`` without its module tracker, which fails on modules returning a parameter view
    without a gradient function (MPT's VPT prompts) in training mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of everything ``step()`` runs (forward, and backward when it calls it). Used by ``mernb.preflight``."""
    with _FlopCount() as counter:
        step()
    return counter.total



def _time(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(max(0, warmup)):
        step()
    _sync(device)
    times = []
    for _ in range(max(1, steps)):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def bench_config(config: str, *, batch_size: int = 16, steps: int = 10, warmup: int = 2,
                 img_size: int | None = None, num_frames: int | None = None, num_classes: int = 5,
                 device: str | None = None, amp: bool = True, **kwargs: Any) -> dict[str, Any]:
    """:func:`bench_model` for a registered config built with random weights (``weights=None``).

    ``cached=True`` (HLoRA configs): train on prefix tokens computed once, as the recipe does.
    """
    from mernb.models import create_model

    cached = bool(kwargs.pop("cached", False))
    overrides: dict[str, Any] = {"num_classes": num_classes, "weights": None, **kwargs}
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_frames is not None:
        overrides["num_frames"] = num_frames
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch.device(dev):
        model = create_model(config, **overrides)
    example = model.example_input(batch=batch_size, device=dev)
    if cached:
        if not getattr(model, "prefix_frozen", False):
            raise ConfigError(f"{config} has no frozen prefix to cache (cached=True is for HLoRA configs)")
        with torch.no_grad(), (torch.autocast("cuda", dtype=torch.bfloat16) if amp and dev.type == "cuda" else _null()):
            example = {"tokens": model.prefix_features(example)}
    out = bench_model(model, example, batch_size=batch_size, steps=steps, warmup=warmup, device=dev, amp=amp)
    return {"config": config, "overrides": {k: v for k, v in overrides.items() if k != "weights"},
            "cached": cached, **out}


def _human(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def format_table(result: Mapping[str, Any]) -> str:
    """A readable summary of :func:`bench_config`'s result."""
    lines = [f"{result['config']}{' (cached prefix)' if result.get('cached') else ''} on {result['device_name']}, "
             f"batch {result['batch_size']}, {'bf16 autocast' if result['amp_bf16'] else 'float32'}, "
             f"{result['trainable_params']:,} of {result['params']:,} parameters trainable"]
    header = f"{'':<8}{'step':>12}{'samples/s':>12}{'FLOPs/step':>14}{'FLOP/s':>14}{'of bf16 peak':>14}"
    lines += [header, "-" * len(header)]
    for key in ("train", "infer"):
        s = result[key]
        util = f"{100 * s['utilisation']:.1f} %" if s["utilisation"] is not None else "-"
        lines.append(f"{key:<8}{s['step_s'] * 1e3:>9.1f} ms{s['samples_per_s']:>12.1f}{_human(s['flops_per_step']):>14}"
                     f"{_human(s['achieved_flops']):>14}{util:>14}")
    lines.append(f"peak memory: {_human(result['peak_memory_bytes'], 'B')} ({result['peak_memory_kind']}); "
                 f"{result['date_utc']}, torch {result['torch']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``mernb bench CONFIG [--batch-size N] [--steps N] [--kwargs JSON] [--device D] [--no-amp] [--json]``."""
    try:
        kwargs = json.loads(args.kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--kwargs is not valid JSON: {exc}") from None
    result = bench_config(args.config, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                          img_size=args.img_size, num_frames=args.num_frames, num_classes=args.num_classes,
                          device=args.device, amp=not args.no_amp, **kwargs)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
