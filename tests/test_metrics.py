"""compute_metrics against scikit-learn; per-group scores from the same pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from mernb.errors import MernbError
from mernb.train.metrics import compute_metrics, format_metrics, per_group_metrics

CLASSES = ["negative", "positive", "surprise", "others"]
LABELS = list(range(len(CLASSES)))


def _sk(y_true, y_pred):
    kw = {"labels": LABELS, "zero_division": 0}
    return {
        "acc": accuracy_score(y_true, y_pred),
        "uf1": f1_score(y_true, y_pred, average="macro", **kw),
        "uar": recall_score(y_true, y_pred, average="macro", **kw),
        "war": recall_score(y_true, y_pred, average="weighted", **kw),
        "f1": f1_score(y_true, y_pred, average=None, **kw),
        "recall": recall_score(y_true, y_pred, average=None, **kw),
        "precision": precision_score(y_true, y_pred, average=None, **kw),
        "confusion": confusion_matrix(y_true, y_pred, labels=LABELS),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_with_class_absent_from_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=60)
    y_pred = np.where(rng.random(60) < 0.5, y_true, rng.integers(0, 3, size=60))
    y_pred[y_pred == 3] = 0  # class 3 is never predicted
    assert 3 in y_true and 3 not in y_pred
    ours = compute_metrics(y_true.tolist(), y_pred.tolist(), CLASSES)
    ref = _sk(y_true, y_pred)
    for key in ("acc", "uf1", "uar", "war"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
        assert type(ours[key]) is float
    assert ours["war"] == pytest.approx(ours["acc"])
    assert ours["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert ours["confusion"] == ref["confusion"].tolist()
    assert ours["support"] == np.bincount(y_true, minlength=4).tolist()
    for i, name in enumerate(CLASSES):
        assert ours["per_class"][name]["f1"] == pytest.approx(ref["f1"][i])
        assert ours["per_class"][name]["recall"] == pytest.approx(ref["recall"][i])
        assert ours["per_class"][name]["precision"] == pytest.approx(ref["precision"][i])
    json.dumps(ours)  # plain Python types only


def test_class_absent_from_truth_counts_in_macro_scores():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2]  # perfect on 3 of the 4 protocol classes
    m = compute_metrics(y_true, y_pred, CLASSES)
    assert m["acc"] == 1.0
    assert m["uf1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", labels=LABELS, zero_division=0))
    assert m["uf1"] == pytest.approx(0.75)
    assert m["uar"] == pytest.approx(0.75)


def test_accepts_class_names_and_rejects_unknown():
    m = compute_metrics(["negative", "positive"], ["negative", "negative"], CLASSES)
    assert m["acc"] == 0.5 and m["confusion"][0][0] == 1 and m["confusion"][1][0] == 1
    with pytest.raises(MernbError, match="happiness"):
        compute_metrics(["happiness"], ["negative"], CLASSES)
    with pytest.raises(MernbError, match="class index"):
        compute_metrics([0], [7], CLASSES)
    with pytest.raises(MernbError, match="entries"):
        compute_metrics([0, 1], [0], CLASSES)


def test_per_group_metrics_come_from_the_same_pool():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 3, size=90).tolist()
    y_pred = rng.integers(0, 3, size=90).tolist()
    groups = (["smic"] * 30) + (["casme2"] * 25) + (["samm"] * 35)
    per = per_group_metrics(y_true, y_pred, groups, CLASSES[:3])
    assert list(per) == ["smic", "casme2", "samm"]
    assert per["casme2"]["n"] == 25
    sl = slice(30, 55)
    kw = {"labels": [0, 1, 2], "average": "macro", "zero_division": 0}
    assert per["casme2"]["uf1"] == pytest.approx(f1_score(y_true[sl], y_pred[sl], **kw))
    assert per["casme2"]["uar"] == pytest.approx(recall_score(y_true[sl], y_pred[sl], **kw))
    total = sum(np.array(p["confusion"]) for p in per.values())
    assert total.tolist() == compute_metrics(y_true, y_pred, CLASSES[:3])["confusion"]
    assert "uf1" in format_metrics(per["smic"])
