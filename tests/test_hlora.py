"""HLoRA-MER: LoRA placement, merge, HFM pieces, variants, ViT-g parameter count (meta device),
prefix cache equivalence, strict local checkpoints."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from mernb.errors import ConfigError
from mernb.models import create_model, list_models
from mernb.models.feature_cache import PrefixCache
from mernb.models.hlora import GATIFFA, IFFA, STFA, GATLayer, HierarchicalFusion, HLoRAMER, neighbour_mask
from mernb.models.lora import SplitQKV, is_lora_param, lora_layers

TINY_BACKBONE = dict(depth=4, embed_dim=64, num_heads=2, init_values=1.0)


def tiny(seed: int = 0, **overrides) -> HLoRAMER:
    torch.manual_seed(seed)
    return create_model("hlora_test", **overrides).eval()


def perturb(model: torch.nn.Module, seed: int = 1, std: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def test_configs_registered():
    assert {"hlora_vitg14", "hlora_vitg14_reg", "hlora_test"} <= set(list_models("hlora*"))


@pytest.mark.parametrize("n_blocks", [0, 1, 2, 4])
def test_lora_placement(n_blocks):
    model = tiny(n_lora_blocks=n_blocks)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    backbone_trainable = [n for n in trainable if n.startswith("backbone.")]
    assert all(is_lora_param(n) for n in backbone_trainable)
    adapted = {n.split(".lora_")[0] for n in backbone_trainable}
    first = 4 - n_blocks
    assert adapted == {f"backbone.blocks.{b}.attn.qkv.{t}" for b in range(first, 4) for t in ("q", "v")}
    assert all(n.startswith("hfm.") for n in trainable if not n.startswith("backbone."))
    assert model.prefix_depth == first
    groups = model.parameter_groups()
    assert groups["lora"] == n_blocks * 2 * 4 * (64 + 64)
    assert groups["backbone"] == 0
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters())
    if n_blocks == 0:
        assert not lora_layers(model)
        assert not any(isinstance(m, SplitQKV) for m in model.modules())


def test_full_and_frozen_finetuning():
    full = tiny(finetune="full")
    assert not lora_layers(full)
    assert all(p.requires_grad for p in full.parameters())
    assert full.parameter_groups()["backbone"] == sum(p.numel() for p in full.backbone.parameters())
    assert full.prefix_depth == 0 and not full.prefix_frozen
    with pytest.raises(ConfigError, match="cannot be cached"):
        full.prefix_signature()
    frozen = tiny(finetune="frozen")
    assert not lora_layers(frozen) and frozen.prefix_depth == 4
    assert not any(p.requires_grad for p in frozen.backbone.parameters())


def test_merged_equals_unmerged_and_structure_restored():
    model = tiny()
    x = model.example_input(2)
    reference_keys = list(timm.create_model("vit_small_patch14_dinov2", img_size=56, num_classes=0, **TINY_BACKBONE).state_dict())
    with torch.no_grad():
        for seed in range(3):
            perturb(model, seed)
        unmerged = model(x)
        model.merge_lora()
        merged = model(x)
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert list(model.backbone.state_dict()) == reference_keys
    assert all(type(b.attn.qkv) is torch.nn.Linear for b in model.backbone.blocks)
    assert model.parameter_groups()["lora"] == 0


def test_forward_shapes_and_attention():
    model = tiny()
    x = model.example_input(3)
    assert x.shape == (3, 8, 3, 56, 56)
    logits, attn = model(x, return_attention=True)
    assert logits.shape == (3, 5)
    assert attn.shape == (3, 8, 8)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 8))
    assert model.last_attention is attn
    with pytest.raises(ValueError, match="t=8"):
        model(torch.randn(1, 4, 3, 56, 56))


def test_iffa_equations_and_neighbours():
    torch.manual_seed(0)
    feats = torch.randn(2, 6, 10)
    chain = IFFA(10, 6, out_dim=7, neighbours="chain")
    out = chain(feats)
    assert out.shape == (2, 7)
    attn = chain.last_attention
    assert (attn[:, 0, 2:] == 0).all() and (attn[:, 3, :2] == 0).all() and (attn[:, 3, 2:5] > 0).all()
    # eqs. 8-11 written out for frame 0 of sample 0, chain neighbours {0, 1}
    w = chain.proj.weight
    f0, e00, e01 = w @ feats[0, 0], torch.zeros(7), w @ (feats[0, 0] - feats[0, 1])
    logits = torch.stack([torch.relu(f0 + e00), torch.relu(f0 + e01)])
    a = logits.softmax(0)
    f_prime0 = torch.relu(a[0] * e00 + a[1] * e01)
    frames = []
    for i in range(6):
        nbrs = [j for j in range(6) if abs(i - j) <= 1]
        e = torch.stack([w @ (feats[0, i] - feats[0, j]) for j in nbrs])
        a_i = torch.relu(w @ feats[0, i] + e).softmax(0)
        frames.append(torch.relu((a_i * e).sum(0)))
    torch.testing.assert_close(frames[0], f_prime0)
    torch.testing.assert_close(out[0], torch.stack(frames).amax(0))
    learned = IFFA(10, 6, neighbours="learned")
    assert learned.adjacency_logits.shape == (6, 6)
    all_ = IFFA(10, 6, neighbours="all")
    all_.proj.weight.data.copy_(learned.proj.weight.data)
    torch.testing.assert_close(learned(feats), all_(feats))  # zero-init logits: same as "all" at start
    assert neighbour_mask(4, "all").all()
    with pytest.raises(ConfigError, match="neighbours"):
        neighbour_mask(4, "knn")


def test_stfa_and_hfm_shapes():
    feats = torch.randn(2, 8, 64)
    stfa = STFA(64, 8)
    assert stfa.conv.kernel_size == (4, 4)
    out = stfa(feats)
    assert out.shape == (2, 61) and (out >= 0).all()
    for mode, width in [("full", 64 + 61), ("iffa", 64), ("stfa", 61), ("none", 64)]:
        hfm = HierarchicalFusion(64, 8, 3, mode=mode)
        assert hfm.classifier.in_features == width
        assert hfm(feats).shape == (2, 3)
    with pytest.raises(ConfigError, match="hfm"):
        HierarchicalFusion(64, 8, 3, mode="both")


@pytest.mark.parametrize(
    "overrides",
    [dict(hfm="iffa"), dict(hfm="stfa"), dict(hfm="none"), dict(finetune="full"), dict(neighbours="chain"),
     dict(n_lora_blocks=0), dict(n_lora_blocks=4), dict(num_classes=3, num_frames=4)],
)
def test_variants_forward_and_backward(overrides):
    model = tiny(**overrides).train()
    x = model.example_input(2)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert model(x).shape == (2, overrides.get("num_classes", 5))


def test_bad_config_overrides():
    with pytest.raises(ConfigError, match="n_lora_blocks"):
        tiny(n_lora_blocks=5)
    with pytest.raises(ConfigError, match="finetune"):
        tiny(finetune="partial")
    with pytest.raises(ConfigError, match="hlora_test"):
        tiny(not_an_option=1)


def test_vitg14_lora_count_on_meta_device():
    with torch.device("meta"):
        model = create_model("hlora_vitg14", weights=None)
        reg = create_model("hlora_vitg14_reg", weights=None, n_lora_blocks=4)
    groups = model.parameter_groups()
    assert groups["lora"] == 16 * (1536 + 1536) * 2 * 2 == 196_608  # the paper's "197k"
    assert groups["backbone"] == 0
    assert 1.10e9 < groups["frozen"] < 1.14e9  # "1100M" ViT-g (pos-embed resampled to 16x16)
    assert model.backbone.patch_embed.img_size == (224, 224)
    assert model.example_input().shape == (1, 8, 3, 224, 224)
    assert reg.parameter_groups()["lora"] == 2 * 196_608
    assert reg.backbone.num_reg_tokens == 4


def test_prefix_forward_equals_full_forward():
    for overrides in (dict(), dict(n_lora_blocks=0), dict(n_lora_blocks=4)):
        model = tiny(**overrides)
        perturb(model)
        x = model.example_input(2)
        with torch.no_grad():
            tokens = model.prefix_features(x, chunk=5)
            torch.testing.assert_close(model.forward_from_prefix(tokens), model(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(tokens=tokens), model(x), atol=1e-5, rtol=1e-5)
        # N_l = 0: nothing trains in the backbone, only the class token is kept
        assert tokens.shape == (2, 8, 1 if model.prefix_depth == 4 else 1 + 16, 64)
    with pytest.raises(ValueError, match="exactly one"):
        model(x, tokens=tokens)


def test_prefix_cache_memory_and_disk(tmp_path):
    model = tiny()
    perturb(model)
    x = model.example_input(3)
    keys = ["casme2/sub01/EP01/10", "casme2/sub01/EP02/20", "samm/006/006_1_2/50"]
    flips = [False, True, False]
    cache = PrefixCache(tmp_path / "cache")
    with torch.no_grad():
        expected = model(torch.where(torch.tensor(flips)[:, None, None, None, None], x.flip(-1), x))
        first = cache.tokens(model, keys, x, flips)
        torch.testing.assert_close(model.forward_from_prefix(first), expected, atol=1e-5, rtol=1e-5)
        assert (cache.hits, cache.misses) == (0, 3)

        def never(_):
            raise AssertionError("cached clips must not be loaded")

        again = cache.tokens(model, keys, never, flips)
        assert (cache.hits, cache.misses) == (3, 3)
        torch.testing.assert_close(again, first)
        # a fresh memory, same files; the other flip of clip 0 is a miss computed from the loader
        disk = PrefixCache(tmp_path / "cache")
        loaded = disk.tokens(model, keys[:1] + keys[:1], lambda idx: x[[0 for _ in idx]], [False, True])
        assert (disk.hits, disk.misses) == (1, 1)
        torch.testing.assert_close(loaded[0], first[0])
        torch.testing.assert_close(loaded[1], model.prefix_features(x[:1].flip(-1))[0])
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 4


def test_prefix_signature_distinguishes_backbones():
    a, b, a2 = tiny(seed=0), tiny(seed=1), tiny(seed=0)
    assert a.prefix_signature() == a2.prefix_signature()
    assert a.prefix_signature() != b.prefix_signature()
    assert a.prefix_signature() != tiny(seed=0, n_lora_blocks=1).prefix_signature()


def _save_backbone(path, seed=0, **kwargs):
    torch.manual_seed(seed)
    src = timm.create_model("vit_small_patch14_dinov2", num_classes=0, **{**TINY_BACKBONE, **kwargs})
    torch.save(src.state_dict(), path)
    return src


def test_strict_checkpoint_loading(tmp_path):
    ckpt = tmp_path / "tiny_dinov2.pth"
    src = _save_backbone(ckpt, seed=3, img_size=56)
    model = tiny(weights=str(ckpt))
    torch.testing.assert_close(model.backbone.pos_embed, src.pos_embed)
    torch.testing.assert_close(model.backbone.blocks[3].attn.qkv.k.weight, src.blocks[3].attn.qkv.weight[64:128])
    torch.testing.assert_close(model.backbone.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert model.prefix_signature() != tiny(weights=None).prefix_signature()
    # a checkpoint for a larger input: position embeddings resampled (8x8 -> 4x4 grid)
    big = tmp_path / "tiny_dinov2_112.pth"
    _save_backbone(big, img_size=112)
    assert tiny(weights=str(big)).backbone.pos_embed.shape == (1, 1 + 16, 64)
    # the official DINOv2 layout (extra mask_token) goes through timm's converter
    official = tmp_path / "dinov2_official.pth"
    torch.save({**src.state_dict(), "mask_token": torch.zeros(1, 64)}, official)
    torch.testing.assert_close(tiny(weights=str(official)).backbone.cls_token, src.cls_token)


def test_mismatched_checkpoint_fails_clearly(tmp_path):
    wide = tmp_path / "wide.pth"
    _save_backbone(wide, img_size=56, embed_dim=96, num_heads=2)
    with pytest.raises(ConfigError, match="does not fit"):
        tiny(weights=str(wide))
    partial = tmp_path / "partial.pth"
    state = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=56, **TINY_BACKBONE).state_dict()
    del state["blocks.3.attn.qkv.weight"]
    torch.save(state, partial)
    with pytest.raises(ConfigError, match="blocks.3.attn.qkv.weight"):
        tiny(weights=str(partial))
    with pytest.raises(ConfigError, match="does not exist"):
        tiny(weights=str(tmp_path / "missing.pth"))


def test_trainable_state_dict_roundtrip():
    model, other = tiny(seed=0), tiny(seed=0)
    perturb(model)
    state = model.trainable_state_dict()
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    other.load_trainable(state)
    x = model.example_input(1)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x))
    with pytest.raises(ConfigError, match="does not fit"):
        tiny(n_lora_blocks=1).load_trainable(state)


def _near_equal_frames(change: float, seed: int = 0, batch: int = 2, t: int = 8, dim: int = 64) -> torch.Tensor:
    """Frame features F_k = base + ``change`` (relative) frame-to-frame drift: micro-expression-like inputs."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, 1, dim, generator=gen)
    steps = torch.randn(batch, t, dim, generator=gen) * change * base.norm(dim=-1, keepdim=True) / dim**0.5
    return base + steps.cumsum(1)


