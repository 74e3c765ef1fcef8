"""``mernb run PLAN --check``: SynthME in the paper layout, paper-size configs with random weights from local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mernb.cli import main as cli
from mernb.data.protocols import protocol
from mernb.data.sources import load_samples
from mernb.plan import load_plan
from mernb.preflight import check_plan, count_costs, format_report, needs, notebook_source

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread beats fighting for cores


@pytest.fixture(scope="module")
def synthme(tmp_path_factory):
    """SynthME CASME II and SAMM (3 subjects x 2 clips) in the releases' own layouts."""
    from mernb.data import synth

    root = tmp_path_factory.mktemp("synthme")
    for dataset in ("casme2", "samm"):
        synth.generate(dataset, root / dataset, rows="generated", max_subjects=3, max_samples_per_subject=2, seed=0)
    return root


@pytest.fixture(scope="module")
def vit_b16_file(tmp_path_factory):
    """A random ViT-B/16 checkpoint in timm's layout: the file the paper plan names by its key."""
    import timm

    path = tmp_path_factory.mktemp("weights") / "vit_b16_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_base_patch16_224.augreg_in21k", pretrained=False, num_classes=0).state_dict(),
               path)
    return path


MPT_PAPER = dict(model="mpt_base_patch16", weights="vit_base_patch16_224.augreg_in21k", image_size=224,
                 num_frames=16, epochs=50, batch_size=16, lr=0.0003, alpha=20.0, low=0.4, high=4.0, reduction=8,
                 num_prompts=5)


HLORA_SMALL = {"model": "hlora_test", "image_size": 56, "epochs": None, "steps": 12, "batch_size": 4,
               "model_kwargs": {"n_lora_blocks": 2}}


def write_plan(tmp_path, synthme, notebooks, config: dict) -> str:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    plan = {"name": "preflight-test", "kind": "reproduction",
            "global_params": {"data_root": str(synthme), "cache_dir": str(tmp_path / "cache"), "seed": 0},
            "notebooks": notebooks}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return str(path)


def test_needs_reads_rows_from_the_notebook_and_the_plan():
    table6 = needs("mpt/table6_learning_strategies", {"mpt": MPT_PAPER, "dataset": "smic", "protocol": "smic_3class",
                                                       "baselines": {"scratch": {"model": "vit_b16_scratch"},
                                                                     "full": {"model": "vit_b16_full"},
                                                                     "partial": {"model": "vit_b16_partial"}}})
    assert table6.data == [("smic", "smic_3class")]
    assert [r.model for r in table6.rows] == ["vit_b16_scratch", "vit_b16_full", "vit_b16_partial"] + \
        ["mpt_base_patch16"] * 3  # the notebook's six ROWS: three ViT baselines, then three MPT variants
    assert {r.epochs for r in table6.rows} == {50} and table6.rows[-1].kwargs["num_frames"] == 16
    fig3 = needs("hlora/fig3_n_lora_blocks", {"model": "hlora_vitg14", "image_size": 224, "epochs": None,
                                              "steps": 600, "batch_size": 36, "model_kwargs": {"lora_rank": 16}})
    assert [r.kwargs["n_lora_blocks"] for r in fig3.rows] == [0, 1, 2, 3, 4]
    assert fig3.data == [("samm", "samm_5class")] and {r.steps for r in fig3.rows} == {600}
    holdout = needs("hlora/table7_holdout", {})
    assert holdout.data == [("casme2", "holdout_casme2_samm"), ("samm", "holdout_casme2_samm"),
                            ("samm", "holdout_samm_casme2"), ("casme2", "holdout_samm_casme2")]
    assert all(r.holdout for r in holdout.rows) and len(holdout.rows) == 2
    assert notebook_source("data/statistics")["cells"]


def test_vpt_rows_are_costed():
    """VPT prompts (a parameter view without a gradient function) defeat FlopCounterMode's module tracker."""
    table7 = needs("mpt/table7_prompt_types", {"mpt": {**MPT_PAPER, "weights": None}, "dataset": "smic",
                                               "protocol": "smic_3class"})
    rows = {r.name: r for r in table7.rows}
    none, shallow = count_costs(rows["w/o prompt"], 3), count_costs(rows["VPT-Shallow"], 3)
    assert shallow.trainable > none.trainable and shallow.train_flops_per_sample > none.train_flops_per_sample


