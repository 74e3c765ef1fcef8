"""Fold executors: folds as submitit jobs (real subprocesses, the SLURM code path), kills, retries, resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mernb.errors import ConfigError
from mernb.train import executors
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig
from mernb.train.loso import FoldOutput, label_index, loso_folds, run_loso
from tests.test_loso import CLASSES, PointDataset, make_samples


class Marked:
    """Nearest-centroid experiment that leaves a marker file per fit and can SIGKILL its own process mid-fold.

    ``kill``: fold name -> how many fits of that fold die (counted across processes with marker files).
    The kill settings are not part of ``config``: a killed and a clean run have the same fold hashes.
    """

    name = "marked-centroid"
    config = {"kind": "centroid"}

    def __init__(self, marks: Path, kill: dict[str, int] | None = None, raise_instead: bool = False):
        self.marks = Path(marks)
        self.kill = dict(kill or {})
        self.raise_instead = raise_instead

    def fit_predict(self, train, test, *, seed, fold):
        self.marks.mkdir(parents=True, exist_ok=True)
        started = len(list(self.marks.glob(f"{fold.name}.*")))
        (self.marks / f"{fold.name}.{started}.{os.getpid()}").write_text("")
        if started < self.kill.get(fold.name, 0):
            if self.raise_instead:
                raise RuntimeError(f"fold {fold.name} crashed")
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-fold, no cleanup, nothing written
        X = np.stack([s.meta["x"] for s in train])
        y = np.array([label_index(s, CLASSES) for s in train])
        cent = np.stack([X[y == c].mean(0) for c in range(len(CLASSES))])
        d = ((np.stack([s.meta["x"] for s in test])[:, None] - cent[None]) ** 2).sum(-1)
        scores = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
        return FoldOutput(pred=d.argmin(1).tolist(), scores=scores.tolist(), extras={"pid": os.getpid()})


def fits(marks: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in marks.glob("*.*.*"))


@pytest.fixture
def submitit_local(monkeypatch):
    """Fold jobs as submitit local jobs (subprocesses), polled quickly."""
    monkeypatch.setenv("MERNB_EXECUTOR", "submitit-local")
    monkeypatch.setenv("MERNB_SLURM_POLL_S", "0.2")
    monkeypatch.setenv("MERNB_SLURM_TIMEOUT_MIN", "10")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                   os.environ.get("PYTHONPATH")])))


def test_env_selects_executor(monkeypatch):
    monkeypatch.delenv("MERNB_EXECUTOR", raising=False)
    assert isinstance(executors.fold_executor(), executors.LocalExecutor)
    monkeypatch.setenv("MERNB_EXECUTOR", "slurm")
    monkeypatch.setenv("MERNB_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("MERNB_SLURM_MAX_JOBS", "7")
    monkeypatch.setenv("MERNB_SLURM_EXTRA", '{"account": "mer"}')
    ex = executors.fold_executor()
    assert (ex.cluster, ex.partition, ex.gpus_per_job, ex.max_jobs, ex.retries, ex.extra) == (
        "slurm", "gpu", 1, 7, 1, {"account": "mer"})
    monkeypatch.setenv("MERNB_SLURM_MAX_JOBS", "many")
    with pytest.raises(ConfigError, match="MERNB_SLURM_MAX_JOBS"):
        executors.fold_executor()
    monkeypatch.setenv("MERNB_EXECUTOR", "kubernetes")
    with pytest.raises(ConfigError, match="kubernetes"):
        executors.fold_executor()


def test_cli_flags_travel_as_environment(monkeypatch):
    for var in ("MERNB_EXECUTOR", "MERNB_SLURM_PARTITION", "MERNB_SLURM_GPUS_PER_JOB", "MERNB_SLURM_MAX_JOBS"):
        monkeypatch.setenv(var, "")  # recorded, so what export_env sets is undone after the test
        monkeypatch.delenv(var)
    executors.export_env(argparse.Namespace(executor="submitit-local", slurm_partition="a100", gpus_per_job=2,
                                            max_jobs=5))
    assert os.environ["MERNB_EXECUTOR"] == "submitit-local"
    assert (os.environ["MERNB_SLURM_PARTITION"], os.environ["MERNB_SLURM_GPUS_PER_JOB"],
            os.environ["MERNB_SLURM_MAX_JOBS"]) == ("a100", "2", "5")
    ex = executors.fold_executor()
    assert (ex.cluster, ex.partition, ex.gpus_per_job, ex.max_jobs) == ("local", "a100", 2, 5)


def test_slurm_without_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ConfigError, match="sbatch"):
        executors.SubmititExecutor(cluster="slurm").executor(tmp_path)


def test_slurm_job_parameters(tmp_path, monkeypatch):
    """The #SBATCH lines submitit would write for a fold job (no cluster needed to render them)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "srun"):
        (fake / tool).write_text("#!/bin/sh\nexit 1\n")
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    ex = executors.SubmititExecutor(cluster="slurm", partition="gpu-h100", gpus_per_job=1, timeout_min=90,
                                    cpus_per_job=6, mem_gb=64, setup=("module load cuda",), extra={"account": "mer"})
    script = ex.executor(tmp_path)._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=gpu-h100", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=64GB", "#SBATCH --account=mer", "module load cuda"):
        assert line in script, line


