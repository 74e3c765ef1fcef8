"""`mernb run` under interruption and failure: Ctrl-C, a killed kernel, a per-notebook timeout.

Real processes: `mernb run` is started as a subprocess and sent SIGINT like a terminal's Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from mernb import plan as planmod

REPO = Path(__file__).resolve().parents[1]


def _notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("group = None\ngroups = {}\nresults_dir = '.'\nplan = ''\n"
                                       "plan_kind = ''\nforce = False\nseconds = 60")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


STARTED = "import pathlib, time\n(pathlib.Path(results_dir) / 'started').write_text('1')\n"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MERNB_KERNEL", "plain")  # forked kernels: tests/test_kernels.py
    monkeypatch.delenv("MERNB_ROOT", raising=False)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    _notebook(tmp_path / "notebooks/demo/slow.ipynb", STARTED + "time.sleep(seconds)")
    _notebook(tmp_path / "notebooks/demo/stubborn.ipynb",
              "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + STARTED + "time.sleep(seconds)")
    _notebook(tmp_path / "notebooks/demo/quick.ipynb", STARTED + "print('done')")
    _notebook(tmp_path / "notebooks/demo/die.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    (tmp_path / "plans").mkdir()
    return tmp_path


def _plan(project: Path, name: str, notebooks: str, extra: str = "") -> Path:
    path = project / "plans" / f"{name}.yaml"
    path.write_text(f"name: {name}\nkind: synthetic\n{extra}notebooks:\n{notebooks}")
    return path


def _start_run(plan: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MERNB_KERNEL": "plain", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mernb.cli", "run", str(plan)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_ctrl_c_cancels_queue_interrupts_kernel_and_exits_130(project):
    plan = _plan(project, "cc", "  demo/slow: {}\n  demo/quick: {}\n")
    run = _start_run(plan, project)
    _wait_for(project / "runs/cc/results/demo/slow/started", run)
    start = time.monotonic()
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, (out, err)
    assert time.monotonic() - start < 30  # the 60 s cell was interrupted, not waited for
    assert "Traceback" not in err and "KeyboardInterrupt" not in err.split("Ctrl-C")[0]
    summary = [line for line in out.splitlines() if line.startswith("[run] interrupted cc:")]
    assert len(summary) == 1 and "1 interrupted" in summary[0] and "1 cancelled" in summary[0]
    assert f"rerun `mernb run {plan}` to continue" in summary[0]
    assert not (project / "runs/cc/results/demo/quick/started").exists()  # the queued notebook never ran
    # The interrupted page is not taken for a finished one: the next run executes it again.
    meta = nbformat.read(project / "runs/cc/executed/demo/slow/default.ipynb", 4).metadata["mernb"]
    assert meta["status"] == "interrupted"


def test_second_ctrl_c_kills_a_kernel_that_ignores_the_first(project):
    plan = _plan(project, "cc2", "  demo/stubborn: {}\n")
    run = _start_run(plan, project)
    _wait_for(project / "runs/cc2/results/demo/stubborn/started", run)
    run.send_signal(signal.SIGINT)
    time.sleep(2)
    assert run.poll() is None  # the kernel ignored the interrupt
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, (out, err)
    assert "Traceback" not in err and "killing the running kernels" in err
    assert err.count("Ctrl-C again") == 2  # the hint, then the kill; one summary, no second traceback
    assert sum(line.startswith("[run] interrupted cc2:") for line in out.splitlines()) == 1


def test_dead_kernel_is_a_failed_page_and_the_others_continue(project, capsys):
    plan = _plan(project, "dead", "  demo/die: {}\n  demo/quick: {}\n")
    code = planmod.main_run(SimpleNamespace(plan=str(plan), only=None, force=False, jobs=1))
    out, err = capsys.readouterr()
    assert code == 1
    assert "[run] demo/die:default: failed (kernel died)" in err and "Traceback" not in err + out
    assert "[run] demo/quick:default: ok" in out
    assert "1 executed, 0 reused, 1 failed" in out


def test_per_notebook_timeout_fails_the_page(project, capsys):
    plan = _plan(project, "slowplan", "  demo/slow:\n    timeout: 3\n  demo/quick: {}\n")
    start = time.monotonic()
    outcomes = planmod.run_plan(planmod.load_plan(plan))
    assert time.monotonic() - start < 50  # not the notebook's 60 s
    assert outcomes[("demo/slow", "default")][0] == "failed"
    assert outcomes[("demo/quick", "default")][0] == "ok"
    assert "failed (timeout after 3s" in capsys.readouterr().err
    meta = nbformat.read(project / "runs/slowplan/executed/demo/slow/default.ipynb", 4).metadata["mernb"]
    assert meta["status"] == "failed" and meta["error"].startswith("timeout")


def test_two_runs_of_one_plan_at_once_do_not_collide(project):
    groups = ", ".join(f"g{i}: {{}}" for i in range(3))
    plan = _plan(project, "twice", f"  demo/quick:\n    parameter_groups: {{{groups}}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MERNB_KERNEL": "plain"}
    runs = [subprocess.Popen([sys.executable, "-m", "mernb.cli", "run", str(plan), "--force", "--jobs", "2"],
                             cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err and "3 executed, 0 reused, 0 failed" in out
    executed = sorted(p.name for p in (project / "runs/twice/executed/demo/quick").iterdir())
    assert executed == ["g0.ipynb", "g1.ipynb", "g2.ipynb"]  # no temporary files left behind
    for name in executed:
        meta = nbformat.read(project / "runs/twice/executed/demo/quick" / name, 4).metadata["mernb"]
        assert meta["status"] == "ok"