def test_check_passes_on_synthme_and_costs_the_paper_configs(tmp_path, synthme, vit_b16_file, monkeypatch):
    plan_path = write_plan(tmp_path, synthme, {
        "mpt/table1_casme2": {"parameter_groups": {"paper": {"dataset": "casme2", "protocol": "casme2_5class",
                                                             "mpt": MPT_PAPER}}},
        "mpt/table2_samm": {"parameter_groups": {"paper": {"dataset": "samm", "protocol": "samm_5class",
                                                           "mpt": MPT_PAPER}}},
        "hlora/table3_5class": {"parameter_groups": {"paper": HLORA_SMALL}},
        "hlora/table7_holdout": {"parameter_groups": {"paper": HLORA_SMALL}},
    }, {"weights": {"vit_base_patch16_224.augreg_in21k": str(vit_b16_file)}})
    monkeypatch.setenv("MERNB_CONFIG", str(tmp_path / "config.yaml"))
    report = check_plan(load_plan(plan_path), gpu="H100", utilisation=0.4, step="meta", log=lambda _: None)
    assert report.problems == [], format_report(report)
    # counts per protocol: the reader's samples under the protocol
    for dataset, proto in (("casme2", "casme2_5class"), ("samm", "samm_5class")):
        selected = protocol(proto).select(load_samples(dataset, str(synthme))[0])
        facts = report.data[(dataset, proto)]
        assert facts.samples == len(selected) and facts.subjects == 3
        assert sum(facts.counts.values()) == facts.samples
    mpt = next(f for f in report.models.values() if f.model == "mpt_base_patch16")
    assert mpt.params > 86e6 and mpt.step_device == "meta"
    # backward: at least the forward again (input gradients through the frozen backbone), at most twice more
    assert 2 * mpt.infer_flops_per_sample <= mpt.train_flops_per_sample <= 3 * mpt.infer_flops_per_sample
    from mernb.models.info import model_info

    macs = model_info("mpt_base_patch16", num_classes=5, num_frames=16)["macs"]
    assert mpt.infer_flops_per_sample == pytest.approx(2 * macs, rel=1e-6)
    rows = {r["notebook"]: r for r in report.cost}
    casme = report.data[("casme2", "casme2_5class")]
    expected = (mpt.train_flops_per_sample * casme.samples * (casme.subjects - 1) * 50
                + mpt.infer_flops_per_sample * casme.samples)
    assert rows["mpt/table1_casme2"]["flops"] == pytest.approx(expected)
    assert rows["mpt/table1_casme2"]["folds"] == [3] and rows["mpt/table1_casme2"]["epochs"] == [50]
    hl = report.models[next(k for k in report.models if "hlora_test" in k)]
    assert hl.prefix_flops_per_sample > 0 and rows["hlora/table3_5class"]["flops"] > 0
    # holdout CASME II -> SAMM: one split, trained on CASME II's clips, tested on SAMM's, prefix once per clip
    # and flip; epochs from 12 optimiser steps of batch 4 on the split's training set: ceil(12 / ceil(n_train / 4))
    train_n = report.data[("casme2", "holdout_casme2_samm")].samples
    test_n = report.data[("samm", "holdout_casme2_samm")].samples
    epochs = -(-12 // -(-train_n // 4))
    expected = (hl.train_flops_per_sample * train_n * epochs + hl.infer_flops_per_sample * test_n
                + hl.prefix_flops_per_sample * (train_n + test_n) * 2)
    back = report.data[("samm", "holdout_samm_casme2")].samples, report.data[("casme2", "holdout_samm_casme2")].samples
    expected += (hl.train_flops_per_sample * back[0] * -(-12 // -(-back[0] // 4)) + hl.infer_flops_per_sample * back[1]
                 + hl.prefix_flops_per_sample * sum(back) * 2)
    assert rows["hlora/table7_holdout"]["flops"] == pytest.approx(expected)
    assert rows["hlora/table7_holdout"]["folds"] == [1]
    assert report.total_flops == pytest.approx(sum(r["flops"] for r in report.cost))
    assert report.hours(report.total_flops) == pytest.approx(report.total_flops / (989e12 * 0.4) / 3600)
    text = format_report(report)
    assert "mpt/table1_casme2" in text and "No problems found." in text and "H100" in text


def test_check_lists_every_problem_and_exits_nonzero(tmp_path, synthme, vit_b16_file, monkeypatch, capsys):
    import shutil

    broken = tmp_path / "synthme"
    shutil.copytree(synthme, broken)
    # the first selected clip is always among the decoded sample
    first = protocol("casme2_5class").select(load_samples("casme2", str(broken))[0])[0]
    Path(first.frame_paths[0]).write_bytes(b"not an image")
    bad_weights = tmp_path / "wrong.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, bad_weights)
    plan_path = write_plan(tmp_path, broken, {
        "mpt/table1_casme2": {"parameter_groups": {"paper": {"dataset": "casme2", "protocol": "casme2_5class",
                                                             "mpt": MPT_PAPER}}},
        "mpt/table3_smic": {"parameter_groups": {"paper": {"mpt": {**MPT_PAPER, "weights": str(bad_weights)}}}},
        "mpt/table2_samm": {"parameter_groups": {"paper": {"dataset": "samm", "protocol": "samm_5class",
                                                           "mpt": {**MPT_PAPER, "weights": "no_such_key"}}}},
    }, {"weights": {"vit_base_patch16_224.augreg_in21k": str(vit_b16_file)}})
    monkeypatch.setenv("MERNB_CONFIG", str(tmp_path / "config.yaml"))
    code = cli(["run", plan_path, "--check", "--gpu", "A100"])
    out = capsys.readouterr().out
    assert code == 1
    problems = out.split("problem(s):")[1]
    assert "not a readable image" in problems and first.sample_id in problems  # corrupt frame
    assert "smic" in problems and "synth" in problems  # SMIC not generated: named with the command to run
    assert "no_such_key" in problems  # weights key missing from the user config
    assert "does not fit" in problems and "wrong.pth" in problems  # checkpoint that does not load strictly
    assert json.dumps(out)  # printable report


@pytest.mark.slow
def test_full_size_step_on_a_real_batch_on_the_cpu(tmp_path, synthme, vit_b16_file, monkeypatch):
    plan_path = write_plan(tmp_path, synthme, {
        "mpt/table1_casme2": {"parameter_groups": {"paper": {"dataset": "casme2", "protocol": "casme2_5class",
                                                             "mpt": MPT_PAPER}}}},
        {"weights": {"vit_base_patch16_224.augreg_in21k": str(vit_b16_file)}})
    monkeypatch.setenv("MERNB_CONFIG", str(tmp_path / "config.yaml"))
    report = check_plan(load_plan(plan_path), step="cpu", log=lambda _: None)
    assert report.problems == [], format_report(report)
    facts = next(iter(report.models.values()))
    assert facts.step_device == "cpu" and facts.step_seconds > 0
