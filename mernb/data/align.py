"""Face alignment of whole clips: dlib HOG detector + 68 landmarks + one similarity transform per clip.

Five points (eye centres, nose tip, mouth corners) of a reference frame (the onset, else a few other
frames) are mapped onto the ArcFace 5-point template scaled to the output size; the same transform is
applied to every frame, so the facial motion of the clip is kept and head position is normalised.
Models come from the ``dlib-bin`` and ``face-recognition-models`` wheels (no download) and are loaded
once per process, on first use.

Used by :func:`mernb.data.clips.prepare_clip` (every notebook), the data notebooks (landmark figures)
and SynthME checks.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from mernb.errors import DatasetError

Fallback = Literal["error", "center_crop"]

#: ArcFace 5-point template for a 112x112 crop: left eye, right eye, nose tip, left/right mouth corner.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: The detector works on images whose shorter side is brought into this range (HOG needs ~80 px faces).
DETECT_MIN_SIDE = 320
DETECT_MAX_SIDE = 800


class AlignmentError(DatasetError):
    """No face could be aligned in a clip; ``path`` is the reference frame tried first, ``reason`` why."""

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(
            f"{where}face alignment failed: {reason} (pass fallback='center_crop' to crop the centre instead)"
        )


@dataclass
class AlignResult:
    """An aligned clip.

    ``frames``: (T, size, size, 3) uint8. ``landmarks``: the reference frame's 68 points in output
    coordinates (None for the centre-crop fallback). ``matrix``: the 2x3 source→output transform.
    ``method``: ``"dlib"`` or ``"center_crop"``; ``reason`` says why the fallback was used.
    """

    frames: np.ndarray
    landmarks: np.ndarray | None
    matrix: np.ndarray
    reference: int
    method: str
    reason: str | None = None


def template(size: int = 224) -> np.ndarray:
    """The 5-point template (5, 2) scaled from 112 px to ``size`` px."""
    return TEMPLATE_112 * (size / 112.0)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (5, 2) from dlib's 68 landmarks (68, 2)."""
    p = np.asarray(landmarks, dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``: 2x3
    (scikit-image's ``SimilarityTransform``: Umeyama's closed form, no reflection)."""
    from skimage.transform import SimilarityTransform

    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if np.allclose(src, src[0]):
        raise ValueError("similarity_matrix: source points are all identical")
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:
        raise ValueError(f"similarity_matrix: no similarity maps the points ({transform})")
    return np.asarray(transform.params[:2], np.float64)


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_frames(frames: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Every frame (T, H, W, 3) warped with one 2x3 matrix to (T, size, size, 3).

    Output pixels whose source lies outside the frame are black (constant 0, as ArcFace-style alignment
    does). Replicating the edge instead drew vertical streaks across the crop wherever the template's
    square reached past the frame (the top of tightly cropped faces), and those streaks moved with the
    edge pixels, adding motion that is not in the face; mirroring the border would copy facial motion.

    When the warp shrinks by more than 2x (large source frames), frames are first reduced with an
    area filter so that the bilinear warp does not alias.
    """
    m = np.asarray(matrix, np.float64).copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        h, w = frames.shape[1:3]
        nw, nh = max(1, round(w * scale * 1.5)), max(1, round(h * scale * 1.5))
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
        sx, sy = nw / w, nh / h  # x_small = (x + 0.5) * s - 0.5, so x = (x_small + 0.5) / s - 0.5
        m[:, 2] += m[:, :2] @ np.array([0.5 / sx - 0.5, 0.5 / sy - 0.5])
        m[:, 0] /= sx
        m[:, 1] /= sy
    return np.stack(
        [
            cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            for f in frames
        ]
    )


def center_crop_matrix(height: int, width: int, size: int) -> np.ndarray:
    """2x3 matrix taking the central square of an HxW frame to ``size`` x ``size`` (pixel centres
    map as in ``cv2.resize``)."""
    side = min(height, width)
    s = size / side
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([[s, 0, (0.5 - x0) * s - 0.5], [0, s, (0.5 - y0) * s - 0.5]])


def default_predictor_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` inside the installed face-recognition-models package.

    Found without importing the package (its ``__init__`` needs ``pkg_resources``, gone from new setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("face-recognition-models is not installed (it holds dlib's 68-landmark model)")
    return (
        Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    )


class FaceAligner:
    """dlib HOG face detector + 68-point shape predictor, loaded lazily (once per process).

    Use :func:`get_aligner` for the shared instance.
    """

    def __init__(self, predictor_path: str | Path | None = None):
        self._predictor_path = predictor_path
        self._detector: Any = None
        self._predictor: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._predictor is not None:
            return
        with self._lock:
            if self._predictor is not None:
                return
            import dlib

            path = Path(self._predictor_path) if self._predictor_path else default_predictor_path()
            if not path.is_file():
                raise DatasetError(
                    f"{path}: dlib 68-landmark model not found (pip install face-recognition-models)"
                )
            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(str(path))

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(padded image, [x0, y0, x1, y1, pad]) of the largest face, or None.

        The image is rescaled so that its shorter side lies in [DETECT_MIN_SIDE, DETECT_MAX_SIDE];
        then tried as is, upsampled once by dlib (small images only: slow on large ones), and padded
        by 30% (faces that fill the frame, as in the releases' cropped folders).
        """
        h, w = image.shape[:2]
        short = min(h, w)
        scale = float(np.clip(short, DETECT_MIN_SIDE, DETECT_MAX_SIDE)) / short
        attempts = [(0.0, 0), (0.0, 1), (0.3, 0)] if short * scale <= 400 else [(0.0, 0), (0.3, 0)]
        for pad_frac, upsample in attempts:
            pad = int(round(pad_frac * max(h, w)))
            padded = (
                image if pad == 0 else cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            )
            work = padded
            if scale != 1.0:
                interp = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
                work = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=interp)
            boxes, _scores, _ = self._detector.run(np.ascontiguousarray(work), upsample, 0.0)
            if boxes:
                r = max(boxes, key=lambda b: b.area())
                box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / scale
                return np.ascontiguousarray(padded), np.append(box, pad)
        return None

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """68 landmarks (68, 2) float of the largest face in an RGB/grey uint8 image, or None."""
        import dlib

        self._load()
        image = np.ascontiguousarray(image)
        found = self._detect(image)
        if found is None:
            return None
        padded, (x0, y0, x1, y1, pad) = found
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = self._predictor(padded, rect)
        return np.array([[q.x, q.y] for q in shape.parts()], np.float64) - pad


_ALIGNER: FaceAligner | None = None


def get_aligner() -> FaceAligner:
    """The process-wide :class:`FaceAligner` (models are read from disk on first detection)."""
    global _ALIGNER
    if _ALIGNER is None:
        _ALIGNER = FaceAligner()
    return _ALIGNER


def reference_order(n: int, reference: int = 0, tries: int = 5) -> list[int]:
    """Frames to try for the reference face: ``reference`` first, then up to ``tries - 1`` others
    spread over the clip (middle, end, quarters)."""
    order = [reference]
    for frac in (0.5, 1.0, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875):
        i = int(round(frac * (n - 1)))
        if i not in order:
            order.append(i)
        if len(order) >= tries:
            break
    return order[: max(1, min(tries, n))]


def align_clip(
    frames: np.ndarray,
    *,
    size: int = 224,
    paths: Sequence[str | Path] | None = None,
    reference: int = 0,
    tries: int = 5,
    fallback: Fallback = "error",
    aligner: FaceAligner | None = None,
) -> AlignResult:
    """Align a clip (T, H, W, 3) uint8 with ONE similarity transform estimated on a reference frame.

    The face is looked for on ``frames[reference]`` (the onset), then on up to ``tries - 1`` other
    frames. Without a face: :class:`AlignmentError` naming the file (``paths[reference]``), or, with
    ``fallback="center_crop"``, the central square resized to ``size`` (``method="center_crop"``).
    """
    if fallback not in ("error", "center_crop"):
        raise ValueError(f"fallback must be 'error' or 'center_crop', not {fallback!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"align_clip expects frames (T, H, W, 3), got shape {frames.shape}")
    aligner = aligner or get_aligner()
    order = reference_order(len(frames), reference, tries)
    for i in order:
        pts = aligner.landmarks(frames[i])
        if pts is None:
            continue
        m = similarity_matrix(five_points(pts), template(size))
        return AlignResult(warp_frames(frames, m, size), apply_matrix(m, pts), m, i, "dlib")
    names = [str(paths[i]) if paths is not None else f"frame {i}" for i in order]
    reason = f"no face found on {len(order)} reference frame(s): {', '.join(Path(n).name for n in names)}"
    ref_path = paths[order[0]] if paths is not None else None
    if fallback == "error":
        raise AlignmentError(reason, ref_path)
    m = center_crop_matrix(frames.shape[1], frames.shape[2], size)
    return AlignResult(warp_frames(frames, m, size), None, m, order[0], "center_crop", reason)