@pytest.mark.parametrize("iffa", ["paper", "gat"])
def test_hfm_runs_in_fp32_under_bf16_autocast(iffa):
    # issue 7: e'_ij = W(F_i - F_j) of near-equal frames loses ~14 % in bf16 at a 1 % change
    torch.manual_seed(0)
    hfm = HierarchicalFusion(64, 8, 5, mode="full", iffa=iffa).eval()
    feats = _near_equal_frames(0.01)
    with torch.no_grad():
        reference = hfm(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = hfm(feats)
            mixed_from_bf16 = hfm(feats.bfloat16())  # a bf16 backbone's output is cast up, not rounded further
    assert mixed.dtype == torch.float32
    rel = (mixed - reference).norm() / reference.norm()
    assert rel < 1e-3, f"HFM under bf16 autocast differs from fp32 by {float(rel):.2e} (relative)"
    torch.testing.assert_close(mixed_from_bf16, hfm(feats.bfloat16().float()))


def test_backbone_stays_bf16_under_autocast():
    model = tiny()
    seen = {}

    def record(module, inputs, output):
        seen["dtype"] = output.dtype

    model.backbone.blocks[-1].mlp.fc1.register_forward_hook(record)  # the matmuls run in bf16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(model.example_input(1))
    assert seen["dtype"] == torch.bfloat16
    assert logits.dtype == torch.float32


def test_gat_layer_attention_on_three_node_chain_by_hand():
    # W = I, a_1 = (1, 0), a_2 = (0, -1): e_ij = LeakyReLU_0.01(h_i[0] - h_j[1]); chain 0-1-2 (self included)
    layer = GATLayer(2, 2, slope=0.01, dropout=0.1, concat=True).eval()
    with torch.no_grad():
        layer.W.copy_(torch.eye(2))
        layer.a.copy_(torch.tensor([[1.0], [0.0], [0.0], [-1.0]]))
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]]])
    out = layer(h, neighbour_mask(3, "chain"))
    # e (rows i, columns j): h_i[0] - h_j[1] = [[1, 0, -2], [0, -1, -3], [2, 1, -1]], negatives times 0.01
    e = [[1.0, 0.0, None], [0.0, -0.01, -0.03], [None, 1.0, -0.01]]
    expected_attn = torch.zeros(3, 3)
    for i, row in enumerate(e):
        z = sum(math.exp(v) for v in row if v is not None)
        for j, v in enumerate(row):
            if v is not None:
                expected_attn[i, j] = math.exp(v) / z
    torch.testing.assert_close(layer.last_attention[0], expected_attn)
    assert expected_attn[0, 0] == pytest.approx(math.e / (math.e + 1))
    expected = torch.nn.functional.elu(expected_attn @ h[0])  # W = I: Wh = h
    torch.testing.assert_close(out[0], expected)
    raw = GATLayer(2, 2, concat=False).eval()
    raw.load_state_dict(layer.state_dict())
    torch.testing.assert_close(raw(h, neighbour_mask(3, "chain"))[0], expected_attn @ h[0])


