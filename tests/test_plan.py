"""Run plans: validation, parameter injection, papermill execution with reuse, book staging."""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize(("text", "message"), [
    ("notebooks:\n  demo/tiny:\n    parameter_group: {a: {}}\n",
     r"unknown key notebooks\.demo/tiny\.parameter_group \(did you mean 'parameter_groups'\?\)"),
    ("notebooks:\n  demo/tiny:\n    parameter_groups:\n      a: {valeu: 3}\n",
     r"notebooks\.demo/tiny\.parameter_groups\.a\.valeu \(did you mean 'value'\?\).*parameters cell"),
    ("global_params: {devise: cpu}\nnotebooks:\n  demo/tiny: {}\n", r"global_params\.devise"),
    ("notebooks:\n  demo/tiny:\n    parameter_groups: [a, b]\n",
     r"notebooks\.demo/tiny\.parameter_groups must be a mapping.*got list"),
    ("notebooks:\n  demo/tiny:\n    parameter_groups:\n      a: 3\n",
     r"notebooks\.demo/tiny\.parameter_groups\.a must be a mapping.*got int"),
    ("global_params: [1, 2]\nnotebooks:\n  demo/tiny: {}\n", r"global_params must be a mapping.*got list"),
    ("notebooks:\n  demo/tiny: 5\n", r"notebooks\.demo/tiny must be a mapping.*got int"),
    ("synthme: {datasets: [casme2]}\nnotebooks:\n  demo/tiny: {}\n", r"synthme\.datasets must be a mapping"),
    ("timeout: -1\nnotebooks:\n  demo/tiny: {}\n", r"timeout must be a positive number"),
    ("notebooks:\n  demo/tiny: {timeout: soon}\n", r"notebooks\.demo/tiny\.timeout must be a positive number"),
])
def test_plan_typos_fail_loudly_naming_file_and_key(repo, text, message):
    bad = repo / "plans" / "typo.yaml"
    bad.write_text("name: typo\nkind: synthetic\n" + text)
    with pytest.raises(ConfigError, match=message) as info:
        planmod.load_plan(bad)
    assert str(bad) in str(info.value)


def test_every_problem_is_listed_and_real_plans_are_valid(repo):
    bad = repo / "plans" / "two.yaml"
    bad.write_text("name: two\nkind: synthetic\nglobal_params: {devise: cpu}\n"
                   "notebooks:\n  demo/tiny:\n    parameter_groups:\n      a: {valeu: 3}\n")
    with pytest.raises(ConfigError) as info:
        planmod.load_plan(bad)
    assert "global_params.devise" in str(info.value) and "parameter_groups.a.valeu" in str(info.value)
    for real in ("smoke", "paper"):  # the shipped plans pass the same checks
        plan = planmod.load_plan(Path(__file__).resolve().parents[1] / "plans" / f"{real}.yaml")
        assert plan.executions() and plan.root == Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "book", "x y"])
def test_plan_names_stay_inside_runs(repo, name):
    bad = repo / "plans" / "name.yaml"
    bad.write_text(f"name: '{name}'\nkind: synthetic\nnotebooks:\n  demo/tiny: {{}}\n")
    with pytest.raises(ConfigError, match="plain folder name under runs/"):
        planmod.load_plan(bad)
    # Notebook and group names become paths under notebooks/ and runs/<plan>/ too.
    bad.write_text("name: ok\nkind: synthetic\nnotebooks:\n  demo/../demo/tiny: {}\n")
    with pytest.raises(ConfigError, match="without '..'"):
        planmod.load_plan(bad)
    if name != "book":  # a reserved plan name (runs/book is the book's stage), a fine group name
        bad.write_text(f"name: ok\nkind: synthetic\nnotebooks:\n  demo/tiny:\n    parameter_groups: {{'{name}': {{}}}}\n")
        with pytest.raises(ConfigError, match="must be a plain file name"):
            planmod.load_plan(bad)


