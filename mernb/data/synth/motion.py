"""SynthME motion: FACS action units → smooth local displacement fields, onset→apex→offset timing.

Each AU moves Gaussian-weighted patches centred on its 68-landmark anchors in face coordinates
("up" = from the mouth towards the eyes, "out" = away from the face's midline); a frame is the
subject's neutral image remapped by ``sum_k amplitude_k * envelope(t) * field_k`` plus head jitter,
illumination flicker and sensor noise. Used by :func:`mernb.data.synth.generate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from mernb.data.synth.faces import Subject

# AU -> list of (landmark indices, (out, up) direction, relative weight). Indices follow dlib's 68
# scheme in image orientation: 0-16 jaw (subject's right first), 17-21 right brow, 22-26 left brow,
# 36-41 right eye, 42-47 left eye, 48 right / 54 left lip corner. FACS L/R are the subject's sides.
AU_ANCHORS: dict[int, list[tuple[tuple[int, ...], tuple[float, float], float]]] = {
    1: [((20, 21, 22, 23), (0.0, 1.0), 1.0)],  # inner brow raiser
    2: [((17, 18, 25, 26), (0.0, 1.0), 1.0)],  # outer brow raiser
    4: [((19, 20, 21, 22, 23, 24), (-0.6, -0.8), 1.0)],  # brow lowerer (down and together)
    5: [((37, 38, 43, 44), (0.0, 1.0), 0.8)],  # upper lid raiser
    6: [((1, 2, 15, 14), (0.0, 1.0), 0.8), ((40, 41, 46, 47), (0.0, 1.0), 0.6)],  # cheek raiser
    7: [((40, 41, 46, 47), (0.0, 1.0), 0.8), ((37, 38, 43, 44), (0.0, -1.0), 0.4)],  # lid tightener
    9: [((31, 35, 29), (0.0, 1.0), 1.0), ((21, 22), (0.0, -1.0), 0.5)],  # nose wrinkler
    10: [((49, 50, 51, 52, 53), (0.0, 1.0), 1.0)],  # upper lip raiser
    11: [((49, 53), (0.3, 1.0), 0.8)],  # nasolabial deepener
    12: [((48, 54), (0.7, 0.7), 1.0)],  # lip corner puller
    13: [((48, 54), (0.4, 0.9), 0.8)],  # cheek puffer / sharp lip puller
    14: [((48, 54), (1.0, 0.0), 0.8)],  # dimpler
    15: [((48, 54), (0.0, -1.0), 1.0)],  # lip corner depressor
    16: [((56, 57, 58), (0.0, -1.0), 1.0)],  # lower lip depressor
    17: [((7, 8, 9), (0.0, 1.0), 1.0), ((57,), (0.0, 1.0), 0.6)],  # chin raiser
    18: [((48, 54), (-1.0, 0.0), 1.0)],  # lip pucker
    20: [((48, 54), (1.0, -0.3), 1.0)],  # lip stretcher
    21: [((4, 5, 11, 12), (-1.0, 0.0), 0.7)],  # neck tightener (jaw line)
    22: [((48, 54), (-0.8, 0.3), 0.8), ((51, 57), (0.0, 0.0), 0.0)],  # lip funneler
    23: [((48, 54), (-0.6, 0.0), 0.8), ((51,), (0.0, -0.5), 0.6), ((57,), (0.0, 0.5), 0.6)],  # lip tightener
    24: [((51, 62), (0.0, -1.0), 0.8), ((57, 66), (0.0, 1.0), 0.8)],  # lip pressor
    25: [((51, 62), (0.0, 0.5), 0.6), ((57, 66), (0.0, -1.0), 1.0)],  # lips part
    26: [((6, 7, 8, 9, 10), (0.0, -1.0), 1.0), ((56, 57, 58), (0.0, -1.0), 0.8)],  # jaw drop
    27: [((6, 7, 8, 9, 10), (0.0, -1.0), 1.3), ((56, 57, 58), (0.0, -1.0), 1.0)],  # mouth stretch
    28: [((50, 51, 52), (0.0, -1.0), 0.8), ((56, 57, 58), (0.0, 1.0), 0.8)],  # lip suck
    31: [((4, 5, 11, 12), (1.0, 0.0), 0.6)],  # jaw clencher
    38: [((31, 35), (1.0, 0.0), 1.0)],  # nostril dilator
    39: [((31, 35), (-1.0, 0.0), 1.0)],  # nostril compressor
    43: [((37, 38, 43, 44), (0.0, -1.0), 1.3)],  # eyes closed
    45: [((37, 38, 43, 44), (0.0, -1.0), 1.3)],  # blink
    61: [((36, 39, 42, 45), (-1.0, 0.0), 0.4)],  # eyes left (lids follow the eyes a little)
    62: [((36, 39, 42, 45), (1.0, 0.0), 0.4)],  # eyes right
    63: [((37, 38, 43, 44), (0.0, 1.0), 0.5)],  # eyes up
    64: [((40, 41, 46, 47), (0.0, -1.0), 0.5)],  # eyes down
}
RIGHT_SIDE = {*range(0, 8), *range(17, 22), *range(36, 42), 31, 32, 48, 49, 50, 58, 59, 60, 67}
LEFT_SIDE = {*range(9, 17), *range(22, 27), *range(42, 48), 34, 35, 52, 53, 54, 55, 56, 64, 65}

# AUs for rows whose AU cell is empty or unparseable, and the pool that generated rows draw from.
EMOTION_AUS: dict[str, list[str]] = {
    "happiness": ["6+12", "12", "R12", "6+12+25"],
    "surprise": ["1+2", "1+2+5", "1+2+26", "5+26"],
    "disgust": ["9+10", "4+9", "4+10", "L10"],
    "repression": ["14", "17", "15+17", "14+24"],
    "fear": ["1+4+20", "4+5+20", "1+2+4", "20"],
    "sadness": ["1+4+15", "15+17", "1+15", "4+15"],
    "anger": ["4+7", "4+7+23", "4+24", "7+17"],
    "contempt": ["R14", "L14", "R12", "L12+L14"],
    "negative": ["4+7", "4+9", "15+17", "1+4+20"],
    "positive": ["6+12", "12", "L12"],
    "neutral": ["25", "43"],
    "others": ["1", "2", "7", "17", "38", "L2", "24"],
}
EMOTION_ALIASES = {"happy": "happiness", "sad": "sadness", "other": "others", "angry": "anger",
                   "surprised": "surprise", "fearful": "fear", "disgusted": "disgust"}
INTENSITY = {"A": 0.5, "B": 0.75, "C": 1.0, "D": 1.25, "E": 1.5}
_TOKEN = re.compile(r"([ALRTB])?(\d+)([A-E])?(?![0-9])")


@dataclass(frozen=True)
class AU:
    """One parsed action unit: number, side ('L', 'R' or '' for both; 'A' = asymmetric) and gain."""

    number: int
    side: str = ""
    gain: float = 1.0


def parse_aus(value: object) -> list[AU]:
    """Parse an AU cell (``4+L10``, ``12``, ``(R6 or R12)+R15``, ``ref(7B)+43``, ``26+25``...).

    ``X or Y`` keeps X; ``?``, blanks and unknown numbers give an empty list.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).replace("，", "+").replace(",", "+")
    aus: list[AU] = []
    for part in text.split("+"):
        part = re.split(r"\bor\b", part.replace("(", " ").replace(")", " "))[0]
        for prefix, number, suffix in _TOKEN.findall(part):
            n = int(number)
            side = prefix if prefix in ("L", "R", "A") else ""
            aus.append(AU(n, side, INTENSITY.get(suffix, 1.0)))
    return [au for au in aus if au.number in AU_ANCHORS]