def test_gat_iffa_composition_and_pooling():
    torch.manual_seed(0)
    gat = GATIFFA(12, 4, hidden=5, heads=3).eval()
    assert gat.mask.tolist() == neighbour_mask(4, "chain").tolist()
    feats = torch.randn(2, 4, 12)
    hidden = torch.cat([head(feats, gat.mask) for head in gat.heads], dim=-1)  # 3 heads, ELU, concatenated
    assert hidden.shape == (2, 4, 15)
    nodes = torch.log_softmax(torch.nn.functional.elu(gat.out_layer(hidden, gat.mask)), dim=-1)
    torch.testing.assert_close(gat.node_features(feats), nodes)
    torch.testing.assert_close(nodes.exp().sum(-1), torch.ones(2, 4))  # log-softmax over channels
    # max over windows of 5 channels (stride 2) and all 4 frames: (12 - 5) // 2 + 1 = 4 features
    expected = torch.stack([nodes[:, :, 2 * c : 2 * c + 5].amax(dim=(1, 2)) for c in range(4)], dim=1)
    torch.testing.assert_close(gat(feats), expected)
    assert gat.out_dim == 4


def test_stfa_code_pooling_by_hand():
    stfa = STFA(12, 8, pooling="code")
    with torch.no_grad():
        stfa.conv.bias.fill_(-100.0)  # every response negative: the authors' STFA has no ReLU
    feats = torch.randn(2, 8, 12)
    conv = stfa.conv(feats.transpose(1, 2).unsqueeze(1))[:, 0]  # (2, 9, 5), no ReLU
    expected = torch.stack([conv[:, 2 * c : 2 * c + 5].amax(dim=(1, 2)) for c in range(3)], dim=1)
    torch.testing.assert_close(stfa(feats), expected)
    assert stfa.out_dim == 3 and (expected < 0).all()


