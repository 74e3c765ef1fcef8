"""The onset–apex difference baseline (with optional magnification) on a small SynthME set."""

from __future__ import annotations

import numpy as np

from mernb.data.protocols import protocol
from mernb.data.readers import read_dataset
from mernb.data.synth import generate
from mernb.experiments.baselines import difference_baseline, difference_features


def test_difference_baseline_beats_majority_and_magnification_changes_features(tmp_path):
    info = generate("casme2", tmp_path, rows="generated", max_subjects=8, max_samples_per_subject=8,
                    frame_step=2)
    proto = protocol("casme2_5class")
    samples = proto.select(read_dataset("casme2", info.root, info.annotation))
    result = difference_baseline(samples, proto.classes)
    assert result["acc"] > result["majority"] + 0.05, result
    plain = difference_features(samples[0])
    magnified = difference_features(samples[0], alpha=20)
    assert plain.shape == magnified.shape == (28 * 28,)
    assert not np.allclose(plain, magnified)


def test_difference_baseline_on_folds_smaller_than_its_pca(tmp_path, monkeypatch):
    """A set whose training folds hold fewer than 21 clips runs (PCA capped by the smallest training fold)."""
    import mernb.experiments.baselines as B

    info = generate("casme2", tmp_path, rows="generated", max_subjects=3, max_samples_per_subject=4, frame_step=2)
    proto = protocol("casme2_5class")
    samples = proto.select(read_dataset("casme2", info.root, info.annotation))
    assert len(samples) < 21
    result = B.difference_baseline(samples, proto.classes)
    assert 0.0 <= result["acc"] <= 1.0


def test_reference_rows_majority_chance_and_difference_on_the_rows_folds(tmp_path):
    import pytest

    from mernb.experiments.baselines import chance_metrics, majority_on_folds, reference_rows
    from mernb.experiments.common import ProtocolData, reference_metrics

    # majority: each fold predicts its own training majority (hand-computed)
    y = np.array([0, 0, 1, 1, 1, 2])
    folds = [(np.array([2, 3, 4, 5]), np.array([0, 1])), (np.array([0, 1, 5]), np.array([2, 3, 4]))]
    m = majority_on_folds(y, folds, ["a", "b", "c"])
    assert m["acc"] == pytest.approx(0.0)  # fold 1 predicts b for two a's, fold 2 predicts a for three b's
    # chance, K = 2, 3 a and 1 b: acc = UAR = 1/2; F1(a) = 2·.75·.5/1.25 = .6, F1(b) = 2·.25·.5/.75 = 1/3
    c = chance_metrics([0, 0, 0, 1], ["a", "b"])
    assert c["acc"] == pytest.approx(0.5) and c["uar"] == pytest.approx(0.5)
    assert c["uf1"] == pytest.approx((0.6 + 1 / 3) / 2)

    # the difference row on LOSO folds equals the LOSO difference baseline (same pipeline, same folds)
    info = generate("casme2", tmp_path, rows="generated", max_subjects=8, max_samples_per_subject=8, frame_step=2)
    proto = protocol("casme2_5class")
    samples = proto.select(read_dataset("casme2", info.root, info.annotation))
    doc = {"config": {"split": "loso"}, "result": {"predictions": [
        {"sample_id": s.sample_id, "fold": s.subject_key} for s in samples]}}
    data = ProtocolData("casme2", proto.name, list(proto.classes), samples, {})
    refs = reference_metrics(data, doc)
    assert set(refs) == {"reference: majority class", "reference: chance", "reference: linear difference"}
    assert refs["reference: linear difference"]["acc"] == pytest.approx(difference_baseline(samples, proto.classes)["acc"])
    loso = [(np.array([i for i, s in enumerate(samples) if s.subject_key != k]),
             np.array([i for i, s in enumerate(samples) if s.subject_key == k]))
            for k in dict.fromkeys(s.subject_key for s in samples)]
    assert refs["reference: majority class"] == reference_rows(samples, loso, proto.classes, difference=False)[
        "reference: majority class"]
