"""A row's inputs held on the training device for the whole fold, batched and augmented as tensor ops.

Every MER set is small (at most about a thousand clips): once prepared, a fold's inputs fit in GPU memory, so
the epoch loop needs no DataLoader workers and no host-to-device copies. A dataset opts in by defining
``device_view(device) -> DeviceView`` (the MPT, HLoRA-MER token/frame and MA2MI datasets do);
``TorchExperiment`` then iterates :class:`DeviceBatches` instead of a ``DataLoader`` (``data_path="device"``,
the default; ``"loader"`` keeps the DataLoader path). Augmentation draws come from the fold's generator
(one draw per batch, on the CPU, so a fold is reproducible on any device).

Used by :class:`mernb.train.experiment.TorchExperiment` for every training notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

Inputs = torch.Tensor | Mapping[str, torch.Tensor]
#: ``augment(inputs, flip_mask)``: the batch's inputs with the samples where ``flip_mask`` is True flipped
Augment = Callable[[Inputs, torch.Tensor], Inputs]


@dataclass
class DeviceView:
    """A dataset as stacked tensors: ``inputs`` (a tensor or a dict of tensors, first dim = samples),
    ``labels`` (N,), and an optional ``flip`` augmentation applied to a random half of each batch."""

    inputs: Inputs
    labels: torch.Tensor
    flip: Augment | None = None
    pack: Callable[[Inputs], Any] | None = None  # the batch as the model takes it (e.g. ``(dict,)``)


def index_inputs(inputs: Inputs, idx: torch.Tensor) -> Inputs:
    """Rows ``idx`` of a tensor or of every tensor of a dict."""
    if isinstance(inputs, Mapping):
        return {k: v.index_select(0, idx) for k, v in inputs.items()}
    return inputs.index_select(0, idx)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with the samples where ``mask`` (B,) is True flipped along the last (width) axis, **in place**
    (``x`` is a batch the iterator has just gathered: only the flipped samples are copied)."""
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel():
        x[idx] = x.index_select(0, idx).flip(-1)
    return x


def stack_items(items: list[Any]) -> Inputs:
    """Stack dataset inputs (tensors, or dicts of tensors) along a new first axis."""
    if isinstance(items[0], Mapping):
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
    return torch.stack(list(items))


class DeviceBatches:
    """Batches ``(inputs, labels, index)`` of a :class:`DeviceView` that already lives on ``device``.

    ``shuffle`` draws a permutation per epoch from ``generator``; ``augment`` (training) flips a random half
    of each batch (one Bernoulli(0.5) draw per sample from ``generator``).
    """

    def __init__(self, view: DeviceView, device: torch.device, *, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None, augment: bool = False) -> None:
        def move(x: Inputs) -> Inputs:
            return {k: v.to(device) for k, v in x.items()} if isinstance(x, Mapping) else x.to(device)

        self.inputs = move(view.inputs)
        self.labels = view.labels.to(device)
        self.flip = view.flip if augment else None
        self.pack = view.pack
        self.device = device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        self.n = int(self.labels.shape[0])

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Inputs, torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        for b in range(len(self)):
            idx_cpu = order[b * self.batch_size:(b + 1) * self.batch_size]
            idx = idx_cpu.to(self.device)
            x = index_inputs(self.inputs, idx)
            if self.flip is not None:
                mask = (torch.rand(len(idx_cpu), generator=self.generator) < 0.5).to(self.device)
                x = self.flip(x, mask)
            yield (self.pack(x) if self.pack else x), self.labels.index_select(0, idx), idx
