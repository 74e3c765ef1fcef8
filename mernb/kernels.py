"""Kernels for ``mernb run``: each notebook in its own process, started in the project root, cheaply.

A plain Jupyter kernel spends most of a smoke notebook's time importing torch, timm and peft. With a
*fork server*, ``mernb run`` starts one helper process that imports that stack once; every notebook's
kernel is then a ``fork()`` of it: its own process, namespace and process group, started in seconds.
Where fork is unsafe (not Linux, CUDA already initialised in ``mernb``'s process, Python threads
running in the helper after its imports) or ``MERNB_KERNEL=plain`` is set, kernels start as usual.

:class:`KernelManager` (papermill's kernel manager for ``mernb run``) starts every kernel in the
:class:`KernelSlot`'s folder with its environment (no process-wide ``chdir``, so notebooks can start
concurrently) and records the kernel's process group, so ``mernb run`` can interrupt it (Ctrl-C,
timeout) or kill it. Used by :func:`mernb.plan.execute`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

# Imported once by the fork server (never initialising CUDA); missing ones are skipped.
PRELOAD = ("ipykernel.kernelapp", "numpy", "scipy", "pandas", "matplotlib", "sklearn", "cv2", "torch",
           "torch._inductor.config",  # imported by torch.use_deterministic_algorithms (mernb.train.runtime): 2.5 s
           "torchvision", "timm", "peft")
KERNEL_MODE_ENV = "MERNB_KERNEL"  # "plain": no fork server
START_TIMEOUT_S = 180.0  # the fork server's imports, on a busy machine

_current = threading.local()


@dataclass(eq=False)
class KernelSlot:
    """One execution's kernel: where it starts, extra environment, and (once started) its process group."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    server: ForkServer | None = None
    pgid: int | None = None
    forked: bool = False
    stopping: bool = False  # an interrupt was asked for (delivered at start if the kernel was not up yet)

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the kernel's process group; False when it is not running."""
        self.stopping = True
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False


@contextlib.contextmanager
def use_slot(slot: KernelSlot) -> Iterator[KernelSlot]:
    """Kernels started by this thread inside the block use ``slot`` (papermill starts them in this thread)."""
    previous = getattr(_current, "slot", None)
    _current.slot = slot
    try:
        yield slot
    finally:
        _current.slot = previous


class KernelManager(AsyncKernelManager):
    """papermill/nbclient kernel manager: per-kernel working directory and environment from the current
    :class:`KernelSlot`, a forked kernel when the slot has a fork server, the process group recorded."""

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        slot: KernelSlot | None = getattr(_current, "slot", None)
        if slot is not None:
            kw["cwd"] = str(slot.cwd)
            kw["env"] = {**os.environ, **kw.get("env", {}), **slot.env}
            if slot.server is not None and self.provisioner is None:
                self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
                self.provisioner = ForkProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                   parent=self, server=slot.server)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        slot: KernelSlot | None = getattr(_current, "slot", None)
        if slot is not None and self.provisioner is not None:
            slot.pgid = getattr(self.provisioner, "pgid", None)
            slot.forked = isinstance(self.provisioner, ForkProvisioner) and self.provisioner.forked
            if slot.stopping:  # Ctrl-C (or a timeout) came while the kernel was starting
                slot.signal(signal.SIGINT)


# ------------------------------------------------------------------------------------------ fork server


def fork_unsafe_reason() -> str | None:
    """Why a forked kernel must not be used here (None: fork is fine)."""
    if os.environ.get(KERNEL_MODE_ENV, "").lower() == "plain":
        return f"{KERNEL_MODE_ENV}=plain"
    if not sys.platform.startswith("linux"):
        return f"fork is unsafe on {sys.platform}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in this process"
    return None


