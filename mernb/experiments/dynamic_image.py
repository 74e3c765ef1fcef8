"""Rank-pooled ViT baselines (MPT Table VI rows "w/o pretraining", "full" and "partial fine-tuning").

Each 16-frame clip becomes one dynamic image (approximate rank pooling, official coefficients), which a
ViT classifies. Used by notebooks/mpt/table6_learning_strategies.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from mernb.data.records import Sample
from mernb.experiments.common import ProtocolData
from mernb.models import create_model
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig
from mernb.train.loso import label_index


class DynamicImageDataset(Dataset):
    """(normalised dynamic image (3, S, S), class index, sample index); random horizontal flip in training."""

    def __init__(self, images: dict[str, torch.Tensor], samples: Sequence[Sample], classes: Sequence[str],
                 flip: bool = False) -> None:
        self.samples = list(samples)
        self.images = torch.stack([images[s.sample_id] for s in self.samples])
        self.labels = [label_index(s, classes) for s in self.samples]
        self.flip = flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.labels[index], index


def dynamic_image_experiment(
    data: ProtocolData,
    *,
    model: str,
    image_size: int,
    epochs: int,
    batch_size: int = 16,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    flip: bool = True,
    device: str | None = None,
    **model_kwargs,
) -> TorchExperiment:
    """A fresh ``model`` (registered config) per fold on the clips' dynamic images, Adam, fixed epochs."""
    probe = create_model(model, num_classes=len(data.classes), img_size=image_size, **model_kwargs)
    images = {sid: probe.prepare_input(clip).float() for sid, clip in data.clips.items()}
    del probe

    def model_fn(num_classes: int):
        return create_model(model, num_classes=num_classes, img_size=image_size, **model_kwargs)

    def dataset_fn(samples: list[Sample], train: bool) -> Dataset:
        return DynamicImageDataset(images, samples, data.classes, flip=flip and train)

    return TorchExperiment(
        name=f"dynamic_image/{model}",
        model_fn=model_fn,
        dataset_fn=dataset_fn,
        num_classes=len(data.classes),
        epochs=epochs,
        batch_size=batch_size,
        optimizer=OptimConfig(name="adam", lr=lr, weight_decay=weight_decay),
        details={"model": model, "image_size": image_size, "input": "dynamic image of the uniform 16-frame clip",
                 "flip": flip, **{k: str(v) for k, v in model_kwargs.items()}},
        device=None if device in (None, "auto") else device,
    )
