"""The epoch loop, predict's ordering, schedules, optimizers and the runtime helpers (tiny CPU models)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mernb.errors import ConfigError
from mernb.train.loop import (
    OptimConfig,
    SchedulerConfig,
    build_optimizer,
    forward,
    lr_factor,
    predict,
    to_device,
    train_model,
)
from mernb.train.runtime import amp_context, make_generator, pick_device, set_seed

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread beats fighting for cores


class Blobs(Dataset):
    """Two Gaussian blobs in 8-D; yields (x, label, index) or ({'x': x}, label, index)."""

    def __init__(self, n: int = 64, seed: int = 0, as_dict: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 8, generator=g) + 3.0 * (self.y[:, None].float() * 2 - 1)
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = {"x": self.x[i]} if self.as_dict else self.x[i]
        return x, self.y[i], i


class KwModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return {"logits": self.fc(x), "features": x}


def test_train_model_learns_and_records_history():
    set_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    loader = DataLoader(Blobs(), batch_size=16, shuffle=True, generator=make_generator(0))
    seen = []
    history = train_model(model, loader, epochs=5, optimizer=OptimConfig("adam", lr=1e-2),
                          scheduler="cosine", device="cpu", progress=False,
                          on_epoch_end=lambda e, rec: seen.append(e))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5] == seen
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["acc"] > 0.9
    assert history[0]["lr"] == pytest.approx(1e-2)
    logits, index = predict(model, DataLoader(Blobs(seed=1), batch_size=10), "cpu")
    assert (logits.argmax(1) == Blobs(seed=1).y.numpy()).mean() > 0.9


def test_only_trainable_parameters_change_and_dict_inputs_pass_through():
    set_seed(0)
    model = KwModel()
    extra = nn.Linear(8, 2)
    model.frozen = extra
    extra.requires_grad_(False)
    frozen_before = extra.weight.clone()
    fc_before = model.fc.weight.clone()
    loader = DataLoader(Blobs(as_dict=True), batch_size=16)
    train_model(model, loader, epochs=2, optimizer=OptimConfig("sgd", lr=0.1, weight_decay=1e-2),
                device="cpu", progress=False, grad_clip=1.0)
    assert torch.equal(extra.weight, frozen_before)
    assert not torch.equal(model.fc.weight, fc_before)


def test_no_trainable_parameters_is_an_error():
    model = nn.Linear(8, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="requires_grad"):
        train_model(model, DataLoader(Blobs(), batch_size=8), epochs=1, device="cpu", progress=False)


def test_predict_returns_rows_in_index_order_from_a_shuffled_loader():
    class Echo(nn.Module):  # logits = the input itself, so each row can be traced back to its sample
        def forward(self, x):
            return x[:, :2]

    data = Blobs(n=37)
    loader = DataLoader(data, batch_size=5, shuffle=True, generator=make_generator(3))
    logits, index = predict(Echo(), loader, "cpu")
    assert index.tolist() == list(range(37))
    assert torch.allclose(torch.from_numpy(logits), data.x[:, :2])
    assert logits.dtype.name == "float32"


def test_training_is_deterministic_for_a_seed():
    def run(seed):
        set_seed(seed)
        model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        loader = DataLoader(Blobs(), batch_size=8, shuffle=True, generator=make_generator(seed))
        train_model(model, loader, epochs=2, device="cpu", progress=False)
        return predict(model, DataLoader(Blobs(seed=2), batch_size=16), "cpu")[0]

    a, b, c = run(0), run(0), run(1)
    assert (a == b).all()
    assert not (a == c).all()


def test_lr_schedules():
    cos = SchedulerConfig("cosine", warmup_epochs=2, min_lr_ratio=0.1)
    assert lr_factor(0, 10, cos) == pytest.approx(1 / 3)
    assert lr_factor(1, 10, cos) == pytest.approx(2 / 3)
    assert lr_factor(2, 10, cos) == pytest.approx(1.0)
    assert lr_factor(9, 10, cos) < 0.2 and lr_factor(9, 10, cos) >= 0.1
    step = SchedulerConfig("step", step_size=3, gamma=0.5)
    assert [lr_factor(e, 9, step) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(5, 9, SchedulerConfig()) == 1.0
    with pytest.raises(ConfigError, match="scheduler"):
        lr_factor(0, 9, SchedulerConfig("plateau"))


def test_optimizers_and_errors():
    params = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(params, OptimConfig("adam")), torch.optim.Adam)
    assert isinstance(build_optimizer(params, OptimConfig("adamw")), torch.optim.AdamW)
    sgd = build_optimizer(params, OptimConfig("sgd", lr=0.5, momentum=0.8))
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["lr"] == 0.5
    with pytest.raises(ConfigError, match="optimizer"):
        build_optimizer(params, OptimConfig("lamb"))
    assert OptimConfig().to_dict()["betas"] == [0.9, 0.999]


def test_to_device_and_forward_shapes():
    nested = {"a": torch.zeros(1), "b": (torch.ones(1), 3)}
    moved = to_device(nested, "cpu")
    assert moved["b"][1] == 3 and isinstance(moved["b"], tuple)
    two_in = nn.Bilinear(2, 2, 3)
    assert forward(two_in, (torch.zeros(4, 2), torch.zeros(4, 2))).shape == (4, 3)
    assert forward(KwModel(), {"x": torch.zeros(4, 8)}).shape == (4, 2)


def test_runtime_device_and_amp_on_cpu():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device().type == "cpu"
        with pytest.raises(ConfigError, match="CUDA"):
            pick_device("cuda")
    with amp_context("cpu"):
        y = nn.Linear(4, 4)(torch.zeros(1, 4))
    assert y.dtype == torch.float32  # autocast is off on the CPU
    with pytest.raises(ConfigError, match="dtype"):
        with amp_context("cpu", dtype=torch.float32):
            pass


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_training_on_cuda(dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    set_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    loader = DataLoader(Blobs(), batch_size=16, shuffle=True, generator=make_generator(0))
    with amp_context("cuda", dtype):
        assert nn.Linear(4, 4).cuda()(torch.zeros(1, 4, device="cuda")).dtype == dtype
    history = train_model(model, loader, epochs=5, optimizer=OptimConfig("adam", lr=1e-2), device="cuda",
                          amp=True, amp_dtype=dtype, grad_clip=1.0, progress=False)
    assert history[-1]["acc"] > 0.9
    logits, _ = predict(model, DataLoader(Blobs(seed=1), batch_size=10), "cuda", amp=True, amp_dtype=dtype)
    assert logits.dtype.name == "float32" and (logits.argmax(1) == Blobs(seed=1).y.numpy()).mean() > 0.9


def test_pick_device_auto_means_no_preference():
    from mernb.train.runtime import pick_device

    assert pick_device("auto") == pick_device(None)