def test_project_root_comes_from_the_plan_file_not_the_package(repo, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(planmod, "REPO_ROOT", Path(planmod.__file__).resolve().parents[1])  # the package checkout
    monkeypatch.delenv("MERNB_ROOT", raising=False)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    assert plan.root == repo.resolve() and plan.run_dir == repo.resolve() / "runs" / "t"
    monkeypatch.chdir(repo / "plans")  # a relative plan path from inside the project
    assert planmod.load_plan("t.yaml").root == repo.resolve()


def test_kernels_start_in_the_root_without_changing_the_process_cwd(repo, monkeypatch, tmp_path_factory):
    _write_notebook(repo / "notebooks" / "demo" / "tiny.ipynb",
                    "import os, pathlib\n(pathlib.Path(results_dir) / f'{group}.cwd').write_text(os.getcwd() + '|' "
                    "+ os.environ.get('MERNB_ROOT', ''))")
    outside = tmp_path_factory.mktemp("outside")
    monkeypatch.chdir(outside)
    calls = []
    real_chdir = os.chdir
    monkeypatch.setattr(os, "chdir", lambda path: (calls.append(path), real_chdir(path)))
    plan = planmod.load_plan(repo / "plans" / "t.yaml")
    outcomes = planmod.run_plan(plan, jobs=2)
    assert all(status == "ok" for status, _ in outcomes.values())
    # papermill's cwd= would chdir the whole process to the root and back (racy with --jobs); its file
    # handler's chdir to the unchanged working directory is harmless.
    assert {Path(c).resolve() for c in calls} <= {outside.resolve()}
    for group in ("a", "b"):
        cwd, root = (repo / "runs/t/results/demo/tiny" / f"{group}.cwd").read_text().split("|")
        assert Path(cwd).resolve() == repo.resolve() and Path(root) == repo.resolve()


def test_executed_notebooks_honour_the_umask_and_use_unique_temporary_files(repo, monkeypatch):
    import stat

    old = os.umask(0o002)
    try:
        plan = planmod.load_plan(repo / "plans" / "t.yaml")
        planmod.run_plan(plan, only="demo/tiny:a")
        mode = stat.S_IMODE(plan.executed_path("demo/tiny", "a").stat().st_mode)
        assert mode == 0o664  # group-readable on a shared folder, not mkstemp's 0600
    finally:
        os.umask(old)
    # Concurrent rewrites of the same executed notebook never share a temporary file.
    import threading

    target = plan.executed_path("demo/tiny", "a")
    errors = []

    def rewrite() -> None:
        for _ in range(40):
            try:
                planmod._hide_parameter_cells(target, "d", "ok", 1.0)
                json.loads(target.read_text())
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=rewrite) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and not list(target.parent.glob("*.tmp"))


def test_changed_data_re_executes_the_page(repo, monkeypatch):
    """Issue 10 §2: a page whose input data changed (a corrected label) is not answered by its old copy."""
    import os

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("data_root = None\ngroup = None\ngroups = {}\nresults_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(open(f'{data_root}/labels.csv').read())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, repo / "notebooks" / "demo" / "data.ipynb")
    data = repo / "data"
    data.mkdir()
    (data / "labels.csv").write_text("clip,label\nEP1,happiness\n")
    (repo / "plans" / "d.yaml").write_text(
        "name: d\nkind: synthetic\ndescription: data plan\nglobal_params: {data_root: data}\n"
        "notebooks:\n  demo/data:\n    parameter_groups:\n      a: {}\n")
    monkeypatch.setattr(planmod, "_code_version", lambda: "commit-1")
    plan = planmod.load_plan(repo / "plans" / "d.yaml")
    assert planmod.run_plan(plan)[("demo/data", "a")][0] == "ok"
    assert planmod.run_plan(plan)[("demo/data", "a")][0] == "reused"
    (data / "labels.csv").write_text("clip,label\nEP1,surprise\n")
    stat = (data / "labels.csv").stat()
    os.utime(data / "labels.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert planmod.run_plan(plan)[("demo/data", "a")][0] == "ok"
    executed = json.loads(plan.executed_path("demo/data", "a").read_text())
    assert "surprise" in json.dumps(executed["cells"][-1]["outputs"])
