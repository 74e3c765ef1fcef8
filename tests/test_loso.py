"""Folds (LOSO, subject k-fold, holdout), the resumable runner and TorchExperiment on tiny random data."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mernb.data.records import Sample
from mernb.errors import ConfigError, MernbError
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig
from mernb.train.loso import (
    HIDDEN_LABEL,
    Experiment,
    Fold,
    FoldOutput,
    holdout_fold,
    kfold_subject_folds,
    label_index,
    loso_folds,
    run_folds,
    run_loso,
)
from mernb.train.metrics import compute_metrics, per_group_metrics

CLASSES = ["negative", "positive", "surprise"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread beats fighting for cores


def make_samples(datasets=("casme2", "samm"), subjects=("1", "2", "10", "3"), per_subject=6, seed=0, sep=3.0):
    """Samples whose ``meta['x']`` is an 8-D point around a class mean (separable when ``sep`` is large).

    Both datasets use the same subject ids, as a composite does.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(CLASSES), 8)) * sep
    out = []
    for ds in datasets:
        for subj in subjects:
            for k in range(per_subject):
                c = (k + int(subj)) % len(CLASSES)
                x = (means[c] + rng.normal(size=8)).astype(np.float32)
                out.append(Sample(ds, subj, f"clip{k}", 10 * k, None, 10 * k + 5, CLASSES[c], meta={"x": x}))
    return out


def check_folds(samples, folds, *, all_tested=True):
    tested = Counter()
    for fold in folds:
        train_subj = {samples[i].subject_key for i in fold.train_idx}
        test_subj = {samples[i].subject_key for i in fold.test_idx}
        assert not train_subj & test_subj, fold.name
        assert not set(fold.train_idx) & set(fold.test_idx)
        assert set(fold.test_subjects) == test_subj
        tested.update(fold.test_idx)
    if all_tested:
        assert sorted(tested) == list(range(len(samples))) and set(tested.values()) == {1}


def test_loso_one_fold_per_subject_key_and_composites_stay_apart():
    samples = make_samples()
    folds = loso_folds(samples)
    assert len(folds) == 8  # 4 subject ids x 2 datasets: casme2/1 and samm/1 are different people
    assert [f.test_subject for f in folds[:4]] == ["casme2/1", "casme2/2", "casme2/3", "casme2/10"]
    assert len({f.name for f in folds}) == 8 and "/" not in folds[0].name
    check_folds(samples, folds)
    assert all(len(f.train_idx) + len(f.test_idx) == len(samples) for f in folds)
    assert loso_folds(samples) == folds  # deterministic
    with pytest.raises(MernbError, match="two subjects"):
        loso_folds(samples[:6])


def test_kfold_subject_folds():
    samples = make_samples(subjects=("1", "2", "3", "4", "5", "6", "7"))
    folds = kfold_subject_folds(samples, k=5, seed=0)
    assert len(folds) == 5
    check_folds(samples, folds)
    sizes = [len(f.test_idx) for f in folds]
    assert max(sizes) - min(sizes) <= 6  # balanced to within one subject
    assert kfold_subject_folds(samples, k=5, seed=0) == folds
    assert kfold_subject_folds(samples, k=5, seed=1) != folds
    with pytest.raises(MernbError, match="k-fold"):
        kfold_subject_folds(samples, k=15)


def test_holdout_fold():
    train = make_samples(datasets=("casme2", "samm"))
    test = make_samples(datasets=("smic",))
    samples, fold = holdout_fold(train, test)
    assert fold.name == "casme2+samm-to-smic"
    check_folds(samples, [fold], all_tested=False)
    assert [samples[i] for i in fold.test_idx] == test
    with pytest.raises(MernbError, match="both sides"):
        holdout_fold(train, train[:3])


class Centroid:
    """Deterministic nearest-centroid experiment that counts fits and can fail after N folds."""

    name = "centroid"

    def __init__(self, fail_after=None, shrink=0.0):
        self.fail_after = fail_after
        self.shrink = shrink
        self.fits = []

    @property
    def config(self):
        return {"shrink": self.shrink}

    def fit_predict(self, train, test, *, seed, fold):
        if self.fail_after is not None and len(self.fits) >= self.fail_after:
            raise KeyboardInterrupt("killed mid-LOSO")
        self.fits.append(fold.name)
        assert all(s.label == HIDDEN_LABEL for s in test), "test labels must be hidden"
        assert all(label_index(s, CLASSES) == -1 for s in test)
        assert HIDDEN_LABEL not in {s.label for s in train}
        X = np.stack([s.meta["x"] for s in train])
        y = np.array([label_index(s, CLASSES) for s in train])
        cent = np.stack([X[y == c].mean(0) * (1 - self.shrink) for c in range(len(CLASSES))])
        d = ((np.stack([s.meta["x"] for s in test])[:, None] - cent[None]) ** 2).sum(-1)
        scores = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
        return FoldOutput(pred=d.argmin(1).tolist(), scores=scores.tolist(), extras={"n_train": np.int64(len(train))})


