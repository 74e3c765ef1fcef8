"""MA2MI model pieces: L_pos parts on hand-computed cases, zero head, trainable splits, VAE, latent cache,
pre-training resume, model info."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from mernb.errors import ConfigError
from mernb.models import create_model
from mernb.models.info import count_macs, model_info
from mernb.models.latent_cache import LatentCache
from mernb.models.ma2mi import (
    VAE_SCALE,
    frame_difference,
    load_vae,
    loss_consistency,
    loss_distinct,
    loss_equivariance,
    position_loss,
    sample_latent,
    tiny_vae,
    vae_digest,
    vae_moments,
)


def _map(vectors: list[list[float]], h: int, w: int) -> torch.Tensor:
    """(1, C, h, w) feature map whose positions (row-major) hold ``vectors``."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, -1, h, w)


# ---------------------------------------------------------------------------------------------- L_pos


def test_loss_distinct_hand_values():
    e1, e2, e3, e4 = np.eye(4).tolist()
    assert loss_distinct(_map([e1, e2, e3, e4], 2, 2)).item() == pytest.approx(0.0, abs=1e-7)
    assert loss_distinct(_map([e1, e1, e1, e1], 2, 2)).item() == pytest.approx(1.0)
    # two identical pairs: 4 of the 12 ordered off-diagonal pairs have cosine 1
    assert loss_distinct(_map([e1, e1, e2, e2], 2, 2)).item() == pytest.approx(1 / 3)
    # opposite vectors: cosine -1 for both ordered pairs
    assert loss_distinct(_map([[1.0, 0.0], [-2.0, 0.0]], 1, 2)).item() == pytest.approx(-1.0)


def test_loss_consistency_matches_one_to_one():
    e1, e2, e3, e4 = np.eye(4).tolist()
    p = _map([e1, e2, e3, e4], 2, 2)
    assert loss_consistency(p, _map([e3, e1, e4, e2], 2, 2)).item() == pytest.approx(0.0, abs=1e-7)  # a permutation
    # against -p the best one-to-one matching is a derangement (cosine 0 everywhere), not the identity (-1)
    assert loss_consistency(p, -p).item() == pytest.approx(1.0)
    assert loss_consistency(_map([[1.0, 2.0]], 1, 1), _map([[-1.0, -2.0]], 1, 1)).item() == pytest.approx(2.0)
    # one-to-one: both positions of p are e1, only one position of q can be matched to e1, the other gets e2
    p2, q2 = _map([[1.0, 0.0], [1.0, 0.0]], 1, 2), _map([[1.0, 0.0], [0.0, 1.0]], 1, 2)
    assert loss_consistency(p2, q2).item() == pytest.approx(0.5)
    # the matching maximises the total cosine: identity (1 + 1/sqrt 2) beats the swap (1/sqrt 2 + 0)
    q3 = _map([[1.0, 0.0], [1.0, 1.0]], 1, 2)
    assert loss_consistency(q2, q3).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2)


