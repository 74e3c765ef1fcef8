"""Where a dataset lives: a SynthME folder of the smoke plan, or the user config of the paper plan.

Every notebook loads its samples through ``load_samples(name, data_root)``: with ``data_root`` set
(smoke plan) the dataset is the SynthME release ``mernb synth`` wrote to ``<data_root>/<name>``;
with ``data_root=None`` (paper plan) its root and annotation file come from the user config.
A relative ``data_root`` is taken from the project root (:func:`mernb.paths.project_path`), so a
notebook runs the same from JupyterLab (kernel in its own folder) as from ``mernb run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mernb.config import load_config
from mernb.data.readers import read_dataset_report
from mernb.data.records import Sample
from mernb.errors import ConfigError
from mernb.paths import project_path, project_root

SYNTH_MARKER = "SYNTHME.json"


def marker_paths(marker: Path) -> tuple[Path, Path | None]:
    """``(root, annotation)`` recorded in a SynthME marker; relative entries are taken from the marker's
    folder (so a moved or copied ``runs/`` keeps working), absolute ones (older markers) as they are."""
    try:
        info = json.loads(marker.read_text())["info"]
        root, annotation = info["root"], info.get("annotation")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"SynthME marker {marker} is unreadable ({exc}): run `mernb synth PLAN --force`") from exc
    return marker.parent / root, (marker.parent / annotation if annotation else None)


def locate_dataset(name: str, data_root: str | Path | None = None) -> tuple[Path, Path | None]:
    """``(root, annotation)`` of a dataset; clear errors saying which command or setting is missing."""
    if data_root:
        folder = project_path(data_root)
        marker = folder / name / SYNTH_MARKER
        if not marker.is_file():
            raise ConfigError(
                f"no SynthME {name!r} dataset under {folder} ({marker.name} missing): run `make book` "
                f"(or `mernb synth plans/smoke.yaml`) in {project_root()}"
            )
        return marker_paths(marker)
    entry = load_config().dataset(name)
    annotation = entry.get("annotation")
    return Path(entry["root"]).expanduser(), Path(annotation).expanduser() if annotation else None


def load_samples(name: str, data_root: str | Path | None = None, **reader_kwargs: Any) -> tuple[list[Sample], list]:
    """Read a dataset with its release reader; returns (samples, problems reported by the reader)."""
    root, annotation = locate_dataset(name, data_root)
    return read_dataset_report(name, root, annotation, **reader_kwargs)