def canonical_emotion(label: str) -> str:
    """Lower-case emotion with the aliases folded (``Happy`` → ``happiness``, ``Other`` → ``others``)."""
    key = str(label).strip().lower()
    return EMOTION_ALIASES.get(key, key)


def aus_for_row(value: object, emotion: str, rng: np.random.Generator) -> list[AU]:
    """The row's AUs, or (none parseable) a combination typical of ``emotion`` (others' pool if unknown)."""
    aus = parse_aus(value)
    if aus:
        return aus
    pool = EMOTION_AUS.get(canonical_emotion(emotion), EMOTION_AUS["others"])
    return parse_aus(pool[int(rng.integers(len(pool)))])


def au_field(subject: Subject, au: AU, sigma_iod: float = 0.22) -> np.ndarray:
    """Unit displacement field (2, H, W) of one AU on ``subject``: peak magnitude 1 px."""
    lm = subject.landmarks
    size = subject.image.shape[0]
    eye_vec = lm[42:48].mean(0) - lm[36:42].mean(0)
    ex = eye_vec / np.linalg.norm(eye_vec)  # image direction of the subject's left
    up = np.array([ex[1], -ex[0]])  # perpendicular, pointing to the forehead
    midline_x = float((lm[27:31] @ ex).mean())
    sigma = sigma_iod * subject.iod
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.zeros((2, size, size), np.float32)
    for indices, (out, upward), weight in AU_ANCHORS[au.number]:
        for i in indices:
            side_gain = weight
            if au.side == "L" and i in RIGHT_SIDE or au.side == "R" and i in LEFT_SIDE:
                continue
            if au.side == "A" and i in RIGHT_SIDE:
                side_gain *= 0.5
            outward = np.sign(float(lm[i] @ ex) - midline_x) * ex
            direction = out * outward + upward * up
            g = np.exp(-((xx - lm[i, 0]) ** 2 + (yy - lm[i, 1]) ** 2) / (2 * sigma**2)) * side_gain
            field[0] += direction[0] * g
            field[1] += direction[1] * g
    peak = float(np.sqrt((field**2).sum(0)).max())
    return field / peak if peak > 0 else field