@pytest.mark.slow
def test_killed_fold_job_is_retried_then_reported_and_a_rerun_completes(tmp_path, submitit_local):
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3"), per_subject=5)
    folds = [f.name for f in loso_folds(samples)]
    os.environ["MERNB_EXECUTOR"] = "local"
    reference = run_loso(Marked(tmp_path / "ref-marks"), samples, CLASSES, None, progress=False)
    os.environ["MERNB_EXECUTOR"] = "submitit-local"

    # run 1: the jobs of fold 2 die twice (first try and its one retry): reported with its log, others saved
    out = tmp_path / "row"
    marks = tmp_path / "marks"
    with pytest.raises(executors.FoldJobsFailed) as failed:
        run_loso(Marked(marks, kill={folds[1]: 2}), samples, CLASSES, out, progress=False)
    assert set(failed.value.failures) == {folds[1]}
    logs = failed.value.failures[folds[1]][1]
    assert all(Path(log).is_file() and Path(log).is_relative_to(out / "jobs") for log in logs)
    assert folds[1] in str(failed.value) and logs[0] in str(failed.value)
    assert sorted(p.stem for p in (out / "folds").glob("*.json")) == sorted([folds[0], folds[2]])
    assert fits(marks) == sorted([folds[0], folds[1], folds[1], folds[2]])
    pids = {json.loads((out / "folds" / f"{name}.json").read_text())["extras"]["pid"] for name in (folds[0], folds[2])}
    assert os.getpid() not in pids and len(pids) == 2  # each fold ran in a job process of its own

    # run 2 (rerun): only the missing fold is submitted; its job is killed once more and the retry finishes
    resumed = run_loso(Marked(marks, kill={folds[1]: 3}), samples, CLASSES, out, progress=False)
    assert fits(marks) == sorted([folds[0], folds[1], folds[1], folds[1], folds[1], folds[2]])
    assert resumed.n_reused == 2
    assert resumed.predictions == reference.predictions
    assert resumed.metrics == reference.metrics
    assert not list((out / "jobs").glob("task-*.pkl"))  # the run's pickled task is removed when all jobs ended