class _AddRamp(nn.Module):
    """x + R with R = column index (not equivariant to a flip)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.arange(x.shape[-1], dtype=x.dtype).view(1, 1, 1, -1)


def test_loss_equivariance_hand_values():
    x = torch.rand(2, 1, 3, 4)
    flip = torch.tensor([[[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).repeat(2, 1, 1)
    rot = torch.tensor([[[0.8, -0.6, 0.1], [0.6, 0.8, -0.2]]]).repeat(2, 1, 1)
    assert loss_equivariance(nn.Identity(), x, rot).item() == pytest.approx(0.0, abs=1e-7)
    # E(T x) - T(E x) = R - flip(R): |2w - 3| over columns w = 0..3 -> mean 2
    assert loss_equivariance(_AddRamp(), x, flip, mode="nearest").item() == pytest.approx(2.0)
    # 2-norm over channels: 4 channels carrying the same difference -> 2 * sqrt(4)
    x4 = torch.rand(1, 4, 3, 4)
    assert loss_equivariance(_AddRamp(), x4, flip[:1], mode="nearest").item() == pytest.approx(4.0)


def test_position_loss_is_the_weighted_sum_of_its_parts():
    torch.manual_seed(0)
    enc = nn.Conv2d(3, 8, 3, stride=4, padding=1)
    x = torch.randn(3, 3, 16, 16)
    p = enc(x)
    g = torch.Generator().manual_seed(1)
    out = position_loss(enc, x, p, weights=(0.5, 2.0, 3.0), rotation_deg=10, shift=0.1, generator=g)
    assert out["pos"].item() == pytest.approx(0.5 * out["dis"].item() + 2 * out["con"].item() + 3 * out["eq"].item(),
                                              rel=1e-5)
    assert out["dis"].item() == pytest.approx(loss_distinct(p).item())
    assert out["con"].item() == pytest.approx(loss_consistency(p, p.roll(1, 0)).item())


# ---------------------------------------------------------------------------------------------- MIACNet


def test_frame_difference_is_float32():
    a = torch.rand(2, 3, 4, 4).bfloat16()
    b = (a.float() + 1 / 255).bfloat16()
    d = frame_difference(a, b)
    assert d.dtype == torch.float32
    assert torch.equal(d, b.float() - a.float())


def test_zero_initialised_head_gives_zero_logits():
    torch.manual_seed(0)
    model = create_model("ma2mi_miacnet_test", num_classes=5)
    logits = model(model.example_input(3))
    assert torch.equal(logits, torch.zeros(3, 5))
    assert model.c_dim == 64 * 2 * 2  # flatten(A + P): 64 channels on the 2x2 grid of a 64-px frame


@pytest.mark.parametrize(("tune", "fpe_trains", "fae_trains"), [("both", True, True), ("fpe", True, False),
                                                                ("fae", False, True)])
def test_trainable_split_per_tune_option(tune, fpe_trains, fae_trains):
    model = create_model("ma2mi_miacnet_test", num_classes=3, tune=tune)
    assert all(p.requires_grad == fpe_trains for p in model.fpe.parameters())
    assert all(p.requires_grad == fae_trains for p in model.fae.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    groups = model.parameter_groups()
    assert groups["trainable"] == groups["head"] + groups["fpe"] * fpe_trains + groups["fae"] * fae_trains


def test_no_fpe_option_and_invalid_combinations():
    model = create_model("ma2mi_miacnet_test", num_classes=3, fpe="none")
    assert model.fpe is None and model(model.example_input(2)).shape == (2, 3)
    with pytest.raises(ConfigError):
        create_model("ma2mi_miacnet_test", fpe="none", tune="fpe")
    with pytest.raises(ConfigError):
        create_model("ma2mi_miacnet_test", tune="head")


def _grad_norms(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _wake_dit(model: nn.Module) -> None:
    """Non-zero adaLN and output weights, as after some training (at init the DiT ignores c, so no
    gradient reaches the encoders on the first step: methods.md §5)."""
    for name, param in model.dit.named_parameters():
        if "adaLN_modulation" in name or "final_layer.linear" in name:
            nn.init.normal_(param, std=0.05)


def test_independent_fpe_learns_only_from_lpos_and_fae_only_from_reconstruction():
    torch.manual_seed(0)
    model = create_model("ma2mi_pretrain_test")
    _wake_dit(model)
    out = model(model.example_input(2))
    out["rec"].backward(retain_graph=True)
    assert _grad_norms(model.fpe) == 0.0 and _grad_norms(model.fae) > 0
    model.zero_grad()
    out["pos"].backward()
    assert _grad_norms(model.fpe) > 0 and _grad_norms(model.fae) == 0.0
    joint = create_model("ma2mi_pretrain_test", fpe="joint")
    _wake_dit(joint)
    out = joint(joint.example_input(2))
    assert out["pos"].item() == 0.0
    out["loss"].backward()
    assert _grad_norms(joint.fpe) > 0


def test_pretrained_encoders_load_strictly_into_miacnet(tmp_path):
    torch.manual_seed(0)
    pre = create_model("ma2mi_pretrain_test")
    torch.save(pre.trainable_state_dict(), tmp_path / "final.pt")
    model = create_model("ma2mi_miacnet_test", num_classes=5, weights=tmp_path / "final.pt")
    for key, value in model.fae.state_dict().items():
        assert torch.equal(value, pre.fae.state_dict()[key])
    state = {k: v for k, v in pre.trainable_state_dict().items() if not k.startswith("fae.net.fc")}
    state.pop(next(k for k in state if k.startswith("fpe.")))
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ConfigError, match="missing"):
        create_model("ma2mi_miacnet_test", weights=tmp_path / "broken.pt")


@pytest.mark.parametrize("variant", ["latent", "pixel", "maer"])
def test_pretrainer_variants_give_their_losses(variant):
    torch.manual_seed(0)
    model = create_model("ma2mi_pretrain_test", variant=variant)
    out = model(model.example_input(2))
    assert (out["rec"].item() > 0) == (variant != "maer")
    assert (out["ce"].item() > 0) == (variant == "maer")
    if variant == "maer":  # zero-free linear head on c: CE of 7 classes near log 7 at init is not guaranteed
        assert out["loss"].item() == pytest.approx(out["ce"].item() + out["pos"].item())
    else:  # DiT output is zero at init: the L1 loss is mean |target|
        ex = model.example_input(2)
        torch.manual_seed(0)
        target = ex["ztk"] if variant == "latent" else ex["itk"] * 2 - 1
        assert model.reconstruction(torch.zeros(2, model.c_dim), ex["it"], ex["itk"], ex.get("zt"), ex.get("ztk")).item() \
            == pytest.approx(target.abs().mean().item())


def test_keep_reconstruction_sets_an_aux_loss_in_training_only():
    torch.manual_seed(0)
    recon = create_model("ma2mi_pretrain_test")
    model = create_model("ma2mi_miacnet_test", num_classes=3, recon=recon)
    model.train()
    model(model.example_input(2))
    assert model.aux_loss is not None and model.aux_loss.item() > 0
    model.aux_loss = None
    model.eval()
    model(model.example_input(2))
    assert model.aux_loss is None


# ---------------------------------------------------------------------------------------------- VAE and cache


def test_vae_loads_from_a_local_folder_only(tmp_path):
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert vae_digest(loaded) == vae_digest(vae)
    assert not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ConfigError):
        load_vae(tmp_path / "nothing")


def test_sampled_latent_matches_diffusers_sample():
    vae = load_vae("tiny")
    x = torch.rand(2, 3, 32, 32)
    moments = vae_moments(vae, x)
    with torch.no_grad():
        expected = vae.encode(x * 2 - 1).latent_dist.sample(torch.Generator().manual_seed(3)) * VAE_SCALE
    got = sample_latent(moments, torch.Generator().manual_seed(3))
    assert torch.allclose(got, expected, atol=1e-6)


def test_latent_cache_equals_on_the_fly_and_encodes_each_frame_once(tmp_path):
    vae = load_vae("tiny")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    cache = LatentCache(vae, tmp_path, batch_size=2)
    got = cache.moments(frames + [frames[0]])
    on_the_fly = vae_moments(vae, torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(got[:5], on_the_fly, atol=1e-6)
    assert torch.equal(got[5], got[0])
    assert cache.encoded == 5
    again = LatentCache(vae, tmp_path)  # a new process: read from disk, no encoding
    assert torch.equal(again.moments(frames[::-1]), got[:5].flip(0))
    assert again.encoded == 0
    other = create_model("ma2mi_pretrain_test").vae
    torch.nn.init.normal_(next(other.parameters()))
    assert LatentCache(other, tmp_path).moments(frames[:1]) is not None
    assert vae_digest(other) != vae_digest(vae)


# ---------------------------------------------------------------------------------------------- model info


def test_model_info_reports_each_part_with_macs():
    info = model_info("ma2mi_pretrain_test")
    rows = {r["name"]: r for r in info["modules"]}
    assert {"fpe", "fae", "cond", "dit", "vae"} <= set(rows)
    assert rows["vae"]["trainable"] == 0 and rows["dit"]["trainable"] == rows["dit"]["params"] > 0
    model = create_model("ma2mi_pretrain_test")
    fae_macs, _ = count_macs(model.fae, torch.rand(1, 3, 64, 64))
    assert rows["fae"]["macs"] == fae_macs
    assert rows["fpe"]["macs"] == 2 * fae_macs  # FPE(I_t) and FPE(T(I_t)) for L_eq
    cls = {r["name"]: r for r in model_info("ma2mi_miacnet_test", num_classes=5)["modules"]}
    assert cls["head"]["macs"] == 256 * 5 and cls["fae"]["macs"] == fae_macs