def test_authors_hfm_sizes_vitg_1531():
    with torch.device("meta"):
        hfm = HierarchicalFusion(1536, 8, 3, iffa="gat", stfa="code")
    assert hfm.iffa.out_dim == 766 and hfm.stfa.out_dim == 765
    assert hfm.classifier.in_features == 1531
    assert hfm.iffa.hidden == 1000 and len(hfm.iffa.heads) == 3
    assert hfm.iffa.out_layer.W.shape == (3000, 1536)
    tiny_model = tiny(iffa="gat", stfa="code")
    assert tiny_model.config["neighbours"] == "chain" and tiny_model.hfm.iffa.hidden == 42
    assert tiny_model.hfm.classifier.in_features == (64 - 5) // 2 + 1 + (64 - 4 + 1 - 5) // 2 + 1
    logits, attn = tiny_model(tiny_model.example_input(2), return_attention=True)
    assert logits.shape == (2, 5) and attn.shape == (2, 8, 8)
    assert (attn[:, 0, 2:] == 0).all()
    with pytest.raises(ConfigError, match="fixed graph"):
        tiny(iffa="gat", neighbours="learned")
    with pytest.raises(ConfigError, match="iffa"):
        tiny(iffa="gcn")
    with pytest.raises(ConfigError, match="stfa"):
        tiny(stfa="conv")


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_gradient_checkpointing_is_real_and_exact(monkeypatch, finetune):
    # issue 11: forward_from_prefix ignored grad_checkpointing
    import torch.utils.checkpoint as tuc

    calls: list[int] = []
    real = tuc.checkpoint

    def counting(function, *args, **kwargs):
        # the frozen prefix (timm's forward_intermediates) also checkpoints, but under no_grad: a no-op
        if torch.is_grad_enabled():
            calls.append(1)
        return real(function, *args, **kwargs)

    monkeypatch.setattr(tuc, "checkpoint", counting)
    model = tiny(finetune=finetune).train()
    if finetune == "lora":
        perturb(model)
    x = model.example_input(2)

    def grads():
        model.zero_grad()
        model(tokens=model.prefix_features(x)).logsumexp(1).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    assert calls == []
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    trained = 4 - model.prefix_depth
    assert len(calls) == trained
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)
    model.zero_grad()
    model(x).logsumexp(1).sum().backward()  # the full path goes through timm's own checkpointing
    assert len(calls) == trained + 4
    assert tiny(grad_checkpointing=True).backbone.grad_checkpointing


