"""Frame loading, temporal sampling, clip preparation and the clip cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mernb.data.align import AlignmentError
from mernb.data.cache import ClipCache, clip_key
from mernb.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    flip_clip,
    interpolate_frames,
    load_frame,
    load_frames,
    normalize,
    onset_apex_indices,
    prepare_all,
    prepare_clip,
    sample_uniform,
    sampling_positions,
    to_tensor,
    uniform_positions,
)
from mernb.data.records import Sample
from mernb.errors import DatasetError


def write_clip(folder: Path, frames: np.ndarray, first: int = 46, ext: str = "png") -> tuple[Path, ...]:
    """Frames (T, H, W, 3) RGB as ``img<N>.<ext>`` files numbered from ``first``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"img{first + i}.{ext}"
        cv2.imwrite(str(p), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return tuple(paths)


def make_sample(paths, first=46, apex=None, label="happiness", clip="EP01") -> Sample:
    numbers = tuple(range(first, first + len(paths)))
    return Sample(
        dataset="casme2",
        subject="01",
        clip=clip,
        onset=numbers[0],
        apex=apex,
        offset=numbers[-1],
        label=label,
        frame_paths=tuple(paths),
        frame_numbers=numbers,
    )


def ramp_frames(n: int, h: int = 24, w: int = 32) -> np.ndarray:
    """Frame i has value 5 * i everywhere (plus a gradient), so its index can be read back."""
    grad = np.linspace(0, 5, w, dtype=np.float64)[None, :, None]
    return np.stack([np.clip(5 * i + grad + np.zeros((h, w, 3)), 0, 255) for i in range(n)]).astype(np.uint8)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Sample:
    """A 6-frame 112x112 clip of the astronaut's face with a small per-frame brightness change."""
    from skimage.data import astronaut

    face = cv2.resize(astronaut()[20:260, 100:340], (112, 112), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.clip(face.astype(int) + i, 0, 255).astype(np.uint8) for i in range(6)])
    return make_sample(write_clip(tmp_path_factory.mktemp("face") / "EP01", frames), apex=49)


# ---------------------------------------------------------------- loading


def test_load_frames_rgb_and_grayscale(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "g.png"), np.full((8, 10), 77, np.uint8))  # grayscale file (SAMM)
    out = load_frames([tmp_path / "c.png", tmp_path / "g.png"])
    assert out.shape == (2, 8, 10, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [200, 0, 0]
    assert (out[1] == 77).all()


def test_missing_and_corrupt_frames_name_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="img999.jpg"):
        load_frames([tmp_path / "a.png", tmp_path / "img999.jpg"])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg"):
        load_frames([tmp_path / "bad.jpg"])
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="big.png"):
        load_frames([tmp_path / "a.png", tmp_path / "big.png"])


# ---------------------------------------------------------------- sampling


def test_uniform_positions_endpoints_and_count():
    for n, t in [(41, 16), (16, 16), (5, 8), (1, 8), (100, 1)]:
        pos = uniform_positions(n, t)
        assert len(pos) == t and pos[0] == 0
        if t > 1:
            assert pos[-1] == n - 1
            assert np.allclose(np.diff(pos), (n - 1) / (t - 1))


def test_sample_uniform_long_clip_picks_whole_frames():
    frames = ramp_frames(41)
    out = sample_uniform(frames, 16)
    assert out.shape == (16, 24, 32, 3)
    idx = out[:, 0, 0, 0] // 5
    assert idx[0] == 0 and idx[-1] == 40  # onset and offset
    assert np.all(np.diff(idx) >= 2) and np.all(np.diff(idx) <= 3)  # regular steps of 40/15
    assert all(any(np.array_equal(f, g) for g in frames) for f in out)  # no blending


def test_sample_uniform_short_clip_interpolates():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, (5, 4, 6, 3))
    out = sample_uniform(frames, 9)  # positions 0, 0.5, 1, ..., 4
    assert out.shape == (9, 4, 6, 3)
    np.testing.assert_array_equal(out[::2], frames)
    np.testing.assert_allclose(out[1::2], (frames[:-1] + frames[1:]) / 2)
    as_uint8 = sample_uniform((frames * 255).astype(np.uint8), 9)
    mean = ((frames[:-1] * 255).astype(np.uint8).astype(float) + (frames[1:] * 255).astype(np.uint8)) / 2
    assert np.abs(as_uint8[1::2] - mean).max() <= 0.5
    # T=8 from 3 frames (HLoRA): still onset first and offset last
    short = sample_uniform(frames[:3], 8)
    np.testing.assert_array_equal(short[0], frames[0])
    np.testing.assert_array_equal(short[-1], frames[2])
    np.testing.assert_allclose(interpolate_frames(frames, [1.25])[0], 0.75 * frames[1] + 0.25 * frames[2])


