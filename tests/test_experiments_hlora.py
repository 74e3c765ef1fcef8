"""HLoRA-MER recipe: cached-prefix training equals the frame path, shared rows, fold checkpoints, figure
helpers, holdout split, synthetic MEVIEW. Tiny random clips (no files) unless a test says otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mernb.data.records import Sample
from mernb.errors import MernbError
from mernb.experiments import hlora as H
from mernb.experiments.common import ProtocolData
from mernb.train.loso import holdout_fold

CLASSES = ["negative", "positive", "surprise"]
SMALL = dict(model="hlora_test", image_size=56, epochs=1, batch_size=4, lr=1e-3, seed=0)


def fake_data(n_subjects: int = 3, per_subject: int = 3, dataset: str = "casme2", seed: int = 0) -> ProtocolData:
    rng = np.random.default_rng(seed)
    samples, clips = [], {}
    for s in range(n_subjects):
        for k in range(per_subject):
            sample = Sample(dataset, f"{s + 1:02d}", f"EP{k:02d}", 10 * k + 1, 10 * k + 5, 10 * k + 9,
                            CLASSES[(s + k) % 3])
            samples.append(sample)
            clips[sample.sample_id] = rng.integers(0, 256, (8, 56, 56, 3), dtype=np.uint8)
    return ProtocolData(dataset, f"{dataset}_3class", list(CLASSES), samples, clips)


def test_cached_tokens_match_the_frame_path(tmp_path):
    data = fake_data()
    recipe = H.hlora_recipe(data, cache_dir=tmp_path, **SMALL)
    model = recipe.build_model().eval()
    sid = data.samples[0].sample_id
    frames = recipe.frames[sid][None]
    with torch.no_grad():
        full = model(frames)
        cached = model(tokens=recipe.tokens([sid]))
        flipped = model(frames.flip(-1))
        cached_flip = model(tokens=recipe.tokens([sid], flip=True))
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cached_flip, flipped, atol=1e-5, rtol=1e-4)
    assert any((tmp_path / "hlora_prefix").rglob("*.pt"))  # stored on disk for other notebooks


def test_row_trains_once_and_is_shared(tmp_path):
    data = fake_data()
    results_dir = tmp_path / "results" / "hlora" / "table3"
    recipe = H.hlora_recipe(data, cache_dir=tmp_path, **SMALL)
    doc = H.run_row(results_dir, recipe, seed=0)
    assert doc["origin"] == "computed"
    assert len(doc["result"]["folds"]) == 3 and len(doc["result"]["predictions"]) == len(data.samples)
    assert doc["path"].startswith(str(tmp_path / "results" / "hlora" / "shared"))
    # another table, the same configuration spelled with an explicit default: loaded, not retrained
    _, again = H.train_row(data, {**SMALL, "cache_dir": tmp_path}, {"hfm": "full", "n_lora_blocks": 2},
                           results_dir=tmp_path / "results" / "hlora" / "table9")
    assert again["origin"] == "loaded" and again["path"] == doc["path"]
    # a different configuration is another row
    _, other = H.train_row(data, {**SMALL, "cache_dir": tmp_path}, {"hfm": "none"}, results_dir=results_dir)
    assert other["origin"] == "computed" and other["path"] != doc["path"]


def test_fold_checkpoint_reproduces_predictions_and_figure_helpers(tmp_path):
    data = fake_data()
    recipe = H.hlora_recipe(data, cache_dir=tmp_path, **SMALL)
    doc = H.run_row(tmp_path / "r" / "t", recipe, seed=0)
    fold = doc["result"]["folds"][1]["name"]
    preds = [p for p in doc["result"]["predictions"] if p["fold"] == fold]
    model = recipe.fold_model(doc, fold)
    attention, probs = recipe.attention(model, [p["sample_id"] for p in preds])
    assert attention.shape == (len(preds), 8, 8)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, [p["scores"] for p in preds], atol=1e-4)
    untrained = recipe.build_model()
    assert not torch.equal(model.hfm.classifier.weight.cpu(), untrained.hfm.classifier.weight)
    feats = recipe.patch_features(model, [preds[0]["sample_id"]], frame=4)
    assert feats.shape == (1, 4, 4, 64)
    with pytest.raises(MernbError, match="no checkpoint"):
        recipe.fold_model(doc, "no_such_fold")


def test_full_finetuning_runs_on_frames(tmp_path):
    data = fake_data(n_subjects=2, per_subject=2)
    recipe = H.hlora_recipe(data, cache_dir=tmp_path, finetune="full", **SMALL)
    assert recipe.cache is None
    with pytest.raises(MernbError, match="full backbone"):
        recipe.tokens([data.samples[0].sample_id])
    doc = H.run_row(tmp_path / "r" / "t8", recipe, seed=0)
    assert doc["result"]["config"]["details"]["input"] == "frames"
    groups = H.trainable_backbone_params(SMALL, 3, finetune="full")
    assert groups["backbone"] > 0 and groups["lora"] == 0


def test_holdout_split_single_fold(tmp_path):
    source, target = fake_data(dataset="casme2"), fake_data(n_subjects=2, dataset="samm", seed=1)
    samples, fold = holdout_fold(source.samples, target.samples)
    data = ProtocolData("casme2->samm", "holdout", list(CLASSES), samples, {**source.clips, **target.clips})
    _, doc = H.train_row(data, {**SMALL, "cache_dir": tmp_path}, results_dir=tmp_path / "r" / "t7",
                         holdout=(samples, fold))
    assert [f["name"] for f in doc["result"]["folds"]] == [fold.name]
    assert len(doc["result"]["predictions"]) == len(target.samples)
    assert doc["config"]["split"] == f"holdout:{fold.name}"


def test_settings_checks():
    data = fake_data(n_subjects=2, per_subject=1)
    with pytest.raises(MernbError, match="exactly one of epochs or steps"):
        H.hlora_recipe(data, model="hlora_test", image_size=56)
    with pytest.raises(MernbError, match="clips must be"):
        H.hlora_recipe(data, model="hlora_test", image_size=112, epochs=1)
    assert H.epochs_for_steps(600, 133, 36) == 150
    assert H.epochs_for_steps(1, 10, 36) == 1


def test_failure_cases_most_confident_first():
    data = fake_data(n_subjects=1, per_subject=3)
    ids = [s.sample_id for s in data.samples]
    doc = {"result": {"predictions": [
        {"sample_id": ids[0], "y_true": 0, "y_pred": 1, "scores": [0.3, 0.6, 0.1]},
        {"sample_id": ids[1], "y_true": 1, "y_pred": 1, "scores": [0.1, 0.8, 0.1]},
        {"sample_id": ids[2], "y_true": 2, "y_pred": 0, "scores": [0.9, 0.05, 0.05]},
    ]}}
    cases = H.failure_cases(doc, data.samples, data.classes, n=2)
    assert [(c[0].sample_id, c[1], c[2]) for c in cases] == [(ids[2], "surprise", "negative"),
                                                             (ids[0], "negative", "positive")]


def test_synthetic_meview_is_read_by_the_real_reader(tmp_path):
    from mernb.data.protocols import protocol
    from mernb.data.sources import load_samples
    from mernb.data.synth import generate

    generate("casme2", tmp_path / "casme2", max_subjects=2, max_samples_per_subject=2)
    H.write_synthetic_meview(tmp_path, source="casme2")
    samples, problems = load_samples("meview", tmp_path)
    source, _ = load_samples("casme2", tmp_path)
    assert len(samples) == len(source) and all(s.frame_paths for s in samples)
    assert {s.label for s in samples} <= {"positive", "surprise", "negative", "others"}
    assert protocol("meview_3class").select(samples) is not None
    H.write_synthetic_meview(tmp_path, source="casme2")  # idempotent
