"""Smoke pre-training: checkpoints that load strictly through the weights path, determinism, the plan section,
and the majority-class reference of the smoke UF1 goal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mernb.errors import ConfigError
from mernb.models import create_model
from mernb.smoke_pretrain import (
    PretrainSpec,
    backbone_of,
    majority_reference,
    pretrain_backbone,
    pretrain_from_plan,
)

REPO = Path(__file__).resolve().parents[1]


def toy_data(task: str, size: int, n: int = 24, classes: int = 3, frames: int = 4, seed: int = 0):
    """Separable toy inputs: class k brightens a square in row k (frames: only after the first frame)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    shape = (n, 3, size, size) if task == "dynamic_image" else (n, frames, 3, size, size)
    x = 0.1 * torch.randn(shape, generator=g)
    step = size // classes
    for i, k in enumerate(labels.tolist()):
        patch = (slice(None), slice(k * step, k * step + step // 2), slice(0, size // 2))
        if task == "dynamic_image":
            x[i][patch] += 2.0
        else:
            x[i, 1:][(slice(None), *patch)] += 2.0
    return x, labels


def spec(config: str, task: str, size: int, **kw) -> PretrainSpec:
    return PretrainSpec(config=config, out="unused.pth", task=task, image_size=size, **{"epochs": 2, "batch_size": 8, **kw})


@pytest.fixture(scope="module")
def vit_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    x, y = toy_data("dynamic_image", 32)
    state, _ = pretrain_backbone(spec("vit_test", "dynamic_image", 32), x, y, 3)
    path = tmp_path_factory.mktemp("w") / "vit_tiny.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def dino_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    x, y = toy_data("frames", 28, frames=3)
    state, _ = pretrain_backbone(spec("hlora_test", "frames", 28), x, y, 3)
    path = tmp_path_factory.mktemp("w") / "dinov2_tiny.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("config", ["vit_test", "mpt_test"])
def test_vit_checkpoint_loads_strictly_into_mpt_and_vit_configs(vit_ckpt, config):
    path, state = vit_ckpt
    fresh = backbone_of("vit_test", 32).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state.items())  # training changed the weights
    # another image size than pre-training: timm's filter resamples the position embedding
    for size, num_frames in ((32, 8), (64, 8)):
        kwargs = {"num_frames": num_frames} if config == "mpt_test" else {}
        model = create_model(config, weights=str(path), img_size=size, num_classes=5, **kwargs)
        loaded = model.backbone.state_dict()
        assert set(loaded) == set(state)
        for key, value in state.items():
            if key == "pos_embed" and size != 32:
                assert loaded[key].shape[1] == 1 + (size // 16) ** 2
                continue
            assert torch.equal(loaded[key], value), key


def test_dinov2_checkpoint_loads_strictly_into_hlora_test(dino_ckpt):
    path, state = dino_ckpt
    full = create_model("hlora_test", weights=str(path), img_size=28, num_classes=5, finetune="full")
    loaded = full.backbone.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    lora = create_model("hlora_test", weights=str(path), img_size=28, num_classes=5)  # LoRA on the last 2 blocks
    assert torch.equal(lora.backbone.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(lora.backbone.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


def test_wrong_checkpoint_fails_clearly(vit_ckpt, dino_ckpt, tmp_path):
    with pytest.raises(ConfigError, match="does not fit"):
        create_model("hlora_test", weights=str(vit_ckpt[0]), img_size=28)
    with pytest.raises(ConfigError, match="does not fit"):
        create_model("mpt_test", weights=str(dino_ckpt[0]), img_size=32)
    with pytest.raises(ConfigError, match="does not exist"):
        create_model("vit_test", weights=str(tmp_path / "absent.pth"), img_size=32)


def test_deterministic_per_seed():
    x, y = toy_data("frames", 28, n=12, frames=3)
    s = spec("hlora_test", "frames", 28, epochs=1, batch_size=4)
    a, _ = pretrain_backbone(s, x, y, 3, seed=3)
    b, _ = pretrain_backbone(s, x, y, 3, seed=3)
    c, _ = pretrain_backbone(s, x, y, 3, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("config,task,size", [("vit_test", "dynamic_image", 32), ("hlora_test", "frames", 28)])
def test_fits_a_separable_task(config, task, size):
    x, y = toy_data(task, size, n=12, frames=2)
    _, summary = pretrain_backbone(spec(config, task, size, epochs=12, batch_size=6, lr=3e-3), x, y, 3)
    assert summary["train_acc"] == 1.0
    assert summary["steps"] == 12 * 2


def test_majority_reference_by_hand():
    # folds A (labels 0, 0), B (1, 1, 0), C (2): training majorities A -> {1,1,0,2}: 1; B -> {0,0,2}: 0;
    # C -> {0,0,1,1,0}: 0. Per-fold majority predictions: 1 1 | 0 0 0 | 0.
    labels = [("A", 0), ("A", 0), ("B", 1), ("B", 1), ("B", 0), ("C", 2)]
    preds = [{"fold": f, "y_true": t, "y_pred": t} for f, t in labels]
    doc = {"result": {"classes": ["a", "b", "c"], "predictions": preds, "metrics": {"uf1": 1.0, "acc": 1.0}}}
    ref = majority_reference(doc)
    # class a: tp 1 (the B clip), predicted 4, support 3 -> P 1/4, R 1/3, F1 2/7; b: tp 0; c: tp 0
    assert ref["majority_fold_uf1"] == pytest.approx((2 / 7) / 3)
    assert ref["majority_fold_acc"] == pytest.approx(1 / 6)
    # pooled majority: class a (3 of 6): P 1/2, R 1 -> F1 2/3
    assert ref["majority_pool_uf1"] == pytest.approx((2 / 3) / 3)
    assert ref["uf1"] == 1.0 and ref["n"] == 6


def test_smoke_plan_rows_load_the_pretrained_files():
    raw = yaml.safe_load((REPO / "plans" / "smoke.yaml").read_text())
    outs = {k: v["out"] for k, v in raw["pretrain"]["backbones"].items()}
    assert raw["pretrain"]["dataset"] in raw["synthme"]["datasets"]
    nbs = raw["notebooks"]
    mpt = nbs["mpt/table1_casme2"]["parameter_groups"]["smoke"]
    assert mpt["mpt"]["weights"] == outs["vit_test"]
    assert mpt["baselines"]["full"]["weights"] == outs["vit_test"] == mpt["baselines"]["partial"]["weights"]
    assert mpt["baselines"]["scratch"].get("weights") is None  # "w/o pretraining" stays random
    for nb in ("hlora/table3_5class", "hlora/table4_3class"):
        assert nbs[nb]["parameter_groups"]["smoke"]["model_kwargs"]["weights"] == outs["hlora_test"]


def test_plan_section_is_validated(tmp_path):
    plan = {"name": "t", "kind": "synthetic", "notebooks": {}, "global_params": {"data_root": str(tmp_path)},
            "pretrain": {"dataset": "dfew", "backbones": {"vit_test": {"out": "x.pth", "task": "pixels",
                                                                     "image_size": 32}}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(ConfigError, match="task must be"):
        pretrain_from_plan(path, log=False)
    plan["pretrain"]["backbones"]["vit_test"] = {"out": "x.pth", "task": "frames", "image_size": 32, "epoch": 3}
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(ConfigError, match="unknown settings"):
        pretrain_from_plan(path, log=False)


@pytest.mark.slow
def test_pretrain_from_plan_on_synthme_dfew(tmp_path):
    from mernb.data import synth

    synth.generate("dfew", tmp_path / "data" / "dfew", max_subjects=3, max_samples_per_subject=5)
    out = tmp_path / "weights" / "vit.pth"
    plan = {"name": "t", "kind": "synthetic", "notebooks": {},
            "global_params": {"data_root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")},
            "pretrain": {"dataset": "dfew", "seed": 0, "backbones": {"vit_test": {
                "out": str(out), "task": "dynamic_image", "image_size": 32, "epochs": 2, "batch_size": 4}}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    record = pretrain_from_plan(path, log=False)["vit_test"]
    assert record["n_clips"] == 12  # the train split: 4 of every 5 clips
    assert json.loads((out.parent / "vit.pth.json").read_text())["key"] == record["key"]
    mtime = out.stat().st_mtime_ns
    assert pretrain_from_plan(path, log=False)["vit_test"]["key"] == record["key"]
    assert out.stat().st_mtime_ns == mtime  # up to date: not retrained
    create_model("mpt_test", weights=str(out), img_size=32)
