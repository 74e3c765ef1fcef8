"""AFEW (EmotiW) reader (macro-expression videos for MA2MI pre-training): clip enumeration, labels from folders.

Layout: ``root/Train_AFEW/<Emotion>/013736360.avi`` and ``root/Val_AFEW/<Emotion>/...`` (``root`` may also be
one of those folders); frame folders in place of the videos are accepted. ``label`` is the emotion folder in
lower case, ``meta['split']`` is ``train``/``val``; ``subject`` is the clip id. There is no annotation file.
Used by the MA2MI pre-training notebook and ``mernb data check --dataset afew``.
"""

from __future__ import annotations

from pathlib import Path

from mernb.data.readers._common import Problem, _listdir, check_root, resolve
from mernb.data.readers._macro import clip_sample, is_clip
from mernb.data.records import Sample
from mernb.errors import DatasetError

FPS = 25.0
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
LAYOUT = "root/Train_AFEW/Angry/013736360.avi (and Val_AFEW/)"


def read_afew(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
) -> list[Sample]:
    """AFEW clips of the Train/Val splits found under root."""
    if root is None:
        raise DatasetError(f"afew: labels come from folders, so root is required (layout {LAYOUT})")
    base = check_root(root, "afew", LAYOUT)
    splits = [(s, d) for s in ("train", "val") if (d := resolve(base, [f"{s.title()}_AFEW"])) is not None]
    if not splits and any(e.name.lower() in EMOTIONS for e in _listdir(base)):
        splits = [(base.name.split("_")[0].lower(), base)]
    out = []
    for split, folder in splits:
        for emotion in (e for e in _listdir(folder) if e.is_dir() and e.name.lower() in EMOTIONS):
            for clip in (c for c in _listdir(emotion) if is_clip(c)):
                out.append(clip_sample("afew", clip.stem if clip.is_file() else clip.name, clip, emotion.name.lower(),
                                       {"split": split}, float(fps or FPS)))
    if not out:
        raise DatasetError(f"afew: wrong root {base}? no Train_AFEW/Val_AFEW emotion folders with clips (layout {LAYOUT})")
    return out