def test_run_loso_pools_predictions_and_writes_fold_files(tmp_path):
    samples = make_samples()
    exp = Centroid()
    assert isinstance(exp, Experiment)
    res = run_loso(exp, samples, CLASSES, tmp_path, progress=False)
    assert len(exp.fits) == 8 and res.n_reused == 0
    assert sorted(r["sample_id"] for r in res.predictions) == sorted(s.sample_id for s in samples)
    truth = {s.sample_id: CLASSES.index(s.label) for s in samples}
    assert all(r["y_true"] == truth[r["sample_id"]] for r in res.predictions)
    y_t = [r["y_true"] for r in res.predictions]
    y_p = [r["y_pred"] for r in res.predictions]
    assert res.metrics == compute_metrics(y_t, y_p, CLASSES)
    assert res.metrics["acc"] > 0.8
    assert set(res.per_dataset) == {"casme2", "samm"}
    assert res.per_dataset == per_group_metrics(y_t, y_p, [r["dataset"] for r in res.predictions], CLASSES)
    files = sorted(p.name for p in (tmp_path / "folds").iterdir())
    assert files == sorted(f"{f.name}.json" for f in loso_folds(samples))  # no temporary files left
    stored = json.loads((tmp_path / "folds" / files[0]).read_text())
    assert {"sample_ids", "subjects", "y_true", "y_pred", "scores", "seconds", "hash"} <= set(stored)
    assert stored["extras"]["n_train"] == 42
    saved = json.loads((tmp_path / "cv_result.json").read_text())
    assert saved["metrics"]["uf1"] == res.metrics["uf1"] and len(saved["predictions"]) == len(samples)
    json.dumps(res.to_dict())


def test_killed_run_resumes_without_recomputing_finished_folds(tmp_path):
    samples = make_samples()
    full = run_loso(Centroid(), samples, CLASSES, tmp_path / "full", progress=False)

    dying = Centroid(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_loso(dying, samples, CLASSES, tmp_path / "resumed", progress=False)
    assert len(list((tmp_path / "resumed" / "folds").glob("*.json"))) == 3
    again = Centroid()
    resumed = run_loso(again, samples, CLASSES, tmp_path / "resumed", progress=False)
    assert len(again.fits) == 5 and not set(again.fits) & set(dying.fits)
    assert resumed.n_reused == 3
    assert resumed.predictions == full.predictions
    assert resumed.metrics == full.metrics

    third = Centroid()
    run_loso(third, samples, CLASSES, tmp_path / "resumed", progress=False)
    assert third.fits == []  # everything finished: nothing recomputed
    forced = Centroid()
    run_loso(forced, samples, CLASSES, tmp_path / "resumed", progress=False, force=True)
    assert len(forced.fits) == 8


def test_config_seed_or_sample_change_recomputes(tmp_path, capsys):
    samples = make_samples()
    run_loso(Centroid(), samples, CLASSES, tmp_path, progress=False)
    changed = Centroid(shrink=0.5)
    run_loso(changed, samples, CLASSES, tmp_path, progress=False)
    assert len(changed.fits) == 8
    out = capsys.readouterr()
    assert "recomputing" in out.out + out.err
    reseeded = Centroid(shrink=0.5)
    run_loso(reseeded, samples, CLASSES, tmp_path, seed=1, progress=False)
    assert len(reseeded.fits) == 8
    fewer = Centroid(shrink=0.5)  # one sample dropped: every fold's train or test ids change
    run_loso(fewer, samples[:-1], CLASSES, tmp_path, seed=1, progress=False)
    assert len(fewer.fits) == 8
    same = Centroid(shrink=0.5)
    run_loso(same, samples[:-1], CLASSES, tmp_path, seed=1, progress=False)
    assert same.fits == []


def test_corrupt_fold_file_is_recomputed(tmp_path):
    samples = make_samples()
    run_loso(Centroid(), samples, CLASSES, tmp_path, progress=False)
    (tmp_path / "folds" / "casme2-1.json").write_text("{ half a file")
    again = Centroid()
    run_loso(again, samples, CLASSES, tmp_path, progress=False)
    assert again.fits == ["casme2-1"]


def test_runner_rejects_leaky_folds_and_unknown_labels(tmp_path):
    samples = make_samples()
    leaky = Fold("leaky", ("casme2/1",), tuple(range(0, 12)), tuple(range(3, 6)))
    with pytest.raises(MernbError, match="overlap"):
        run_folds(Centroid(), samples, [leaky], CLASSES, None, progress=False)
    same_subject = Fold("leaky", ("casme2/1",), tuple(range(0, 3)), tuple(range(3, 6)))
    with pytest.raises(MernbError, match="both sides"):
        run_folds(Centroid(), samples, [same_subject], CLASSES, None, progress=False)
    first = loso_folds(samples)[0]
    twice = [first, Fold("again", first.test_subjects, first.train_idx, first.test_idx)]
    with pytest.raises(MernbError, match="already tested by an earlier fold"):
        run_folds(Centroid(), samples, twice, CLASSES, None, progress=False)
    with pytest.raises(MernbError, match="not one of the protocol"):
        run_loso(Centroid(), samples, ["negative", "positive"], None, progress=False)


# --------------------------------------------------------------------------- TorchExperiment


class PointDataset(Dataset):
    def __init__(self, samples, train):
        self.x = torch.from_numpy(np.stack([s.meta["x"] for s in samples]))
        self.y = [label_index(s, CLASSES) for s in samples]
        assert train or set(self.y) == {-1}

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def tiny_mlp(num_classes):
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, num_classes))


