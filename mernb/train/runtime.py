"""Seeds, device choice and mixed precision: the few process-wide settings a run depends on.

Used by the epoch loop (``mernb.train.loop``), the LOSO runner and every training notebook.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

from mernb.errors import ConfigError

_CPU_WARNED = False


def set_seed(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); with ``deterministic`` ask torch for deterministic kernels.

    Deterministic mode sets cuDNN deterministic / no benchmark and ``use_deterministic_algorithms``
    in warn-only mode (ops without a deterministic kernel warn instead of failing).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        _deterministic_kernels()


def _deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` (once per process: its first call imports
    torch's inductor config, about 2.5 s, which the forked notebook kernels of ``mernb run`` have preloaded)."""
    if not (torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()):
        torch.use_deterministic_algorithms(True, warn_only=True)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy / ``random`` seeds from the worker's torch seed, and give
    a dataset's augmentation ``generator`` (if any) that seed too, so workers do not draw the same flips."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and getattr(info.dataset, "generator", None) is not None:
        info.dataset.generator = make_generator(torch.initial_seed())


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded for DataLoader shuffling (same order for the same seed)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """``prefer`` if given (error when it asks for an absent CUDA; ``"auto"`` = none), else CUDA when available,
    else CPU.

    Falling back to the CPU prints a warning once per process.
    """
    global _CPU_WARNED
    if prefer == "auto":  # the notebooks' parameter value: the same as no preference
        prefer = None
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {str(prefer)!r} was asked for but CUDA is not available here; use 'cpu' or None")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if not _CPU_WARNED:
        print("mernb: CUDA is not available, running on the CPU (fine for smoke runs, slow for paper runs)",
              file=sys.stderr)
        _CPU_WARNED = True
    return torch.device("cpu")


def amp_enabled(device: torch.device | str, amp: bool = True) -> bool:
    """Whether mixed precision applies: only when asked for and on CUDA."""
    return bool(amp) and torch.device(device).type == "cuda"


@contextlib.contextmanager
def amp_context(
    device: torch.device | str, dtype: torch.dtype = torch.bfloat16, enabled: bool = True
) -> Iterator[None]:
    """``torch.autocast`` on CUDA with ``dtype`` (bfloat16 or float16); a no-op on the CPU or when disabled."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ConfigError(f"amp dtype must be torch.bfloat16 or torch.float16, got {dtype}")
    if amp_enabled(device, enabled):
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield
    else:
        yield
