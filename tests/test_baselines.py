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
