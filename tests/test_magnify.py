"""Eulerian magnification: filter vs scipy, pyramid exactness, in-band gain ~ 1 + alpha, out-of-band not, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from mernb.motion.magnify import (
    filter_coefficients,
    laplacian_pyramid,
    level_alphas,
    magnify,
    magnify_params,
    motion_sequence,
    reconstruct_pyramid,
    temporal_filter,
)

FPS = 30.0


def _intensity_clip(freq: float, amp: float = 0.01, n: int = 240, size: int = 16) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / FPS
    level = 0.5 + amp * torch.sin(2 * math.pi * freq * t)
    return level.view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()


def _steady_amplitude(x: torch.Tensor) -> float:
    """Peak-to-peak / 2 of a (T, ...) signal's spatial mean over the second half (transient gone)."""
    s = x.flatten(1).mean(1)[x.shape[0] // 2 :]
    return float(s.max() - s.min()) / 2


@pytest.mark.parametrize("kind", ["butter", "mit"])
def test_temporal_filter_matches_scipy_lfilter(kind):
    b, a = filter_coefficients(FPS, 0.4, 4.0, kind, 1)
    x = np.random.default_rng(0).normal(size=(50, 3))
    ref = signal.lfilter(b, a, x, axis=0, zi=signal.lfilter_zi(b, a)[:, None] * x[0])[0]
    ours = temporal_filter(torch.from_numpy(x), b, a, dim=0).numpy()
    assert np.allclose(ours, ref, atol=1e-10)


def test_cutoffs_are_true_hz():
    b, a = filter_coefficients(200.0, 0.4, 4.0, "butter", 1)
    _, h = signal.freqz(b, a, worN=[0.4, 4.0], fs=200.0)
    assert np.allclose(np.abs(h), 1 / math.sqrt(2), atol=1e-3)  # -3 dB exactly at the given Hz


def test_pyramid_reconstructs_exactly():
    x = torch.rand(3, 3, 37, 50, dtype=torch.float64)
    pyr = laplacian_pyramid(x, 4)
    assert [p.shape[-2:] for p in pyr] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    assert torch.allclose(reconstruct_pyramid(pyr), x, atol=1e-12)
    flat = laplacian_pyramid(torch.full((1, 1, 37, 50), 0.7, dtype=torch.float64), 4)
    assert all(float(band.abs().max()) < 1e-12 for band in flat[:-1])  # a constant lives in the residual
    assert torch.allclose(flat[-1], torch.full_like(flat[-1], 0.7))
    smooth = torch.sin(torch.linspace(0, 3.0, 64, dtype=torch.float64)).view(1, 1, 1, 64).expand(1, 1, 64, 64)
    bands = laplacian_pyramid(smooth, 4)
    assert float(bands[0][..., 2:-2].abs().max()) < 0.01  # little energy in the finest band (away from borders)


def test_uniform_gain_shortcut_equals_pyramid_path():
    clip = torch.rand(12, 3, 32, 32, dtype=torch.float64)
    b, a = filter_coefficients(FPS, 0.4, 4.0)
    bands = [temporal_filter(lv, b, a, dim=0) * 20.0 for lv in laplacian_pyramid(clip, 4)]
    assert torch.allclose(motion_sequence(clip, FPS), reconstruct_pyramid(bands), atol=1e-10)


def test_in_band_oscillation_amplified_by_one_plus_alpha():
    alpha = 20.0
    clip = _intensity_clip(2.0)
    out = magnify(clip, FPS, alpha=alpha)
    gain = _steady_amplitude(out) / _steady_amplitude(clip)
    _, h = signal.freqz(*filter_coefficients(FPS, 0.4, 4.0), worN=[2.0], fs=FPS)
    assert gain == pytest.approx(1 + alpha * abs(h[0]), rel=0.02)  # filter's own gain at 2 Hz: 0.955
    assert gain == pytest.approx(1 + alpha, rel=0.10)


def test_out_of_band_not_amplified():
    alpha = 20.0
    fast = _intensity_clip(12.0)
    gain_fast = _steady_amplitude(magnify(fast, FPS, alpha=alpha)) / _steady_amplitude(fast)
    assert gain_fast < 0.2 * (1 + alpha)  # 12 Hz: ~3.7 vs 21 in band
    # slow drift (near DC): the magnified drift stays close to the original drift
    n = 240
    drift = (0.3 + 0.2 * torch.arange(n, dtype=torch.float64) / n).view(n, 1, 1, 1).expand(n, 3, 8, 8)
    motion = motion_sequence(drift, FPS, alpha=alpha)
    assert float(motion.abs().max()) < 0.1 * alpha * 0.2  # in-band this would be ~alpha * 0.2
    # a static clip gives exactly zero motion with either filter
    static = torch.rand(1, 3, 8, 8).expand(16, 3, 8, 8)
    for kind in ("butter", "mit"):
        assert motion_sequence(static, FPS, filter=kind).abs().max() < 1e-6


def test_displacement_amplified():
    """A blob oscillating sub-pixel at 2 Hz: centroid motion x (1 + alpha * |H|) (first-order Taylor regime)."""
    alpha, amp, n, size = 10.0, 0.02, 180, 32
    t = torch.arange(n, dtype=torch.float64) / FPS
    shift = amp * torch.sin(2 * math.pi * 2.0 * t)
    xs = torch.arange(size, dtype=torch.float64)
    cx = size / 2 + shift.view(n, 1, 1)
    blob = torch.exp(-((xs.view(1, 1, size) - cx) ** 2 + (xs.view(1, size, 1) - size / 2) ** 2) / (2 * 3.0**2))
    clip = blob.unsqueeze(1)  # (T, 1, H, W)
    out = magnify(clip, FPS, alpha=alpha, clip=False)

    def centroid(frames):
        w = frames[:, 0]
        return (w * xs.view(1, 1, size)).flatten(1).sum(1) / w.flatten(1).sum(1)

    def amp_of(c):
        c = c[n // 2 :]
        return float(c.max() - c.min()) / 2

    _, h = signal.freqz(*filter_coefficients(FPS, 0.4, 4.0), worN=[2.0], fs=FPS)
    ratio = amp_of(centroid(out)) / amp_of(centroid(clip))
    assert ratio == pytest.approx(1 + alpha * abs(h[0]), rel=0.05)


def test_batched_shapes_lambda_c_and_chroma():
    clip = torch.rand(2, 16, 3, 32, 32)
    assert magnify(clip, 50.0).shape == clip.shape
    m = motion_sequence(clip, 50.0, lambda_c=16, levels=4)
    assert m.shape == clip.shape
    alphas = level_alphas(4, 32, 32, 20.0, 16.0)
    assert alphas[0] == 0.0 and alphas[-1] == 0.0 and 0 < max(alphas) <= 20.0
    grey = motion_sequence(clip[0], 50.0, chrom_attenuation=0.0)  # luminance-only motion: equal R, G, B
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-4) and torch.allclose(grey[:, 0], grey[:, 2], atol=1e-4)


def test_magnify_params_stable_dict():
    p = magnify_params(200)
    assert p == magnify_params(200.0, alpha=20, low=0.4, high=4.0, levels=4)
    assert p["cutoff_convention"] == "hz" and p["alpha"] == 20.0 and p["fps"] == 200.0
    assert magnify_params(200, alpha=10) != p


@pytest.mark.parametrize(
    "fps, kwargs, message",
    [
        (0, {}, "fps must be positive"),
        (-5, {}, "fps must be positive"),
        (6.0, {}, "Nyquist"),  # high 4 Hz >= 3 Hz
        (8.0, {}, "Nyquist"),  # high == Nyquist
        (30, dict(low=4.0, high=2.0), "below high"),
        (30, dict(low=0.0), "low cut-off"),
        (30, dict(levels=0), "levels"),
        (30, dict(filter="ideal"), "filter"),
        (30, dict(filter="mit", order=2), "order"),
        (30, dict(alpha=-1), "alpha"),
    ],
)
def test_invalid_settings_raise(fps, kwargs, message):
    with pytest.raises(ValueError, match=message):
        motion_sequence(torch.rand(16, 3, 16, 16), fps, **kwargs)


def test_invalid_frames_raise():
    with pytest.raises(ValueError, match="at least 2 frames"):
        motion_sequence(torch.rand(1, 3, 16, 16), 30)
    with pytest.raises(ValueError, match="px per side"):
        motion_sequence(torch.rand(8, 3, 6, 6), 30, levels=4)
    with pytest.raises(TypeError):
        motion_sequence(torch.zeros(8, 3, 16, 16, dtype=torch.uint8), 30)
    with pytest.raises(ValueError):
        motion_sequence(torch.rand(3, 16, 16), 30)


def _first_order_lowpass_response(fc: float, f: float, fs: float) -> complex:
    """Bilinear-transform first-order Butterworth low-pass (pre-warped), by hand:
    H(z) = K (1 + z^-1) / ((K + 1) + (K - 1) z^-1), K = tan(pi fc / fs), at z = exp(j 2 pi f / fs)."""
    k = math.tan(math.pi * fc / fs)
    zi = complex(math.cos(2 * math.pi * f / fs), -math.sin(2 * math.pi * f / fs))  # z^-1
    return k * (1 + zi) / ((k + 1) + (k - 1) * zi)


def _steady_gain_and_phase(x: torch.Tensor, y: torch.Tensor, freq: float) -> tuple[float, float]:
    """Amplitude ratio and phase of y vs x (sinusoids at ``freq``) over the second half of the clip.

    A least-squares fit s(t) = a sin(wt) + b cos(wt) + c gives the phasor a + jb = A exp(j phi) of A sin(wt + phi).
    """
    n = x.shape[0]
    t = torch.arange(n, dtype=torch.float64)[n // 2 :] / FPS
    w = 2 * math.pi * freq
    basis = torch.stack([torch.sin(w * t), torch.cos(w * t), torch.ones_like(t)], 1)

    def phasor(s: torch.Tensor) -> complex:
        coef = torch.linalg.lstsq(basis, s.flatten(1).mean(1)[n // 2 :, None]).solution[:, 0]
        return complex(float(coef[0]), float(coef[1]))

    ratio = phasor(y) / phasor(x)
    return abs(ratio), math.atan2(ratio.imag, ratio.real)


@pytest.mark.parametrize("freq", [1.0, 2.0, 3.0])
def test_mit_filter_sign_and_in_band_gain_by_hand(freq):
    # MIT filter = LP(high) - LP(low): in band it passes the oscillation with a positive sign (small phase);
    # LP(low) - LP(high) would flip it (phase ~ pi). Gain and phase from the hand-written transfer function.
    clip = _intensity_clip(freq, n=300)
    motion = motion_sequence(clip, FPS, alpha=1.0, low=0.4, high=4.0, filter="mit")
    gain, phase = _steady_gain_and_phase(clip, motion, freq)
    h = _first_order_lowpass_response(4.0, freq, FPS) - _first_order_lowpass_response(0.4, freq, FPS)
    assert gain == pytest.approx(abs(h), rel=0.01)
    assert phase == pytest.approx(math.atan2(h.imag, h.real), abs=0.02)
    assert abs(phase) < math.pi / 2 and 0.5 < gain < 1.0  # in band: same sign, gain below 1 (MIT's, not Butterworth's)
    # alpha scales it: the motion of alpha = 20 is 20 x that of alpha = 1
    torch.testing.assert_close(motion_sequence(clip, FPS, alpha=20.0, filter="mit"), 20 * motion)


def _matlab_level_alphas(n_levels: int, height: int, width: int, alpha: float, lambda_c: float) -> list[float]:
    """amplify_spatial_lpyr_temporal_butter.m's loop, transcribed (level 1 = finest, nLevels = coarsest)."""
    gains = [None] * (n_levels + 1)
    lam = (height**2 + width**2) ** 0.5 / 3  # 3 is experimental constant
    delta = lambda_c / 8 / (1 + alpha)
    exaggeration_factor = 2
    for level in range(n_levels, 0, -1):
        curr_alpha = (lam / delta / 8 - 1) * exaggeration_factor
        if level == n_levels or level == 1:  # ignore the highest and lowest frequency band
            gains[level] = 0.0
        elif curr_alpha > alpha:  # representative lambda exceeds lambda_c
            gains[level] = alpha
        else:
            gains[level] = curr_alpha
        lam = lam / 2
    return gains[1:]


def test_level_alphas_follow_the_matlab_loop():
    # 64 x 64, alpha 20, lambda_c 16, 4 levels, by hand: lambda_4 = sqrt(2) 64 / 3 = 30.17, delta = 16/8/21
    # level 3: 2 (15.085 / 0.09524 / 8 - 1) = 37.60 -> capped at 20; level 2: 2 (7.542 / 0.09524 / 8 - 1) = 17.80
    got = level_alphas(4, 64, 64, 20.0, 16.0)
    assert got == pytest.approx([0.0, 17.799, 20.0, 0.0], abs=1e-3)
    for args in [(5, 224, 224, 20.0, 16.0), (6, 480, 640, 50.0, 80.0), (4, 112, 96, 10.0, 1000.0), (3, 32, 32, 5.0, 1.0)]:
        assert level_alphas(*args) == pytest.approx(_matlab_level_alphas(*args))
    # small lambda_c amplifies fine levels more; a huge one attenuates (or with curr_alpha < 0 inverts) them
    assert level_alphas(5, 224, 224, 20.0, 1000.0)[1] < level_alphas(5, 224, 224, 20.0, 16.0)[1]


def test_lambda_c_gains_applied_to_their_levels():
    # the per-level gains multiply the band-passed levels finest-first, then the pyramid is collapsed
    torch.manual_seed(0)
    clip = torch.rand(1, 12, 3, 32, 32, dtype=torch.float64) * 0.1 + 0.5
    gains = level_alphas(4, 32, 32, 20.0, 8.0)
    assert len(set(gains)) > 2
    b, a = filter_coefficients(FPS, 0.4, 4.0)
    pyramid = laplacian_pyramid(clip.reshape(12, 3, 32, 32), 4)
    bands = [temporal_filter(level.view(1, 12, *level.shape[1:]), b, a, dim=1).reshape_as(level) * g
             for level, g in zip(pyramid, gains, strict=True)]
    expected = reconstruct_pyramid(bands).view(1, 12, 3, 32, 32)
    torch.testing.assert_close(motion_sequence(clip, FPS, lambda_c=8.0, levels=4), expected)
