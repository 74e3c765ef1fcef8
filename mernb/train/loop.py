"""The one epoch loop every method trains with, and batched prediction.

Batches are ``(inputs, label, index)``: ``inputs`` is a tensor, a tuple/list of tensors (passed as
positional arguments) or a dict of tensors (keyword arguments); ``index`` is the sample's position in
the dataset's sample list. Models return logits, or a tuple/list whose first item is the logits, or a
dict with a ``"logits"`` key. The schedule is fixed (a number of epochs): nothing here looks at
held-out data.

Used by ``TorchExperiment`` (``mernb.train.loso``) and so by every MPT / HLoRA / MA2MI notebook.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mernb.errors import ConfigError
from mernb.train.runtime import amp_context, amp_enabled, pick_device

Batch = tuple[Any, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings: ``name`` in adam / adamw / sgd (``momentum``/``nesterov`` for SGD only)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    nesterov: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "betas": list(self.betas)}


@dataclass(frozen=True)
class SchedulerConfig:
    """Per-epoch learning-rate schedule: ``name`` in none / cosine / step, after ``warmup_epochs`` of linear warm-up.

    Cosine decays from ``lr`` to ``lr * min_lr_ratio`` over the epochs after warm-up; step multiplies
    by ``gamma`` every ``step_size`` epochs after warm-up.
    """

    name: str = "none"
    warmup_epochs: int = 0
    step_size: int = 30
    gamma: float = 0.1
    min_lr_ratio: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config`` over ``params``."""
    params = list(params)
    name = config.name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    raise ConfigError(f"unknown optimizer {config.name!r}; use adam, adamw or sgd")


def lr_factor(epoch: int, epochs: int, config: SchedulerConfig) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based) of ``epochs``."""
    warm = config.warmup_epochs
    if epoch < warm:
        return (epoch + 1) / (warm + 1)
    name = config.name.lower()
    if name == "none":
        return 1.0
    if name == "cosine":
        span = max(1, epochs - warm)
        cos = 0.5 * (1.0 + math.cos(math.pi * (epoch - warm) / span))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cos
    if name == "step":
        return config.gamma ** ((epoch - warm) // max(1, config.step_size))
    raise ConfigError(f"unknown scheduler {config.name!r}; use none, cosine or step")


def as_scheduler_config(scheduler: SchedulerConfig | str | None) -> SchedulerConfig:
    """Accept ``None``, a name (``"cosine"``) or a ``SchedulerConfig``."""
    if scheduler is None:
        return SchedulerConfig()
    if isinstance(scheduler, str):
        return SchedulerConfig(name=scheduler)
    return scheduler


def to_device(inputs: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """Move a tensor, or the tensors in a (nested) tuple/list/dict, to ``device``; other values pass through."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=non_blocking)
    if isinstance(inputs, Mapping):
        return {key: to_device(value, device, non_blocking) for key, value in inputs.items()}
    if isinstance(inputs, tuple | list):
        return type(inputs)(to_device(value, device, non_blocking) for value in inputs)
    return inputs


def forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Call ``model`` on a tensor / tuple / dict of inputs and return its logits."""
    if isinstance(inputs, Mapping):
        output = model(**inputs)
    elif isinstance(inputs, tuple | list):
        output = model(*inputs)
    else:
        output = model(inputs)
    if isinstance(output, Mapping):
        if "logits" not in output:
            raise ConfigError(f"model returned a dict without 'logits' (keys {sorted(output)})")
        return output["logits"]
    if isinstance(output, tuple | list):
        return output[0]
    return output


def _unpack(batch: Sequence[Any]) -> Batch:
    if not isinstance(batch, tuple | list) or len(batch) != 3:
        raise ConfigError("batches must be (inputs, label, index); check the dataset's __getitem__")
    return batch[0], batch[1], batch[2]


def train_model(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    optimizer: OptimConfig | None = None,
    scheduler: SchedulerConfig | str | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    amp_dtype: torch.dtype = torch.bfloat16,
    grad_clip: float | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    desc: str = "train",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for exactly ``epochs`` epochs; returns one record per epoch.

    Only parameters with ``requires_grad`` are optimised (frozen backbones stay frozen). Mixed precision
    (``amp_dtype``; float16 adds a gradient scaler) is used on CUDA only. ``grad_clip`` clips the global
    gradient norm. Each record has ``epoch`` (1-based), ``loss`` and ``acc`` (running, on the training
    batches), ``steps`` (optimiser steps in the epoch), ``lr`` and ``seconds``; ``on_epoch_end(epoch, record)`` is called after each epoch.
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    device = pick_device(device)
    optimizer = optimizer or OptimConfig()
    sched = as_scheduler_config(scheduler)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("the model has no parameters with requires_grad=True; nothing to train")
    opt = build_optimizer(trainable, optimizer)
    # per-epoch schedule through torch's LambdaLR (stepped after each epoch): lr = base lr × lr_factor(epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, epochs, sched))
    use_amp = amp_enabled(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    history: list[dict[str, float]] = []
    epoch_bar = tqdm(range(epochs), desc=desc, leave=False, disable=not progress, unit="ep")
    for epoch in epoch_bar:
        lr = opt.param_groups[0]["lr"]
        model.train()
        start = time.perf_counter()
        # running sums stay on the device: no host sync per step (one per epoch)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        seen, steps = 0, 0
        batch_bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                         disable=not progress, unit="batch")
        for batch in batch_bar:
            inputs, labels, _ = _unpack(batch)
            inputs = to_device(inputs, device)
            labels = labels.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with amp_context(device, amp_dtype, enabled=use_amp):
                logits = forward(model, inputs)
                loss = loss_fn(logits, labels)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(trainable, grad_clip)
            scaler.step(opt)
            scaler.update()
            steps += 1
            n = labels.shape[0]
            loss_sum += loss.detach().float() * n
            if labels.dim() == 1:
                correct += (logits.detach().argmax(dim=1) == labels).sum()
            seen += n
        if not torch.isfinite(loss_sum):
            raise FloatingPointError(f"the loss became {float(loss_sum)} in epoch {epoch + 1}; lower the lr or check inputs")
        record = {
            "epoch": epoch + 1,
            "steps": steps,
            "loss": float(loss_sum) / max(1, seen),
            "acc": int(correct) / max(1, seen),
            "lr": lr,
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        schedule.step()
        epoch_bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['acc']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
    return history


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device | str | None = None,
    *,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.bfloat16,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N x C) and sample indices (int64, N) in ascending index order, whatever the loader order.

    Labels in the batches are ignored (held-out batches may carry -1).
    """
    device = pick_device(device)
    model.to(device)
    model.eval()
    all_logits: list[np.ndarray] = []
    all_index: list[np.ndarray] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        inputs, _, index = _unpack(batch)
        with amp_context(device, amp_dtype, enabled=amp):
            logits = forward(model, to_device(inputs, device))
        all_logits.append(logits.float().cpu().numpy())
        all_index.append(torch.as_tensor(index).reshape(-1).cpu().numpy().astype(np.int64))
    if not all_logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    logits_np = np.concatenate(all_logits).astype(np.float32)
    index_np = np.concatenate(all_index)
    order = np.argsort(index_np, kind="stable")
    return logits_np[order], index_np[order]

