"""Paper-vs-ours tables: differences, missing values, counts, HTML styling, glue wrappers."""

import math

import pandas as pd
import pytest

from mernb.errors import MernbError
from mernb.report import glue as glue_mod
from mernb.report.paper import paper_numbers
from mernb.report.tables import counts_vs_paper, paper_vs_ours, style_table


@pytest.fixture(autouse=True)
def _interactive(monkeypatch):
    """Tests run as an interactive kernel would (no plan), unless a test sets the build kind."""
    monkeypatch.delenv("MERNB_PLAN", raising=False)
    monkeypatch.delenv("MERNB_PLAN_KIND", raising=False)


def test_paper_vs_ours_differences_and_missing():
    paper = paper_numbers("mpt", "Table VI")
    ours = {"MPT (Ours)": {"acc": 0.8, "uf1": 0.9012}, "full fine-tuning": {"acc": 0.7744}}
    raw = paper_vs_ours(paper, ours, metrics=("acc", ("f1", "uf1")), formatted=False)
    acc, f1 = "Acc (%)", "F1 (%)"
    assert raw.loc["MPT (Ours)", (acc, "Δ")] == pytest.approx(80.0 - 86.59)
    assert raw.loc["MPT (Ours)", (f1, "Δ")] == pytest.approx(90.12 - 86.01)
    assert raw.loc["full fine-tuning", (acc, "Δ")] == pytest.approx(0.0)
    assert math.isnan(raw.loc["w/o pretraining", (acc, "this build")])
    assert list(raw.index) == paper["row"].unique().tolist()

    text = paper_vs_ours(paper, ours, metrics=("acc", ("f1", "uf1")))
    assert text.loc["MPT (Ours)", (acc, "paper")] == "86.59"
    assert text.loc["MPT (Ours)", (acc, "Δ")] == "−6.59"
    assert text.loc["MPT (Ours)", (f1, "Δ")] == "+4.11"
    assert text.loc["w/o pretraining", (acc, "this build")] == "–"
    assert text.loc["w/o pretraining", (acc, "Δ")] == "–"


def test_paper_vs_ours_ratio_units_params_and_extra_rows():
    paper = paper_numbers("ma2mi", "Table 1", dataset="casme2")
    out = paper_vs_ours(paper, {"MA2MI": {"uf1": 0.8882}, "smoke": {"uf1": 0.5}}, metrics=["uf1"],
                        formatted=False)
    assert out.loc["MA2MI", ("UF1 (%)", "paper")] == pytest.approx(88.82)
    assert out.loc["MA2MI", ("UF1 (%)", "Δ")] == pytest.approx(0.0)
    assert list(out.index)[-1] == "smoke" and math.isnan(out.loc["smoke", ("UF1 (%)", "paper")])
    params = paper_vs_ours(paper_numbers("mpt", "Table VI"), {"MPT (Ours)": {"params_m": 5.2}},
                           metrics=["params_m"])
    assert params.loc["MPT (Ours)", ("#Params (M)", "this build")] == "5.20"
    assert params.loc["partial fine-tuning", ("#Params (M)", "paper")] == "0.003"


def test_paper_vs_ours_rejects_mixed_datasets_and_accepts_records():
    with pytest.raises(MernbError, match="several datasets"):
        paper_vs_ours(paper_numbers("hlora", "Table 3"), {})
    records = [{"row": "A", "metric": "acc", "value": 50.0}]
    out = paper_vs_ours(records, {"A": {"acc": 0.5}}, metrics=["acc"], formatted=False)
    assert out.loc["A", ("Acc (%)", "Δ")] == 0.0


def test_paper_vs_ours_no_delta_on_smoke_builds(monkeypatch):
    paper = paper_numbers("mpt", "Table VI")
    ours = {"MPT (Ours)": {"acc": 0.8}}
    parts = {c[1] for c in paper_vs_ours(paper, ours, metrics=["acc"], delta=False).columns}
    assert parts == {"paper", "this build"}
    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")
    smoke = paper_vs_ours(paper, ours, metrics=["acc"])
    assert {c[1] for c in smoke.columns} == {"paper", "this build"}
    assert smoke.loc["MPT (Ours)", ("Acc (%)", "this build")] == "80.00"
    monkeypatch.setenv("MERNB_PLAN_KIND", "reproduction")
    assert paper_vs_ours(paper, ours, metrics=["acc"]).loc["MPT (Ours)", ("Acc (%)", "Δ")] == "−6.59"


def test_plan_kind_from_the_plan_that_mernb_run_names(monkeypatch):
    from mernb.report.page import current_kind

    monkeypatch.setenv("MERNB_PLAN", "smoke")  # plans/smoke.yaml: kind synthetic
    assert current_kind() == "synthetic"
    monkeypatch.setenv("MERNB_PLAN", "no-such-plan")
    assert current_kind() is None


def test_counts_vs_paper():
    out = counts_vs_paper({"Happiness": 32, "Disgust": 60, "Fear": 1}, {"Happiness": 32, "Disgust": 63, "Others": 99})
    assert list(out.index) == ["Happiness", "Disgust", "Others", "Fear", "Total"]
    assert out.loc["Disgust", "Δ"] == -3
    assert pd.isna(out.loc["Others", "Ours"]) and pd.isna(out.loc["Others", "Δ"])
    assert out.loc["Total", "Paper"] == 194 and out.loc["Total", "Ours"] == 93