def test_onset_apex_indices():
    paths = tuple(Path(f"img{i}.jpg") for i in range(46, 57))
    assert onset_apex_indices(make_sample(paths, apex=50)) == (0, 4)
    assert onset_apex_indices(make_sample(paths, apex=None)) == (0, 5)  # middle of 46..56
    # apex frame missing on disk: nearest frame that exists
    gap = Sample(
        "samm",
        "006",
        "006_1_2",
        46,
        50,
        56,
        "anger",
        frame_paths=paths[:4] + paths[6:],
        frame_numbers=tuple(range(46, 50)) + tuple(range(52, 57)),
    )
    assert onset_apex_indices(gap) == (0, 3)
    with pytest.raises(DatasetError, match="no frame files"):
        onset_apex_indices(make_sample((), apex=None) if False else Sample("x", "1", "c", 1, None, 3, "a"))


# ---------------------------------------------------------------- preparation and cache


def test_prepare_clip_modes_without_alignment(tmp_path):
    sample = make_sample(write_clip(tmp_path / "EP", ramp_frames(5)), apex=48)
    uni = prepare_clip(sample, num_frames=9, size=16, align=False)
    assert uni.shape == (9, 16, 16, 3) and uni.dtype == np.uint8
    assert abs(int(uni[1, 8, 8, 0]) - (int(uni[0, 8, 8, 0]) + int(uni[2, 8, 8, 0])) / 2) <= 0.5
    pair = prepare_clip(sample, size=16, align=False, mode="onset_apex")
    assert pair.shape == (2, 16, 16, 3) and pair[1, 0, 0, 0] // 5 == 2
    assert prepare_clip(sample, size=16, align=False, mode="all").shape == (5, 16, 16, 3)
    with pytest.raises(ValueError, match="mode"):
        prepare_clip(sample, align=False, mode="apex")


def test_prepare_clip_aligned_face(face_clip):
    clip = prepare_clip(face_clip, num_frames=8, size=64)
    assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.uint8
    # one transform for the whole clip: the brightness ramp survives alignment
    assert clip[-1].mean() > clip[0].mean() + 3


def test_no_face_error_and_fallback(tmp_path):
    sample = make_sample(write_clip(tmp_path / "EP", ramp_frames(2, 60, 80)))
    with pytest.raises(AlignmentError, match="img46.png"):
        prepare_clip(sample, num_frames=4, size=32)
    with pytest.warns(UserWarning, match="centre crop"):
        clip = prepare_clip(sample, num_frames=4, size=32, fallback="center_crop")
    assert clip.shape == (4, 32, 32, 3)


def test_missing_frame_is_a_clear_error(tmp_path):
    paths = write_clip(tmp_path / "EP", ramp_frames(4))
    paths[2].unlink()
    sample = make_sample(paths)
    with pytest.raises(DatasetError, match="img48.png"):
        prepare_clip(sample, num_frames=4, size=16, align=False)
    with pytest.raises(DatasetError, match="img48.png"):
        prepare_clip(sample, num_frames=4, size=16, align=False, cache=ClipCache(tmp_path / "cache"))


