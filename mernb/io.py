"""Files written whole or not at all, digests of JSON-able values, and git: one place for each.

Used by the results files (:mod:`mernb.report.results`), the LOSO fold files (:mod:`mernb.train.loso`),
the shared rows' checkpoints (:mod:`mernb.experiments.common`), the executed notebooks (:mod:`mernb.plan`)
and the clip and prefix-token caches.

Temporary files are made with a unique name beside the target (so two writers never share one) and get
the permissions an ordinary ``open`` would give (``0o666`` less the umask), so a group-shared results
folder stays readable by the group.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process umask, read without changing it (``/proc`` on Linux, thread-safe; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync, then move it onto ``path``.

    Nothing is left behind on failure; readers see the old file or the new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_atomic` for UTF-8 text."""
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """:func:`write_atomic` for ``json.dumps(data, indent=1, **dumps)``."""
    return write_text_atomic(path, json.dumps(data, **{"indent": 1, **dumps}) + "\n")


def save_torch_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` through :func:`write_atomic` (a killed run never leaves a truncated checkpoint)."""
    import torch

    return write_atomic(path, lambda handle: torch.save(obj, handle))


def git(*args: str, cwd: str | os.PathLike[str] | None = None) -> str | None:
    """``git ARGS`` in ``cwd`` (default: the checkout mernb is imported from): its stripped output, or None
    when git is missing, times out or fails (not a checkout). Used for provenance and page freshness."""
    import subprocess

    folder = Path(cwd) if cwd is not None else Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def digest(obj: Any, n: int = 20) -> str:
    """First ``n`` hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys; ``str`` for the rest)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]
