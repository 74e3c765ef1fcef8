"""Subject-independent cross-validation: LOSO / subject k-fold / holdout folds and a resumable fold runner.

Rules (reference/datasets.md §7, methods.md §1.6):

* one fold per subject key (``dataset/subject``), so a composite's ``casme2/01`` and ``samm/01`` stay
  apart; no subject is ever on both sides of a fold (checked for every fold the runner gets);
* an experiment gets the training samples and the test samples **with their labels hidden**
  (``label == HIDDEN_LABEL``), trains on a fixed schedule and predicts; nothing is selected on the
  held-out subject;
* each finished fold is written atomically to ``out_dir/folds/<fold>.json`` with a hash of the
  experiment config, classes, seed and the fold's sample ids; a restart skips folds whose hash matches;
* metrics are computed once on the predictions pooled over all folds, per dataset from the same pool.

Used by every training notebook (MPT, HLoRA-MER, MA2MI) through ``run_loso`` / ``run_folds``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mernb.data.records import HIDDEN_LABEL, Sample
from mernb.errors import ConfigError, MernbError
from mernb.io import digest, write_json_atomic
from mernb.train.metrics import compute_metrics, per_group_metrics
from mernb.train.runtime import set_seed


def label_index(sample: Sample, classes: Sequence[str]) -> int:
    """Index of ``sample.label`` in ``classes``; -1 for a hidden (held-out) label; a clear error otherwise.

    Datasets built by ``TorchExperiment.dataset_fn`` should label samples with this, so that held-out
    samples (label hidden by the runner) get -1.
    """
    if sample.label == HIDDEN_LABEL:
        return -1
    try:
        return list(classes).index(sample.label)
    except ValueError:
        raise MernbError(
            f"sample {sample.sample_id} has label {sample.label!r}, which is not one of the protocol's "
            f"classes {list(classes)}; select the samples with the protocol first"
        ) from None


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text.replace("/", "-"))


@dataclass(frozen=True)
class Fold:
    """One train/test split: indices into the sample list the folds were built from."""

    name: str
    test_subjects: tuple[str, ...]
    train_idx: tuple[int, ...]
    test_idx: tuple[int, ...]

    @property
    def test_subject(self) -> str:
        """The held-out subject key (several joined by ``+`` for k-fold / holdout folds)."""
        return "+".join(self.test_subjects)


def loso_folds(samples: Sequence[Sample]) -> list[Fold]:
    """One fold per ``subject_key`` (``dataset/subject``), in natural order of the keys (sub2 before sub10)."""
    if not samples:
        raise MernbError("loso_folds got no samples")
    by_subject: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        by_subject.setdefault(sample.subject_key, []).append(i)
    if len(by_subject) < 2:
        raise MernbError(f"LOSO needs at least two subjects, got {sorted(by_subject)}")
    folds = []
    for key in sorted(by_subject, key=_natural_key):
        test = set(by_subject[key])
        train = tuple(i for i in range(len(samples)) if i not in test)
        folds.append(Fold(_safe_name(key), (key,), train, tuple(sorted(test))))
    return folds


def kfold_subject_folds(samples: Sequence[Sample], k: int = 5, seed: int = 0) -> list[Fold]:
    """Subject-independent k-fold (MMEW): subjects shuffled by ``seed``, then dealt to the fold with the fewest samples.

    Every subject is in exactly one test fold; sample counts per fold are balanced.
    """
    by_subject: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        by_subject.setdefault(sample.subject_key, []).append(i)
    if not 2 <= k <= len(by_subject):
        raise MernbError(f"k-fold needs 2 <= k <= number of subjects ({len(by_subject)}), got k={k}")
    keys = sorted(by_subject, key=_natural_key)
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    keys.sort(key=lambda key: -len(by_subject[key]))  # stable: shuffled order among equal sizes
    members: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for key in keys:
        j = min(range(k), key=lambda f: (sizes[f], f))
        members[j].append(key)
        sizes[j] += len(by_subject[key])
    folds = []
    for j, subjects in enumerate(members):
        subjects = sorted(subjects, key=_natural_key)
        test = {i for key in subjects for i in by_subject[key]}
        train = tuple(i for i in range(len(samples)) if i not in test)
        folds.append(Fold(f"fold{j + 1}of{k}", tuple(subjects), train, tuple(sorted(test))))
    return folds


def holdout_fold(
    train_samples: Sequence[Sample], test_samples: Sequence[Sample], name: str | None = None
) -> tuple[list[Sample], Fold]:
    """Cross-dataset split: returns ``(train_samples + test_samples, fold)`` to pass to ``run_folds``.

    The default name is ``<train datasets>-to-<test datasets>``; a subject key on both sides is an error.
    """
    if not train_samples or not test_samples:
        raise MernbError("holdout_fold needs training and test samples")
    overlap = {s.subject_key for s in train_samples} & {s.subject_key for s in test_samples}
    if overlap:
        raise MernbError(f"subjects on both sides of the holdout split: {sorted(overlap)[:5]}")
    if name is None:
        train_ds = "+".join(sorted({s.dataset for s in train_samples}))
        test_ds = "+".join(sorted({s.dataset for s in test_samples}))
        name = f"{train_ds}-to-{test_ds}"
    samples = list(train_samples) + list(test_samples)
    n = len(train_samples)
    subjects = tuple(sorted({s.subject_key for s in test_samples}, key=_natural_key))
    return samples, Fold(_safe_name(name), subjects, tuple(range(n)), tuple(range(n, len(samples))))


@dataclass
class FoldOutput:
    """What an experiment returns for one fold: class indices, optional per-class scores, free extras."""

    pred: list[int]
    scores: list[list[float]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Experiment(Protocol):
    """Anything with a ``name``, a JSON-serialisable ``config`` and ``fit_predict``.

    ``config`` must capture everything that changes the predictions (it is hashed for resuming).
    ``fit_predict`` trains a fresh model on ``train`` with a fixed schedule and predicts ``test``
    (whose labels are hidden), returning one prediction per test sample in the same order.
    """

    name: str
    config: dict[str, Any]

    def fit_predict(self, train: list[Sample], test: list[Sample], *, seed: int, fold: Fold) -> FoldOutput: ...


@dataclass
class FoldResult:
    """One fold's predictions, as stored in ``folds/<name>.json``; ``reused`` when read back from disk."""

    name: str
    test_subjects: list[str]
    sample_ids: list[str]
    datasets: list[str]
    subjects: list[str]
    y_true: list[int]
    y_pred: list[int]
    scores: list[list[float]] | None
    seconds: float
    hash: str
    extras: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("reused")
        return out


