"""A simple onset–apex difference baseline under LOSO, with optional Eulerian magnification first.

Shows that SynthME is learnable but not trivial, and whether magnifying the motion helps (the amplitudes
are about a pixel, so it should). Used by docs/benchmarks.md and tests/test_synth.py-style checks.
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