def test_stfa_pools_max_over_time_on_a_spike():
    # kernel 4 with a single tap at (0, 0), no bias: the conv map is feats[c, t] for c < d-3, t < t-3
    stfa = STFA(16, 8)
    with torch.no_grad():
        stfa.conv.weight.zero_()
        stfa.conv.weight[0, 0, 0, 0] = 1.0
        stfa.conv.bias.zero_()
    feats = torch.zeros(2, 8, 16)
    feats[0, 2, 5] = 3.0  # sample 0: a spike at frame 2, channel 5
    feats[1, 4, 7] = -3.0  # sample 1: a negative spike, removed by the ReLU
    feats[1, 1, 9] = 0.5
    out = stfa(feats)
    expected = torch.zeros(2, 13)
    expected[0, 5] = 3.0  # max over time keeps the spike at full height (a mean would give 3/5)
    expected[1, 9] = 0.5
    torch.testing.assert_close(out, expected)


def test_hlora_lora_scaling_alpha_over_rank():
    model = tiny(lora_rank=4, lora_alpha=1.0)  # the paper config's alpha = 1 (loralib default): scaling 1/4
    layer = model.backbone.blocks[3].attn.qkv.q
    assert layer.scaling["default"] == pytest.approx(0.25)
    assert tiny(lora_rank=2, lora_alpha=3.0).backbone.blocks[3].attn.qkv.v.scaling["default"] == pytest.approx(1.5)
