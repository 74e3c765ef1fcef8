"""Value tests of mernb.motion found by mutation testing (issue 11): devices, flat-channel edge, settings."""

from __future__ import annotations

import math

import pytest
import torch

from mernb.motion.magnify import level_alphas, magnify_params
from mernb.motion.rankpool import rank_pool_weights, to_rgb


def test_rank_pool_weights_land_on_the_requested_device_and_dtype():
    for frames in (1, 3):
        w = rank_pool_weights(frames, dtype=torch.float32, device="meta")
        assert (w.device.type, w.dtype, tuple(w.shape)) == ("meta", torch.float32, (frames,))


def test_to_rgb_channel_whose_span_equals_eps_is_flat():
    """span > eps is rescaled, span == eps counts as flat (0.5), as the docstring's 'flat channels'."""
    eps = 0.25
    image = torch.tensor([[[0.0, 0.25]], [[0.0, 0.5]]])  # 2 channels, 1 x 2 pixels
    out = to_rgb(image, eps=eps)
    assert out[0].tolist() == [[0.5, 0.5]]
    assert out[1].tolist() == [[0.0, 1.0]]


def test_butterworth_of_higher_order_is_accepted_and_recorded():
    params = magnify_params(30.0, filter="butter", order=2)
    assert params["order"] == 2 and params["filter"] == "butter"
    assert "version" in params and params["high"] == 4.0
    with pytest.raises(ValueError, match="order must be 1"):
        magnify_params(30.0, filter="mit", order=2)


def test_mit_level_alphas_zero_the_finest_and_coarsest_levels():
    """MIT's rule by hand, 64 x 64, alpha 20, lambda_c 16, 4 levels: delta = 16 / 8 / 21; the coarsest
    wavelength is sqrt(2) 64 / 3 and halves per finer level; alpha_l = min(20, 2 (lam / delta / 8 - 1))."""
    delta = 16 / 8 / 21
    lam_coarsest = math.sqrt(2) * 64 / 3
    level2 = min(20.0, 2 * (lam_coarsest / 2 / delta / 8 - 1))  # 37.6 -> capped at 20
    level1 = 2 * (lam_coarsest / 4 / delta / 8 - 1)  # 17.80
    assert level2 == 20.0 and 17.7 < level1 < 17.9
    assert level_alphas(4, 64, 64, 20.0, 16.0) == pytest.approx([0.0, level1, level2, 0.0])
    assert level_alphas(3, 64, 64, 20.0, None) == [20.0, 20.0, 20.0]


def test_laplacian_pyramid_needs_two_to_the_levels_minus_one_pixels():
    """3 levels halve twice: a side of 4 px is the least (4 -> 2 -> 1); 3 px is refused."""
    from mernb.motion.magnify import laplacian_pyramid

    assert [tuple(b.shape[-2:]) for b in laplacian_pyramid(torch.zeros(1, 1, 4, 4), 3)] == [(4, 4), (2, 2), (1, 1)]
    with pytest.raises(ValueError, match="at least 4 px per side"):
        laplacian_pyramid(torch.zeros(1, 1, 3, 8), 3)


def test_frame_shape_and_size_errors_name_the_requirement():
    from mernb.motion.magnify import motion_sequence

    with pytest.raises(ValueError, match=r"frames must be \(T, C, H, W\) or \(B, T, C, H, W\), got shape \(2, 3, 4\)"):
        motion_sequence(torch.zeros(2, 3, 4), 30.0)
    with pytest.raises(ValueError, match="4 pyramid levels need frames of at least 8 px per side"):
        motion_sequence(torch.zeros(4, 3, 6, 6), 30.0, levels=4)