class ForkServer:
    """A helper process that imports :data:`PRELOAD` once and forks a kernel per request.

    Made by ``mernb run`` (:func:`fork_server`), started at the first kernel (a run that reuses every
    page starts none); stops when asked or when its parent exits.
    """

    def __init__(self, cwd: Path, env: dict[str, str] | None = None, preload: tuple[str, ...] | None = None):
        self.cwd, self.env, self.preload = cwd, dict(env or {}), PRELOAD if preload is None else preload
        self.folder = Path(tempfile.mkdtemp(prefix="mernb-kernels-"))
        self.socket_path = self.folder / "server.sock"
        self.process: subprocess.Popen | None = None
        self.failed: str | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.process is None:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "mernb.kernels", str(self.socket_path), str(os.getpid()),
                     *self.preload],
                    cwd=self.cwd, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,  # as plain kernels
                    start_new_session=True,  # Ctrl-C reaches mernb only, which interrupts the kernels itself
                )

    def _request(self, message: dict[str, Any], timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        self.start()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"fork server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("fork server did not start in time")
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.socket_path))
            conn.sendall(json.dumps(message).encode() + b"\n")
            reply = conn.makefile("rb").readline()
        if not reply:
            raise RuntimeError("fork server closed the connection")
        answer = json.loads(reply)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        """Fork a kernel running ``argv``'s ipykernel arguments in ``cwd`` with ``env``; returns its pid."""
        return int(self._request({"argv": argv, "cwd": cwd, "env": env})["pid"])

    def exit_code(self, pid: int) -> int | None:
        """A forked kernel's exit code once the server has reaped it (None: still running, or unknown)."""
        try:
            return int((self.folder / f"{pid}.exit").read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self._request({"stop": True}, timeout=5)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.folder.iterdir():
            path.unlink(missing_ok=True)
        self.folder.rmdir()


@contextlib.contextmanager
def fork_server(cwd: Path, env: dict[str, str] | None = None) -> Iterator[ForkServer | None]:
    """A :class:`ForkServer` for the block, or None where fork is unsafe (plain kernels then)."""
    if fork_unsafe_reason() is not None:
        yield None
        return
    server = ForkServer(cwd, env)
    try:
        yield server
    finally:
        server.close()


class _ForkedProcess:
    """The ``Popen`` interface jupyter_client's provisioner uses, for a kernel forked by the server."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, server: ForkServer):
        self.pid, self.server, self.returncode = pid, server, None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.server.exit_code(self.pid)
            if code is None:
                try:
                    os.kill(self.pid, 0)
                    return None
                except ProcessLookupError:
                    code = -signal.SIGKILL  # reaped before its exit code was recorded
                except PermissionError:
                    return None
            self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):
    """Launches the kernel through the fork server; falls back to a plain process when it cannot."""

    def __init__(self, server: ForkServer, **kwargs: Any):
        super().__init__(**kwargs)
        self.server = server
        self.forked = False

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):  # noqa: ANN201 (jupyter_client's type)
        if "ipykernel_launcher" in cmd and self.server.failed is None:
            try:
                env = {k: str(v) for k, v in (kwargs.get("env") or os.environ).items()}
                pid = self.server.fork(cmd, str(kwargs.get("cwd") or Path.cwd()), env)
            except (OSError, RuntimeError, ValueError) as exc:
                self.server.failed = str(exc)
                print(f"[run] forked kernels unavailable ({exc}); starting plain kernels", file=sys.stderr)
            else:
                self.process = _ForkedProcess(pid, self.server)  # type: ignore[assignment]
                self.pid = self.pgid = pid  # the child calls setsid(): its own process group
                self.cwd = kwargs.get("cwd")
                self.forked = True
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)


# ------------------------------------------------------------------------------- the server process


def _run_kernel(request: dict[str, Any]) -> None:
    """In the forked child: become the kernel that ``python -m ipykernel_launcher ARGS`` would start."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        argv = request["argv"]
        # The kernel watches the server (its parent) and exits with it; the trait's default was read
        # from the server's environment at import, so it is passed explicitly.
        args = [*argv[argv.index("ipykernel_launcher") + 1:], f"--IPKernelApp.parent_handle={os.getppid()}"]
        sys.argv = ["ipykernel_launcher", *args]
        sys.path[0] = request["cwd"]  # as `python -m ipykernel_launcher` started in cwd
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance(argv=args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - report, then leave without running the server's cleanup
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def serve(socket_path: str, preload: list[str], parent: int | None = None) -> None:
    """The fork server's loop: import ``preload``, then fork one kernel per request until told to stop.

    When ``parent`` (the ``mernb run`` process; default: the current parent) is gone, even if it died
    during the imports, the server kills the process group of every kernel it forked and exits at once.
    """
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid() if parent is None else parent
    for name in preload:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    folder = Path(socket_path).parent
    kernels: set[int] = set()
    # Idle native pools (OpenBLAS) are fork-safe; a Python thread running code is not.
    unsafe = (f"fork server runs {threading.active_count()} Python threads after its imports"
              if threading.active_count() > 1 else None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".new")
    os.rename(socket_path + ".new", socket_path)  # appears only when ready
    listener.listen(16)
    running = True
    while running:
        ready, _, _ = select.select([listener], [], [], 0.2)
        while True:  # reap finished kernels, recording their exit codes for the provisioners
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            (folder / f"{pid}.exit").write_text(str(os.waitstatus_to_exitcode(status)))
            kernels.discard(pid)
        if os.getppid() != parent:  # mernb run died without stopping us: take the kernels down with us
            for pid in kernels:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            os._exit(1)  # skip the interpreter's teardown of the preloaded stack (slow, and nobody waits)
        if not ready:
            continue
        conn, _ = listener.accept()
        with conn:
            try:
                request = json.loads(conn.makefile("rb").readline())
            except ValueError:
                continue
            if request.get("stop"):
                running = False
                conn.sendall(b'{"stopped": true}\n')
                continue
            if unsafe:
                conn.sendall(json.dumps({"error": unsafe}).encode() + b"\n")
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _run_kernel(request)
            kernels.add(pid)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    listener.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[3:], parent=int(sys.argv[2]))
