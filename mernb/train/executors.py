"""Where the unfinished folds of a run go: this process (default), or one submitit job per fold (SLURM).

``run_folds`` (``mernb.train.loso``) skips the folds whose ``folds/<fold>.json`` is already on disk and
hands the rest to :func:`fold_executor`, which reads the choice from the environment, so that
``mernb run PLAN --executor slurm`` reaches the notebook kernels without any notebook knowing:

``MERNB_EXECUTOR``            ``local`` (default: folds one after another in this process),
                              ``slurm`` (one SLURM job per fold through submitit) or
                              ``submitit-local`` (the same jobs as subprocesses of this machine: tests, trials)
``MERNB_SLURM_PARTITION``     partition of the fold jobs (default: the cluster's default partition)
``MERNB_SLURM_GPUS_PER_JOB``  GPUs per fold job (default 1 for ``slurm``, 0 for ``submitit-local``)
``MERNB_SLURM_MAX_JOBS``      fold jobs of one run queued or running at once (default 64)
``MERNB_SLURM_TIMEOUT_MIN``   wall-clock limit of a fold job (default 240)
``MERNB_SLURM_CPUS_PER_JOB``  CPUs per fold job (default 8), ``MERNB_SLURM_MEM_GB`` memory (default: the site's)
``MERNB_SLURM_RETRIES``       resubmissions of a failed fold (default 1), ``MERNB_SLURM_POLL_S`` poll period (10)
``MERNB_SLURM_FOLDER``        submitit folder (default ``<run out_dir>/jobs``: scripts, pickles, logs)
``MERNB_SLURM_SETUP``         shell lines run before each job (e.g. ``module load cuda``), separated by ``;``
``MERNB_SLURM_EXTRA``         JSON of extra ``#SBATCH`` settings, e.g. ``{"account": "mer", "qos": "normal"}``
``MERNB_SLURM_WARM_FIRST``    ``0``: submit all folds at once (default: the first fold alone, filling the caches)

A fold job unpickles the run's :class:`~mernb.train.loso.FoldTask` (written once per run with cloudpickle,
which pickles closures such as a ``TorchExperiment``'s ``model_fn``), trains that fold on its node and
writes ``folds/<fold>.json`` atomically on the shared filesystem; the waiting process pools the results.
A failed job is resubmitted ``MERNB_SLURM_RETRIES`` times; folds that still fail are reported together
with their log files, after every other fold has finished and been saved (a rerun computes only them).

Used by ``run_folds``, hence by every training notebook; ``mernb run --executor`` sets the variables.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mernb.errors import ConfigError, MernbError

EXECUTORS = ("local", "slurm", "submitit-local")
_ENV_FLAGS = {  # command-line flag (argparse dest) -> environment variable
    "slurm_partition": "MERNB_SLURM_PARTITION",
    "gpus_per_job": "MERNB_SLURM_GPUS_PER_JOB",
    "max_jobs": "MERNB_SLURM_MAX_JOBS",
}


class FoldJobsFailed(MernbError):
    """Folds whose jobs failed after their retries; ``failures`` maps fold name -> (error, log paths)."""

    def __init__(self, failures: dict[str, tuple[str, list[str]]]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} fold job(s) failed after retries (the other folds are saved; rerun to retry):"]
        for name, (error, logs) in failures.items():
            lines.append(f"  {name}: {error.strip().splitlines()[-1] if error.strip() else 'failed'}")
            lines += [f"    log: {log}" for log in logs]
        super().__init__("\n".join(lines))


class LocalExecutor:
    """Today's behaviour: the folds one after another in this process (exceptions propagate at once)."""

    name = "local"

    def run(self, task: Any, folds: Sequence[Any], *, progress: bool = True) -> Iterator[Any]:
        bar = tqdm(folds, desc=getattr(task.experiment, "name", "folds"), unit="fold", disable=not progress)
        for fold in bar:
            bar.set_postfix(fold=fold.name)
            yield task.run(fold)


