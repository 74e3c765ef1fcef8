"""Approximate rank pooling: official coefficients, zero-sum weights, static clips, RGB rescaling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mernb.models.vit import dynamic_image_input
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


# methods.md section 7: the widely copied Python port (tcvrick/dynamic-images-for-action-recognition), T = 8
PORT_T8 = [-5.743, 0.257, 2.257, 2.924, 2.924, 2.524, 1.857, 1.0]


def test_port_weights_match_python_port():
    assert torch.allclose(rank_pool_weights(8, variant="port"), torch.tensor(PORT_T8, dtype=torch.float64), atol=1e-3)
    for n in (2, 5, 16):
        loop = [sum((2 * k - n) / k for k in range(i, n + 1)) for i in range(1, n + 1)]  # sum (2k - N) / k
        assert torch.allclose(rank_pool_weights(n, variant="port"), torch.tensor(loop, dtype=torch.float64))
        assert float(rank_pool_weights(n, variant="port").sum()) == pytest.approx(n)
    with pytest.raises(ValueError, match="variant"):
        rank_pool_weights(8, variant="bilen")


def _micro_clip(num_frames: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth textured image shifted by at most 1 px (onset-apex-offset envelope) plus 0.2 % noise."""
    gen = torch.Generator().manual_seed(seed)
    pad = 8
    img = F.avg_pool2d(torch.rand(1, 3, size + 2 * pad, size + 2 * pad, generator=gen), 9, stride=1, padding=4)
    img = (img - img.amin()) / (img.amax() - img.amin())
    frames = []
    for shift in torch.sin(torch.linspace(0, math.pi, num_frames)):
        theta = torch.tensor([[[1.0, 0.0, 2 * float(shift) / (size + 2 * pad)], [0.0, 1.0, 0.0]]])
        moved = F.grid_sample(img, F.affine_grid(theta, list(img.shape), align_corners=False), align_corners=False)
        frames.append(moved[0, :, pad : pad + size, pad : pad + size] + 0.002 * torch.randn(3, size, size, generator=gen))
    return torch.stack(frames)


def _channel_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over channels of the Pearson correlation (so per-channel min-max and mean/std do not matter)."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def test_appearance_kept_only_by_the_port():
    # issue 7: the official zero-sum weights cancel appearance (correlation with the mean frame ~0); the
    # port's weights sum to T, i.e. add T x a weighted mean frame. A static clip would give 1 (pure
    # appearance), an appearance-free image 0; 0.5 means appearance explains a quarter of the variance.
    clip = _micro_clip()
    mean = clip.mean(0)
    official = _channel_corr(dynamic_image_input(clip, method="rankpool"), mean)
    port = _channel_corr(dynamic_image_input(clip, method="rankpool_port"), mean)
    assert abs(official) < 0.1, official  # measured 0.05
    assert port > 0.5, port  # measured 0.72
    static = clip[:1].expand(16, -1, -1, -1).contiguous()  # the port pools a static clip to T x the frame
    assert _channel_corr(dynamic_image_input(static, method="rankpool_port"), clip[0]) > 0.999
    with pytest.raises(ValueError, match="dynamic_image"):
        dynamic_image_input(clip, method="mean")
