"""``mernb model info``: parameter table per module, MACs per sample, JSON output."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mernb.cli import main as cli_main
from mernb.errors import ConfigError
from mernb.models.info import count_macs, format_table, model_info


def test_cli_json_parses(capsys):
    assert cli_main(["model", "info", "mpt_test", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"] == "mpt_test" and info["model_class"] == "MPT"
    names = [row["name"] for row in info["modules"]]
    assert names[:4] == ["backbone", "prompt_generator", "adapters", "head"]
    assert info["trainable_params"] == sum(r["trainable"] for r in info["modules"])
    assert info["total_params"] == sum(r["params"] for r in info["modules"])
    assert info["macs"] > 0 and sum(r["macs"] for r in info["modules"]) == info["macs"]
    assert info["input"]["motion"] == [1, 8, 3, 112, 112]


def test_cli_table_no_macs(capsys):
    assert cli_main(["model", "info", "vit_test", "--no-macs"]) == 0
    out = capsys.readouterr().out
    assert "vit_test (DynamicImageViT)" in out and "trainable" in out


def test_cli_unknown_config(capsys):
    assert cli_main(["model", "info", "no_such_model"]) == 2
    assert "unknown model config" in capsys.readouterr().err


def test_macs_of_a_linear_model():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    total, per_child = count_macs(model, torch.randn(1, 10))
    assert total == 10 * 20 + 20 * 3
    assert per_child["0"] == 200 and per_child["2"] == 60
    info = model_info(model, torch.randn(1, 10))
    assert info["total_params"] == 10 * 20 + 20 + 20 * 3 + 3 and info["macs"] == 260
    assert "total" in format_table(info)


def test_model_without_example_input_needs_one():
    with pytest.raises(ConfigError, match="example_input"):
        model_info(nn.Linear(3, 3))
    assert model_info(nn.Linear(3, 3), macs=False)["macs"] is None


def test_paper_config_counts_on_meta():
    """Table V: MPT 5.5M tunable parameters, 18.7 GFLOPs (the paper's 'FLOPs' are MACs)."""
    info = model_info("mpt_base_patch16", num_classes=3)
    assert abs(info["trainable_params"] / 1e6 - 5.5) < 0.1
    assert abs(info["macs"] / 1e9 - 18.7) < 0.1


def test_hlora_info_reports_lora_and_head_separately():
    from mernb.models.info import model_info

    info = model_info("hlora_vitg14", macs=False)
    assert info["groups"]["lora"] == 196_608  # the paper's 197k
    assert info["groups"]["head"] > 0 and info["groups"]["frozen"] > 1e9