@dataclass
class SubmititExecutor:
    """One submitit job per fold (``cluster='slurm'`` or ``'local'``), at most ``max_jobs`` at once.

    ``folder`` None: ``<task.fold_dir>/../jobs`` (beside the run's fold files), else ``runs/submitit``.
    ``warm_first``: the first fold runs alone, so that the inputs every fold derives from all clips (MPT's
    magnified motion, HLoRA's prefix tokens) are computed once into the shared disk caches under
    ``cache_dir`` instead of by every job at once; the other folds are submitted when it has ended.
    """

    cluster: str = "slurm"
    partition: str | None = None
    gpus_per_job: int = 1
    max_jobs: int = 64
    timeout_min: float = 240.0
    cpus_per_job: int = 8
    mem_gb: float | None = None
    retries: int = 1
    poll_s: float = 10.0
    folder: str | None = None
    setup: tuple[str, ...] = ()
    extra: dict[str, Any] | None = None
    warm_first: bool = True

    @property
    def name(self) -> str:
        return "slurm" if self.cluster == "slurm" else "submitit-local"

    def job_folder(self, task: Any) -> Path:
        if self.folder:
            return Path(self.folder).resolve()
        if task.fold_dir is not None:
            return Path(task.fold_dir).resolve().parent / "jobs"
        return (Path.cwd() / "runs" / "submitit").resolve()

    def executor(self, folder: Path) -> Any:
        """The submitit executor with this run's parameters (``%j``: one log folder per job)."""
        import submitit

        if self.cluster == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
            raise ConfigError("--executor slurm needs SLURM's sbatch and srun on PATH (run `mernb run` on a "
                              "login node); use --executor local here")
        cls = submitit.SlurmExecutor if self.cluster == "slurm" else submitit.LocalExecutor
        executor = cls(folder=str(folder / "%j"))
        if self.cluster == "slurm":
            params: dict[str, Any] = dict(time=max(1, int(self.timeout_min)), gpus_per_node=self.gpus_per_job,
                                          cpus_per_task=self.cpus_per_job, ntasks_per_node=1, nodes=1,
                                          job_name="mernb-fold")
            if self.partition:
                params["partition"] = self.partition
            if self.mem_gb:
                params["mem"] = f"{int(self.mem_gb)}GB"
            if self.setup:
                params["setup"] = list(self.setup)
            if self.extra:
                params["additional_parameters"] = dict(self.extra)
        else:
            params = dict(timeout_min=self.timeout_min, gpus_per_node=self.gpus_per_job, tasks_per_node=1)
            if self.setup:
                params["setup"] = list(self.setup)
        executor.update_parameters(**params)
        return executor

    def run(self, task: Any, folds: Sequence[Any], *, progress: bool = True) -> Iterator[Any]:
        import cloudpickle

        folder = self.job_folder(task)
        folder.mkdir(parents=True, exist_ok=True)
        task_file = folder / f"task-{os.getpid()}-{time.time_ns()}.pkl"
        tmp = task_file.with_suffix(".tmp")
        with open(tmp, "wb") as handle:  # once per run, not once per fold (a row's clips can be ~1 GB)
            cloudpickle.dump(task, handle)
        os.replace(tmp, task_file)
        executor = self.executor(folder)
        cwd = os.getcwd()
        queue = list(folds)
        attempts = {f.name: 0 for f in folds}
        running: dict[str, tuple[Any, Any]] = {}  # fold name -> (fold, job)
        failures: dict[str, tuple[str, list[str]]] = {}
        n_done = 0  # folds ended (finished, or failed for good)
        bar = tqdm(total=len(queue), desc=f"{getattr(task.experiment, 'name', 'folds')} [{self.name}]", unit="fold",
                   disable=not progress)
        try:
            while queue or running:
                window = 1 if (self.warm_first and len(attempts) > 1 and not n_done) else self.max_jobs
                while queue and len(running) < max(1, window):
                    fold = queue.pop(0)
                    attempts[fold.name] += 1
                    running[fold.name] = (fold, executor.submit(run_fold_job, str(task_file), fold, cwd))
                finished = [name for name, (_, job) in running.items() if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for name in finished:
                    fold, job = running.pop(name)
                    try:
                        result = job.result()
                        n_done += 1
                    except Exception as exc:  # noqa: BLE001 - submitit raises FailedJobError/UncompletedJobError
                        logs = [str(job.paths.stderr), str(job.paths.stdout)]
                        if attempts[name] <= self.retries:
                            tqdm.write(f"mernb: fold {name} job {job.job_id} failed ({_last_line(exc)}); "
                                       f"resubmitting (log: {logs[0]})")
                            queue.append(fold)
                        else:
                            failures[name] = (str(exc), logs)
                            n_done += 1
                            bar.update(1)
                        continue
                    bar.update(1)
                    yield result
        finally:
            bar.close()
            for _, job in running.values():  # the waiting process stopped: do not leave fold jobs behind
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort
                    pass
            if not running:
                task_file.unlink(missing_ok=True)
        if failures:
            raise FoldJobsFailed(failures)


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def run_fold_job(task_file: str, fold: Any, cwd: str) -> Any:
    """Body of one fold job: load the run's task, train the fold (unless a finished file is there already).

    Runs in the job's process (SLURM node or local subprocess) in the submitting process's directory, so
    relative paths of the experiment (caches, results) mean the same on the shared filesystem.
    """
    import pickle

    os.chdir(cwd)
    os.environ["MERNB_EXECUTOR"] = "local"  # anything run_folds-like inside a fold stays in this job
    with open(task_file, "rb") as handle:
        task = pickle.load(handle)
    path = task.path(fold)
    if path is not None and path.exists():  # finished by an earlier job (e.g. of a run that was interrupted)
        from mernb.train.loso import _load_fold

        stored = _load_fold(path, task.hash(fold))
        if stored is not None:
            stored.reused = False
            return stored
    print(f"mernb: fold {fold.name} of {getattr(task.experiment, 'name', '?')} on {os.uname().nodename}",
          flush=True)
    return task.run(fold)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def _env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be a number") from None


def fold_executor() -> LocalExecutor | SubmititExecutor:
    """The executor named by ``MERNB_EXECUTOR`` (default ``local``) with its ``MERNB_SLURM_*`` settings."""
    kind = os.environ.get("MERNB_EXECUTOR", "local") or "local"
    if kind not in EXECUTORS:
        raise ConfigError(f"MERNB_EXECUTOR={kind!r}: expected one of {EXECUTORS}")
    if kind == "local":
        return LocalExecutor()
    extra = os.environ.get("MERNB_SLURM_EXTRA")
    try:
        extra_params = json.loads(extra) if extra else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"MERNB_SLURM_EXTRA is not valid JSON: {exc}") from None
    setup = tuple(part.strip() for part in os.environ.get("MERNB_SLURM_SETUP", "").split(";") if part.strip())
    return SubmititExecutor(
        cluster="slurm" if kind == "slurm" else "local",
        partition=os.environ.get("MERNB_SLURM_PARTITION") or None,
        gpus_per_job=_env_int("MERNB_SLURM_GPUS_PER_JOB", 1 if kind == "slurm" else 0),
        max_jobs=_env_int("MERNB_SLURM_MAX_JOBS", 64),
        timeout_min=_env_float("MERNB_SLURM_TIMEOUT_MIN", 240.0) or 240.0,
        cpus_per_job=_env_int("MERNB_SLURM_CPUS_PER_JOB", 8),
        mem_gb=_env_float("MERNB_SLURM_MEM_GB", None),
        retries=_env_int("MERNB_SLURM_RETRIES", 1),
        poll_s=_env_float("MERNB_SLURM_POLL_S", 10.0) or 10.0,
        folder=os.environ.get("MERNB_SLURM_FOLDER") or None,
        setup=setup,
        extra=extra_params,
        warm_first=os.environ.get("MERNB_SLURM_WARM_FIRST", "1") != "0",
    )


