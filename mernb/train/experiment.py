"""``TorchExperiment``: the generic ``Experiment`` for any torch model, trained per fold by ``train_model``.

A fresh model per fold, a fixed number of epochs, then one prediction pass over the held-out samples:
no epoch or checkpoint is ever chosen by looking at the test subject (the defect of methods.md §1.6).

Used by the MPT, HLoRA-MER and MA2MI notebooks, each with its own ``model_fn`` and ``dataset_fn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mernb.data.records import Sample
from mernb.errors import ConfigError, MernbError
from mernb.train.device_data import DeviceBatches
from mernb.train.loop import OptimConfig, SchedulerConfig, as_scheduler_config, predict, train_model
from mernb.train.loso import Fold, FoldOutput
from mernb.train.runtime import make_generator, pick_device, seed_worker, set_seed

_AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TorchExperiment:
    """Train ``model_fn(num_classes)`` on ``dataset_fn(train, True)``, predict ``dataset_fn(test, False)``.

    ``dataset_fn(samples, train)`` returns a torch ``Dataset`` yielding ``(inputs, label_index, index)``
    where ``index`` is the sample's position in ``samples`` (label with ``mernb.train.loso.label_index``:
    held-out samples arrive with their label hidden and get -1). ``details`` holds everything else that
    defines the run (backbone, input size, augmentation, loss...): it is part of ``config`` and so of
    the resume hash. ``on_fold_end(fold, model, info)`` gets ``info = {"history", "logits", "index"}``
    (e.g. to save features or a checkpoint); ``keep_model`` keeps each fold's model (on the CPU) in
    ``models``. Device, workers and progress bars do not enter ``config``.

    ``steps``: a budget of optimiser steps per fold instead of ``epochs`` — each fold trains
    ``ceil(steps / batches per epoch)`` epochs on *its own* training set (HLoRA-MER: the authors' 600).

    Randomness is per fold and independent of what ran before in the process: the datasets are built
    first (any lazy preparation happens there), then the seed is set, the model is built, and a dataset
    that has a ``generator`` attribute (random flips...) gets a ``torch.Generator`` seeded with ``seed``.
    So a fold retrained alone equals the same fold inside a full run.

    ``data_path``: ``"device"`` (default) keeps a fold's inputs on the training device and batches and flips
    them there (:mod:`mernb.train.device_data`) when the dataset offers a ``device_view``; ``"loader"`` (or a
    dataset without one) uses a torch ``DataLoader``. The two draw their random numbers differently, so
    the setting is part of ``config``.
    """

    name: str
    model_fn: Callable[[int], nn.Module]
    dataset_fn: Callable[[list[Sample], bool], Dataset]
    num_classes: int
    epochs: int | None
    batch_size: int = 32
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig | str = "none"
    eval_batch_size: int | None = None
    drop_last: bool = False
    amp: bool = True
    amp_dtype: str = "bfloat16"
    grad_clip: float | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    device: str | None = None
    progress: bool = True
    keep_model: bool = False
    on_fold_end: Callable[[Fold, nn.Module, dict[str, Any]], None] | None = None
    steps: int | None = None
    data_path: str = "device"
    models: dict[str, nn.Module] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.amp_dtype not in _AMP_DTYPES:
            raise ConfigError(f"amp_dtype must be one of {sorted(_AMP_DTYPES)}, got {self.amp_dtype!r}")
        if self.data_path not in ("device", "loader"):
            raise ConfigError(f"data_path must be 'device' or 'loader', got {self.data_path!r}")
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError("TorchExperiment needs exactly one of epochs and steps")
        if (self.epochs or self.steps) < 1 or self.batch_size < 1 or self.num_classes < 2:
            raise ConfigError("TorchExperiment needs epochs (or steps) >= 1, batch_size >= 1 and num_classes >= 2")
        self.scheduler = as_scheduler_config(self.scheduler)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that define the predictions (hashed by the runner for resuming)."""
        return {
            "kind": "torch",
            "name": self.name,
            "num_classes": self.num_classes,
            "epochs": self.epochs,
            **({"steps": self.steps} if self.steps is not None else {}),
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "optimizer": self.optimizer.to_dict(),
            "scheduler": self.scheduler.to_dict(),
            "amp": self.amp,
            "amp_dtype": self.amp_dtype,
            "grad_clip": self.grad_clip,
            **({"data_path": "device"} if self.data_path == "device" else {}),
            "details": self.details,
        }

    def epochs_for(self, n_train: int) -> int:
        """Epochs for a fold with ``n_train`` training samples: ``epochs``, or enough for ``steps`` steps."""
        if self.steps is None:
            return int(self.epochs)
        per_epoch = n_train // self.batch_size if self.drop_last else math.ceil(n_train / self.batch_size)
        return max(1, math.ceil(self.steps / max(1, per_epoch)))

    def fit_predict(self, train: list[Sample], test: list[Sample], *, seed: int, fold: Fold) -> FoldOutput:
        """Fresh model, a fixed schedule on ``train``, softmax scores and argmax predictions for ``test``."""
        device = pick_device(self.device)
        dtype = _AMP_DTYPES[self.amp_dtype]
        train_set, test_set = self.dataset_fn(train, True), self.dataset_fn(test, False)
        set_seed(seed)
        model = self.model_fn(self.num_classes)
        if hasattr(train_set, "generator"):
            train_set.generator = make_generator(seed)
        on_device = self.data_path == "device" and hasattr(train_set, "device_view")
        eval_batch = self.eval_batch_size or self.batch_size
        if on_device:
            train_loader = DeviceBatches(train_set.device_view(), device, batch_size=self.batch_size, shuffle=True,
                                         drop_last=self.drop_last, generator=make_generator(seed), augment=True)
        else:
            train_loader = DataLoader(
                train_set, batch_size=self.batch_size, shuffle=True, drop_last=self.drop_last,
                num_workers=self.num_workers, generator=make_generator(seed), worker_init_fn=seed_worker,
                pin_memory=device.type == "cuda",
            )
        history = train_model(
            model, train_loader, epochs=self.epochs_for(len(train)), optimizer=self.optimizer, scheduler=self.scheduler,
            device=device, amp=self.amp, amp_dtype=dtype, grad_clip=self.grad_clip, loss_fn=self.loss_fn,
            progress=self.progress, desc=fold.name,
        )
        if on_device and hasattr(test_set, "device_view"):
            test_loader = DeviceBatches(test_set.device_view(), device, batch_size=eval_batch)
        else:
            test_loader = DataLoader(test_set, batch_size=eval_batch, shuffle=False, num_workers=self.num_workers,
                                     pin_memory=device.type == "cuda")
        logits, index = predict(model, test_loader, device, amp=self.amp, amp_dtype=dtype)
        if index.tolist() != list(range(len(test))):
            raise MernbError(
                f"fold {fold.name}: dataset_fn(test, False) must yield each of the {len(test)} test samples once, "
                "with its position in the list as index"
            )
        if logits.shape[1] != self.num_classes:
            raise MernbError(f"fold {fold.name}: model gives {logits.shape[1]} logits, expected {self.num_classes}")
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        if self.on_fold_end is not None:
            self.on_fold_end(fold, model, {"history": history, "logits": logits, "index": index})
        if self.keep_model:
            self.models[fold.name] = model.cpu()
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return FoldOutput(
            pred=np.argmax(logits, axis=1).tolist(),
            scores=probs.astype(float).tolist(),
            extras={"history": history, "steps": sum(int(h.get("steps", 0)) for h in history)},
        )
