"""SynthME faces: distinct synthetic subjects made from public-domain stills shipped in packages.

The two base stills are ``skimage.data.astronaut()`` (NASA, public domain) and matplotlib's
``grace_hopper.jpg`` (US Navy, public domain). Their 68 dlib landmarks are located once per process;
each subject is a mirrored or not, rescaled, rotated, shape-warped, re-toned and re-lit copy placed
on its own background, with the landmarks carried through the same geometric transform.
Used by :func:`mernb.data.synth.generate` (every SynthME dataset, hence every smoke notebook).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mernb.errors import MernbError

# Index permutation that maps the 68-point scheme onto itself under a horizontal flip.
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)


@dataclass(frozen=True)
class Subject:
    """One synthetic identity: neutral frame (float32 RGB, 0..255, ``size``²) and its 68 landmarks."""

    image: np.ndarray
    landmarks: np.ndarray
    grayscale: bool = False

    @property
    def iod(self) -> float:
        """Inter-ocular distance (eye centres) in pixels."""
        return float(np.linalg.norm(self.landmarks[36:42].mean(0) - self.landmarks[42:48].mean(0)))


def landmark_model_path() -> Path:
    """Path of dlib's 68-point model inside ``face-recognition-models`` (found without importing it:
    its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MernbError("SynthME needs the package face-recognition-models (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MernbError(f"dlib 68-landmark model not found at {path}")
    return path


def _detect_landmarks(rgb: np.ndarray) -> np.ndarray:
    import dlib

    boxes = dlib.get_frontal_face_detector()(rgb, 0)
    if len(boxes) == 0:
        raise MernbError("dlib found no face in a SynthME base still")
    box = max(boxes, key=lambda r: r.area())
    shape = dlib.shape_predictor(str(landmark_model_path()))(rgb, box)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


def _cached_landmarks(rgb: np.ndarray) -> np.ndarray:
    """dlib landmarks of ``rgb``, kept in ``$MERNB_CACHE`` (default ``~/.cache/mernb``) by image hash:
    loading the 100 MB predictor and detecting costs seconds, so it is done once per machine."""
    key = hashlib.md5(rgb.tobytes()).hexdigest()[:16]
    cache = Path(os.environ.get("MERNB_CACHE", Path.home() / ".cache" / "mernb")) / f"synth_landmarks_{key}.npy"
    try:
        return np.load(cache)
    except (OSError, ValueError):
        pass
    points = _detect_landmarks(rgb)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, points)
    except OSError:
        pass  # read-only home: detect again next time
    return points


@lru_cache(maxsize=1)
def base_stills() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``((rgb, landmarks68), ...)`` for astronaut and grace_hopper (dlib runs once, then cached)."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = np.asarray(Image.open(fh).convert("RGB"))
    stills = []
    for rgb in (np.ascontiguousarray(skimage.data.astronaut()), np.ascontiguousarray(grace)):
        stills.append((rgb, _cached_landmarks(rgb)))
    return tuple(stills)


def _smooth_field(rng: np.random.Generator, size: int, amplitude: float, n_bumps: int = 6) -> np.ndarray:
    """Low-frequency random displacement field (2, size, size): a sum of broad Gaussian bumps."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.zeros((2, size, size), np.float32)
    for _ in range(n_bumps):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        sigma = rng.uniform(0.15, 0.3) * size
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        field += rng.normal(0, amplitude, 2).astype(np.float32)[:, None, None] * weight
    return field


def _invert_points(points: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Positions q with q + field(q) = points (fixed-point iteration on a smooth field)."""
    q = points.copy()
    size = field.shape[1]
    for _ in range(8):
        xi = np.clip(q[:, 0], 0, size - 1)
        yi = np.clip(q[:, 1], 0, size - 1)
        d = np.stack([_bilinear(field[0], xi, yi), _bilinear(field[1], xi, yi)], 1)
        q = points - d
    return q


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0 = np.clip(np.floor(x).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, img.shape[0] - 2)
    fx, fy = x - x0, y - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth two-colour gradient with low-frequency blotches (float32 RGB)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    bg = c0 * (1 - t) + c1 * t
    blotch = cv2.GaussianBlur(rng.normal(0, 25, (size, size)).astype(np.float32), (0, 0), size / 10)
    return (bg + blotch[..., None]).astype(np.float32)