def export_env(args: Any) -> None:
    """``mernb run --executor ... --slurm-partition ... --gpus-per-job ... --max-jobs ...`` -> environment.

    The notebook kernels started by ``mernb run`` inherit the variables, so their ``run_folds`` calls
    submit fold jobs. Called by ``mernb.cli`` before the run.
    """
    executor = getattr(args, "executor", None)
    if executor is None:
        return
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: expected one of {EXECUTORS}")
    os.environ["MERNB_EXECUTOR"] = executor
    for dest, var in _ENV_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            os.environ[var] = str(value)
    if executor == "slurm":
        print(f"[run] fold jobs go to SLURM through submitit ({describe()}); logs under each row's jobs/ folder",
              file=sys.stderr)


def describe() -> str:
    """One line naming the executor in effect and its settings (for logs and the run info)."""
    executor = fold_executor()
    if isinstance(executor, LocalExecutor):
        return "local (folds one after another in this process)"
    parts = [f"partition={executor.partition or 'default'}", f"gpus/job={executor.gpus_per_job}",
             f"max jobs={executor.max_jobs}", f"timeout={executor.timeout_min:g} min", f"retries={executor.retries}"]
    if executor.setup:
        parts.append("setup=" + shlex.quote("; ".join(executor.setup)))
    return f"{executor.name}: " + ", ".join(parts)