def closure_experiment(hidden: int) -> TorchExperiment:
    """A TorchExperiment whose model_fn and dataset_fn are closures (plain pickle refuses them)."""
    def model_fn(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def dataset_fn(samples, train):
        return PointDataset(samples, train)

    return TorchExperiment(name="closure-mlp", model_fn=model_fn, dataset_fn=dataset_fn, num_classes=3, epochs=4,
                           batch_size=8, optimizer=OptimConfig("adam", lr=2e-2), device="cpu", progress=False,
                           amp=False, details={"hidden": hidden})


@pytest.mark.slow
def test_torch_experiment_with_closures_runs_as_jobs(tmp_path, submitit_local):
    import pickle

    samples = make_samples(datasets=("casme2",), subjects=("1", "2"), per_subject=6)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(closure_experiment(12))
    os.environ["MERNB_EXECUTOR"] = "local"
    torch.set_num_threads(1)
    local = run_loso(closure_experiment(12), samples, CLASSES, tmp_path / "local", progress=False)
    os.environ["MERNB_EXECUTOR"] = "submitit-local"
    jobs = run_loso(closure_experiment(12), samples, CLASSES, tmp_path / "jobs", progress=False)
    assert [p["y_pred"] for p in jobs.predictions] == [p["y_pred"] for p in local.predictions]
    np.testing.assert_allclose([p["scores"] for p in jobs.predictions], [p["scores"] for p in local.predictions],
                               atol=1e-5)
    assert len(list((tmp_path / "jobs" / "jobs").glob("*/*_log.err"))) == 2


class InProcessJob:
    """A stand-in for a submitit job that runs at once in this process (for the fast test of the job loop)."""

    def __init__(self, folder: Path, number: int, fn, args):
        self.job_id = str(number)
        self.collected = False
        self.paths = argparse.Namespace(stderr=folder / f"{number}_0_log.err", stdout=folder / f"{number}_0_log.out")
        self.paths.stderr.parent.mkdir(parents=True, exist_ok=True)
        self.paths.stderr.write_text("")
        self.paths.stdout.write_text("")
        try:
            self.value, self.error = fn(*args), None
        except Exception as exc:  # noqa: BLE001
            self.value, self.error = None, exc

    def done(self):
        return True

    def result(self):
        self.collected = True
        if self.error is not None:
            raise self.error
        return self.value

    def cancel(self, check=True):
        pass


class InProcessSubmitit:
    def __init__(self, folder: Path):
        self.folder, self.count, self.jobs, self.uncollected_at_submit = folder, 0, [], []

    def submit(self, fn, *args):
        self.count += 1
        self.uncollected_at_submit.append(sum(not job.collected for job in self.jobs))
        self.jobs.append(InProcessJob(self.folder, self.count, fn, args))
        return self.jobs[-1]


def test_job_loop_retries_once_reports_and_resumes(tmp_path, monkeypatch):
    """Fast: the submit/poll/retry/report loop with jobs that run in this process (no subprocesses)."""
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3"), per_subject=5)
    folds = [f.name for f in loso_folds(samples)]
    monkeypatch.setenv("MERNB_EXECUTOR", "local")
    reference = run_loso(Marked(tmp_path / "ref"), samples, CLASSES, None, progress=False)
    submitted = []

    def fake_executor(self, folder):
        submitted.append(InProcessSubmitit(folder))
        return submitted[-1]

    monkeypatch.setattr(executors.SubmititExecutor, "executor", fake_executor)
    monkeypatch.setenv("MERNB_EXECUTOR", "submitit-local")
    monkeypatch.setenv("MERNB_SLURM_MAX_JOBS", "2")
    out, marks = tmp_path / "row", tmp_path / "marks"
    with pytest.raises(executors.FoldJobsFailed) as failed:
        run_loso(Marked(marks, kill={folds[0]: 2}, raise_instead=True), samples, CLASSES, out, progress=False)
    assert list(failed.value.failures) == [folds[0]]
    assert "crashed" in str(failed.value) and failed.value.failures[folds[0]][1][0].endswith("_log.err")
    assert submitted[-1].count == 4 and fits(marks) == sorted([folds[0], folds[0], folds[1], folds[2]])
    # the first fold ran alone (filling shared caches), then up to MERNB_SLURM_MAX_JOBS=2 at once
    assert submitted[-1].uncollected_at_submit == [0, 0, 0, 1]
    monkeypatch.setenv("MERNB_EXECUTOR", "submitit-local")  # the job body switched its own process to local
    resumed = run_loso(Marked(marks, kill={folds[0]: 3}, raise_instead=True), samples, CLASSES, out, progress=False)
    assert submitted[-1].count == 2 and resumed.n_reused == 2
    assert resumed.predictions == reference.predictions
