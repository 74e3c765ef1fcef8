"""HLoRA-MER frozen-prefix split the timm way (issue 11): the prefix tokens come from timm's
``forward_intermediates`` and equal a hand-run of the stem + blocks and the tensor entering block
``prefix_depth`` inside timm's own ``forward_features``; the suffix keeps timm's gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint as tuc
from torch import nn

from mernb.models import create_model
from mernb.models.hlora import HLoRAMER
from mernb.models.lora import lora_layers

DEPTH = 4  # hlora_test
REG = dict(backbone="vit_small_patch14_reg4_dinov2")  # DINOv2 with 4 register tokens, as hlora_vitg14_reg
# (overrides, prefix_depth): every split point 0..depth, LoRA / full / frozen, with and without registers
SPLITS = [
    (dict(n_lora_blocks=4), 0),
    (dict(finetune="full"), 0),
    (dict(n_lora_blocks=3), 1),
    (dict(), 2),
    (dict(n_lora_blocks=1), 3),
    (dict(n_lora_blocks=0), 4),
    (dict(finetune="frozen"), 4),
    (dict(REG, n_lora_blocks=4), 0),
    (dict(REG), 2),
    (dict(REG, n_lora_blocks=0), 4),
]


def tiny(seed: int = 0, **overrides) -> HLoRAMER:
    torch.manual_seed(seed)
    model = create_model("hlora_test", **overrides).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-zero LoRA B, so the adapted blocks differ from the plain ones
        for layer in lora_layers(model).values():
            for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def hand_prefix(model: HLoRAMER, imgs: torch.Tensor) -> torch.Tensor:
    """The pre-issue-11 hand copy of timm's stem + block loop (the reference)."""
    bb = model.backbone
    h = bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(imgs))))
    for blk in bb.blocks[: model.prefix_depth]:
        h = blk(h)
    return h[:, :1] if model.prefix_depth == len(bb.blocks) else h


def timm_block_input(model: HLoRAMER, imgs: torch.Tensor) -> torch.Tensor:
    """What timm's own ``forward_features`` feeds into block ``prefix_depth`` (or into the final norm)."""
    bb = model.backbone
    target = bb.norm if model.prefix_depth == len(bb.blocks) else bb.blocks[model.prefix_depth]
    seen: list[torch.Tensor] = []
    handle = target.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        bb.forward_features(imgs)
    finally:
        handle.remove()
    (h,) = seen
    return h[:, :1] if model.prefix_depth == len(bb.blocks) else h


