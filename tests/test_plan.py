"""Run plans: validation, parameter injection, papermill execution with reuse, book staging."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mernb import plan as planmod
from mernb.errors import ConfigError


def _write_notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("value = 1\ngroup = None\ngroups = {}\nresults_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(planmod, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("MERNB_KERNEL", "plain")  # forked kernels: tests/test_kernels.py
    _write_notebook(
        tmp_path / "notebooks" / "demo" / "tiny.ipynb",
        "import json, pathlib\n"
        "out = pathlib.Path(results_dir) / f'{group}.json'\n"
        "runs = json.loads(out.read_text())['runs'] + 1 if out.exists() else 1\n"
        "out.write_text(json.dumps({'value': value, 'runs': runs, 'groups': sorted(groups)}))\n"
        "print('value', value)",
    )
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "t.yaml").write_text(
        "name: t\nkind: synthetic\ndescription: test plan\nglobal_params: {value: 5}\n"
        "notebooks:\n  demo/tiny:\n    parameter_groups:\n      a: {value: 7}\n      b: {}\n"
    )
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: runs/book/notebooks/demo/tiny\n"
        "  - file: runs/book/notebooks/demo/absent\n"
    )
    return tmp_path


def test_load_plan_validates(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    assert plan.executions() == [("demo/tiny", "a"), ("demo/tiny", "b")]
    assert plan.executions("demo/tiny:b") == [("demo/tiny", "b")]
    assert plan.page_group("demo/tiny") == "b"
    params = plan.parameters("demo/tiny", "a")
    assert params["value"] == 7 and params["group"] == "a" and params["plan"] == "t"
    assert params["groups"]["b"]["value"] == 5  # global params reach every group
    assert params["results_dir"] == "runs/t/results/demo/tiny"

    bad = repo / "plans" / "bad.yaml"
    bad.write_text("name: x\nkind: real\nnotebooks: {}\n")
    with pytest.raises(ConfigError, match="kind must be one of"):
        planmod.load_plan(bad)
    bad.write_text("name: x\nkind: synthetic\nnotebooks:\n  nope/missing: {}\n")
    with pytest.raises(ConfigError, match="no source notebooks/nope/missing.ipynb"):
        planmod.load_plan(bad)
    bad.write_text("name: x\nkind: synthetic\nnotebook: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key notebook \(did you mean 'notebooks'\?\)"):
        planmod.load_plan(bad)
    bad.write_text("name: x\nkind: synthetic\n")
    with pytest.raises(ConfigError, match="missing 'notebooks'"):
        planmod.load_plan(bad)
    with pytest.raises(ConfigError, match="not found"):
        planmod.load_plan(repo / "plans" / "absent.yaml")


def test_run_executes_reuses_and_hides_parameters(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    outcomes = planmod.run_plan(plan)
    assert [o[0] for o in outcomes.values()] == ["ok", "ok"]
    result = json.loads((repo / "runs/t/results/demo/tiny/a.json").read_text())
    assert result == {"value": 7, "runs": 1, "groups": ["a", "b"]}

    executed = json.loads(plan.executed_path("demo/tiny", "a").read_text())
    tagged = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert any("injected-parameters" in t and "remove-cell" in t for t in tagged)
    assert executed["metadata"]["mernb"]["status"] == "ok"

    # Second run: nothing changed, both executions are reused (no kernel started).
    again = planmod.run_plan(plan)
    assert [o[0] for o in again.values()] == ["reused", "reused"]
    assert json.loads((repo / "runs/t/results/demo/tiny/a.json").read_text())["runs"] == 1

    # Re-running one row re-executes the page group too, so the page shows every row.
    forced = planmod.run_plan(plan, only="demo/tiny:a", force=True)
    assert forced[("demo/tiny", "a")][0] == "ok" and forced[("demo/tiny", "b")][0] == "ok"

    with pytest.raises(ConfigError, match="matches no notebook"):
        planmod.run_plan(plan, only="other/*")


def test_failed_notebook_is_reported(repo):
    _write_notebook(repo / "notebooks" / "demo" / "tiny.ipynb", "raise ValueError('boom')")
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    outcomes = planmod.run_plan(plan, only="demo/tiny:a")
    assert outcomes[("demo/tiny", "a")][0] == "failed"
    meta = json.loads(plan.executed_path("demo/tiny", "a").read_text())["metadata"]["mernb"]
    assert meta["status"] == "failed"


def test_stage_book_copies_pages_and_explains_missing(repo):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    stage = planmod.stage_book(plan)
    placeholder = (stage / "notebooks/demo/tiny.md").read_text()
    assert "has not been executed yet" in placeholder and "mernb run" in placeholder
    assert "is not part of plan" in (stage / "notebooks/demo/absent.md").read_text()
    assert "not a reproduction" in (stage / "plan.md").read_text()

    planmod.run_plan(plan)
    stage = planmod.stage_book(plan)
    assert (stage / "notebooks/demo/tiny.ipynb").is_file()


def test_parallel_jobs_run_every_notebook(repo):
    _write_notebook(repo / "notebooks" / "demo" / "other.ipynb", "print(group)")
    (repo / "plans" / "two.yaml").write_text(
        "name: two\nkind: synthetic\nnotebooks:\n  demo/tiny:\n    parameter_groups:\n      a: {}\n      b: {}\n"
        "  demo/other: {}\n"
    )
    plan = planmod.load_plan(repo / "plans" / "two.yaml")
    outcomes = planmod.run_plan(plan, jobs=2)
    assert list(outcomes) == [("demo/tiny", "a"), ("demo/tiny", "b"), ("demo/other", "default")]
    assert all(status == "ok" for status, _ in outcomes.values())


def test_new_code_re_executes_pages_but_reuses_results(repo, monkeypatch):
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    monkeypatch.setattr(planmod, "_code_version", lambda: "commit-1")
    planmod.run_plan(plan, only="demo/tiny:a")
    assert planmod.run_plan(plan, only="demo/tiny:a")[("demo/tiny", "a")][0] == "reused"
    monkeypatch.setattr(planmod, "_code_version", lambda: "commit-2")
    assert planmod.run_plan(plan, only="demo/tiny:a")[("demo/tiny", "a")][0] == "ok"
