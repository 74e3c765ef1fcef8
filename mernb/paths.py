"""The project root and paths relative to it, whatever the working directory.

A notebook opened in JupyterLab starts its kernel in its own folder (``notebooks/mpt/``), ``mernb run``
starts kernels in the root, and ``mernb`` may be run from another folder: the parameters cells' relative
paths (``runs/smoke/synthme``, ``runs/smoke/cache``, ``results_dir``) are resolved with
:func:`project_path` against the root, found by :func:`project_root`. Used by ``mernb.plan`` (``mernb
run``/``synth``), ``mernb.data.sources`` (``data_root`` of every notebook) and the experiment recipes
(``cache_dir``, ``results_dir``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "MERNB_ROOT"  # set by `mernb run` for its kernels; a user may set it too
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout mernb is imported from (or site-packages)


def is_project_root(folder: Path) -> bool:
    """True for a mernb project folder: ``_toc.yml`` beside ``notebooks/`` (the book's layout)."""
    return (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir()


def find_root(start: str | Path) -> Path | None:
    """The nearest project root at or above ``start`` (a file or folder), or None."""
    here = Path(start).expanduser().resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if is_project_root(folder):
            return folder
    return None


def project_root(start: str | Path | None = None) -> Path:
    """The project root: ``$MERNB_ROOT``, else the nearest root above ``start`` (default: the working
    directory), else the checkout mernb is imported from, else the working directory."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    for candidate in (start, Path.cwd()):
        if candidate is not None and (found := find_root(candidate)) is not None:
            return found
    return PACKAGE_ROOT if is_project_root(PACKAGE_ROOT) else Path.cwd().resolve()


def project_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` itself when absolute (``~`` expanded), else ``path`` under ``root`` (default :func:`project_root`)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(root) / path if root is not None else project_root() / path
