"""MA2MI pre-training (pairs, exact resume, shared runs) and fine-tuning rows (LOSO / k-fold, shared, checkpoints)."""

import numpy as np
import pytest
import torch

from mernb.data.records import Sample
from mernb.errors import MernbError
from mernb.experiments.common import ProtocolData
from mernb.experiments.ma2mi import (
    MacroData,
    PairDataset,
    augment_pair,
    draw_pairs,
    ma2mi_recipe,
    pretrain_run,
    run_row,
)
from mernb.models import create_model
from mernb.train.loop import OptimConfig
from mernb.train.pretrain import pretrain


def _macro(n_clips: int = 6, size: int = 64) -> MacroData:
    rng = np.random.default_rng(0)
    samples, clips = [], []
    for i in range(n_clips):
        samples.append(Sample("dfew", f"{i:05d}", f"{i:05d}", 1, None, 8, ["happy", "sad"][i % 2]))
        clips.append(rng.integers(0, 256, (int(rng.integers(3, 9)), size, size, 3), dtype=np.uint8))
    return MacroData("dfew", samples, clips, ["happy", "sad"])


def test_draw_pairs_respects_the_interval():
    rng = np.random.default_rng(0)
    pairs = draw_pairs([3, 10, 40] * 50, (2, 5), rng)
    for (_c, t, tk), n in zip(pairs, [3, 10, 40] * 50, strict=True):
        assert 0 <= t < tk < n
        assert tk - t == 2 if n == 3 else 2 <= tk - t <= 5
    assert {tk - t for _, t, tk in pairs} == {2, 3, 4, 5}
    with pytest.raises(MernbError):
        draw_pairs([5], (0, 2), rng)


def test_pair_items_are_the_sampled_frames():
    macro = _macro()
    item = PairDataset(macro, [(1, 0, 2)], labels=True)[0]
    assert torch.equal(item["it"], torch.from_numpy(macro.clips[1][0]).permute(2, 0, 1).float() / 255)
    assert torch.equal(item["itk"], torch.from_numpy(macro.clips[1][2]).permute(2, 0, 1).float() / 255)
    assert item["label"].item() == 1  # "sad"


def test_augmentation_is_the_same_on_both_frames():
    torch.manual_seed(0)
    frame = torch.rand(3, 32, 32)
    out = augment_pair(torch.stack([frame, frame]), crop_pad=4, rotation=5.0, flip=True)
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], frame)


def _run(tmp_path, name, stop_after=None):
    torch.manual_seed(0)
    model = create_model("ma2mi_pretrain_test", eq_rotation=10.0)
    macro = _macro()

    def make_dataset(epoch):
        return PairDataset(macro, draw_pairs([len(c) for c in macro.clips], (1, 2), np.random.default_rng([0, epoch])))

    def stop(epoch, record):
        if stop_after is not None and epoch == stop_after:
            raise KeyboardInterrupt

    history = pretrain(model, make_dataset, out_dir=tmp_path / name, epochs=3, batch_size=4,
                       optimizer=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1), lr_gamma=0.9, seed=0,
                       config={"run": 1}, device="cpu", on_epoch_end=stop)
    return model, history


def test_pretraining_resumes_bit_for_bit(tmp_path):
    full, history = _run(tmp_path, "full")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "killed", stop_after=1)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["epoch"] == 1
    resumed, resumed_history = _run(tmp_path, "killed")
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3]
    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in history]
    ref, got = full.trainable_state_dict(), resumed.trainable_state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert any(not torch.equal(ref[k], create_model("ma2mi_pretrain_test").trainable_state_dict()[k]) for k in ref)
    assert history[1]["lr"] == pytest.approx(1e-3 * 0.9)


def _protocol_data(n_subjects: int = 3, per_subject: int = 4, size: int = 64) -> ProtocolData:
    rng = np.random.default_rng(1)
    classes = ["happiness", "disgust", "others"]
    samples, clips = [], {}
    for s in range(n_subjects):
        for k in range(per_subject):
            sample = Sample("casme2", f"{s + 1:02d}", f"EP{k}", 1, 2, 3, classes[(s + k) % 3])
            samples.append(sample)
            clips[sample.sample_id] = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    return ProtocolData("casme2", "casme2_5class", classes, samples, clips)


def test_pretraining_run_is_shared_and_fine_tuning_rows_are_keyed(tmp_path):
    macro, data = _macro(), _protocol_data()
    results = tmp_path / "results" / "ma2mi" / "table1"
    run = pretrain_run(macro, results_dir=results, epochs=1, batch_size=4, cache_dir=tmp_path / "cache")
    assert run.doc["origin"] == "computed" and run.checkpoint.is_file()
    assert run.doc["result"]["pairs_per_s"] > 0
    again = pretrain_run(macro, results_dir=tmp_path / "results" / "ma2mi" / "table3", epochs=1, batch_size=4,
                         cache_dir=tmp_path / "cache")
    assert again.doc["origin"] == "loaded" and again.key == run.key
    other = pretrain_run(macro, results_dir=results, epochs=1, batch_size=4, k_range=(2, 3), cache_dir=tmp_path / "cache")
    assert other.key != run.key

    recipe = ma2mi_recipe(data, pretrained=run, epochs=1, batch_size=4, device="cpu")
    model = recipe.build_model()
    pre = run.model("cpu")
    assert all(torch.equal(v, pre.fae.state_dict()[k]) for k, v in model.fae.state_dict().items())
    doc = run_row(results, recipe)
    assert doc["origin"] == "computed" and doc["result"]["metrics"]["n"] == len(data.samples)
    assert len(doc["result"]["folds"]) == 3  # LOSO over 3 subjects
    fold = doc["result"]["folds"][0]["name"]
    trained = recipe.fold_model(doc, fold)
    assert not torch.equal(trained.head.weight, torch.zeros_like(trained.head.weight))
    loaded = run_row(tmp_path / "results" / "ma2mi" / "table2", ma2mi_recipe(data, pretrained=run, epochs=1,
                                                                                batch_size=4, device="cpu"))
    assert loaded["origin"] == "loaded" and loaded["path"] == doc["path"]
    kfold = run_row(results, ma2mi_recipe(data, pretrained=run, epochs=1, batch_size=4, device="cpu", split="kfold3"))
    assert kfold["path"] != doc["path"] and len(kfold["result"]["folds"]) == 3
    frozen = ma2mi_recipe(data, pretrained=run, epochs=1, batch_size=4, device="cpu", tune="fpe").build_model()
    assert not any(p.requires_grad for p in frozen.fae.parameters())
    with pytest.raises(MernbError):
        ma2mi_recipe(data, pretrained=run, epochs=1, fpe="none")


def test_macro_clips_read_lazily_equal_the_in_memory_ones(tmp_path):
    from mernb.experiments.ma2mi import ensure_synthetic_macro, prepare_macro_data

    ensure_synthetic_macro("afew", tmp_path / "synth", size=32, max_subjects=1, max_samples_per_subject=3)
    options = dict(data_root=tmp_path / "synth", cache_dir=tmp_path / "cache", size=32)
    eager = prepare_macro_data("afew", **options)
    lazy = prepare_macro_data("afew", in_memory=False, **options)
    assert len(eager.clips) == len(lazy.clips) == 3 and eager.lengths == lazy.lengths
    assert eager.lengths == [len(s.frame_paths) for s in eager.samples]
    assert all(np.array_equal(eager.clips[i], lazy.clips[i]) for i in range(3))
    assert set(eager.classes) <= {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
