"""Approximate rank pooling: official coefficients, zero-sum weights, static clips, RGB rescaling."""

from __future__ import annotations

import pytest
import torch

from mernb.motion.rankpool import dynamic_image, rank_pool, rank_pool_weights, to_rgb

# methods.md section 7: hbilen/dynamic-image-nets, T = 8
OFFICIAL_T8 = [-8.461, -1.461, 1.039, 2.039, 2.289, 2.089, 1.589, 0.875]


def test_weights_t8_match_official_list():
    assert torch.allclose(rank_pool_weights(8), torch.tensor(OFFICIAL_T8, dtype=torch.float64), atol=1e-3)


def test_weights_equal_official_loop_form():
    # fw(i) = sum_{k=i..N} (2k - N - 1) / k  (vl_nnarpooltemporal.m)
    for n in (2, 5, 16, 33):
        loop = [sum((2 * k - n - 1) / k for k in range(i, n + 1)) for i in range(1, n + 1)]
        assert torch.allclose(rank_pool_weights(n), torch.tensor(loop, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("n", [2, 3, 8, 16, 100])
def test_weights_sum_to_zero(n):
    assert abs(float(rank_pool_weights(n).sum())) < 1e-9


def test_single_frame_weight_is_one():
    assert rank_pool_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError):
        rank_pool_weights(0)


def test_static_clip_pools_to_zero_and_shapes():
    frame = torch.rand(2, 3, 3, 8, 8)  # (B, extra, C, H, W)
    clip = frame.unsqueeze(2).expand(2, 3, 16, 3, 8, 8).contiguous()  # (B, extra, T, C, H, W)
    di = rank_pool(clip, time_dim=2)
    assert di.shape == (2, 3, 3, 8, 8)
    assert di.abs().max() < 1e-5


def test_linear_ramp_gives_positive_dynamic_image():
    # brightness increasing over time: the ranking direction is positive everywhere
    t = torch.linspace(0, 1, 8).view(8, 1, 1, 1)
    di = rank_pool(t.expand(8, 3, 4, 4).contiguous())
    assert (di > 0).all()


def test_rank_pool_rejects_bad_input():
    with pytest.raises(TypeError):
        rank_pool(torch.zeros(8, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError):
        rank_pool(torch.zeros(3, 4, 4))


def test_to_rgb_per_channel_minmax():
    img = torch.randn(2, 3, 5, 5) * 7 + 3
    img[1, 2] = 4.0  # a flat channel
    rgb = to_rgb(img)
    assert rgb.shape == img.shape
    assert torch.allclose(rgb[0].flatten(1).amin(1), torch.zeros(3))
    assert torch.allclose(rgb[0].flatten(1).amax(1), torch.ones(3))
    assert torch.all(rgb[1, 2] == 0.5)
    assert dynamic_image(torch.rand(8, 3, 6, 6)).shape == (3, 6, 6)
