"""Pooled classification metrics as reported by MER papers: Acc, UF1, UAR, WAR, confusion matrix.

MEGC convention (reference/datasets.md §7): predictions are pooled over all LOSO folds first, then
UF1 = mean per-class F1 and UAR = mean per-class recall over the protocol's classes. Per-dataset scores
of a composite come from the same pool (``per_group_metrics``). Classes absent from the truth or the
predictions still count (their recall / F1 is 0, as scikit-learn's ``zero_division=0``).

Used by the LOSO runner (``mernb.train.loso``), the report tables and every results notebook.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from mernb.errors import MernbError


def _as_indices(values: Sequence[Any], classes: Sequence[str], what: str) -> np.ndarray:
    """Class indices from indices or class names; a clear error for anything outside ``classes``."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            if value not in classes:
                raise MernbError(f"{what}[{i}] = {value!r} is not one of the classes {list(classes)}")
            out[i] = list(classes).index(value)
        else:
            index = int(value)
            if not 0 <= index < len(classes) or index != value:
                raise MernbError(f"{what}[{i}] = {value!r} is not a class index in [0, {len(classes)})")
            out[i] = index
    return out


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """Counts ``C[i, j]`` of truth ``classes[i]`` predicted as ``classes[j]`` (int64, K x K)."""
    t = _as_indices(y_true, classes, "y_true")
    p = _as_indices(y_pred, classes, "y_pred")
    if len(t) != len(p):
        raise MernbError(f"y_true has {len(t)} entries but y_pred has {len(p)}")
    k = len(classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def compute_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[str]) -> dict[str, Any]:
    """Acc, UF1, UAR, WAR, confusion, support and per-class recall/precision/F1 (plain Python types).

    ``y_true``/``y_pred`` hold class indices into ``classes`` or class names. Keys: ``n``, ``acc``,
    ``uf1`` (macro F1), ``uar`` (macro recall), ``war`` (support-weighted recall = accuracy),
    ``confusion`` (rows = truth, columns = prediction, in class order), ``support`` (list in class
    order), ``classes``, ``per_class`` ({class: {recall, precision, f1, support}}).
    """
    if not classes:
        raise MernbError("compute_metrics needs at least one class")
    cm = confusion_matrix(y_true, y_pred, classes)
    n = int(cm.sum())
    if n == 0:
        raise MernbError("compute_metrics got no predictions")
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    acc = float(tp.sum() / n)
    return {
        "n": n,
        "acc": acc,
        "uf1": float(f1.mean()),
        "uar": float(recall.mean()),
        "war": float((recall * support).sum() / n),
        "classes": list(classes),
        "confusion": cm.tolist(),
        "support": [int(s) for s in support],
        "per_class": {
            name: {
                "recall": float(recall[i]),
                "precision": float(precision[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def per_group_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], groups: Sequence[Hashable], classes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``compute_metrics`` for each group (e.g. dataset of a composite), all over the same protocol classes.

    The rows come from the one pooled prediction list, so per-dataset scores match the pooled run
    (MEGC practice). Groups are returned in first-seen order.
    """
    if not len(y_true) == len(y_pred) == len(groups):
        raise MernbError(f"lengths differ: y_true {len(y_true)}, y_pred {len(y_pred)}, groups {len(groups)}")
    out: dict[str, dict[str, Any]] = {}
    for group in dict.fromkeys(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        out[str(group)] = compute_metrics([y_true[i] for i in rows], [y_pred[i] for i in rows], classes)
    return out


def format_metrics(metrics: dict[str, Any], keys: Sequence[str] = ("acc", "uf1", "uar")) -> str:
    """One line such as ``acc 0.6123  uf1 0.5012  uar 0.4988  (n=442)`` for logs and notebooks."""
    parts = [f"{key} {metrics[key]:.4f}" for key in keys]
    return "  ".join(parts) + f"  (n={metrics['n']})"
