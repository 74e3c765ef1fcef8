"""Forked kernels for `mernb run`: one process per notebook, forked from a server that imported the stack once."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from mernb import kernels
from mernb import plan as planmod

PROBE = (
    "import json, os, sys, pathlib\n"
    "info = {'pid': os.getpid(), 'ppid': os.getppid(), 'pgid': os.getpgid(0), 'cwd': os.getcwd(),\n"
    "        'preloaded': 'xml.dom.minidom' in sys.modules, 'root': os.environ.get('MERNB_ROOT'),\n"
    "        'sys_path0': sys.path[0]}\n"
    "from ipykernel.kernelapp import IPKernelApp\n"
    "info['parent_handle'] = IPKernelApp.instance().parent_handle\n"
    "x = 41 + 1\n"
    "(pathlib.Path(results_dir) / f'{group}.json').write_text(json.dumps(info))"
)


def _notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("group = None\ngroups = {}\nresults_dir = '.'\nplan = ''\n"
                                       "plan_kind = ''\nforce = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MERNB_KERNEL", raising=False)
    monkeypatch.delenv("MERNB_ROOT", raising=False)
    # A light stack for the test (the real one is torch, timm, peft); a module no plain kernel imports.
    monkeypatch.setattr(kernels, "PRELOAD", ("ipykernel.kernelapp", "xml.dom.minidom"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    _notebook(tmp_path / "notebooks/demo/probe.ipynb", PROBE)
    _notebook(tmp_path / "notebooks/demo/die.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans/k.yaml").write_text(
        "name: k\nkind: synthetic\nnotebooks:\n  demo/probe:\n    parameter_groups: {a: {}, b: {}, c: {}}\n"
        "  demo/die: {}\n")
    return tmp_path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked kernels are used on Linux only")
def test_each_notebook_gets_its_own_forked_kernel(project, capsys):
    plan = planmod.load_plan(project / "plans/k.yaml")
    outcomes = planmod.run_plan(plan, jobs=2)
    assert [outcomes[("demo/probe", g)][0] for g in "abc"] == ["ok", "ok", "ok"]
    infos = [json.loads((project / "runs/k/results/demo/probe" / f"{g}.json").read_text()) for g in "abc"]
    assert len({i["pid"] for i in infos}) == 3  # a fresh process (and namespace) per execution
    assert all(i["preloaded"] for i in infos)  # forked from the server that imported the stack
    server = {i["ppid"] for i in infos}
    assert len(server) == 1 and server != {os.getpid()}
    assert all(i["parent_handle"] == i["ppid"] for i in infos)  # exits with the server, as kernels do with mernb
    assert all(i["pgid"] == i["pid"] for i in infos)  # own process group: interrupts reach only this kernel
    assert all(Path(i["cwd"]) == project.resolve() and Path(i["root"]) == project.resolve() for i in infos)
    assert all(Path(i["sys_path0"]) == project.resolve() for i in infos)  # as `python -m ipykernel_launcher`
    # A forked kernel that dies is a failed page like any other.
    assert outcomes[("demo/die", "default")][0] == "failed"
    assert "failed (kernel died)" in capsys.readouterr().err
    executed = nbformat.read(plan.executed_path("demo/probe", "a"), 4)
    assert executed.metadata["mernb"]["status"] == "ok" and executed.metadata["language_info"]["name"] == "python"


def test_timeout_interrupts_a_forked_kernel(project, capsys):
    _notebook(project / "notebooks/demo/probe.ipynb", "import time\ntime.sleep(60)")
    (project / "plans/k.yaml").write_text("name: k\nkind: synthetic\nnotebooks:\n  demo/probe: {timeout: 2}\n")
    with kernels.fork_server(project) as server:
        assert server is not None
        status, seconds = planmod.execute(planmod.load_plan(project / "plans/k.yaml"), "demo/probe", "default",
                                          server=server)
    assert status == "failed" and seconds < 40
    assert "timeout after 2s" in capsys.readouterr().err


def test_fork_falls_back_where_unsafe(monkeypatch):
    monkeypatch.delenv("MERNB_KERNEL", raising=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: False)))
        assert kernels.fork_unsafe_reason() is None
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: True)))
    assert kernels.fork_unsafe_reason() is not None  # never fork once CUDA is initialised
    with kernels.fork_server(Path.cwd()) as server:
        assert server is None
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: False)))
    monkeypatch.setenv("MERNB_KERNEL", "plain")
    assert kernels.fork_unsafe_reason() == "MERNB_KERNEL=plain"
    monkeypatch.delenv("MERNB_KERNEL")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "darwin" in kernels.fork_unsafe_reason()


ORPHAN_PARENT = """
import sys, time
from pathlib import Path
sys.path[:0] = [{root!r}, {mods!r}]
from mernb import kernels
server = kernels.ForkServer(Path({cwd!r}), preload=("ipykernel.kernelapp", {preload!r}))
server.start()
print("server", server.process.pid, flush=True)
if {fork!r}:
    print("kernel", server.fork(["python", "ipykernel_launcher"], {cwd!r}, {{}}), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited


def _gone(pids: list[int], timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked kernels are used on Linux only")
@pytest.mark.parametrize("when", ["kernel running", "server still importing"])
def test_killed_run_leaves_no_server_or_kernel_behind(tmp_path, when):
    """`mernb run` killed (SIGKILL: no cleanup runs) must not leave its fork server or a forked kernel
    computing on: before the fix a server whose parent died during its imports served on forever."""
    import signal
    import subprocess
    import time

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "slow_import.py").write_text("import time\ntime.sleep(4)\n")  # a stack that takes a while to import
    forking = when == "kernel running"
    code = ORPHAN_PARENT.format(root=str(Path(__file__).resolve().parents[1]), mods=str(mods), cwd=str(tmp_path),
                                preload="xml.dom.minidom" if forking else "slow_import", fork=forking)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(mods), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(parent.stdout.readline().split()[1])]
        if forking:
            pids.append(int(parent.stdout.readline().split()[1]))
        else:
            time.sleep(1.0)  # the server is inside its imports
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(pids), f"left running after their run was killed: {[p for p in pids if _alive(p)]}"
    finally:
        parent.kill()
        for pid in pids if "pids" in locals() else []:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