@dataclass
class CVResult:
    """All folds of one run, the pooled predictions and the metrics computed on the pool."""

    experiment: str
    config: dict[str, Any]
    classes: list[str]
    seed: int
    folds: list[FoldResult]
    predictions: list[dict[str, Any]]
    metrics: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]]
    wall_time_s: float

    @property
    def n_reused(self) -> int:
        """Folds read back from disk instead of computed in this call."""
        return sum(f.reused for f in self.folds)

    @property
    def fit_time_s(self) -> float:
        """Sum of the folds' own training+prediction time (including folds computed in earlier calls)."""
        return float(sum(f.seconds for f in self.folds))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: config, classes, seed, fold summaries, pooled predictions, metrics, times."""
        return {
            "experiment": self.experiment,
            "config": self.config,
            "classes": self.classes,
            "seed": self.seed,
            "metrics": self.metrics,
            "per_dataset": self.per_dataset,
            "wall_time_s": self.wall_time_s,
            "fit_time_s": self.fit_time_s,
            "folds": [
                {"name": f.name, "test_subjects": f.test_subjects, "n": len(f.sample_ids), "seconds": f.seconds,
                 "hash": f.hash, "extras": f.extras}
                for f in self.folds
            ],
            "predictions": self.predictions,
        }


def _jsonable(value: Any) -> Any:
    """Numbers, arrays and tensors as plain JSON values; anything else unknown as its ``repr``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays / scalars, torch tensors
        return value.tolist()
    return repr(value)


def sample_fingerprint(sample: Sample) -> list[Any]:
    """What a model sees of a sample besides its frames: id, label, onset, apex, offset, frame numbers."""
    return [sample.sample_id, sample.label, sample.onset, sample.apex, sample.offset, list(sample.frame_numbers)]


def fold_hash(experiment: Experiment, classes: Sequence[str], seed: int, samples: Sequence[Sample], fold: Fold,
              input_digests: Mapping[str, str] | None = None) -> str:
    """SHA-256 of the experiment name and config, classes, seed and the fold's train/test samples.

    Each sample enters with :func:`sample_fingerprint` (so a corrected label or offset recomputes the fold)
    and, when given, ``input_digests[sample_id]`` (a digest of the prepared clip: changed frames do too).
    """
    digests = input_digests or {}

    def side(indices: Sequence[int]) -> list[Any]:
        return [[*sample_fingerprint(samples[i]), digests.get(samples[i].sample_id)] for i in indices]

    payload = {
        "experiment": experiment.name,
        "config": experiment.config,
        "classes": list(classes),
        "seed": seed,
        "train": side(fold.train_idx),
        "test": side(fold.test_idx),
    }
    return digest(payload, 64)