def envelope(frames: np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
    """Smooth 0→1→0 intensity: raised-cosine rise onset→apex and fall apex→offset (0 outside)."""
    f = frames.astype(np.float64)
    rise = np.where(f >= apex, 1.0, np.clip((f - onset) / max(apex - onset, 1), 0, 1))
    fall = np.where(f <= apex, 1.0, np.clip((offset - f) / max(offset - apex, 1), 0, 1))
    out = 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))
    out[(f < onset) | (f > offset)] = 0.0
    return out


@dataclass(frozen=True)
class Event:
    """One annotated expression to animate: its frame span, apex and AU amplitudes (px at apex)."""

    onset: int
    apex: int
    offset: int
    aus: tuple[AU, ...]
    amplitudes: tuple[float, ...]


def render_clip(
    subject: Subject,
    events: list[Event],
    frame_numbers: np.ndarray,
    rng: np.random.Generator,
    *,
    jitter_px: float = 0.15,
    flicker: float = 0.006,
    noise_sigma: float = 1.6,
    field_cache: dict[tuple[int, str], np.ndarray] | None = None,
) -> tuple[list[np.ndarray], float]:
    """Frames (uint8 RGB) of one video at ``frame_numbers`` and the largest displacement (px) reached.

    Motion = sum of AU fields × amplitude × envelope; head jitter is a smooth random walk of the
    whole frame (``jitter_px`` std), flicker a smooth global gain, noise i.i.d. Gaussian per pixel.
    ``field_cache`` (one dict per subject) keeps unit AU fields between clips of the same subject.
    """
    size = subject.image.shape[0]
    channels = 1 if subject.grayscale else 3
    fields = {} if field_cache is None else field_cache
    event_fields, envelopes = [], []
    for ev in events:  # one combined field per event, scaled per frame by its envelope
        combined = np.zeros((2, size, size), np.float32)
        for au, amp in zip(ev.aus, ev.amplitudes, strict=True):
            key = (au.number, au.side)
            if key not in fields:
                fields[key] = au_field(subject, au)
            combined += amp * fields[key]
        event_fields.append(combined)
        envelopes.append(envelope(frame_numbers, ev.onset, ev.apex, ev.offset).astype(np.float32))
    n = len(frame_numbers)
    walk = np.cumsum(rng.normal(0, 1, (n, 3)), 0)
    walk = (walk - walk.mean(0)) / max(float(walk.std()), 1e-6)
    flick = np.cumsum(rng.normal(0, 1, n))
    flick = 1 + flicker * (flick - flick.mean()) / max(float(np.abs(flick - flick.mean()).max()), 1e-6)
    # Sensor noise: random windows of one larger noise field (i.i.d. per pixel, cheap per frame).
    bank = noise_sigma * rng.standard_normal((2 * size, 2 * size, channels), np.float32)
    corners = rng.integers(0, size, (n, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2
    frames, peak = [], 0.0
    for t in range(n):
        dx = np.zeros((size, size), np.float32)
        dy = np.zeros((size, size), np.float32)
        for field, env in zip(event_fields, envelopes, strict=True):
            if env[t] != 0.0:
                dx += env[t] * field[0]
                dy += env[t] * field[1]
        if any(env[t] >= 0.999 for env in envelopes):
            peak = max(peak, float(np.sqrt(dx * dx + dy * dy).max()))
        tx, ty, rot = (float(v) for v in walk[t] * jitter_px)
        rot = rot / centre  # radians giving ~jitter_px at the frame border
        map_x = xx - dx - (tx - rot * centre) - rot * yy
        map_y = yy - dy - (ty + rot * centre) + rot * xx
        frame = cv2.remap(subject.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        r, c = corners[t]
        frame = frame * np.float32(flick[t]) + bank[r : r + size, c : c + size] + np.float32(0.5)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames, peak