def torch_experiment(**kw):
    args = dict(name="mlp", model_fn=tiny_mlp, dataset_fn=PointDataset, num_classes=3, epochs=6, batch_size=9,
                optimizer=OptimConfig("adam", lr=2e-2), scheduler="cosine", device="cpu", progress=False,
                details={"hidden": 16})
    args.update(kw)
    return TorchExperiment(**args)


def test_torch_experiment_learns_and_is_deterministic():
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3", "4"), per_subject=9, sep=1.5)
    folds = loso_folds(samples)
    ended = []
    exp = torch_experiment(on_fold_end=lambda fold, model, info: ended.append((fold.name, len(info["history"]))),
                           keep_model=True)
    res = run_folds(exp, samples, folds, CLASSES, None, seed=0, progress=False)
    assert res.metrics["acc"] > 0.75  # chance is 1/3
    assert ended == [(f.name, 6) for f in folds]
    assert set(exp.models) == {f.name for f in folds}
    assert res.folds[0].extras["history"][-1]["epoch"] == 6
    assert all(abs(sum(r["scores"]) - 1) < 1e-5 for r in res.predictions)

    first = [r["scores"] for r in res.predictions if r["fold"] == folds[0].name]
    again = run_folds(torch_experiment(), samples, folds[:1], CLASSES, None, seed=0, progress=False)
    assert [r["scores"] for r in again.predictions] == first
    other = run_folds(torch_experiment(), samples, folds[:1], CLASSES, None, seed=1, progress=False)
    assert [r["scores"] for r in other.predictions] != first


def test_torch_experiment_config_and_errors():
    exp = torch_experiment()
    cfg = exp.config
    json.dumps(cfg)
    assert cfg["epochs"] == 6 and cfg["scheduler"]["name"] == "cosine" and cfg["details"] == {"hidden": 16}
    assert "device" not in cfg
    with pytest.raises(ConfigError, match="amp_dtype"):
        torch_experiment(amp_dtype="float32")
    with pytest.raises(ConfigError, match="num_classes"):
        run_loso(torch_experiment(num_classes=4), make_samples(), CLASSES, None, progress=False)


class LazyFlipDataset(PointDataset):
    """Like a recipe's dataset: the first call prepares inputs with random numbers (a probe model...), and
    training items are flipped at random (drawing from ``generator`` when the experiment sets one)."""

    prepared: list[bool] = []

    def __init__(self, samples, train):
        if not LazyFlipDataset.prepared:
            torch.randn(100)  # lazy preparation consumes the process's generator once
            LazyFlipDataset.prepared.append(True)
        super().__init__(samples, train)
        self.train = train
        self.generator = None

    def __getitem__(self, i):
        x, y, i = super().__getitem__(i)
        if self.train and bool(torch.rand((), generator=self.generator) < 0.5):
            x = -x
        return x, y, i


def test_a_fold_trained_alone_equals_the_same_fold_in_a_full_run():
    """Issue 7.4: a fold's randomness (init, shuffling, flips) does not depend on what ran before it."""
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3"), per_subject=9, sep=1.5)
    folds = loso_folds(samples)
    LazyFlipDataset.prepared.clear()
    full = run_folds(torch_experiment(dataset_fn=LazyFlipDataset), samples, folds, CLASSES, None, seed=0,
                     progress=False)
    torch.rand(3)
    alone = run_folds(torch_experiment(dataset_fn=LazyFlipDataset), samples, folds[:1], CLASSES, None, seed=0,
                      progress=False)
    first = [r["scores"] for r in full.predictions if r["fold"] == folds[0].name]
    assert [r["scores"] for r in alone.predictions] == first


