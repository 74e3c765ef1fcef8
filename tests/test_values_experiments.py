"""Value tests of mernb.experiments found by mutation testing (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from mernb.errors import MernbError
from mernb.experiments.ma2mi import draw_pairs


def test_draw_pairs_names_the_bad_interval():
    with pytest.raises(MernbError, match=r"k_range must be 1 <= lo <= hi, got \(3, 2\)"):
        draw_pairs([5], (3, 2), np.random.default_rng(0))


def test_difference_baseline_defaults_to_no_magnification_and_caps_pca_by_the_feature_count(monkeypatch):
    """Two-dimensional features of two well separated classes: PCA keeps min(20, smallest fold, 2) = 2
    components and the LOSO accuracy is that of a separable problem; alpha defaults to 0 (no magnification)."""
    from types import SimpleNamespace

    import mernb.experiments.baselines as B

    alphas = []

    def features(sample, *, alpha, **_):
        alphas.append(alpha)
        return sample.x

    monkeypatch.setattr(B, "difference_features", features)
    rng = np.random.default_rng(0)
    samples = [SimpleNamespace(label=label, subject_key=f"s{i % 6}",
                               x=rng.normal(scale=0.1, size=2) + (1.0 if label == "a" else -1.0))
               for i in range(30) for label in ("a", "b")]
    result = B.difference_baseline(samples, ["a", "b"])
    assert result["alpha"] == 0.0 and set(alphas) == {0.0}
    assert result["acc"] == 1.0 and result["majority"] == 0.5