def test_style_table_html():
    df = paper_vs_ours(paper_numbers("mpt", "Table VIII"), {"MPT (Ours)": {"acc": 0.86}}, metrics=["acc"],
                       formatted=False)
    html = style_table(df, caption="Table VIII", highlight="MPT (Ours)").to_html()
    assert "Table VIII" in html and "–" in html and "86.59" in html and "font-weight: bold" in html
    flat = style_table(pd.DataFrame({"a": [1.234, None]})).to_html()
    assert "1.23" in flat and "–" in flat
    with pytest.raises(MernbError, match="highlight"):
        style_table(df, highlight="nope")


def test_style_table_reads_like_a_paper_table(monkeypatch):
    """No pandas header artefacts (a 'metric' corner, an empty 'Method' row), dataset names, smoke caption."""
    df = paper_vs_ours(paper_numbers("mpt", "Table VIII"), {"MPT (Ours)": {"acc": 0.86}}, metrics=["acc"])
    html = style_table(df, caption="Table VIII on casme2").to_html()
    header = html[html.index("<thead>"):html.index("</thead>")]
    assert ">metric<" not in header and ">Method<" in header
    assert header.count("<tr>") == 2  # the two column levels, no extra row for the index name
    assert "Table VIII on CASME II" in html and "SynthME" not in html
    counts = pd.DataFrame({"dataset": ["casme2", "samm"], "n": [3, 4]})
    shown = style_table(counts).to_html()
    assert ">CASME II<" in shown and ">SAMM<" in shown and "casme2" not in shown
    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")
    assert "Table VIII (SynthME smoke)" in style_table(df, caption="Table VIII").to_html()


def test_glue_wrappers(monkeypatch):
    calls = []
    monkeypatch.setattr(glue_mod, "_glue", lambda key, obj, display: calls.append((key, obj, display)))
    assert glue_mod.glue_number("mpt_table6_smic_acc_ours", 86.5912) is None
    number = calls[0][1]
    assert repr(number) == "86.59" and float(number) == pytest.approx(86.5912)
    glue_mod.glue_number("k_1", 0.5, ".1%")
    assert repr(calls[1][1]) == "50.0%"
    df = pd.DataFrame({"a": [1]})
    glue_mod.glue_table("t", df)
    assert isinstance(calls[2][1], glue_mod.GluedTable) and calls[2][1].frame() is df
    assert [c[0] for c in calls] == ["mpt_table6_smic_acc_ours", "k_1", "t"] and not any(c[2] for c in calls)
    assert glue_mod.glue_key("MPT", "Table VI", "SMIC", "acc", "ours") == "mpt_table_vi_smic_acc_ours"
    with pytest.raises(MernbError, match="glue key"):
        glue_mod.glue_number("Bad Key", 1.0)


def test_glued_table_carries_its_csv():
    """What myst-nb stores for a glued table: the page's HTML, and the data as CSV in the metadata."""
    from IPython.core.formatters import format_display_data

    df = paper_vs_ours(paper_numbers("mpt", "Table VIII"), {"MPT (Ours)": {"acc": 0.86}}, metrics=["acc"],
                       delta=True)
    data, meta = format_display_data(glue_mod.GluedTable(style_table(df), df))
    assert "<table" in data["text/html"] and ">Method<" in data["text/html"]
    back = pd.read_csv(__import__("io").StringIO(meta["mernb"]["csv"]), header=[0, 1], index_col=0)
    assert float(back.loc["MPT (Ours)", ("Acc (%)", "this build")]) == pytest.approx(86.0)
    assert float(back.loc["MPT (Ours)", ("Acc (%)", "paper")]) == pytest.approx(86.59)


def test_glue_figure_stores_png(monkeypatch):
    from IPython.core.formatters import format_display_data
    from matplotlib.figure import Figure

    calls = []
    monkeypatch.setattr(glue_mod, "_glue", lambda key, obj, display: calls.append(obj))
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    glue_mod.glue_figure("mpt_fig5_prompts", fig)
    bundle, _ = format_display_data(calls[0])
    assert bundle["image/png"][:4] == b"\x89PNG" and len(calls) == 1


def test_rows_with_several_seeds_show_mean_and_std_and_delta_on_the_mean():
    from mernb.report.tables import paper_vs_ours

    paper = [{"row": "MPT", "metric": "acc", "value": 80.0, "unit": "%"}]
    ours = {"MPT": {"acc": 0.70, "acc_std": 0.0152, "n_seeds": 3}, "single": {"acc": 0.5, "acc_std": 0.0, "n_seeds": 1}}
    table = paper_vs_ours(paper, ours, metrics=("acc",), delta=True)
    cells = table.loc["MPT"].tolist()
    assert cells == ["80.00", "70.00 ± 1.52", "−10.00"]  # typographic minus
    assert table.loc["single"].tolist()[1] == "50.00"
    raw = paper_vs_ours(paper, ours, metrics=("acc",), delta=True, formatted=False)
    assert raw.loc["MPT"].tolist()[1] == pytest.approx(70.0)


def test_glue_keys_keep_symbols_apart():
    from mernb.report import glue as glue_mod

    assert glue_mod.glue_key("MA2MI†", "acc") == "ma2mi_dagger_acc" != glue_mod.glue_key("MA2MI", "acc")