def test_step_budget_per_fold():
    """``steps``: each fold trains ceil(steps / its own batches per epoch) epochs."""
    samples = make_samples(datasets=("casme2",), subjects=("1", "2", "3"), per_subject=9, sep=1.5)
    samples = samples[:2] + samples[9:]  # subjects of 2, 9 and 9 samples
    exp = torch_experiment(epochs=None, steps=5, batch_size=4)
    res = run_loso(exp, samples, CLASSES, None, progress=False)
    for fold in res.folds:
        n_train = len(samples) - len(fold.sample_ids)
        per_epoch = -(-n_train // 4)
        assert 5 <= fold.extras["steps"] < 5 + per_epoch
    assert exp.config["steps"] == 5 and exp.config["epochs"] is None
    with pytest.raises(ConfigError, match="exactly one of epochs and steps"):
        torch_experiment(epochs=3, steps=5)


def test_kfold_balances_unequal_subjects_largest_first():
    """Subjects of 10, 8, 2, 1, 1, 1, 1 samples into 3 folds: largest first, each to the emptiest fold,
    gives 10 / 8 / 2+1+1+1+1 = 6 (hand-computed)."""
    sizes = {"a": 10, "b": 1, "c": 1, "d": 1, "e": 1, "f": 8, "g": 2}
    samples = [Sample("casme2", subj, f"c{i}", i, None, i + 5, CLASSES[i % 3], meta={"x": np.zeros(8)})
               for subj, n in sizes.items() for i in range(n)]
    for seed in (0, 1, 2):
        folds = kfold_subject_folds(samples, k=3, seed=seed)
        check_folds(samples, folds)
        assert sorted(len(f.test_idx) for f in folds) == [6, 8, 10]
        small = next(f for f in folds if len(f.test_idx) == 6)
        assert sorted(small.test_subjects) == ["casme2/b", "casme2/c", "casme2/d", "casme2/e", "casme2/g"]


class Fixed:
    """Predicts one fixed class index for everything."""

    name = "fixed"

    def __init__(self, value):
        self.value = value
        self.config = {"value": value}

    def fit_predict(self, train, test, *, seed, fold):
        return FoldOutput(pred=[self.value] * len(test))


def test_runner_rejects_predictions_outside_the_classes_and_unlabelled_samples():
    samples = make_samples()
    with pytest.raises(MernbError, match="predictions outside"):
        run_loso(Fixed(3), samples, CLASSES, None, progress=False)
    with pytest.raises(MernbError, match="predictions outside"):
        run_loso(Fixed(-1), samples, CLASSES, None, progress=False)
    run_loso(Fixed(2), samples, CLASSES, None, progress=False)  # in range: fine
    import dataclasses

    unlabelled = [dataclasses.replace(samples[0], label=HIDDEN_LABEL), *samples[1:]]
    with pytest.raises(MernbError, match="must carry their real labels"):
        run_loso(Fixed(0), unlabelled, CLASSES, None, progress=False)


def test_fold_file_with_lists_of_different_lengths_is_recomputed(tmp_path, capsys):
    """Issue 10 §6: a hand-edited fold file whose lists disagree is recomputed with a message, not a raw zip error."""
    samples = make_samples()
    run_loso(Centroid(), samples, CLASSES, tmp_path, progress=False)
    path = tmp_path / "folds" / "casme2-1.json"
    doc = json.loads(path.read_text())
    doc["y_pred"] = doc["y_pred"][:-1]
    path.write_text(json.dumps(doc))
    again = Centroid()
    run_loso(again, samples, CLASSES, tmp_path, progress=False)
    assert again.fits == ["casme2-1"]
    captured = capsys.readouterr()
    assert "different lengths" in captured.out + captured.err


def test_changed_prepared_input_recomputes_only_the_folds_that_saw_it(tmp_path):
    """Input digests (a digest of each prepared clip) enter the fold files' hash: a clip whose frames changed
    retrains every fold that saw it (all of them: it is in their training or test set), the same digests
    reuse every fold."""
    samples = make_samples()
    folds = loso_folds(samples)
    digests = {s.sample_id: "v1" for s in samples}
    run_folds(Centroid(), samples, folds, CLASSES, tmp_path, progress=False, input_digests=digests)
    same = Centroid()
    run_folds(same, samples, folds, CLASSES, tmp_path, progress=False, input_digests=dict(digests))
    assert same.fits == []
    changed = Centroid()
    run_folds(changed, samples, folds, CLASSES, tmp_path, progress=False,
              input_digests={**digests, samples[0].sample_id: "v2"})
    assert sorted(changed.fits) == sorted(f.name for f in folds)
    again = Centroid()  # the recomputed folds were written with the new digest
    run_folds(again, samples, folds, CLASSES, tmp_path, progress=False,
              input_digests={**digests, samples[0].sample_id: "v2"})
    assert again.fits == []
