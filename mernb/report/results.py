"""Results files: one JSON per experiment (pooled predictions, metrics, config, provenance).

Every training notebook (``notebooks/{mpt,hlora,ma2mi}/*``) ends by calling :func:`write_results` or,
UvA-DL style, wraps its whole run in :func:`train_or_load` so that the book re-renders from the JSON
without re-training. The layout of a results file::

    {"schema": 1, "result": {...}, "config": {...}, "plan": "smoke", "notebook": "mpt/table6",
     "seeds": [0], "extra": {...}, "notes": [...],
     "provenance": {"git_commit", "git_dirty", "packages", "python", "platform", "device",
                    "timestamp_utc", "wall_time_s"}}
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from mernb.errors import MernbError
from mernb.io import git, write_text_atomic

SCHEMA = 1
PACKAGES = ("mernb", "torch", "torchvision", "timm", "peft", "transformers", "numpy", "scipy", "scikit-learn",
            "pandas", "opencv-python-headless", "papermill")
_REPO = Path(__file__).resolve().parents[2]


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` default: numpy scalars/arrays, tensors, paths, sets, dataclasses, ``to_dict()``."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch.Tensor
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist"):  # numpy array or scalar
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    raise TypeError(f"cannot store {type(obj).__name__} in a results file: {obj!r:.80}")


def _normalise(obj: Any) -> Any:
    """The object as it reads back from JSON (tuples → lists, numpy → Python), for comparisons."""
    return json.loads(json.dumps(obj, default=_jsonable, allow_nan=True))


def _device() -> str:
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return f"CPU ({platform.processor() or platform.machine()})"
    torch = sys.modules["torch"]
    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def provenance(wall_time_s: float | None = None) -> dict[str, Any]:
    """Git commit (+ dirty flag), package versions, Python, platform, device, UTC timestamp, wall time."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    commit = git("rev-parse", "HEAD", cwd=_REPO)
    status = git("status", "--porcelain", "--untracked-files=no", cwd=_REPO) if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "packages": packages,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": _device(),
        "timestamp_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
    }


def write_results(
    path: str | os.PathLike[str],
    *,
    result: Mapping[str, Any] | Any,
    config: Mapping[str, Any],
    plan: str | None = None,
    notebook: str | None = None,
    seeds: int | list[int] | tuple[int, ...] | None = None,
    extra: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
    wall_time_s: float | None = None,
) -> Path:
    """Write one results JSON atomically (temporary file + rename; nothing is left on failure).

    ``result`` is e.g. ``CVResult.to_dict()`` from ``mernb.train.loso`` (an object with ``to_dict()`` is
    accepted too); ``wall_time_s`` defaults to ``result["wall_time_s"]`` when present. Returns the path.
    """
    path = Path(path)
    if isinstance(seeds, int):
        seeds = [seeds]
    if wall_time_s is None and isinstance(result, Mapping) and isinstance(result.get("wall_time_s"), int | float):
        wall_time_s = float(result["wall_time_s"])
    doc = {
        "schema": SCHEMA,
        "result": result,
        "config": dict(config),
        "plan": plan,
        "notebook": notebook,
        "seeds": list(seeds) if seeds is not None else None,
        "extra": dict(extra) if extra else {},
        "notes": list(notes or []),
        "provenance": provenance(wall_time_s),
    }
    try:
        text = json.dumps(doc, default=_jsonable, indent=1, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise MernbError(f"results for {path} cannot be written as JSON: {exc}") from exc
    write_text_atomic(path, text + "\n")
    return path


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a results JSON written by :func:`write_results` (clear errors for missing or broken files)."""
    path = Path(path)
    if not path.is_file():
        raise MernbError(f"no results file at {path}: run the notebook (or `mernb run PLAN`) that writes it")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MernbError(f"results file {path} is not valid JSON ({exc}); delete it to re-run") from exc
    if not isinstance(doc, dict) or "result" not in doc or "provenance" not in doc:
        raise MernbError(f"{path} is not a mernb results file (keys 'result' and 'provenance' missing)")
    return doc


def results_exist(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a readable results file."""
    try:
        read_results(path)
    except MernbError:
        return False
    return True


def _config_diff(old: Any, new: Any) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else ["<config>"]

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b

    return sorted(k for k in set(old) | set(new) if not same(old.get(k), new.get(k)))


def train_or_load(
    path: str | os.PathLike[str],
    fn: Callable[[], Mapping[str, Any] | Any],
    *,
    force: bool = False,
    config: Mapping[str, Any] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    """Load the results at ``path`` if present (and written with the same ``config``), else run ``fn()``.

    ``fn`` returns the ``result`` (a dict or an object with ``to_dict()``); it is timed and written with
    :func:`write_results` (``meta``: plan, notebook, seeds, extra). When the stored config differs, the
    experiment re-runs and the new file records a note naming the changed keys. The returned dict is the
    results document plus ``"origin": "loaded" | "computed"`` (not stored). Used by every training notebook.
    Concurrent callers (notebooks run in parallel by ``mernb run --jobs``) asking for the same ``path``
    are serialised by a lock file beside it: the second one loads what the first computed.
    """
    path = Path(path)
    with _exclusive(path):
        return _train_or_load(path, fn, force=force, config=config, **meta)


@contextlib.contextmanager
def _exclusive(path: Path):
    """An exclusive advisory lock on ``<path>.lock`` (POSIX); a no-op where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_or_load(path: Path, fn: Callable[[], Mapping[str, Any] | Any], *, force: bool,
                   config: Mapping[str, Any] | None, **meta: Any) -> dict[str, Any]:
    config = dict(config or {})
    notes: list[str] = []
    if not force and path.exists():
        doc = read_results(path)
        changed = _config_diff(doc.get("config"), _normalise(config))
        if not changed:
            return {**doc, "origin": "loaded"}
        when = doc.get("provenance", {}).get("timestamp_utc", "?")
        notes.append(f"re-ran: config keys {', '.join(changed)} differ from the results of {when}")
        warnings.warn(f"{path}: {notes[-1]}", stacklevel=2)
    elif force and path.exists():
        notes.append("re-ran: force=True")
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    write_results(path, result=result, config=config, notes=notes, wall_time_s=wall, **meta)
    return {**read_results(path), "origin": "computed"}
