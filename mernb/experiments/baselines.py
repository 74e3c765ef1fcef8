"""A simple onset–apex difference baseline under LOSO, with optional Eulerian magnification first.

Shows that SynthME is learnable but not trivial, and whether magnifying the motion helps (the amplitudes
are about a pixel, so it should). Used by docs/benchmarks.md and tests/test_synth.py-style checks, and for
the reference rows of every results table (:func:`reference_rows`: majority class, chance, this baseline,
on the row's own folds; called through :func:`mernb.experiments.common.reference_metrics`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from mernb.data.clips import load_frames
from mernb.data.records import Sample
from mernb.motion.magnify import magnify
from mernb.train.metrics import compute_metrics


def difference_features(sample: Sample, *, alpha: float = 0.0, low: float = 0.4, high: float = 4.0,
                        grid: int = 28) -> np.ndarray:
    """|apex − onset| (grey, averaged to ``grid``²) of the clip, magnified by ``alpha`` first when > 0."""
    frames = load_frames(sample.frame_paths)  # (T, H, W, 3) uint8, onset..offset
    apex = int(np.argmin([abs(n - sample.apex_frame) for n in sample.frame_numbers]))
    if alpha > 0:
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        frames = (magnify(clip, sample.fps, alpha=alpha, low=low, high=high).permute(0, 2, 3, 1).numpy() * 255.0)
    grey = frames.astype(np.float32).mean(-1)
    diff = np.abs(grey[apex] - grey[0])
    h, w = diff.shape
    diff = diff[: h - h % grid, : w - w % grid]
    return diff.reshape(grid, diff.shape[0] // grid, grid, diff.shape[1] // grid).mean((1, 3)).ravel()


def difference_baseline(samples: Sequence[Sample], classes: Sequence[str], *, alpha: float = 0.0,
                        seed: int = 0, **feature_kwargs) -> dict:
    """LOSO (by subject) accuracy/UF1/UAR of standardise → PCA(≤ 20, capped by the smallest training fold) →
    logistic regression on the features."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.stack([difference_features(s, alpha=alpha, **feature_kwargs) for s in samples])
    y = np.array([list(classes).index(s.label) for s in samples])
    groups = [s.subject_key for s in samples]
    # at most 20 components, and no more than the smallest training fold allows (PCA needs n_samples >= k)
    smallest_train = len(x) - max(Counter(groups).values())
    model = make_pipeline(StandardScaler(), PCA(max(1, min(20, smallest_train, x.shape[1])), random_state=seed),
                          LogisticRegression(max_iter=2000))
    pred = cross_val_predict(model, x, y, groups=groups, cv=LeaveOneGroupOut())
    metrics = compute_metrics(y, pred, classes)
    metrics["majority"] = max(Counter(y.tolist()).values()) / len(y)
    metrics["alpha"] = alpha
    return metrics


# ------------------------------------------------------------------ reference rows of every results table

_FEATURES: dict[str, np.ndarray] = {}


def majority_on_folds(y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[str]) -> dict:
    """Each fold predicts the majority class of its own training samples (ties: the first class in order)."""
    y_true, y_pred = [], []
    for train, test in folds:
        counts = np.bincount(y[train], minlength=len(classes))
        y_true += y[test].tolist()
        y_pred += [int(np.argmax(counts))] * len(test)
    return compute_metrics(y_true, y_pred, classes)


def chance_metrics(y_true: Sequence[int], classes: Sequence[str]) -> dict:
    """Expected metrics of guessing uniformly at random: every sample predicted once as each class (the
    expected confusion matrix times K, so every ratio — Acc, UF1, UAR, WAR — is the expectation)."""
    k = len(classes)
    return compute_metrics([t for t in y_true for _ in range(k)], [c for _ in y_true for c in range(k)], classes)


def difference_on_folds(samples: Sequence[Sample], folds: Sequence[tuple[np.ndarray, np.ndarray]],
                        classes: Sequence[str], seed: int = 0) -> dict:
    """The linear onset–apex difference baseline (standardise → PCA → logistic regression) trained and
    tested on exactly the given folds."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for s in samples:
        if s.sample_id not in _FEATURES:
            _FEATURES[s.sample_id] = difference_features(s)
    x = np.stack([_FEATURES[s.sample_id] for s in samples])
    y = np.array([list(classes).index(s.label) for s in samples])
    y_true, y_pred = [], []
    for train, test in folds:
        y_true += y[test].tolist()
        if len(set(y[train].tolist())) < 2:  # one class to learn from: that class
            y_pred += [int(y[train][0])] * len(test)
            continue
        model = make_pipeline(StandardScaler(), PCA(max(1, min(20, len(train) - 1, x.shape[1])), random_state=seed),
                              LogisticRegression(max_iter=2000))
        model.fit(x[train], y[train])
        y_pred += model.predict(x[test]).tolist()
    return compute_metrics(y_true, y_pred, classes)


def reference_rows(samples: Sequence[Sample], folds: Sequence[tuple[np.ndarray, np.ndarray]],
                   classes: Sequence[str], *, difference: bool = True) -> dict[str, dict]:
    """``{name: metrics}`` of the reference rows every results table shows beside its rows, on the same folds:
    the majority class of each training fold, uniform chance, and the linear onset–apex difference baseline
    (``difference``; needs the frame files)."""
    y = np.array([list(classes).index(s.label) for s in samples])
    tested = np.concatenate([test for _, test in folds])
    out = {"reference: majority class": majority_on_folds(y, folds, classes),
           "reference: chance": chance_metrics(y[tested].tolist(), classes)}
    if difference:
        try:
            out["reference: linear difference"] = difference_on_folds(samples, folds, classes)
        except Exception as exc:  # noqa: BLE001 - frames unreadable: the table still gets the other references
            import warnings

            warnings.warn(f"linear difference reference row skipped: {exc}", stacklevel=2)
    return out
