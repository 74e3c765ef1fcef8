"""JupyterLab "Run All": a source notebook runs with its own folder as working directory (issue 10 §7).

The parameters cells' relative defaults (``runs/smoke/synthme``, ``runs/smoke/cache``, results) must
resolve against the project root, not ``notebooks/<paper>/``. Uses the smoke plan's SynthME data
(generated into ``runs/smoke/synthme`` when absent, about half a minute; reused otherwise). The fast
check of the same resolution, without a kernel, is in ``tests/test_sources.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHEAP = "data/statistics"  # reads every SynthME set, no training


@pytest.fixture(scope="module")
def smoke_data() -> Path:
    from mernb.plan import load_plan, synthesize

    synthesize(load_plan(REPO / "plans" / "smoke.yaml"))  # reused when already there
    return REPO / "runs" / "smoke" / "synthme"


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts}


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts.append(out.get("text", "") + json.dumps(data.get("text/plain", "")) + data.get("text/markdown", ""))
            if out.get("output_type") == "error":
                parts.append(f"ERROR {out['ename']}: {out['evalue']}")
    return "\n".join(parts)


def _run_in_own_folder(notebook: str, monkeypatch, timeout: int = 600) -> str:
    from nbclient import NotebookClient

    monkeypatch.delenv("MERNB_ROOT", raising=False)
    source = REPO / "notebooks" / f"{notebook}.ipynb"
    before = _files_under(REPO / "notebooks")
    nb = nbformat.read(source, 4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(source.parent)}}).execute()  # cwd: notebooks/<paper>/
    assert _files_under(REPO / "notebooks") == before  # nothing written into the source tree
    return _outputs_text(nb)


@pytest.mark.slow  # a kernel and every SynthME set: ~20 s idle, over a minute on a busy machine
def test_statistics_runs_from_its_own_folder(smoke_data, monkeypatch):
    text = _run_in_own_folder(CHEAP, monkeypatch)
    assert "not read" not in text and "no SynthME" not in text  # every dataset found from notebooks/data/
    assert "CASME II" in text  # the datasets' published names (mernb.report.page.dataset_name)


SOURCES = sorted(str(p.relative_to(REPO / "notebooks").with_suffix("")) for p in (REPO / "notebooks").rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [nb for nb in SOURCES if nb != CHEAP])
def test_every_source_notebook_runs_from_its_own_folder(smoke_data, monkeypatch, notebook):
    text = _run_in_own_folder(notebook, monkeypatch, timeout=3600)
    assert "no SynthME" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _execute_over_websocket(base: str, token: str, kernel_id: str, codes: list[str], timeout: float) -> list[dict]:
    """Run ``codes`` one after another on a server kernel (Jupyter messaging over its websocket)."""
    import asyncio

    from tornado.websocket import websocket_connect

    async def run() -> list[dict]:
        ws = await websocket_connect(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}")
        session, replies = uuid.uuid4().hex, []
        for code in codes:
            msg_id = uuid.uuid4().hex
            await ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                           "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            outputs, reply, idle = [], None, False
            while reply is None or not idle:
                raw = await asyncio.wait_for(ws.read_message(), timeout)
                assert raw is not None, "kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind in ("stream", "error", "execute_result", "display_data"):
                    outputs.append(msg["content"])
                elif kind == "execute_reply":
                    reply = msg["content"]
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            replies.append({"reply": reply, "outputs": outputs})
            if reply["status"] != "ok":
                break
        ws.close()
        return replies

    return asyncio.run(run())


@pytest.mark.slow  # a server, a kernel and every SynthME set: over 30 s
def test_notebook_runs_on_a_real_jupyter_server_kernel(smoke_data, tmp_path, monkeypatch):
    """As JupyterLab does: a server on 127.0.0.1 starts the kernel for notebooks/data/statistics.ipynb."""
    import urllib.request

    port, token = _free_port(), uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "MERNB_ROOT"}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{base}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                call("GET", "/api/status")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "jupyter server did not start"
                time.sleep(0.5)
        session = call("POST", "/api/sessions", {"path": f"notebooks/{CHEAP}.ipynb", "type": "notebook",
                                                  "name": "", "kernel": {"name": "python3"}})
        nb = nbformat.read(REPO / "notebooks" / f"{CHEAP}.ipynb", 4)
        codes = ["import os; print('CWD=' + os.getcwd())"] + [c.source for c in nb.cells if c.cell_type == "code"]
        replies = _execute_over_websocket(base, token, session["kernel"]["id"], codes, timeout=300)
        assert [r["reply"]["status"] for r in replies] == ["ok"] * len(codes), replies[-1]
        text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                         for r in replies for o in r["outputs"])
        assert f"CWD={REPO / 'notebooks' / 'data'}" in text  # the server started it in the notebook's folder
        assert "not read" not in text and "casme2" in text
        call("DELETE", f"/api/sessions/{session['id']}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
