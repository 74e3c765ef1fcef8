"""On-disk cache of prepared clips (uint8 arrays as .npy), so that no clip is prepared twice.

A key is the SHA-256 of the source frame files (path, size, mtime) and of every preparation parameter,
plus :data:`CACHE_VERSION` (bump it when the preparation code changes its output). Files are written to
a temporary name and moved into place with ``os.replace``, so concurrent writers (several notebooks or
``prepare_all`` workers) never leave a partial file; a reader that finds a damaged file recomputes it.

Used by :func:`mernb.data.clips.prepare_clip` / :func:`~mernb.data.clips.prepare_all` in every notebook.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mernb.errors import DatasetError
from mernb.io import write_atomic

#: Bump when prepared clips change for the same parameters (invalidates every cached clip).
CACHE_VERSION = 2  # 2: black (not edge-replicated) borders in face alignment; AppleDouble/hidden files ignored


def source_fingerprint(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, mtime_ns) of each file; a missing file is a DatasetError naming it."""
    out = []
    for p in paths:
        path = Path(p)
        try:
            st = path.stat()
        except OSError as exc:
            raise DatasetError(f"{path}: frame file missing or unreadable ({exc.strerror})") from exc
        out.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    return out


def clip_key(paths: Iterable[str | Path], params: Mapping[str, Any]) -> str:
    """Hex key of a clip: the source files' fingerprint + every parameter + the cache version."""
    payload = {"version": CACHE_VERSION, "sources": source_fingerprint(paths), "params": dict(params)}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class ClipCache:
    """A folder of prepared clips; ``hits``/``misses`` count look-ups made through this object."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ClipCache({str(self.directory)!r}, hits={self.hits}, misses={self.misses})"

    @classmethod
    def from_config(cls, default: str | Path = "runs/cache/clips") -> ClipCache:
        """The cache at the user config's ``cache_dir`` (``<cache_dir>/clips``), else at ``default``."""
        from mernb.config import load_config

        cache_dir = load_config().cache_dir
        return cls(Path(cache_dir).expanduser() / "clips" if cache_dir else default)

    def path(self, key: str) -> Path:
        """Where the clip with this key lives (two-level fan-out keeps folders small)."""
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (a damaged file counts as absent)."""
        path = self.path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None

    def save(self, key: str, array: np.ndarray) -> Path:
        """Store atomically (:func:`mernb.io.write_atomic`: unique temporary file, umask-honouring mode)."""
        array = np.ascontiguousarray(array)
        return write_atomic(self.path(key), lambda fh: np.save(fh, array, allow_pickle=False))

    def get_or_create(
        self, paths: Iterable[str | Path], params: Mapping[str, Any], create: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """The cached clip for (paths, params), or ``create()`` stored under its key (counted as a miss)."""
        key = clip_key(paths, params)
        array = self.load(key)
        if array is not None:
            self.hits += 1
            return array
        self.misses += 1
        array = create()
        self.save(key, array)
        return array