def test_cache_hits_misses_and_invalidation(tmp_path, face_clip):
    cache = ClipCache(tmp_path / "cache")
    first = prepare_clip(face_clip, num_frames=4, size=48, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    again = prepare_clip(face_clip, num_frames=4, size=48, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, again)
    # every parameter is part of the key
    base = dict(num_frames=4, size=48, align=True, fallback="error", mode="uniform")
    variants = [
        dict(base, num_frames=5),
        dict(base, size=40),
        dict(base, align=False),
        dict(base, fallback="center_crop"),
        dict(base, mode="onset_apex"),
    ]
    for k, params in enumerate(variants, start=1):
        prepare_clip(face_clip, **params, cache=cache)
        assert cache.misses == 1 + k, params
    assert cache.hits == 1
    prepare_clip(face_clip, **variants[2], cache=cache)
    assert cache.hits == 2
    assert not list(cache.directory.rglob("*.tmp"))  # writes were atomic


def test_touching_a_source_frame_is_a_miss(tmp_path):
    sample = make_sample(write_clip(tmp_path / "EP", ramp_frames(4)))
    cache = ClipCache(tmp_path / "cache")
    prepare_clip(sample, num_frames=4, size=16, align=False, cache=cache)
    st = sample.frame_paths[3].stat()
    os.utime(sample.frame_paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    prepare_clip(sample, num_frames=4, size=16, align=False, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)


def test_cache_damaged_file_and_concurrent_writers(tmp_path):
    paths = write_clip(tmp_path / "EP", ramp_frames(2))
    cache = ClipCache(tmp_path / "cache")
    key = clip_key(paths, {"a": 1})
    assert clip_key(paths, {"a": 2}) != key
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"\x93NUMPY truncated")
    assert cache.load(key) is None  # damaged file: recomputed, not an error
    arrays = [np.full((3, 4), i, np.uint8) for i in range(8)]
    threads = [threading.Thread(target=cache.save, args=(key, a)) for a in arrays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = cache.load(key)
    assert any(np.array_equal(got, a) for a in arrays)
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.npy"]


def test_prepare_all_reports_failures(tmp_path):
    good = [make_sample(write_clip(tmp_path / f"EP{i}", ramp_frames(3)), clip=f"EP{i}") for i in range(3)]
    broken_paths = write_clip(tmp_path / "EPx", ramp_frames(3))
    broken_paths[1].unlink()
    broken = make_sample(broken_paths, clip="EPx")
    cache = ClipCache(tmp_path / "cache")
    report = prepare_all(good + [broken], cache=cache, progress=False, num_frames=4, size=16, align=False)
    assert (report.n, report.ok, report.misses, report.hits) == (4, 3, 3, 0)
    assert report.failures[0][0] == broken.sample_id and "img47.png" in report.failures[0][1]
    again = prepare_all(good, cache=cache, progress=False, num_frames=4, size=16, align=False)
    assert (again.hits, again.misses, cache.hits, cache.misses) == (3, 0, 3, 3)
    assert "FAILED" in str(report) and "3/4 clips ready" in str(report)
    assert report.clips == {}  # arrays are returned only when asked for


def test_prepare_all_keep_returns_the_prepared_clips(tmp_path):
    samples = [make_sample(write_clip(tmp_path / f"EP{i}", ramp_frames(3)), clip=f"EP{i}") for i in range(2)]
    cache = ClipCache(tmp_path / "cache")
    report = prepare_all(samples, cache=cache, progress=False, keep=True, num_frames=4, size=16, align=False)
    assert set(report.clips) == {s.sample_id for s in samples}
    for s in samples:
        expected = prepare_clip(s, cache=cache, num_frames=4, size=16, align=False)
        np.testing.assert_array_equal(report.clips[s.sample_id], expected)


@pytest.mark.slow
def test_prepare_all_with_worker_processes(tmp_path, face_clip):
    samples = [make_sample(write_clip(tmp_path / f"EP{i}", ramp_frames(3)), clip=f"EP{i}") for i in range(4)]
    cache = ClipCache(tmp_path / "cache")
    report = prepare_all(
        samples + [face_clip],
        cache=cache,
        n_workers=2,
        progress=False,
        num_frames=4,
        size=32,
        fallback="center_crop",
    )
    assert (report.ok, report.misses) == (5, 5)
    assert (
        prepare_all(
            samples, cache=cache, n_workers=2, progress=False, num_frames=4, size=32, fallback="center_crop"
        ).hits
        == 4
    )


# ---------------------------------------------------------------- tensors and dataset


def test_to_tensor_normalize_and_flip():
    frames = ramp_frames(3, 4, 6)
    x = to_tensor(frames)
    assert x.shape == (3, 3, 4, 6) and x.dtype == torch.float32
    assert torch.allclose(x[1, 0], torch.from_numpy(frames[1, ..., 0]).float() / 255)
    y = normalize(x, "imagenet")
    assert torch.allclose(y[:, 1], (x[:, 1] - IMAGENET_MEAN[1]) / IMAGENET_STD[1])
    assert torch.allclose(normalize(x, ((0.5,) * 3, (0.5,) * 3)), normalize(x, "half"))
    assert normalize(x, None) is x
    with pytest.raises(ValueError):
        normalize(x, "bogus")
    assert torch.equal(flip_clip(x)[..., 0], x[..., -1])
    np.testing.assert_array_equal(flip_clip(frames)[:, :, 0], frames[:, :, -1])


def test_uniform_sampling_rounds_to_the_nearest_frame(tmp_path):
    """Hand-computed: 6 frames -> 4 at 0, 5/3, 10/3, 5 = [0, 2, 3, 5] (flooring gives [0, 1, 3, 5]);
    8 -> 3 at 0, 3.5, 7 = [0, 4, 7]; 11 -> 5 at 0, 2.5, 5, 7.5, 10 = [0, 3, 5, 8, 10] (halves up)."""
    np.testing.assert_array_equal(sampling_positions(6, 4), [0, 2, 3, 5])
    np.testing.assert_array_equal(sampling_positions(8, 3), [0, 4, 7])
    np.testing.assert_array_equal(sampling_positions(11, 5), [0, 3, 5, 8, 10])
    np.testing.assert_array_equal(sample_uniform(ramp_frames(6), 4)[:, 0, 0, 0] // 5, [0, 2, 3, 5])
    sample = make_sample(write_clip(tmp_path / "EP", ramp_frames(6)))
    clip = prepare_clip(sample, num_frames=4, size=16, align=False)  # through the loader and the resize
    np.testing.assert_array_equal(np.round((clip.mean(axis=(1, 2, 3)) - 2.5) / 5), [0, 2, 3, 5])


def test_truncated_jpeg_is_dropped_with_its_reason(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    good = make_sample(write_clip(tmp_path / "EP1", noisy, ext="jpg"), clip="EP1")
    paths = write_clip(tmp_path / "EP2", noisy, ext="jpg")
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DatasetError, match="img48.jpg: truncated JPEG"):
        load_frame(paths[2])
    cut = make_sample(paths, clip="EP2")
    report = prepare_all([cut, good], cache=ClipCache(tmp_path / "cache"), progress=False, num_frames=3, size=16,
                         align=False)
    assert report.ok == 1 and [d["sample_id"] for d in report.dropped] == [cut.sample_id]
    assert "img48.jpg: truncated JPEG" in report.dropped[0]["reason"]
    assert report.as_dict()["dropped"] == report.dropped and report.as_dict()["n"] == 2
