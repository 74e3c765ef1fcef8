"""User configuration: where the licensed datasets and the pretrained checkpoint files are.

mernb never downloads data or weights. A YAML file names local folders and files::

    datasets:
      casme2: {root: /data/CASME2/CASME2_RAW_selected, annotation: /data/CASME2/CASME2-coding-20140508.xlsx}
      samm:   {root: /data/SAMM, annotation: /data/SAMM/SAMM_Micro_FACS_Codes_v2.xlsx}
      smic_e:                       # an annotation file with other headers or label codes: map them
        root: /data/SMIC/HS
        annotation: /data/SMIC/my_list.csv
        columns: {onset: Start, apex: Peak, offset: End, emotion: Class}
        labels: {0: negative, 1: positive, 2: surprise}
    weights:
      vit_base_patch16_224.augreg_in21k: /ckpt/vit_base_patch16_224_in21k.pth
      vit_giant_patch14_dinov2.lvd142m: /ckpt/dinov2_vitg14.pth
    cache_dir: /scratch/mernb-cache

``columns`` maps a reader's fields (subject, clip, onset, apex, offset, emotion, aus, ...) to the file's header
names (or, for a file without a header row, to column numbers, 1 = first); ``labels`` maps the file's label values to the release's labels. They apply to the dataset's configured
annotation file (``mernb data check`` suggests them when a header is a near miss). The file is found at ``$MERNB_CONFIG``, else ``./mernb.local.yaml``, else ``~/.config/mernb/config.yaml``.
Used by every notebook of the paper plan and by ``mernb data check``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mernb.errors import ConfigError

CONFIG_EXAMPLE = "see README.md, section 'Running on real data'"
#: Settings of one ``datasets.<name>`` entry.
DATASET_KEYS = {"root", "annotation", "columns", "labels"}


def config_path() -> Path | None:
    """The user config file in effect, or None when there is none."""
    candidates = [os.environ.get("MERNB_CONFIG"), "mernb.local.yaml", "~/.config/mernb/config.yaml"]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    if os.environ.get("MERNB_CONFIG"):
        raise ConfigError(f"MERNB_CONFIG points to {os.environ['MERNB_CONFIG']!r}, which is not a file")
    return None


@dataclass
class UserConfig:
    """Parsed user config; ``source`` is the file it came from (None: empty config)."""

    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None
    source: Path | None = None

    def dataset(self, name: str) -> dict[str, Any]:
        """``{'root': ..., 'annotation': ...}`` for a dataset, or a ConfigError naming the setting."""
        entry = self.datasets.get(name)
        if not entry or not entry.get("root"):
            raise ConfigError(
                f"dataset {name!r} is not configured: set datasets.{name}.root (and .annotation) "
                f"in {self.source or 'a user config file'} ({CONFIG_EXAMPLE})"
            )
        return entry

    def mapping(self, name: str) -> dict[str, dict[Any, Any]]:
        """``{'columns': {...}, 'labels': {...}}`` of a dataset (only the keys that are set); a ConfigError
        naming the file and key when one is not a mapping of names."""
        entry = self.datasets.get(name) or {}
        out: dict[str, dict[Any, Any]] = {}
        for key in ("columns", "labels"):
            value = entry.get(key)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(isinstance(v, str | int) for v in value.values()):
                raise ConfigError(f"{self.source}: datasets.{name}.{key} must map names to names "
                                  f"(e.g. {{onset: Start}} or {{0: negative}}), not {value!r}")
            out[key] = dict(value)
        return out

    def weight(self, key: str) -> Path:
        """Local checkpoint file for a weight key, or a ConfigError naming the setting and the config file."""
        value = self.weights.get(key)
        where = self.source or "a user config file"
        if value is None or str(value).strip() in ("", "None"):  # `key:` with no value reads as None
            state = "is empty" if key in self.weights else "is not set"
            raise ConfigError(
                f"no local checkpoint for {key!r}: weights.{key} {state} in {where}; set it to a "
                f".pth/.safetensors file ({CONFIG_EXAMPLE}); mernb never downloads weights"
            )
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights.{key} = {value!r} (in {where}) is not a file")
        return path


def load_config(path: str | Path | None = None) -> UserConfig:
    """Read the user config (``path`` or the default search); an absent file gives an empty config."""
    path = Path(path).expanduser() if path else config_path()
    if path is None:
        return UserConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets' and 'weights'")
    unknown = set(raw) - {"datasets", "weights", "cache_dir"}
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)} (expected datasets, weights, cache_dir)")
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict) or not all(isinstance(v, dict | None) for v in datasets.values()):
        raise ConfigError(f"{path}: datasets must map dataset names to {{root: ..., annotation: ...}}")
    for name, entry in datasets.items():
        extra = set(entry or {}) - DATASET_KEYS
        if extra:
            raise ConfigError(f"{path}: datasets.{name}: unknown settings {sorted(extra)} "
                              f"(expected {', '.join(sorted(DATASET_KEYS))})")
    config = UserConfig(
        datasets={k: dict(v or {}) for k, v in datasets.items()},
        weights={k: str(v) for k, v in (raw.get("weights") or {}).items()},
        cache_dir=raw.get("cache_dir"),
        source=path,
    )
    for name in config.datasets:
        config.mapping(name)  # validate early, naming the file
    return config
