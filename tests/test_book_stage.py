"""`mernb book` staging: pages cleaned for readers, failed pages as failure notes, the status dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mernb import plan as planmod
from mernb.report.dashboard import Artifact, headline, learning_check, status_page
from mernb.report.page import sanitize_text, warnings_markdown


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(planmod, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(planmod, "_quoted_only", lambda: [("ma2mi", "Table 1")])
    for name in ("good", "bad"):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("x = 1")
        params.metadata["tags"] = ["parameters"]  # plans are checked against the parameters cell
        nb.cells = [nbformat.v4.new_markdown_cell(f"# Page {name}"), params]
        path = tmp_path / "notebooks" / "demo" / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "t.yaml").write_text(
        "name: t\nkind: synthetic\nnotebooks:\n  demo/good: {}\n  demo/bad: {}\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: runs/book/notebooks/demo/good\n"
        "  - file: runs/book/notebooks/demo/bad\n  - file: runs/book/notebooks/demo/absent\n")
    return tmp_path


def _executed(plan, notebook: str, cells: list, status: str = "ok", seconds: float = 12.0) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["mernb"] = {"digest": "d", "status": status, "seconds": seconds}
    nb.metadata["papermill"] = {"parameters": {"group": "default", "seed": 3, "dataset": "casme2",
                                               "mpt": {"model": "mpt_test", "epochs": 2}}}
    path = plan.executed_path(notebook, "default")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _good_cells(root: Path) -> list:
    setup = nbformat.v4.new_code_cell("print(run_info(...))")
    setup.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=(
            "plan='t', group='default', mpt={'model': 'mpt_test'}\n"
            "device in use: cpu (CPU (x86_64, 2 cores)); mernb 0.1.0, torch 2; commit 6acaf412239d10c2; "
            "2026-12-02 03:32 UTC\n")),
        nbformat.v4.new_output("stream", name="stderr", text="tqdm 10%|█\n"),
    ]
    data = nbformat.v4.new_code_cell("print(data.summary())")
    data.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        f"casme2: 15 samples, {{'happiness': 2, 'others': 8}}\n\x1b[0;31mreader: Problem(kind='apex_fallback', "
        f"message=\"row 10: apex falls back\", sample_id='a', file='{root}/runs/t/x.xlsx', row=10)\n"))]
    table = nbformat.v4.new_code_cell("glue_table('demo_table', table)")
    csv = "metric,Acc (%),Acc (%)\n,paper,this build\nMethod,,\nMPT (Ours),86.59,20.0\nother,80.0,\n"
    table.outputs = [nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/html": "<table></table>"},
        metadata={"scrapbook": {"name": "demo_table", "mime_prefix": "application/papermill.record/"},
                  "mernb": {"csv": csv}})]
    return [nbformat.v4.new_markdown_cell("# Good page"), setup, data, table]


def test_stage_cleans_pages_marks_failures_and_builds_the_dashboard(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    _executed(plan, "demo/good", _good_cells(repo))
    err = nbformat.v4.new_code_cell("boom()")
    err.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="\x1b[0;31mboom",
                                          traceback=["Traceback (most recent call last)"])]
    _executed(plan, "demo/bad", [nbformat.v4.new_markdown_cell("# Bad page"), err], status="failed")
    stage = planmod.stage_book(plan)

    page = json.loads((stage / "notebooks/demo/good.ipynb").read_text())
    text = json.dumps(page, ensure_ascii=False)
    assert str(repo) not in text and "Problem(kind=" not in text and "\\u001b" not in text
    assert "tqdm" not in text and "plan='t'" not in text and "{'happiness'" not in text
    assert "happiness 2, others 8" in text and "row 10: apex falls back" in text
    code = [c for c in page["cells"] if c["cell_type"] == "code"]
    assert all("hide-input" in c["metadata"]["tags"] for c in code)
    run_note = page["cells"][1]["source"]  # right under the title
    assert "mernb-run" in run_note and "`mpt_test`" in run_note and "6acaf412239d" in run_note
    assert "cpu (CPU (x86_64, 2 cores))" in run_note and "mernb run plans/t.yaml --only 'demo/good'" in run_note
    assert (stage / "tables/demo/good/demo_table.csv").read_text().startswith("metric,")

    stub = (stage / "notebooks/demo/bad.md").read_text()
    assert not (stage / "notebooks/demo/bad.ipynb").exists()
    assert "# Bad page" in stub and "ValueError: boom" in stub and "mernb run plans/t.yaml --only 'demo/bad'" in stub
    assert "Traceback" not in stub

    status = (stage / "status.md").read_text()
    good_row = next(line for line in status.splitlines() if "demo/good>" in line)
    assert "| smoke |" in good_row and "MPT (Ours): Acc 86.59 → 20.00" in good_row and "12 s" in good_row
    assert "tables/demo/good/demo_table.csv" in good_row
    assert "**failed**" in status and "`demo/bad`: ValueError: boom" in status
    assert "not run" not in good_row and "quoted only" in status and "MA2MI Table 1" in status
    info = json.loads((stage / "build.json").read_text())
    assert info["kind"] == "synthetic" and info["failed"] == ["demo/bad"]
    assert "Pages that failed" in (stage / "plan.md").read_text()


def test_headline_takes_measured_rows_of_paper_vs_ours_tables():
    csv = ("metric,Acc (%),Acc (%),UF1 (%),UF1 (%)\n,paper,this build,paper,this build\nMethod,,,,\n"
           "LBP-TOP,51.0,,47.0,\nbaseline,60.0,30.0,55.0,\nMPT (Ours),86.59,20.0,86.01,18.0\n")
    assert headline(csv) == [("MPT (Ours)", "Acc (%)", 86.59, 20.0), ("MPT (Ours)", "UF1 (%)", 86.01, 18.0),
                             ("baseline", "Acc (%)", 60.0, 30.0)]
    assert headline("class,ours\nhappiness,3\n") == []
    none_row = "metric,Acc (%),Acc (%)\n,paper,this build\nMethod,,\nNone,83.94,44.12\nDFEW,89.16,\n"
    assert headline(none_row) == [("None", "Acc (%)", 83.94, 44.12)]  # a row named "None" is not NaN


def test_sanitize_and_warnings_list():
    text = sanitize_text("\x1b[1;31mfile='/home/u/data/CASME2.xlsx' at /work/wt/runs/smoke/a.json", root="/work/wt")
    assert text == "file='CASME2.xlsx' at runs/smoke/a.json"
    md = warnings_markdown([f"row {i}: apex missing" for i in range(7)], limit=3)
    assert md.count("\n- ") == 4 and "… and 4 more" in md and "(7)" in md
    assert warnings_markdown([]) == ""


def test_run_admonition_text_is_compact_and_reprless():
    from mernb.report.page import run_admonition_text

    text = run_admonition_text(plan="smoke", group="g", notebook="mpt/x", model="`mpt_test`", seeds=[0, 1],
                               device="cpu", commit="abc123", seconds=41.6, plan_file="plans/smoke.yaml",
                               settings={"mpt": {"epochs": 2, "lr": 0.0003}, "dataset": "casme2", "groups": {}})
    assert text.startswith("````{admonition} Run\n:class: note dropdown mernb-run")
    assert "- **seeds**: 0, 1" in text and "- **time**: 42 s" in text
    assert "mpt: epochs 2, lr 0.0003; dataset: casme2" in text and "groups" not in text and "{" not in text.split("\n", 1)[1]
    assert "`mernb run plans/smoke.yaml --only 'mpt/x'`" in text


def test_book_extension_notes_banner_and_offline_maths(tmp_path):
    from types import SimpleNamespace

    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    from mernb.report import book_ext

    app = SimpleNamespace(srcdir=str(tmp_path))
    config = SimpleNamespace(html_theme_options={"use_download_button": False})
    book_ext._config_inited(app, config)
    assert "announcement" not in config.html_theme_options  # not staged: no banner, no note
    (tmp_path / "runs/book").mkdir(parents=True)
    (tmp_path / "runs/book/build.json").write_text('{"plan": "smoke", "kind": "synthetic"}')
    book_ext._config_inited(app, config)
    assert config.html_theme_options["announcement"].startswith("SynthME smoke build")
    assert config.html_theme_options["use_download_button"] is False

    doc = new_document("page", get_default_settings(Parser))
    Parser().parse("Title\n=====\n\nText.\n\n.. figure:: a.png\n\n   A caption\n", doc)
    book_ext._doctree_read(app, doc)
    section = next(iter(doc.findall(nodes.section)))
    assert isinstance(section[1], nodes.warning) and "mernb-smoke" in section[1]["classes"]
    assert next(iter(doc.findall(nodes.caption))).astext() == "A caption (SynthME smoke)"

    mathml = book_ext._mathml(r"3\times10^{-4}", False)
    assert mathml.startswith("<math") and "<msup>" in mathml and "×" in mathml


def test_data_summary_reads_as_a_sentence():
    from types import SimpleNamespace

    from mernb.report.page import data_summary_markdown

    samples = [SimpleNamespace(label="happiness", subject_key="casme2/sub01")] * 2 + \
        [SimpleNamespace(label="others", subject_key="casme2/sub02")]
    problem = SimpleNamespace(kind="apex_fallback", message="row 10: apex not annotated")
    data = SimpleNamespace(dataset="casme2", protocol="casme2_5class", samples=samples,
                           classes=["happiness", "surprise", "others"], prepare="3/3 clips ready",
                           problems=[problem], dropped=[])
    text = data_summary_markdown(data)
    assert text.startswith("CASME II, protocol `casme2_5class`: 3 samples from 2 subjects; "
                           "happiness 2, surprise 0 (absent), others 1. Clips: 3/3 clips ready.")
    assert "- row 10: apex not annotated" in text and "{" not in text.split("```")[0]


def test_dashboard_headline_names_the_dataset_of_each_table(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    stage = repo / "stage"
    (stage / "t").mkdir(parents=True)
    csv = "metric,Acc (%),Acc (%)\n,paper,this build\nMethod,,\nHLoRA-MER,{p},{o}\nother,1.0,\n"
    (stage / "t/a.csv").write_text(csv.format(p=86.34, o=27.27))
    (stage / "t/b.csv").write_text(csv.format(p=80.0, o=30.0))
    art = planmod._artifact("demo/good", "Good", plan, 5.0, "0", "abc",
                            {"hlora_table_3_casme2_table": "t/a.csv", "hlora_table_3_samm_table": "t/b.csv"}, stage)
    assert art.headline == [("CASME II: HLoRA-MER", "Acc (%)", 86.34, 27.27), ("SAMM: HLoRA-MER", "Acc (%)", 80.0, 30.0)]


MAIN_CSV = ("metric,Acc (%),Acc (%),F1 (%),F1 (%)\n,paper,this build,paper,this build\nMethod,,,,\n"
            "LBP-TOP,51.00,–,47.00,–\nMPT (Ours),87.85,60.29,86.04,{ours}\n"
            "reference: majority class,–,41.18,–,11.67\nreference: chance,–,20.00,–,18.74\n"
            "reference: linear difference,–,57.35,–,50.44\n")


def test_learning_check_reads_the_default_row_and_references():
    check = learning_check(MAIN_CSV.format(ours="51.56"), "MPT (Ours)", "CASME II")
    assert (check.uf1, check.majority_uf1, check.linear_uf1) == pytest.approx((0.5156, 0.1167, 0.5044))
    assert check.margin == pytest.approx(0.3989) and check.met
    # the goal is a margin of +0.15 UF1: 26.67 − 11.67 = 15.00 meets it, 26.66 does not
    assert learning_check(MAIN_CSV.format(ours="26.67"), "MPT (Ours)", "x").met
    assert not learning_check(MAIN_CSV.format(ours="26.66"), "MPT (Ours)", "x").met
    assert learning_check(MAIN_CSV.format(ours="–"), "MPT (Ours)", "x") is None  # row not measured
    assert learning_check(MAIN_CSV.format(ours="51"), "HLoRA-MER", "x") is None  # row absent
    no_majority = MAIN_CSV.replace("reference: majority class", "reference: other")
    assert learning_check(no_majority.format(ours="51"), "MPT (Ours)", "x") is None
    acc_only = "metric,Acc (%),Acc (%)\n,paper,this build\nMethod,,\nMA2MI,80,40\nreference: majority class,–,30\n"
    assert learning_check(acc_only, "MA2MI", "MMEW") is None  # MMEW: Acc only, no UF1 to compare


def test_status_page_lists_the_learning_check_on_synthetic_builds_only(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    stage = repo / "stage"
    (stage / "t").mkdir(parents=True)
    (stage / "t/a.csv").write_text(MAIN_CSV.format(ours="20.00"))
    art = planmod._artifact("mpt/table1_casme2", "Table I", plan, 5.0, "0", "abc", {"mpt_table1": "t/a.csv"}, stage)
    assert [(c.table, c.row, round(c.margin, 4), c.met) for c in art.learning] == [("CASME II", "MPT (Ours)", 0.0833, False)]
    other = planmod._artifact("mpt/table7_prompt_types", "VII", plan, 5.0, "0", "abc", {"mpt_table1": "t/a.csv"}, stage)
    assert other.learning == []  # only the main tables' default rows are checked
    page = status_page([art, Artifact("mpt/x", "X", "synthetic")], plan="smoke", plan_file="plans/smoke.yaml",
                       kind="synthetic", commit="abc", built="now")
    assert "**0 of 1** rows meet it" in page
    assert "| CASME II | MPT (Ours) | 0.200 | 0.117 | +0.083 | 0.504 | not met |" in page
    real = status_page([art], plan="paper", plan_file="plans/paper.yaml", kind="reproduction", commit="abc", built="now")
    assert "Do the methods learn" not in real


def test_book_build_skips_other_plans_runs_and_killed_runs_leftovers():
    """A killed `mernb run` leaves a hidden `.<group>.<pid>.running.ipynb`, another plan leaves executed copies:
    the book build (Sphinx, with the project's exclude patterns) must not take them for pages (it failed on
    "document isn't included in any toctree")."""
    import yaml
    from sphinx.util.matching import Matcher

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "_config.yml").read_text())
    excluded = Matcher(config["exclude_patterns"])
    assert excluded("runs/smoke_dev/executed/ma2mi/table1_pretraining/.smoke.6978-1401.running.ipynb")
    assert excluded("runs/myplan/executed/mpt/table1_casme2/smoke.ipynb")
    assert excluded("runs/book/notebooks/mpt/.smoke.1.running.ipynb")
    assert not excluded("runs/book/notebooks/mpt/table1_casme2.ipynb")  # the staged pages stay
    assert not excluded("book/reproduction.md") and not excluded("runs/book/status.md")
