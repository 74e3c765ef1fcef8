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
    frames = recipe.frames(sid)[None]
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
    # from the cached prefix tokens = the whole backbone on the frame (Fig. 4's PCA input)
    frame = recipe.frames(preds[0]["sample_id"])[4][None]
    with torch.no_grad():
        direct = model.backbone.forward_features(frame)[:, model.backbone.num_prefix_tokens:]
    np.testing.assert_allclose(feats.reshape(1, 16, 64), direct.numpy(), atol=1e-5)
    with pytest.raises(MernbError, match="has no fold"):
        recipe.fold_model(doc, "no_such_fold")
    # without its checkpoint the fold is trained again: randomness is per fold, so it is the same model
    recipe.row.checkpoint(fold).unlink()
    again = recipe.fold_model(doc, fold)
    assert recipe.row.checkpoint(fold).is_file()
    _, probs_again = recipe.attention(again, [p["sample_id"] for p in preds])
    np.testing.assert_allclose(probs_again, [p["scores"] for p in preds], atol=1e-6)


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


@pytest.mark.parametrize("split", ["loso", "holdout"])
def test_step_budget_is_counted_on_each_folds_training_set(tmp_path, split):
    """Issue 7.1: ``steps`` per fold, whatever the size of the held-out side (± one epoch's worth)."""
    steps, batch = 7, 2
    settings = {**SMALL, "epochs": None, "steps": steps, "batch_size": batch, "cache_dir": tmp_path}
    if split == "loso":  # unequal subjects: 1, 2 and 6 clips
        data = fake_data(n_subjects=3, per_subject=6)
        keep = {data.samples[i].sample_id for i in (0, 6, 7, 12, 13, 14, 15, 16, 17)}
        data = ProtocolData(data.dataset, data.protocol, data.classes, [s for s in data.samples if s.sample_id in keep],
                            {k: v for k, v in data.clips.items() if k in keep})
        _, doc = H.train_row(data, settings, results_dir=tmp_path / "r" / "t")
    else:  # a small source, a large target (SAMM -> CASME II shape)
        source, target = fake_data(n_subjects=2, per_subject=2), fake_data(n_subjects=4, per_subject=4,
                                                                            dataset="samm", seed=1)
        samples, fold = holdout_fold(source.samples, target.samples)
        data = ProtocolData("casme2->samm", "holdout", list(CLASSES), samples, {**source.clips, **target.clips})
        _, doc = H.train_row(data, settings, results_dir=tmp_path / "r" / "t7", holdout=(samples, fold))
    for fold in doc["result"]["folds"]:
        n_train = len(data.samples) - fold["n"]
        per_epoch = -(-n_train // batch)
        assert steps <= fold["extras"]["steps"] < steps + per_epoch, (fold["name"], n_train)


def test_prefix_cache_key_has_the_storage_dtype_and_the_clip_content(tmp_path):
    """Issue 7.3: a float16 cache file is not served to a float32 run; a changed clip is not answered by
    the tokens of the old one (same sample id)."""
    data = fake_data(n_subjects=2, per_subject=1)
    sid = data.samples[0].sample_id
    half = H.hlora_recipe(data, cache_dir=tmp_path, cache_dtype="float16", **SMALL)
    tokens16 = half.tokens([sid])
    full = H.hlora_recipe(data, cache_dir=tmp_path, **SMALL)
    model = full.build_model().eval()
    with torch.no_grad():
        exact = model.prefix_features(full.frames(sid)[None])
    tokens32 = full.tokens([sid])
    torch.testing.assert_close(tokens32, exact.float(), atol=0, rtol=0)
    assert not torch.equal(tokens32, tokens16)  # the float16 file was not reused
    changed = ProtocolData(data.dataset, data.protocol, data.classes, data.samples,
                           {**data.clips, sid: 255 - data.clips[sid]})
    other = H.hlora_recipe(changed, cache_dir=tmp_path, **SMALL)
    with torch.no_grad():
        expected = model.prefix_features(other.frames(sid)[None])
    torch.testing.assert_close(other.tokens([sid]), expected.float(), atol=0, rtol=0)


def test_row_follows_labels_and_frames(tmp_path):
    """Issue 10 §2: a corrected label or changed frames make another row; the same inputs load the row."""
    import dataclasses

    data = fake_data()
    settings = {**SMALL, "cache_dir": tmp_path}
    _, doc = H.train_row(data, settings, results_dir=tmp_path / "r" / "t")
    _, same = H.train_row(fake_data(), settings, results_dir=tmp_path / "r" / "t")
    assert same["origin"] == "loaded" and same["path"] == doc["path"]
    relabelled = fake_data()
    relabelled.samples[0] = dataclasses.replace(relabelled.samples[0], label="surprise")
    _, new = H.train_row(relabelled, settings, results_dir=tmp_path / "r" / "t")
    assert new["origin"] == "computed" and new["path"] != doc["path"]
    assert [p["y_true"] for p in new["result"]["predictions"] if p["sample_id"] == data.samples[0].sample_id] == [2]
    reframed = fake_data()
    sid = reframed.samples[1].sample_id
    reframed.clips[sid] = 255 - reframed.clips[sid]
    _, new = H.train_row(reframed, settings, results_dir=tmp_path / "r" / "t")
    assert new["origin"] == "computed" and new["path"] != doc["path"]


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


def test_train_row_with_seeds_reports_mean_over_seeds(tmp_path):
    from mernb.experiments.common import row_metrics

    data = fake_data()
    recipe, doc = H.train_row(data, {**SMALL, "cache_dir": tmp_path, "seeds": [0, 1]}, results_dir=tmp_path / "r" / "t")
    assert recipe.seed == 0 and doc["over_seeds"]["seeds"] == [0, 1]
    _, second = H.train_row(data, {**SMALL, "cache_dir": tmp_path, "seed": 1}, results_dir=tmp_path / "r" / "t")
    assert second["origin"] == "loaded"
    values = [doc["result"]["metrics"]["uf1"], second["result"]["metrics"]["uf1"]]
    assert row_metrics(doc)["uf1"] == pytest.approx(np.mean(values))
    assert row_metrics(doc)["uf1_std"] == pytest.approx(np.std(values, ddof=1))
    assert row_metrics(second) == second["result"]["metrics"]


def test_token_and_frame_datasets_flip_in_training_only():
    data = fake_data(n_subjects=2, per_subject=4)
    store = {(s.sample_id, f): torch.full((1,), float(f)) for s in data.samples for f in (False, True)}
    train = H.TokenDataset(lambda sid, f: store[(sid, f)], data.samples, CLASSES, flip=True)
    train.generator = torch.Generator().manual_seed(0)
    picked = [bool(train[i][0]["tokens"].item()) for i in range(len(train))]
    assert any(picked) and not all(picked)
    test = H.TokenDataset(lambda sid, f: store[(sid, f)], data.samples, CLASSES, flip=False)
    assert [test[i][0]["tokens"].item() for i in range(len(test))] == [0.0] * len(test)

    frames = {s.sample_id: torch.arange(6.0).reshape(1, 1, 1, 6).repeat(8, 3, 2, 1) for s in data.samples}
    train = H.FrameDataset(frames.__getitem__, data.samples, CLASSES, flip=True)
    train.generator = torch.Generator().manual_seed(0)
    firsts = [train[i][0]["x"][0, 0, 0, 0].item() for i in range(len(train))]
    assert set(firsts) == {0.0, 5.0}  # some clips flipped along the width, some not
    test = H.FrameDataset(frames.__getitem__, data.samples, CLASSES, flip=False)
    assert all(test[i][0]["x"][0, 0, 0, 0].item() == 0.0 for i in range(len(test)))