def _check_folds(samples: Sequence[Sample], folds: Sequence[Fold]) -> None:
    if not folds:
        raise MernbError("no folds to run")
    names = [f.name for f in folds]
    if len(set(names)) != len(names):
        raise MernbError(f"fold names must be unique, got duplicates in {names}")
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise MernbError(f"sample ids must be unique (results are keyed by them); duplicates: {dup}")
    tested: set[int] = set()
    for fold in folds:
        train, test = set(fold.train_idx), set(fold.test_idx)
        if not test:
            raise MernbError(f"fold {fold.name} has no test samples")
        if train & test or not train:
            raise MernbError(f"fold {fold.name}: train and test indices overlap or train is empty")
        bad = [i for i in train | test if not 0 <= i < len(samples)]
        if bad:
            raise MernbError(f"fold {fold.name} has indices outside the sample list: {sorted(bad)[:5]}")
        leak = {samples[i].subject_key for i in train} & {samples[i].subject_key for i in test}
        if leak:
            raise MernbError(f"fold {fold.name}: subjects on both sides of the split: {sorted(leak)[:5]}")
        if tested & test:
            raise MernbError(f"fold {fold.name} tests samples already tested by an earlier fold")
        tested |= test


def _load_fold(path: Path, expected_hash: str) -> FoldResult | None:
    """The stored fold if its hash matches, else None (with a printed note)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored = data.get("hash")
    except (OSError, ValueError, AttributeError) as exc:
        tqdm.write(f"mernb: {path} is unreadable ({exc}); recomputing that fold")
        return None
    if stored != expected_hash:
        tqdm.write(f"mernb: {path.name} was computed with another config/classes/seed/samples; recomputing it")
        return None
    fields = {f.name for f in dataclasses.fields(FoldResult)} - {"reused"}
    missing = fields - set(data)
    if missing:
        tqdm.write(f"mernb: {path.name} lacks {sorted(missing)}; recomputing that fold")
        return None
    lengths = {k: len(data[k]) for k in ("sample_ids", "datasets", "subjects", "y_true", "y_pred")
               if isinstance(data[k], list)}
    if len(lengths) != 5 or len(set(lengths.values())) != 1 or (
            data["scores"] is not None and len(data["scores"]) != lengths["sample_ids"]):
        tqdm.write(f"mernb: {path} holds lists of different lengths ({lengths}); recomputing that fold")
        return None
    return FoldResult(**{k: data[k] for k in fields}, reused=True)


def _validate_output(out: Any, fold: Fold, n_test: int, n_classes: int) -> FoldOutput:
    if not isinstance(out, FoldOutput):
        raise MernbError(f"fit_predict must return a FoldOutput, got {type(out).__name__} (fold {fold.name})")
    pred = [int(p) for p in out.pred]
    if len(pred) != n_test:
        raise MernbError(f"fold {fold.name}: {len(pred)} predictions for {n_test} test samples")
    if any(not 0 <= p < n_classes for p in pred):
        raise MernbError(f"fold {fold.name}: predictions outside [0, {n_classes}): {sorted(set(pred))}")
    scores = None
    if out.scores is not None:
        scores = np.asarray(out.scores, dtype=float)
        if scores.shape != (n_test, n_classes):
            raise MernbError(f"fold {fold.name}: scores have shape {scores.shape}, expected ({n_test}, {n_classes})")
        scores = scores.tolist()
    return FoldOutput(pred=pred, scores=scores, extras=out.extras)


@dataclass
class FoldTask:
    """Everything one fold needs: ``run(fold)`` trains, predicts and writes ``fold_dir/<fold>.json`` atomically.

    The body of ``run_folds``' fold loop, as an object an executor (``mernb.train.executors``) calls here
    or in a cluster job (then it is pickled with cloudpickle).
    """

    experiment: Experiment
    samples: list[Sample]
    classes: list[str]
    seed: int
    fold_dir: Path | None
    input_digests: Mapping[str, str] | None = None

    def path(self, fold: Fold) -> Path | None:
        return self.fold_dir / f"{fold.name}.json" if self.fold_dir is not None else None

    def hash(self, fold: Fold) -> str:
        return fold_hash(self.experiment, self.classes, self.seed, self.samples, fold, self.input_digests)

    def run(self, fold: Fold) -> FoldResult:
        samples, classes, seed = self.samples, self.classes, self.seed
        train = [samples[i] for i in fold.train_idx]
        test = [samples[i] for i in fold.test_idx]
        test = [dataclasses.replace(s, label=HIDDEN_LABEL) for s in test]  # the runner keeps the truth
        set_seed(seed)
        t0 = time.perf_counter()
        out = self.experiment.fit_predict(train, test, seed=seed, fold=fold)
        seconds = time.perf_counter() - t0
        out = _validate_output(out, fold, len(test), len(classes))
        result = FoldResult(
            name=fold.name,
            test_subjects=list(fold.test_subjects),
            sample_ids=[samples[i].sample_id for i in fold.test_idx],
            datasets=[samples[i].dataset for i in fold.test_idx],
            subjects=[samples[i].subject for i in fold.test_idx],
            y_true=[label_index(samples[i], classes) for i in fold.test_idx],
            y_pred=out.pred,
            scores=out.scores,
            seconds=seconds,
            hash=self.hash(fold),
            extras=_jsonable(out.extras),
        )
        path = self.path(fold)
        if path is not None:
            write_json_atomic(path, result.to_dict())
        return result


def run_folds(
    experiment: Experiment,
    samples: Sequence[Sample],
    folds: Sequence[Fold],
    classes: Sequence[str],
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
    input_digests: Mapping[str, str] | None = None,
) -> CVResult:
    """Run ``experiment`` on every fold (resuming from ``out_dir``), pool the predictions, compute metrics.

    Each fold: ``set_seed(seed)``, ``experiment.fit_predict(train, test, seed=seed, fold=fold)`` with the
    test labels hidden, then ``out_dir/folds/<fold>.json`` written atomically. Folds already on disk with a
    matching hash are read back instead of recomputed (``force`` recomputes all). ``input_digests``
    (sample id -> digest of its prepared input) enter the fold hash. ``out_dir=None`` keeps
    everything in memory. The pooled result is also written to ``out_dir/cv_result.json``.
    """
    start = time.perf_counter()
    samples = list(samples)
    classes = list(classes)
    _check_folds(samples, folds)
    y_true_all = [label_index(s, classes) for s in samples]
    if HIDDEN_LABEL in {s.label for s in samples} or -1 in y_true_all:
        raise MernbError("samples given to the runner must carry their real labels")
    try:
        config = json.loads(json.dumps(experiment.config))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"experiment.config of {experiment.name!r} must be JSON-serialisable: {exc}") from None
    n_classes = getattr(experiment, "num_classes", len(classes))
    if n_classes != len(classes):
        raise ConfigError(f"experiment {experiment.name!r} has num_classes={n_classes} but the protocol has {len(classes)}")
    fold_dir = Path(out_dir) / "folds" if out_dir is not None else None

    done: dict[str, FoldResult] = {}
    pending: list[Fold] = []
    for fold in folds:
        path = fold_dir / f"{fold.name}.json" if fold_dir is not None else None
        if path is not None and path.exists() and not force:
            stored = _load_fold(path, fold_hash(experiment, classes, seed, samples, fold, input_digests))
            if stored is not None:
                done[fold.name] = stored
                continue
        pending.append(fold)
    if pending:  # executor hook: in-process loop by default, SLURM/submitit jobs when MERNB_EXECUTOR says so
        from mernb.train.executors import fold_executor

        task = FoldTask(experiment, samples, classes, seed, fold_dir, input_digests)
        for computed in fold_executor().run(task, pending, progress=progress):
            done[computed.name] = computed
    results = [done[fold.name] for fold in folds]

    predictions = [
        {"sample_id": sid, "dataset": ds, "subject": subj, "fold": r.name, "y_true": t, "y_pred": p,
         "scores": r.scores[j] if r.scores is not None else None}
        for r in results
        for j, (sid, ds, subj, t, p) in enumerate(zip(r.sample_ids, r.datasets, r.subjects, r.y_true, r.y_pred,
                                                         strict=True))
    ]
    y_true = [row["y_true"] for row in predictions]
    y_pred = [row["y_pred"] for row in predictions]
    datasets = [row["dataset"] for row in predictions]
    per_dataset = per_group_metrics(y_true, y_pred, datasets, classes) if len(set(datasets)) > 1 else {}
    result = CVResult(
        experiment=experiment.name,
        config=config,
        classes=classes,
        seed=seed,
        folds=results,
        predictions=predictions,
        metrics=compute_metrics(y_true, y_pred, classes),
        per_dataset=per_dataset,
        wall_time_s=time.perf_counter() - start,
    )
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / "cv_result.json", result.to_dict())
    return result


def run_loso(
    experiment: Experiment,
    samples: Sequence[Sample],
    classes: Sequence[str],
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
) -> CVResult:
    """``run_folds`` over ``loso_folds(samples)``: one fresh model per subject, pooled metrics."""
    return run_folds(experiment, samples, loso_folds(samples), classes, out_dir, seed=seed, progress=progress,
                     force=force)
