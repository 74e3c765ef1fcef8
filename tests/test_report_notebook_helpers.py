"""mernb.report.notebook_helpers: #Tparas, named clips, row predictions, per-fold groups."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mernb.report.notebook_helpers import measured_tparas, named_clips, per_fold_groups, row_predictions

TINY = dict(model="mpt_test", img_size=64, num_frames=8)  # ViT depth 2, width 64 (TINY_VIT_KWARGS)


def _bottleneck(d: int, h: int) -> int:
    return d * h + h + h * d + d  # down (weight + bias) + up (weight + bias)


def test_tparas_by_hand_on_the_tiny_model():
    d, depth, classes = 64, 2, 3
    head = d * classes + classes
    got = measured_tparas({
        "group adapter": {"prompt": "none"},                       # cls + visual branches per block
        "primitive": {"prompt": "none", "adapter": "primitive"},   # one branch per block
        "r4": {"prompt": "none", "reduction": 4},
        "partial": {"kind": "vit", "model": "vit_test", "finetune": "head"},
        "vpt deep, no adapter": {"prompt": "vpt_deep", "num_prompts": 7, "adapter": "none"},
    }, TINY, classes)
    assert got["group adapter"]["params_m"] * 1e6 == pytest.approx(depth * 2 * _bottleneck(d, d // 8) + head)
    assert got["primitive"]["params_m"] * 1e6 == pytest.approx(depth * _bottleneck(d, d // 8) + head)
    assert got["r4"]["params_m"] * 1e6 == pytest.approx(depth * 2 * _bottleneck(d, d // 4) + head)
    assert got["partial"]["params_m"] * 1e6 == pytest.approx(head)
    assert got["vpt deep, no adapter"]["params_m"] * 1e6 == pytest.approx(depth * 7 * d + head)


@pytest.mark.slow
def test_tparas_of_the_paper_size_rows_match_the_paper():
    """MPT Tables VI-VIII print 5.5 / 0.2 / 3.5 / 2.0 / 5.8 M tunable parameters (ViT-B/16, 3 classes)."""
    paper = dict(model="mpt_base_patch16", img_size=224, num_frames=16)
    got = measured_tparas({"MPT": {}, "motion prompt": {"adapter": "none"}, "group adapter": {"prompt": "none"},
                           "primitive": {"adapter": "primitive"},
                           "VPT-Deep": {"prompt": "vpt_deep", "num_prompts": 50}}, paper, 3)
    printed = {"MPT": 5.5, "motion prompt": 0.2, "group adapter": 3.5, "primitive": 2.0, "VPT-Deep": 5.8}
    for name, value in printed.items():  # printed with one decimal, truncated (5.56M -> 5.5)
        assert value <= got[name]["params_m"] < value + 0.07, name


def _sample(dataset, subject, clip, onset=1):
    return SimpleNamespace(dataset=dataset, subject=subject, clip=clip, sample_id=f"{dataset}/{subject}/{clip}/{onset}")


def test_named_clips_match_subjects_with_or_without_padding():
    samples = [_sample("casme2", "sub03", "EP18_06"), _sample("casme2", "sub03", "EP18_07"),
               _sample("casme2", "sub13", "EP18_06"), _sample("samm", "007", "007_6_1"), _sample("samm", "7", "007_6_2")]
    got = named_clips(samples, {"casme2": [("03", "EP18_06")], "samm": [("007", "007_6_1")], "smic": [("1", "x")]})
    assert [s.sample_id for s in got["casme2"]] == ["casme2/sub03/EP18_06/1"]
    assert [s.sample_id for s in got["samm"]] == ["samm/007/007_6_1/1"]
    assert got["smic"] == []


def test_named_clips_of_hlora_fig6_are_in_the_real_annotation_files():
    from mernb.data.readers import read_dataset_report
    from tests.conftest import fixture_file

    casme2, _ = read_dataset_report("casme2", annotation=fixture_file("CASME2/CASME2-coding-20140508.xlsx"))
    samm, _ = read_dataset_report("samm", annotation=fixture_file("SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"))
    got = named_clips(casme2 + samm, {"casme2": [("03", "EP18_06")], "samm": [("007", "007_6_1")]})
    assert [(s.subject, s.clip, s.label) for s in got["casme2"]] == [("sub03", "EP18_06", "disgust")]
    assert [(s.subject, s.clip, s.label) for s in got["samm"]] == [("007", "007_6_1", "happiness")]


def test_row_predictions():
    a, b, c = _sample("d", "1", "a"), _sample("d", "1", "b"), _sample("d", "2", "c")
    doc = {"result": {"predictions": [
        {"sample_id": a.sample_id, "y_true": 0, "y_pred": 1, "scores": [0.1, 0.7, 0.2]},
        {"sample_id": b.sample_id, "y_true": 2, "y_pred": 2},
    ]}}
    got = row_predictions(doc, [c, b, a], ["x", "y", "z"])
    assert [(s.clip, gt, pr) for s, gt, pr, _ in got] == [("b", "z", "z"), ("a", "x", "y")]
    assert np.isnan(got[0][3]) and got[1][3] == pytest.approx(0.7)


def test_per_fold_groups_largest_first():
    folds = ["s1", "s2", "s2", "s3", "s1", "s2", "s3", "s4"]
    got = per_fold_groups(folds)
    assert [(k, idx.tolist()) for k, idx in got] == [("s2", [1, 2, 5]), ("s1", [0, 4]), ("s3", [3, 6])]
    assert [k for k, _ in per_fold_groups(folds, min_size=3)] == ["s2"]


def test_apex_position_by_hand():
    from mernb.report.notebook_helpers import apex_position

    s = SimpleNamespace(onset=10, apex=20, offset=40)   # apex one third in: 1/3 * 15 = 5 of 16 frames
    assert apex_position(s, 16) == 5
    assert apex_position(SimpleNamespace(onset=10, apex=40, offset=40), 8) == 7
    assert apex_position(SimpleNamespace(onset=10, apex=10, offset=40), 8) == 0
    assert apex_position(SimpleNamespace(onset=10, apex=None, offset=40), 8) == 4
    assert apex_position(SimpleNamespace(onset=10, apex=12, offset=10), 9) == 4


def test_metrics_of():
    from mernb.report.notebook_helpers import metrics_of

    assert metrics_of(None) == {}
    assert metrics_of({"result": {"metrics": {"acc": 0.5}}}) == {"acc": 0.5}


def test_show_paper_vs_ours_glues_the_papers_numbers(monkeypatch):
    import mernb.report.glue as glue
    from mernb.report.notebook_helpers import show_paper_vs_ours

    glued = {}
    monkeypatch.setattr(glue, "glue_table", lambda key, table, **kw: glued.update({key: table}))
    table = show_paper_vs_ours("hlora", "Table 3", "samm", {"HLoRA-MER": {"acc": 0.5, "uf1": 0.25}},
                               ("acc", ("f1", "uf1")), "k", title="T")
    assert glued["k"] is table
    from mernb.report.paper import paper_numbers

    printed = paper_numbers("hlora", "Table 3", dataset="samm").set_index(["row", "metric"])["value"]
    row = table.loc["HLoRA-MER"]
    assert row[("Acc (%)", "paper")] == f"{printed[('HLoRA-MER', 'acc')]:.2f}"
    assert (row[("Acc (%)", "this build")], row[("F1 (%)", "this build")]) == ("50.00", "25.00")


def test_show_paper_vs_ours_captions_its_table(monkeypatch):
    import mernb.report.glue as glue
    import mernb.report.notebook_helpers as helpers

    shown = []
    monkeypatch.setattr(glue, "glue_table", lambda key, table, **kw: None)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setenv("MERNB_PLAN", "smoke")  # plans/smoke.yaml: a synthetic build
    helpers.show_paper_vs_ours("hlora", "Table 3", "samm", {"HLoRA-MER": {"acc": 0.5, "uf1": 0.25}},
                               ("acc", ("f1", "uf1")), "k")
    html = shown[0].to_html()
    assert "<caption>HLoRA-MER Table 3, SAMM (SynthME smoke)</caption>" in html


def test_effect_sentence_says_whether_ablation_rows_differ():
    from mernb.report.notebook_helpers import effect_sentence

    same = {"a": {"uf1": 0.301}, "b": {"uf1": 0.305}, "reference: chance": {"uf1": 0.9}}
    assert effect_sentence(same).startswith("**No effect on this build:** the 2 rows' UF1 lie within 0.40 points")
    differ = {"a": {"uf1": 0.2}, "b": {"uf1": 0.45}}
    assert "from 20.00 % (a) to 45.00 % (b), a spread of 25.00 points" in effect_sentence(differ)
    assert effect_sentence({"a": {"uf1": 0.2}, "reference: chance": {"uf1": 0.1}}) is None


def test_start_notebook_shows_the_run_admonition_not_a_printed_dict(capsys, monkeypatch):
    import IPython.display

    from mernb.report.notebook_helpers import start_notebook

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    result = start_notebook(plan_kind="synthetic", plan="smoke", group="g", model="mpt_test", seed=3, device="cpu",
                            mpt={"epochs": 20, "lr": 0.003})
    assert result is None  # a returned value would be echoed under the cell
    text = shown[0].data
    assert "{admonition} Run" in text and "`smoke`, group `g`" in text and "**seeds**: 3" in text
    assert "epochs 20, lr 0.003" in text and "{'" not in text
    assert capsys.readouterr().out.count("{'") == 0


def test_show_effect_displays_and_returns_nothing(monkeypatch):
    """A helper called as a cell's last line must return None, else its value is echoed on the page."""
    import IPython.display

    from mernb.report.notebook_helpers import show_effect

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    assert show_effect({"a": {"uf1": 0.2}, "b": {"uf1": 0.45}}) is None
    assert "The rows differ" in shown[0].data
