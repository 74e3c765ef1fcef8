"""Value tests of mernb.train found by mutation testing (issue 11): devices, AMP default, executor env, steps."""

from __future__ import annotations

import torch
from torch import nn

from mernb.train import executors
from mernb.train.loop import OptimConfig, build_optimizer, to_device, train_model
from mernb.train.runtime import amp_enabled


def test_to_device_moves_tensors_in_every_container_to_the_device():
    """The meta device stands for any device other than the CPU the tests run on."""
    x = torch.ones(2)
    assert to_device(x, "meta").device.type == "meta"
    nested = to_device({"a": x, "b": (x, [x]), "n": 3}, "meta")
    assert nested["a"].device.type == "meta"
    assert isinstance(nested["b"], tuple) and isinstance(nested["b"][1], list)
    assert nested["b"][0].device.type == "meta" and nested["b"][1][0].device.type == "meta"
    assert nested["n"] == 3


def test_amp_is_on_by_default_on_cuda_only():
    assert amp_enabled("cuda") is True
    assert amp_enabled(torch.device("cuda", 0)) is True
    assert amp_enabled("cuda", amp=False) is False
    assert amp_enabled("cpu") is False


def test_slurm_warm_first_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MERNB_EXECUTOR", "slurm")
    monkeypatch.delenv("MERNB_SLURM_WARM_FIRST", raising=False)
    assert executors.fold_executor().warm_first is True
    monkeypatch.setenv("MERNB_SLURM_WARM_FIRST", "0")
    assert executors.fold_executor().warm_first is False


def test_optimizer_names_are_case_insensitive_and_keep_their_settings():
    w = nn.Parameter(torch.zeros(2))
    opt = build_optimizer([w], OptimConfig(name="AdamW", lr=0.5, weight_decay=0.25, betas=(0.8, 0.9)))
    assert type(opt) is torch.optim.AdamW
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (0.5, 0.25, (0.8, 0.9))
    assert type(build_optimizer(iter([w]), OptimConfig(name="adam"))) is torch.optim.Adam


def test_history_counts_steps_and_running_accuracy():
    """lr 0 keeps the model fixed, so the accuracy is that of the initial weights, computed here by hand."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(10, 3)
    y = torch.tensor([0, 1] * 5)
    batches = [(x[:4], y[:4], None), (x[4:8], y[4:8], None), (x[8:], y[8:], None)]
    with torch.no_grad():
        expected_acc = int((model(x).argmax(1) == y).sum()) / 10
        expected_loss = float(nn.functional.cross_entropy(model(x), y))
    history = train_model(model, batches, epochs=2, optimizer=OptimConfig(name="sgd", lr=0.0, momentum=0.0),
                          device="cpu", progress=False)
    assert [h["steps"] for h in history] == [3, 3]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert abs(h["acc"] - expected_acc) < 1e-12
        assert abs(h["loss"] - expected_loss) < 1e-5
        assert h["lr"] == 0.0


def test_last_line_of_a_job_error_is_its_last_non_blank_line():
    assert executors._last_line(RuntimeError("Traceback\n  ...\nValueError: bad fold\n\n")) == "ValueError: bad fold"
    assert executors._last_line(RuntimeError("x" * 300)) == "x" * 200
    assert executors._last_line(KeyError()) == "KeyError"


def test_submitit_job_folder_default_is_runs_submitit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Task:
        fold_dir = None

    assert executors.SubmititExecutor().job_folder(Task()) == (tmp_path / "runs" / "submitit").resolve()
    Task.fold_dir = tmp_path / "row" / "folds"
    assert executors.SubmititExecutor().job_folder(Task()) == (tmp_path / "row" / "jobs").resolve()


def test_fold_job_reuses_a_finished_fold_and_names_a_new_one(tmp_path, capsys, monkeypatch):
    """The job body returns a fold already written by an earlier job without fitting it again (no new
    marker file), and announces the folds it trains: 'mernb: fold <fold> of <experiment> on <host>'."""
    import os
    import pickle

    from mernb.train.loso import FoldTask, loso_folds
    from tests.test_executors import Marked, fits
    from tests.test_loso import CLASSES, make_samples

    monkeypatch.chdir(tmp_path)  # the job body changes to the directory it is given
    monkeypatch.setenv("MERNB_EXECUTOR", "local")
    samples = make_samples(datasets=("casme2",), subjects=("1", "2"), per_subject=4)
    first, second = loso_folds(samples)
    marks = tmp_path / "marks"
    task = FoldTask(Marked(marks), samples, CLASSES, 0, tmp_path / "folds")
    task.run(first)
    task_file = tmp_path / "task.pkl"
    task_file.write_bytes(pickle.dumps(task))
    assert fits(marks) == [first.name]
    stored = executors.run_fold_job(str(task_file), first, str(tmp_path))
    assert fits(marks) == [first.name] and stored.reused is False
    assert capsys.readouterr().out == ""
    executors.run_fold_job(str(task_file), second, str(tmp_path))
    assert fits(marks) == sorted([first.name, second.name])
    assert capsys.readouterr().out == f"mernb: fold {second.name} of marked-centroid on {os.uname().nodename}\n"


def test_jsonable_turns_values_into_plain_json():
    from pathlib import Path

    import numpy as np

    from mernb.train.loso import _jsonable

    class Opaque:
        def __repr__(self):
            return "<opaque>"

    value = {1: (np.float32(0.5), torch.tensor([1, 2])), "p": Path("a/b"), "o": Opaque(), "n": None}
    assert _jsonable(value) == {"1": [0.5, [1, 2]], "p": "a/b", "o": "<opaque>", "n": None}


def test_training_batch_order_is_shuffled_by_the_seed_alone():
    """Both data paths: the first epoch's sample order is a shuffle (not the dataset order), the same for two
    models that draw different numbers of initial random values, and another one for another seed."""
    from mernb.train.loso import loso_folds, run_folds
    from tests.test_device_data import DevicePoints
    from tests.test_loso import CLASSES, make_samples, torch_experiment

    samples = make_samples(datasets=("casme2",), subjects=("1", "2"), per_subject=12)
    fold = loso_folds(samples)[:1]
    train_x = DevicePoints([s for s in samples if s.subject_key not in fold[0].test_subjects], True).x

    def first_epoch_order(data_path, hidden, seed):
        seen = []

        class Recorder(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(8, hidden), nn.Linear(hidden, num_classes))

            def forward(self, x):
                if self.training:
                    seen.append(x.detach().clone())
                return self.body(x)

        run_folds(torch_experiment(model_fn=Recorder, dataset_fn=DevicePoints, data_path=data_path, epochs=1,
                                   batch_size=4), samples, fold, CLASSES, None, seed=seed, progress=False)
        rows = torch.cat(seen)
        return [int((train_x == row).all(1).nonzero()[0]) for row in rows]

    for data_path in ("device", "loader"):
        order = first_epoch_order(data_path, 4, 0)
        assert sorted(order) == list(range(len(train_x))) and order != sorted(order)
        assert first_epoch_order(data_path, 64, 0) == order
        assert first_epoch_order(data_path, 4, 1) != order
