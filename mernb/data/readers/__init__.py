"""One reader per dataset release, and the registry ``read_dataset(name, root, annotation)``.

Every reader has the signature ``read_<name>(root=None, annotation=None, *, on_missing="error", fps=None,
problems=None, corrections=True) -> list[Sample]``:

* ``root`` is the dataset folder (frames are located only when it is given); ``annotation`` the annotation
  file (looked up under root, or its parent, by its usual name when omitted).
* ``on_missing="skip"`` skips rows with missing frames, unknown labels or bad numbers instead of raising a
  DatasetError; pass ``problems=[]`` (or use :func:`read_dataset_report`) to get what was noticed: apex
  fallbacks, corrections applied (``corrections.csv``), frame gaps, skipped rows.
* ``fps`` overrides the dataset's frame rate.
* Table readers also take ``columns`` (field -> header name), ``labels`` (file label -> release label) and
  ``duplicates`` (``"drop"``, the default, drops rows repeating an earlier one exactly; ``"keep"``).

Used by every notebook, SynthME tests and ``mernb data check``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mernb.config import load_config
from mernb.data.readers._common import Problem, frame_number, normalise_subject, parse_aus
from mernb.data.readers.afew import read_afew
from mernb.data.readers.casme2 import read_casme2
from mernb.data.readers.casme3 import read_casme3
from mernb.data.readers.dfew import read_dfew
from mernb.data.readers.ferv39k import read_ferv39k
from mernb.data.readers.megc2019 import read_megc2019
from mernb.data.readers.meview import read_meview
from mernb.data.readers.mmew import read_mmew
from mernb.data.readers.samm import read_samm
from mernb.data.readers.smic import read_smic
from mernb.data.readers.smic_e import read_smic_e
from mernb.data.records import Sample
from mernb.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: the reader, the default frame rate (0: unknown/varies) and a one-line description."""

    name: str
    reader: Callable[..., list[Sample]]
    fps: float
    description: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("casme2", read_casme2, 200.0, "CASME II (CASME2-coding-*.xlsx; sub01/EP02_01f/img46.jpg)"),
        DatasetInfo("samm", read_samm, 200.0, "SAMM (SAMM_Micro_FACS_Codes_v2.xlsx; 006/006_1_2/006_05562.jpg)"),
        DatasetInfo("smic", read_smic, 100.0, "SMIC-HS original release (labels from folders s1/micro/negative/s1_ne_01)"),
        DatasetInfo("smic_e", read_smic_e, 100.0, "SMIC-E HS (SMIC-HS-E_annotation.xlsx sheet HS; s01/s1_ne_01/)"),
        DatasetInfo("casme3", read_casme3, 30.0, "CAS(ME)^3 Part A ME labels (v1 .xls / v2 .xlsx; spNO.1/a/color/355.jpg)"),
        DatasetInfo("mmew", read_mmew, 90.0, "MMEW micro-expressions (MMEW_Micro_Exp.xlsx; <emotion>/<Filename>/<N>.jpg)"),
        DatasetInfo("meview", read_meview, 25.0, "MEVIEW (user CSV: subject, clip, onset, apex, offset, emotion)"),
        DatasetInfo("megc2019", read_megc2019, 0.0, "MEGC 2019 composite list (CASME II + SAMM + SMIC, 3 classes)"),
        DatasetInfo("dfew", read_dfew, 0.0, "DFEW macro-expression clips (Clip/clip_224x224/<id>/)"),
        DatasetInfo("ferv39k", read_ferv39k, 0.0, "FERV39K macro-expression clips (2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/)"),
        DatasetInfo("afew", read_afew, 25.0, "AFEW macro-expression videos (Train_AFEW/<Emotion>/*.avi)"),
    ]
}


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})") from None


#: Readers that take a column/label mapping (``columns=``, ``labels=``; ``datasets.<name>.columns/labels``).
MAPPABLE = {"casme2", "samm", "smic_e", "casme3", "mmew", "meview", "megc2019"}


def _same_path(a: str | Path | None, b: str | Path | None) -> bool:
    if a is None or b is None or not str(a) or not str(b):
        return False
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def config_mapping(name: str, root: str | Path | None, annotation: str | Path | None) -> dict[str, dict[Any, Any]]:
    """The user config's ``datasets.<name>.columns`` / ``.labels`` when this read is of the configured
    annotation file (or, with no annotation given, of the configured root); else ``{}``. A user config that
    cannot be read, or a mapping that is not one, is a ConfigError naming the file and key."""
    config = load_config()
    entry = config.datasets.get(name) or {}
    if not (entry.get("columns") or entry.get("labels")):
        return {}
    this = _same_path(annotation, entry.get("annotation")) if annotation is not None else _same_path(root, entry.get("root"))
    return config.mapping(name) if this else {}


def _read(name: str, root: str | Path | None, annotation: str | Path | None, kw: dict[str, Any]) -> list[Sample]:
    info = _info(name)
    if "columns" not in kw and "labels" not in kw:
        kw = {**config_mapping(info.name, root, annotation), **kw}
    if (kw.get("columns") or kw.get("labels")) and info.name not in MAPPABLE:
        raise ConfigError(f"datasets.{info.name}: {info.name} is not read from an annotation table, so columns/labels "
                          f"do not apply (they do for {', '.join(sorted(MAPPABLE))})")
    if info.name not in MAPPABLE:
        kw = {k: v for k, v in kw.items() if k not in {"columns", "labels"}}
    return info.reader(root, annotation, **kw)


def read_dataset(name: str, root: str | Path | None = None, annotation: str | Path | None = None, **kw: Any) -> list[Sample]:
    """Samples of dataset ``name`` (keywords go to its reader: on_missing, fps, problems, corrections, and for
    table readers columns, labels, duplicates). Without ``columns``/``labels`` the user config's mapping for
    this dataset applies when the file read is the configured one (:func:`config_mapping`)."""
    return _read(name, root, annotation, kw)


def read_dataset_report(
    name: str, root: str | Path | None = None, annotation: str | Path | None = None, **kw: Any
) -> tuple[list[Sample], list[Problem]]:
    """(samples, problems) of dataset ``name``; with ``on_missing='skip'`` bad rows end up in problems."""
    problems: list[Problem] = []
    samples = _read(name, root, annotation, {**kw, "problems": problems})
    return samples, problems


__all__ = [
    "DATASETS", "MAPPABLE", "DatasetInfo", "Problem", "config_mapping", "frame_number", "normalise_subject", "parse_aus", "read_afew",
    "read_casme2", "read_casme3", "read_dataset", "read_dataset_report", "read_dfew", "read_ferv39k",
    "read_megc2019", "read_meview", "read_mmew", "read_samm", "read_smic", "read_smic_e",
]
