"""Helpers of the macro-expression clip readers (DFEW, FERV39K, AFEW): one Sample per frame folder or video.

Used by ``dfew.py``, ``ferv39k.py`` and ``afew.py`` (MA2MI pre-training data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mernb.data.readers._common import VIDEO_SUFFIXES, frame_index
from mernb.data.records import Sample


def clip_sample(dataset: str, clip: str, path: Path | None, label: str, meta: dict[str, Any], fps: float) -> Sample:
    """A macro clip: ``subject`` is the clip id (no subjects in these sets; each clip is its own LOSO group);
    a frame folder gives frame_paths/numbers and onset/offset = first/last frame number; a video file gives
    ``frame_paths=(video,)`` and ``meta['video']``; ``label`` is lower case or '' when unknown."""
    frames: tuple[Path, ...] = ()
    numbers: tuple[int, ...] = ()
    onset = offset = None
    meta = dict(meta)
    if path is not None and path.is_dir():
        index = frame_index(path)
        numbers = tuple(sorted(index))
        frames = tuple(index[n] for n in numbers)
        if numbers:
            onset, offset = numbers[0], numbers[-1]
    elif path is not None and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = (path,)
        meta["video"] = str(path)
    return Sample(dataset=dataset, subject=clip, clip=clip, onset=onset, apex=None, offset=offset, label=label,
                  fps=fps, frame_paths=frames, frame_numbers=numbers, meta=meta)


def is_clip(path: Path) -> bool:
    """A frame folder or a video file."""
    return path.is_dir() or (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES)
