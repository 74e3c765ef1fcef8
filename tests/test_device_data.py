"""The device-resident data path: batches cover every sample once per epoch, flips only where drawn,
TorchExperiment uses it instead of a DataLoader, and it learns like the loader path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mernb.train import experiment as experiment_module
from mernb.train.device_data import DeviceBatches, DeviceView, flip_where
from mernb.train.loop import OptimConfig, train_model
from mernb.train.loso import label_index, loso_folds, run_folds
from tests.test_loso import CLASSES, PointDataset, make_samples, torch_experiment


def test_batches_cover_every_sample_once_and_follow_the_generator():
    view = DeviceView(torch.arange(10.0)[:, None], torch.arange(10))
    batches = DeviceBatches(view, torch.device("cpu"), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    epoch = [idx.tolist() for _, _, idx in batches]
    assert [len(b) for b in epoch] == [4, 4, 2] and sorted(sum(epoch, [])) == list(range(10))
    again = DeviceBatches(view, torch.device("cpu"), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert [idx.tolist() for _, _, idx in again] == epoch
    for x, y, idx in DeviceBatches(view, torch.device("cpu"), batch_size=3):
        assert torch.equal(x[:, 0], idx.float()) and torch.equal(y, idx)
    assert len(DeviceBatches(view, torch.device("cpu"), batch_size=4, drop_last=True)) == 2


def test_flip_where_flips_only_the_masked_samples():
    x = torch.arange(12.0).reshape(3, 1, 4)
    out = flip_where(x.clone(), torch.tensor([True, False, True]))
    assert out[0, 0].tolist() == [3, 2, 1, 0] and out[1, 0].tolist() == [4, 5, 6, 7]
    assert out[2, 0].tolist() == [11, 10, 9, 8]


def test_augmentation_flips_about_half_of_the_samples():
    view = DeviceView(torch.arange(4.0).repeat(1000, 1), torch.zeros(1000, dtype=torch.long), flip_where)
    batches = DeviceBatches(view, torch.device("cpu"), batch_size=100, generator=torch.Generator().manual_seed(0),
                            augment=True)
    flipped = sum(int((x[:, 0] == 3).sum()) for x, _, _ in batches)
    assert 430 < flipped < 570  # Binomial(1000, 0.5): 4.4 sd either side


class DevicePoints(PointDataset):
    def device_view(self):
        return DeviceView(self.x, torch.as_tensor(self.y))


def test_experiment_uses_the_device_path_and_learns(monkeypatch):
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3", "4"), per_subject=9, sep=1.5)
    folds = loso_folds(samples)
    loader_path = run_folds(torch_experiment(dataset_fn=DevicePoints, data_path="loader"), samples, folds, CLASSES,
                            None, seed=0, progress=False)

    def no_loader(*args, **kwargs):
        raise AssertionError("a DataLoader was built on the device path")

    monkeypatch.setattr(experiment_module, "DataLoader", no_loader)
    device_path = run_folds(torch_experiment(dataset_fn=DevicePoints), samples, folds, CLASSES, None, seed=0,
                            progress=False)
    assert device_path.metrics["acc"] > 0.75 and loader_path.metrics["acc"] > 0.75
    again = run_folds(torch_experiment(dataset_fn=DevicePoints), samples, folds[:1], CLASSES, None, seed=0,
                      progress=False)
    first = [r["scores"] for r in device_path.predictions if r["fold"] == folds[0].name]
    assert [r["scores"] for r in again.predictions] == first
    assert torch_experiment().config["data_path"] == "device"
    assert "data_path" not in torch_experiment(data_path="loader").config


def test_a_nan_loss_stops_training():
    model = torch.nn.Linear(2, 2)
    batches = [(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), torch.tensor([0]))]
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train_model(model, batches, epochs=1, optimizer=OptimConfig("sgd", lr=0.1), device="cpu", progress=False)


def test_recipe_datasets_device_view_equals_their_items():
    from mernb.experiments import hlora as H
    from mernb.experiments import mpt as M

    samples = make_samples(datasets=("casme2",), subjects=("1", "2"), per_subject=3)
    inputs = {s.sample_id: {"image": torch.randn(3, 4, 4), "motion": torch.randn(2, 3, 4, 4)} for s in samples}
    ds = M.MPTDataset(inputs, samples, CLASSES, flip=False)
    view = ds.device_view()
    for i, s in enumerate(samples):
        assert torch.equal(view.inputs["image"][i], inputs[s.sample_id]["image"])
        assert torch.equal(view.inputs["motion"][i], inputs[s.sample_id]["motion"])
        assert view.labels[i] == label_index(s, CLASSES)
    store = {(s.sample_id, f): torch.full((2, 3, 4), float(i) + 0.5 * f) for i, s in enumerate(samples)
             for f in (False, True)}
    tokens = H.TokenDataset(lambda sid, f: store[(sid, f)], samples, CLASSES, flip=True)
    tv = tokens.device_view()
    picked = tv.flip(tv.inputs, torch.tensor([True, False, True, False, True, False]))
    assert picked["tokens"][:, 0, 0, 0].tolist() == [0.5, 1.0, 2.5, 3.0, 4.5, 5.0]
    assert set(tv.pack({"tokens": picked["tokens"], "flipped": tv.inputs["flipped"]})) == {"tokens"}
    np.testing.assert_array_equal(tv.labels.numpy(), [label_index(s, CLASSES) for s in samples])
