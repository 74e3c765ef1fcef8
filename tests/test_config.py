"""User config: dataset settings (root, annotation, columns, labels), validation messages, mapping look-up."""

from __future__ import annotations

import pytest

from mernb.config import load_config
from mernb.data.readers import config_mapping
from mernb.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_dataset_mapping_is_read(tmp_path):
    path = write(tmp_path, "datasets:\n  smic_e:\n    root: /d/SMIC\n    annotation: /d/list.csv\n"
                 "    columns: {onset: Start, emotion: Class}\n    labels: {0: negative, '1': positive}\n")
    config = load_config(path)
    assert config.mapping("smic_e") == {"columns": {"onset": "Start", "emotion": "Class"},
                                        "labels": {0: "negative", "1": "positive"}}
    assert config.mapping("casme2") == {} and config.dataset("smic_e")["root"] == "/d/SMIC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets:\n  casme2: {root: /x, anotation: /y}\n", r"datasets.casme2: unknown settings \['anotation'\]"),
        ("datasets:\n  casme2: {root: /x, columns: [Start]}\n", "datasets.casme2.columns must map names to names"),
        ("datasets:\n  casme2: {root: /x, labels: {0: [a, b]}}\n", "datasets.casme2.labels must map names to names"),
        ("datasets: [casme2]\n", "datasets must map dataset names"),
    ],
)
def test_bad_dataset_settings_name_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_mapping_applies_to_the_configured_file_only(tmp_path, monkeypatch):
    (tmp_path / "root").mkdir()
    path = write(tmp_path, f"datasets:\n  casme2:\n    root: {tmp_path / 'root'}\n    labels: {{n: disgust}}\n"
                 f"  samm:\n    root: /elsewhere\n    annotation: {tmp_path / 'a.csv'}\n    columns: {{onset: S}}\n")
    monkeypatch.setenv("MERNB_CONFIG", str(path))
    assert config_mapping("casme2", tmp_path / "root", None) == {"labels": {"n": "disgust"}}
    assert config_mapping("casme2", tmp_path / "root" / ".." / "root", None) == {"labels": {"n": "disgust"}}
    assert config_mapping("casme2", tmp_path, None) == {}  # another root (a SynthME copy, say)
    assert config_mapping("samm", None, tmp_path / "a.csv") == {"columns": {"onset": "S"}}
    assert config_mapping("samm", "/elsewhere", tmp_path / "b.csv") == {}  # another file, same root
    assert config_mapping("mmew", None, tmp_path / "a.csv") == {}