@pytest.mark.parametrize(("overrides", "depth"), SPLITS)
def test_prefix_tokens_equal_hand_run_and_timm_block_input(overrides, depth):
    model = tiny(**overrides)
    assert model.prefix_depth == depth
    x = model.example_input(2)
    imgs = x.flatten(0, 1)
    n_prefix = model.backbone.num_prefix_tokens  # class + registers
    with torch.no_grad():
        tokens = model.prefix_features(x)
        chunked = model.prefix_features(x, chunk=3)  # 16 frames in 6 chunks, the last one short
        hand = torch.cat([hand_prefix(model, part) for part in imgs.split(3)])
        inside = timm_block_input(model, imgs)
    assert tokens.shape == (2, 8, 1 if depth == DEPTH else n_prefix + 16, 64)
    assert n_prefix == (5 if overrides.get("backbone") else 1)
    torch.testing.assert_close(chunked.flatten(0, 1), hand, rtol=0, atol=0)  # bitwise, same chunks
    torch.testing.assert_close(tokens.flatten(0, 1), inside, rtol=0, atol=0)  # bitwise, timm's own pass
    torch.testing.assert_close(chunked, tokens, rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # and the split still gives the whole model
        torch.testing.assert_close(model(tokens=tokens), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("overrides", "frozen"), [(dict(), True), (dict(n_lora_blocks=0), True),
                                                   (dict(finetune="full"), False)])
def test_prefix_runs_without_autograd_only_when_frozen(overrides, frozen):
    model = tiny(**overrides).train()
    bb = model.backbone
    modes: list[bool] = []  # autograd mode seen by the stem and each prefix block
    for m in (bb.patch_embed, *bb.blocks[: model.prefix_depth]):
        m.register_forward_pre_hook(lambda *_a: modes.append(torch.is_grad_enabled()))
    tokens = model.prefix_features(model.example_input(1), chunk=5)
    assert modes == [not frozen] * 2 * (1 + model.prefix_depth)  # two chunks
    assert tokens.requires_grad is not frozen


@pytest.mark.parametrize(("overrides", "depth"), [s for s in SPLITS if s[1] > 0])
def test_prefix_path_is_timm_forward_intermediates(monkeypatch, overrides, depth):
    model = tiny(**overrides)
    bb = model.backbone
    real = bb.forward_intermediates
    calls: list[dict] = []

    def shifted(imgs, **kwargs):  # timm's result + 1: the prefix tokens must carry it
        calls.append(kwargs)
        out = real(imgs, **kwargs)
        out["image_intermediates"] = [y + 1 for y in out["image_intermediates"]]
        out["image_intermediates_prefix"] = [y + 1 for y in out["image_intermediates_prefix"]]
        return out

    ran = [0] * DEPTH
    for i, blk in enumerate(bb.blocks):
        blk.register_forward_hook(lambda *_a, i=i: ran.__setitem__(i, ran[i] + 1))
    x = model.example_input(1)
    with torch.no_grad():
        expected = model.prefix_features(x)
        assert ran == [1 if i < depth else 0 for i in range(DEPTH)]  # stop_early: later blocks never run
        monkeypatch.setattr(bb, "forward_intermediates", shifted)
        got = model.prefix_features(x, chunk=5)  # 8 frames: chunks of 5 and 3
    assert [c["indices"] for c in calls] == [[depth - 1]] * 2
    assert all(c["stop_early"] and not c["norm"] for c in calls)
    torch.testing.assert_close(got, expected + 1, rtol=1e-6, atol=1e-6)


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs (outside checkpointed regions)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("overrides", [dict(), dict(REG, n_lora_blocks=3), dict(finetune="full")])
def test_suffix_checkpointing_saves_memory_and_keeps_gradients(monkeypatch, overrides):
    model = tiny(**overrides).train()
    bb = model.backbone
    suffix = list(bb.blocks[model.prefix_depth:])
    x = model.example_input(2)
    real = tuc.checkpoint
    checkpointed: list[nn.Module] = []

    def spy(function, *args, **kwargs):
        if torch.is_grad_enabled():  # no-grad calls (the frozen prefix) save nothing anyway
            checkpointed.append(function)
        return real(function, *args, **kwargs)

    monkeypatch.setattr(tuc, "checkpoint", spy)

    def run() -> tuple[int, dict[str, torch.Tensor]]:
        model.zero_grad()
        tokens = model.prefix_features(x)  # with autograd through the stem for finetune="full"
        out: list[torch.Tensor] = []
        used = saved_bytes(lambda: out.append(model.features_from_prefix(tokens)))
        out[0].square().sum().backward()
        return used, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_bytes, plain = run()
    assert checkpointed == []
    model.set_grad_checkpointing(True)
    ckpt_bytes, grads = run()
    assert [id(m) for m in checkpointed] == [id(m) for m in suffix]  # each trained block, in order
    # with checkpointing autograd keeps only each checkpointed block's input and the final norm's tensors
    tokens = model.prefix_features(x)
    h = torch.randn(tokens.flatten(0, 1).shape[0], *tokens.shape[2:], requires_grad=True)
    block_input = h.numel() * h.element_size()
    norm_bytes = saved_bytes(lambda: bb.norm(h)[:, 0])
    assert ckpt_bytes == len(suffix) * block_input + norm_bytes
    # without, each block keeps at least its MLP's 4x-wide hidden activation
    assert plain_bytes - norm_bytes > len(suffix) * 4 * block_input
    assert grads.keys() == plain.keys() and grads
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], msg=name)


def test_suffix_checkpointing_stays_non_reentrant():
    # timm's global reentrant switch: a reentrant checkpoint of blocks fed cached (no-grad) tokens gives the
    # LoRA weights no gradient at all; the suffix path must still match the plain gradients
    from timm.layers import set_reentrant_ckpt, use_reentrant_ckpt

    model = tiny().train()
    tokens = model.prefix_features(model.example_input(1))

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model(tokens=tokens).logsumexp(1).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    before = use_reentrant_ckpt()
    set_reentrant_ckpt(True)
    try:
        model.set_grad_checkpointing(True)
        checkpointed = grads()
    finally:
        set_reentrant_ckpt(before)
    assert plain.keys() == checkpointed.keys()
    assert sum("lora_" in n for n in plain) == 8  # A and B of q and v in 2 blocks
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)
