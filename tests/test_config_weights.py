"""Weights errors say what is wrong and which config file to edit."""

from __future__ import annotations

import pytest

from mernb.config import load_config
from mernb.errors import ConfigError


def test_empty_unset_and_missing_weights_name_the_config_file(tmp_path):
    config = tmp_path / "mernb.local.yaml"
    config.write_text(f"weights:\n  empty_key:\n  blank_key: ''\n  missing_key: {tmp_path}/absent.pth\n")
    cfg = load_config(config)
    for key in ("empty_key", "blank_key"):
        with pytest.raises(ConfigError) as err:
            cfg.weight(key)
        assert f"weights.{key} is empty in {config}" in str(err.value) and "'None'" not in str(err.value)
    with pytest.raises(ConfigError, match=f"weights.other is not set in {config}"):
        cfg.weight("other")
    with pytest.raises(ConfigError, match=rf"absent\.pth' \(in {config}\) is not a file"):
        cfg.weight("missing_key")
    (tmp_path / "absent.pth").write_bytes(b"x")
    assert cfg.weight("missing_key") == tmp_path / "absent.pth"
