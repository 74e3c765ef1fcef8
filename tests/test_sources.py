"""Locating a dataset: SynthME folders (smoke plan) or the user config (paper plan)."""

from __future__ import annotations

import json

import pytest

from mernb.data.sources import SYNTH_MARKER, locate_dataset
from mernb.errors import ConfigError


def test_synthme_marker_gives_root_and_annotation(tmp_path):
    (tmp_path / "casme2").mkdir()
    info = {"root": str(tmp_path / "casme2/CASME2_RAW_selected"), "annotation": str(tmp_path / "casme2/a.xlsx")}
    (tmp_path / "casme2" / SYNTH_MARKER).write_text(json.dumps({"params": {}, "info": info}))
    root, annotation = locate_dataset("casme2", tmp_path)
    assert root.name == "CASME2_RAW_selected" and annotation.name == "a.xlsx"
    with pytest.raises(ConfigError, match="mernb synth"):
        locate_dataset("samm", tmp_path)


def test_user_config_gives_paths_or_names_the_setting(tmp_path, monkeypatch):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"datasets:\n  samm: {{root: {tmp_path}, annotation: {tmp_path}/s.xlsx}}\n")
    monkeypatch.setenv("MERNB_CONFIG", str(config))
    root, annotation = locate_dataset("samm")
    assert root == tmp_path and annotation == tmp_path / "s.xlsx"
    with pytest.raises(ConfigError, match=r"datasets\.casme2\.root"):
        locate_dataset("casme2")