@lru_cache(maxsize=1)
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def make_subject(
    rng: np.random.Generator, size: int, *, iod_fraction: float = 0.36, grayscale: bool = False, tries: int = 5
) -> Subject:
    """Draw one identity at ``size``² from ``rng`` (deterministic for a given generator state).

    ``iod_fraction`` is the mean inter-ocular distance as a fraction of ``size``; 0.36 keeps dlib's
    HOG face box (about 2.0–2.4 IOD) at ≥ 80 px for ``size`` ≥ 112. A draw whose neutral frame dlib's
    HOG detector (upsample 0) misses is redrawn, up to ``tries`` times (about 1 draw in 60 at 112).
    """
    for _ in range(tries - 1):
        subject = _draw_subject(rng, size, iod_fraction, grayscale)
        if len(_hog_detector()(np.clip(subject.image, 0, 255).astype(np.uint8), 0)) > 0:
            return subject
    return _draw_subject(rng, size, iod_fraction, grayscale)


def _draw_subject(rng: np.random.Generator, size: int, iod_fraction: float, grayscale: bool) -> Subject:
    stills = base_stills()
    rgb, pts = stills[int(rng.integers(len(stills)))]
    if rng.random() < 0.5:  # mirror: a new face, landmarks re-indexed to stay semantic (left/right)
        rgb = np.ascontiguousarray(rgb[:, ::-1])
        pts = pts.copy()
        pts[:, 0] = rgb.shape[1] - 1 - pts[:, 0]
        pts = pts[MIRROR_68]
    eyes_l, eyes_r = pts[36:42].mean(0), pts[42:48].mean(0)
    iod = float(np.linalg.norm(eyes_r - eyes_l))
    target_iod = size * iod_fraction * rng.uniform(0.97, 1.12)
    scale = target_iod / iod
    # Pre-shrink with area interpolation (no aliasing), then finish with a near-unit similarity.
    pre = min(1.0, scale * 1.25)
    small = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA).astype(np.float32)
    pts = pts * pre
    centre = 0.5 * (pts[36:48].mean(0) + pts[48:68].mean(0))
    out_centre = np.array([size / 2, size * 0.52]) + rng.uniform(-0.03, 0.03, 2) * size
    angle = rng.uniform(-7, 7)
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale / pre)
    aspect = rng.uniform(0.92, 1.08)  # wider or narrower face
    rot[:, :2] = rot[:, :2] @ np.diag([aspect, 1.0 / aspect])
    rot[:, 2] = out_centre - rot[:, :2] @ centre
    warp = _smooth_field(rng, size, amplitude=0.03 * size)  # identity shape change (jaw, eyes, ...)
    inv = cv2.invertAffineTransform(rot)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sx, sy = xx + warp[0], yy + warp[1]
    map_x = (inv[0, 0] * sx + inv[0, 1] * sy + inv[0, 2]).astype(np.float32)
    map_y = (inv[1, 0] * sx + inv[1, 1] * sy + inv[1, 2]).astype(np.float32)
    face = cv2.remap(small, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    landmarks = _invert_points(pts @ rot[:, :2].T + rot[:, 2], warp).astype(np.float32)

    # Head mask: soft ellipse around the landmarks, extended up to cover forehead and hair.
    mask = np.zeros((size, size), np.float32)
    lo, hi = landmarks.min(0), landmarks.max(0)
    width, height = hi - lo
    cx, cy = (lo[0] + hi[0]) / 2, lo[1] + 0.38 * height
    axes = (int(width * rng.uniform(0.62, 0.72)), int(height * rng.uniform(0.85, 0.95)))
    cv2.ellipse(mask, (int(cx), int(cy)), axes, float(angle), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size / 40)[..., None]

    tone = rng.uniform(0.55, 1.2) * np.array([1.0, rng.uniform(0.82, 1.02), rng.uniform(0.7, 1.02)], np.float32)
    face = face * (1 - mask + mask * tone)
    face = mask * face + (1 - mask) * _background(rng, size)
    light_angle = rng.uniform(0, 2 * np.pi)  # directional lighting ramp and global gamma
    ramp = (np.cos(light_angle) * (xx - size / 2) + np.sin(light_angle) * (yy - size / 2)) / size
    face = face * (1 + rng.uniform(0.1, 0.35) * ramp)[..., None]
    face = 255.0 * (np.clip(face, 0, 255) / 255.0) ** rng.uniform(0.85, 1.15)
    if grayscale:
        face = np.repeat(cv2.cvtColor(face.astype(np.float32), cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    return Subject(image=face.astype(np.float32), landmarks=landmarks, grayscale=grayscale)
