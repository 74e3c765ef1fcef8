"""Self-supervised pre-training loop with a checkpoint after every epoch and exact resume.

``pretrain(model, make_dataset, out_dir=..., epochs=...)`` trains a model whose ``forward(**batch)`` returns a
dict with a ``"loss"`` (e.g. :class:`mernb.models.ma2mi.MA2MIPretrainer`), with AdamW and a per-epoch
exponential learning-rate decay (lr · gamma^epoch). After each epoch ``<out_dir>/last.pt`` holds the model
(without frozen parts: ``trainable_state_dict()`` when the model has it), the optimizer state and the
history; a killed run restarts from the epoch after it. Every epoch re-seeds the global RNGs and the
data order from ``(seed, epoch)``, so a resumed run gives the same weights as an uninterrupted one (bit for
bit on the CPU). At the end ``<out_dir>/final.pt`` (model state) and ``history.json`` are written.

Used by :mod:`mernb.experiments.ma2mi` (MA2MI pre-training runs shared by the ``notebooks/ma2mi/*`` tables).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mernb.errors import ConfigError
from mernb.train.loop import OptimConfig, build_optimizer, to_device
from mernb.train.runtime import amp_context, amp_enabled, make_generator, pick_device, seed_worker, set_seed

__all__ = ["pretrain", "model_state", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch (global RNGs and data order)."""
    return seed * 100_003 + epoch


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint holds: ``trainable_state_dict()`` if the model defines it, else ``state_dict()``."""
    fn = getattr(model, "trainable_state_dict", None)
    state = fn() if fn is not None else model.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _save(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def pretrain(
    model: nn.Module,
    make_dataset: Callable[[int], Dataset],
    *,
    out_dir: str | Path,
    epochs: int,
    batch_size: int = 32,
    optimizer: OptimConfig | None = None,
    lr_gamma: float = 1.0,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    amp_dtype: torch.dtype = torch.bfloat16,
    grad_clip: float | None = None,
    num_workers: int = 0,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` epochs (resuming from ``out_dir/last.pt``); returns the history.

    ``make_dataset(epoch)`` gives the epoch's dataset of ``dict`` items (e.g. freshly drawn frame pairs);
    ``config`` is stored with the checkpoint and must match on resume (else the run starts over).
    Each history record: epoch, loss and the mean of every other loss term, lr, seconds, items per second.
    """
    if epochs < 1:
        raise ConfigError("pre-training needs epochs >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(device)
    optimizer = optimizer or OptimConfig(name="adamw", lr=4e-4)
    config = json.loads(json.dumps(config or {}, default=str))
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(trainable, optimizer)
    base_lr = optimizer.lr
    history: list[dict[str, float]] = []
    start_epoch = 0
    last = out_dir / "last.pt"
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        if ckpt.get("config") == config:
            expected, saved = set(model_state(model)), set(ckpt["model"])
            if expected != saved:
                raise ConfigError(f"{last} does not fit the model: missing {sorted(expected - saved)[:6]}, "
                                  f"unexpected {sorted(saved - expected)[:6]}")
            model.load_state_dict(ckpt["model"], strict=False)
            opt.load_state_dict(ckpt["optimizer"])
            history = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"])
    use_amp = amp_enabled(device, amp)
    for epoch in range(start_epoch, epochs):
        for group in opt.param_groups:
            group["lr"] = base_lr * lr_gamma ** epoch
        set_seed(epoch_seed(seed, epoch))
        loader = DataLoader(make_dataset(epoch), batch_size=batch_size, shuffle=True, drop_last=False,
                            num_workers=num_workers, generator=make_generator(epoch_seed(seed, epoch)),
                            worker_init_fn=seed_worker, pin_memory=device.type == "cuda")
        model.train()
        sums: dict[str, float] = {}
        seen = 0
        start = time.perf_counter()
        for batch in tqdm(loader, desc=f"pre-train {epoch + 1}/{epochs}", leave=False, disable=not progress):
            batch = to_device(batch, device)
            opt.zero_grad(set_to_none=True)
            with amp_context(device, amp_dtype, enabled=use_amp):
                out = model(**batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pre-training loss became {loss.item()} in epoch {epoch + 1}")
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(trainable, grad_clip)
            opt.step()
            n = next(iter(batch.values())).shape[0]
            seen += n
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, **{k: v / max(1, seen) for k, v in sums.items()},
                  "lr": base_lr * lr_gamma ** epoch, "seconds": seconds, "items": seen,
                  "items_per_s": seen / seconds if seconds > 0 else float("nan")}
        history.append(record)
        _save(last, {"epoch": epoch + 1, "model": model_state(model), "optimizer": opt.state_dict(),
                     "history": history, "config": config})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
    _save(out_dir / "final.pt", model_state(model))
    (out_dir / "history.json").write_text(json.dumps({"config": config, "history": history}, indent=1))
    return history
