"""mernb.models.lora: split fused qkv, peft LoRA on q/v only, merge back to the plain timm structure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from mernb.errors import ConfigError
from mernb.models.lora import SplitQKV, apply_lora, is_lora_param, lora_layers, merge_lora, split_qkv

TINY = dict(depth=4, embed_dim=64, num_heads=2, img_size=56, num_classes=0, init_values=1.0)


def tiny_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, **TINY).eval()


def perturb_lora(model: nn.Module, seed: int = 1, std: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def test_split_qkv_same_output_and_weights():
    fused = nn.Linear(8, 24)
    split = SplitQKV(fused)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(split(x), fused(x))
    assert split.q.weight.shape == (8, 8)
    torch.testing.assert_close(split.k.bias, fused.bias[8:16])
    refused = split.fuse()
    torch.testing.assert_close(refused.weight, fused.weight)
    torch.testing.assert_close(refused.bias, fused.bias)


def test_split_qkv_rejects_non_multiple_of_three():
    with pytest.raises(ValueError, match="multiple of 3"):
        SplitQKV(nn.Linear(4, 10))


def test_lora_only_on_q_and_v_of_chosen_blocks():
    model = tiny_vit()
    apply_lora(model, [2, 3], rank=4, alpha=4)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(is_lora_param(n) for n in trainable)
    adapted = {n.split(".lora_")[0] for n in trainable}
    assert adapted == {f"blocks.{b}.attn.qkv.{t}" for b in (2, 3) for t in ("q", "v")}
    for b in (2, 3):  # k split out but untouched
        k = model.blocks[b].attn.qkv.k
        assert type(k) is nn.Linear and not k.weight.requires_grad
    for b in (0, 1):  # lower blocks keep the fused Linear
        assert type(model.blocks[b].attn.qkv) is nn.Linear
    # r * (in + out) per adapted Linear, 2 targets, 2 blocks
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4 * (64 + 64) * 2 * 2


def test_lora_starts_as_identity_then_changes_output():
    model = tiny_vit()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        ref = model(x)
        apply_lora(model, [3], rank=2, alpha=2)
        torch.testing.assert_close(model(x), ref)  # B = 0 at init
        perturb_lora(model)
        assert (model(x) - ref).abs().max() > 1e-3


def test_merge_equals_unmerged_and_restores_structure():
    reference = tiny_vit()
    model = tiny_vit()
    apply_lora(model, [1, 2, 3], rank=4, alpha=8)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        for seed in range(3):
            perturb_lora(model, seed=seed)
            unmerged = model(x)
        merge_lora(model)
        torch.testing.assert_close(model(x), unmerged, atol=1e-4, rtol=1e-4)
    assert not lora_layers(model)
    assert not any(isinstance(m, SplitQKV) for m in model.modules())
    assert list(model.state_dict()) == list(reference.state_dict())
    assert all(type(blk.attn.qkv) is nn.Linear for blk in model.blocks)
    assert model.blocks[3].attn.qkv.weight.shape == reference.blocks[3].attn.qkv.weight.shape
    # K rows untouched by the merge, Q rows changed
    torch.testing.assert_close(model.blocks[3].attn.qkv.weight[64:128], reference.blocks[3].attn.qkv.weight[64:128])
    assert not torch.allclose(model.blocks[3].attn.qkv.weight[:64], reference.blocks[3].attn.qkv.weight[:64])


def test_fuse_refuses_unmerged_lora():
    model = tiny_vit()
    apply_lora(model, [3], rank=2)
    with pytest.raises(RuntimeError, match="merge"):
        model.blocks[3].attn.qkv.fuse()


def test_no_blocks_no_lora_and_bad_arguments():
    model = tiny_vit()
    apply_lora(model, [], rank=4)
    assert not lora_layers(model)
    with pytest.raises(ConfigError, match="lora_targets"):
        apply_lora(tiny_vit(), [3], targets=("q", "o"))
    with pytest.raises(ConfigError, match="outside"):
        apply_lora(tiny_vit(), [4])
    with pytest.raises(ConfigError, match="lora_rank"):
        apply_lora(tiny_vit(), [3], rank=0)


def test_split_qkv_idempotent():
    model = tiny_vit()
    split_qkv(model.blocks[:1])
    first = model.blocks[0].attn.qkv
    split_qkv(model.blocks[:1])
    assert model.blocks[0].attn.qkv is first


@pytest.mark.parametrize("rank, alpha", [(4, 2.0), (2, 8.0)])
def test_lora_scaling_is_alpha_over_rank(rank, alpha):
    model = tiny_vit()
    qkv = model.blocks[3].attn.qkv
    w, b = qkv.weight.detach().clone(), qkv.bias.detach().clone()
    apply_lora(model, [3], rank=rank, alpha=alpha)
    perturb_lora(model)
    split = model.blocks[3].attn.qkv
    a_q, b_q = split.q.lora_A["default"].weight, split.q.lora_B["default"].weight
    a_v, b_v = split.v.lora_A["default"].weight, split.v.lora_B["default"].weight
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        out = split(x)
        base = x @ w.T + b
        scale = alpha / rank  # peft's scaling; HLoRA's hlora_test uses alpha = r, the paper config alpha = 1
        torch.testing.assert_close(out[..., :64], base[..., :64] + scale * x @ a_q.T @ b_q.T)
        torch.testing.assert_close(out[..., 64:128], base[..., 64:128])  # k not adapted
        torch.testing.assert_close(out[..., 128:], base[..., 128:] + scale * x @ a_v.T @ b_v.T)


def test_peft_imported_only_where_lora_is_built():
    # issue 12: peft (+ transformers, ~5 s) is not imported by the registry, MPT or the ViTs
    code = (
        "import sys\n"
        "from mernb.models import create_model, list_models\n"
        "list_models(); create_model('mpt_test'); create_model('vit_test')\n"
        "assert 'peft' not in sys.modules and 'transformers' not in sys.modules, 'imported without LoRA'\n"
        "create_model('hlora_test', n_lora_blocks=0)\n"
        "assert 'peft' not in sys.modules, 'no LoRA blocks, no peft'\n"
        "create_model('hlora_test')\n"
        "assert 'peft' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
