"""``mernb bench``: FLOPs per step against hand counts, output of the CLI on tiny configs (no timing assertions)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mernb.bench import bench_config, bench_model, bf16_peak, format_table
from mernb.cli import main as cli
from mernb.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread beats fighting for cores


def test_flops_of_a_training_step_match_the_hand_count():
    """Linear(16→8)→Linear(8→4), batch B. Forward: 2·B·(16·8 + 8·4). Backward: weight gradients of both
    layers (2·B·16·8 + 2·B·8·4) and the input gradient of the second only (the data needs none): 2·B·8·4."""
    b = 4
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 4))
    out = bench_model(model, torch.randn(b, 16), batch_size=b, steps=2, warmup=1, device="cpu")
    forward = 2 * b * (16 * 8 + 8 * 4)
    assert out["infer"]["flops_per_step"] == forward
    assert out["train"]["flops_per_step"] == forward + (2 * b * 16 * 8 + 2 * b * 8 * 4) + 2 * b * 8 * 4
    assert out["trainable_params"] == 16 * 8 + 8 + 8 * 4 + 4
    assert out["train"]["samples_per_s"] == pytest.approx(b / out["train"]["step_s"])
    assert out["train"]["utilisation"] is None and out["bf16_peak_flops"] is None  # CPU: no bf16 peak


def test_frozen_first_layer_needs_no_weight_gradient():
    """Frozen first Linear: backward computes only the second layer's weight gradient (2·B·8·4)."""
    b = 3
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 4))
    model[0].requires_grad_(False)
    out = bench_model(model, torch.randn(b, 16), batch_size=b, steps=1, warmup=0, device="cpu")
    forward = 2 * b * (16 * 8 + 8 * 4)
    assert out["infer"]["flops_per_step"] == forward
    assert out["train"]["flops_per_step"] == forward + 2 * b * 8 * 4


def test_bf16_peaks_by_device_name():
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert bf16_peak("NVIDIA L40S") == 362e12 and bf16_peak("NVIDIA L4") == 121e12
    assert bf16_peak("Some Future Accelerator") is None and bf16_peak(None) is None


@pytest.mark.parametrize("config", ["mpt_test", "vit_test"])
def test_cli_bench_tiny_configs_json(config, capsys):
    assert cli(["bench", config, "--batch-size", "2", "--steps", "1", "--warmup", "0", "--img-size", "32",
                "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"] == config and result["batch_size"] == 2 and result["device"] == "cpu"
    for key in ("train", "infer"):
        assert result[key]["step_s"] > 0 and result[key]["flops_per_step"] > 0
    assert result["train"]["flops_per_step"] > result["infer"]["flops_per_step"]
    assert result["peak_memory_bytes"] > 0


def test_hlora_cached_path_costs_less_than_the_full_backbone(capsys):
    kw = dict(batch_size=2, steps=1, warmup=0, device="cpu", num_classes=3)
    full = bench_config("hlora_test", **kw)
    cached = bench_config("hlora_test", cached=True, **kw)
    assert cached["cached"] and cached["trainable_params"] == full["trainable_params"]
    # the cached step runs only the last blocks + HFM, not the frozen prefix
    assert cached["train"]["flops_per_step"] < full["train"]["flops_per_step"]
    assert cached["infer"]["flops_per_step"] < full["infer"]["flops_per_step"]
    text = format_table(cached)
    assert "hlora_test (cached prefix)" in text and "train" in text and "infer" in text
    with pytest.raises(ConfigError, match="no frozen prefix"):
        bench_config("hlora_test", cached=True, finetune="full", **kw)
