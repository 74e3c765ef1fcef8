"""Face alignment on real faces (skimage's astronaut, public domain), rotated/scaled/shrunk copies, no face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mernb.data.align import (
    AlignmentError,
    align_clip,
    apply_matrix,
    center_crop_matrix,
    five_points,
    get_aligner,
    reference_order,
    similarity_matrix,
    template,
    warp_frames,
)


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


def _eyes_error(landmarks: np.ndarray, size: int) -> float:
    """Largest distance (px) of the two eye centres from the template's."""
    return float(np.linalg.norm(five_points(landmarks)[:2] - template(size)[:2], axis=1).max())


def test_similarity_matrix_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    m = cv2.getRotationMatrix2D((30.0, 40.0), 23.0, 1.7)
    m = np.asarray(m)
    est = similarity_matrix(src, apply_matrix(m, src))
    np.testing.assert_allclose(est, m, atol=1e-9)


def test_astronaut_eyes_land_on_template(astro):
    r = align_clip(astro[None], size=224)
    assert r.method == "dlib" and r.reason is None and r.reference == 0
    assert r.frames.shape == (1, 224, 224, 3) and r.frames.dtype == np.uint8
    assert r.landmarks.shape == (68, 2)
    assert _eyes_error(r.landmarks, 224) < 7.0  # 5-point least-squares residual
    # an independent re-detection on the aligned crop finds the eyes at the template too
    again = get_aligner().landmarks(r.frames[0])
    assert again is not None and _eyes_error(again, 224) < 8.0


def test_rotated_scaled_copy_aligns_to_the_same_place(astro):
    base = align_clip(astro[None], size=224)
    rot = np.asarray(cv2.getRotationMatrix2D((256.0, 256.0), 15.0, 0.7))
    turned = cv2.warpAffine(astro, rot, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    r = align_clip(turned[None], size=224)
    assert r.method == "dlib"
    # the original eye centres, moved by the known rotation, then aligned, land where the unrotated
    # alignment put them (within a few pixels)
    eyes = five_points(get_aligner().landmarks(astro))[:2]
    np.testing.assert_allclose(
        apply_matrix(r.matrix, apply_matrix(rot, eyes)), apply_matrix(base.matrix, eyes), atol=4.0
    )
    again = get_aligner().landmarks(r.frames[0])
    assert again is not None and _eyes_error(again, 224) < 8.0


def test_small_face_found_by_upsampling(astro):
    small = cv2.resize(astro[20:260, 100:340], (112, 112), interpolation=cv2.INTER_AREA)  # face ~45 px wide
    r = align_clip(np.stack([small, small]), size=128)
    assert r.method == "dlib" and r.frames.shape == (2, 128, 128, 3)
    assert _eyes_error(r.landmarks, 128) < 5.0


def test_one_transform_per_clip_and_reference_fallback(astro):
    blank = np.full_like(astro, 127)
    clip = np.stack([blank, astro, astro])
    r = align_clip(clip, size=112, paths=["a.png", "b.png", "c.png"])
    assert r.method == "dlib" and r.reference != 0
    # every frame got the same warp: both face frames are identical after alignment
    np.testing.assert_array_equal(r.frames[1], r.frames[2])
    assert r.frames[0].std() < 1.0


def test_no_face_raises_naming_the_file(tmp_path):
    flat = np.full((3, 120, 160, 3), 90, np.uint8)
    paths = [tmp_path / f"img{i}.jpg" for i in range(3)]
    with pytest.raises(AlignmentError) as info:
        align_clip(flat, paths=paths)
    assert "img0.jpg" in str(info.value) and info.value.path == paths[0]
    assert "no face" in info.value.reason


def test_center_crop_fallback_only_when_asked():
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 255, (2, 6, 8, 3), dtype=np.uint8)
    frames = np.stack(
        [cv2.resize(f, (320, 240), interpolation=cv2.INTER_CUBIC) for f in coarse]
    )  # smooth, no face
    r = align_clip(frames, size=60, fallback="center_crop")
    assert r.method == "center_crop" and r.landmarks is None and "no face" in r.reason
    expected = cv2.resize(frames[0][:, 40:280], (60, 60), interpolation=cv2.INTER_AREA)
    assert np.abs(r.frames[0].astype(int) - expected.astype(int)).mean() < 1.0
    # a 4x reduction of fine noise is area-filtered, not aliased
    noise = rng.integers(0, 255, (1, 240, 320, 3), dtype=np.uint8)
    assert align_clip(noise, size=60, fallback="center_crop").frames.std() < 0.5 * noise.std()
    np.testing.assert_allclose(
        apply_matrix(center_crop_matrix(240, 320, 60), [[39.5, -0.5], [279.5, 239.5]]),
        [[-0.5, -0.5], [59.5, 59.5]],
    )
    with pytest.raises(ValueError):
        align_clip(frames, fallback="nearest")


def test_reference_order():
    assert reference_order(1) == [0]
    assert reference_order(9, tries=3) == [0, 4, 8]
    order = reference_order(20, reference=0, tries=5)
    assert order[0] == 0 and len(order) == len(set(order)) == 5


def test_warp_outside_the_frame_is_black_not_edge_streaks():
    """Output pixels whose source lies above the frame are constant 0 (no copies of the top row: with edge
    replication every column repeated its top pixel downwards as a vertical streak, moving with the face)."""
    rng = np.random.default_rng(3)
    frames = rng.integers(1, 256, (2, 40, 40, 3), dtype=np.uint8)
    shift_down = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 10.0]])  # output row y shows source row y - 10
    out = warp_frames(frames, shift_down, 40)
    assert (out[:, :10] == 0).all()  # rows 0..9 come from source rows -10..-1: outside
    assert not (out[:, :10] == frames[:, :1]).all()  # ...and are not the replicated top row
    np.testing.assert_array_equal(out[:, 10:], frames[:, :30])  # inside: the frame itself, unchanged


def test_aligned_tight_crop_has_no_streaks_above_the_face(astro):
    crop = np.ascontiguousarray(astro[60:300, 130:330])  # a tightly cropped face, as in the releases' cropped folders
    r = align_clip(crop[None], size=112)
    assert r.method == "dlib"
    inverse = cv2.invertAffineTransform(r.matrix)
    ys, xs = np.mgrid[0:112, 0:112]
    src = apply_matrix(inverse, np.stack([xs.ravel(), ys.ravel()], 1)).reshape(112, 112, 2)
    outside = (src[..., 0] < -1) | (src[..., 0] > crop.shape[1]) | (src[..., 1] < -1) | (src[..., 1] > crop.shape[0])
    assert outside[:5].mean() > 0.5  # the template's crop reaches above this frame's top
    assert (r.frames[0][outside] == 0).all()
