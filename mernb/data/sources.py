"""Where a dataset lives: a SynthME folder of the smoke plan, or the user config of the paper plan.

Every notebook loads its samples through ``load_samples(name, data_root)``: with ``data_root`` set
(smoke plan) the dataset is the SynthME release ``mernb synth`` wrote to ``<data_root>/<name>``;
with ``data_root=None`` (paper plan) its root and annotation file come from the user config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mernb.config import load_config
from mernb.data.readers import read_dataset_report
from mernb.data.records import Sample
from mernb.errors import ConfigError

SYNTH_MARKER = "SYNTHME.json"


def locate_dataset(name: str, data_root: str | Path | None = None) -> tuple[Path, Path | None]:
    """``(root, annotation)`` of a dataset; clear errors saying which command or setting is missing."""
    if data_root:
        marker = Path(data_root) / name / SYNTH_MARKER
        if not marker.is_file():
            raise ConfigError(
                f"no SynthME {name!r} dataset under {data_root} ({marker} missing): run `mernb synth PLAN` first"
            )
        info = json.loads(marker.read_text())["info"]
        annotation = info.get("annotation")
        return Path(info["root"]), Path(annotation) if annotation else None
    entry = load_config().dataset(name)
    annotation = entry.get("annotation")
    return Path(entry["root"]).expanduser(), Path(annotation).expanduser() if annotation else None


def load_samples(name: str, data_root: str | Path | None = None, **reader_kwargs: Any) -> tuple[list[Sample], list]:
    """Read a dataset with its release reader; returns (samples, problems reported by the reader)."""
    root, annotation = locate_dataset(name, data_root)
    return read_dataset_report(name, root, annotation, **reader_kwargs)
