"""FERV39K reader (macro-expression videos for MA2MI pre-training): clip enumeration, labels from folders.

Layout: ``root/2_ClipsforFaceCrop/<Scene>/<Emotion>/<4-digit clip>/*.jpg`` (``root`` may be that folder).
``clip`` is ``Scene/Emotion/0010``; ``label`` is the emotion folder in lower case (angry, disgust, fear, happy,
neutral, sad, surprise). ``annotation`` may be a split list ``4_setups/All_scenes/train_All.csv``
(space-separated lines ``Action/Sad/0010 Sad``, with or without a header line): then only those clips.
Used by the MA2MI pre-training notebook and ``mernb data check --dataset ferv39k``.
"""

from __future__ import annotations

from pathlib import Path

from mernb.data.readers._common import Problem, _Collector, _listdir, check_root, resolve
from mernb.data.readers._macro import clip_sample
from mernb.data.records import Sample
from mernb.errors import DatasetError

FPS = 0.0  # unknown
LAYOUT = "root/2_ClipsforFaceCrop/Action/Sad/0010/*.jpg"


def _split_lines(path: Path) -> list[tuple[int, str, str]]:
    if not Path(path).is_file():
        raise DatasetError(f"ferv39k: annotation file {path} does not exist")
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if len(parts) >= 2 and parts[0].count("/") == 2:
            out.append((i, parts[0], parts[1].lower()))
    if not out:
        raise DatasetError(f"{path}: no lines like 'Action/Sad/0010 Sad' (expected a FERV39K 4_setups split list)")
    return out


def read_ferv39k(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
) -> list[Sample]:
    """FERV39K clips (all clips under root, or those of a split list)."""
    collect = _Collector(on_missing, problems)
    base = None
    if root is not None:
        base = check_root(root, "ferv39k", LAYOUT)
        base = resolve(base, ["2_ClipsforFaceCrop"]) or base
    if annotation is not None:
        out = []
        for line, clip, label in _split_lines(Path(annotation)):
            path = resolve(base, clip.split("/")) if base is not None else None
            if base is not None and path is None:
                collect.fail("missing_frames", f"{Path(annotation).name} line {line}: clip {clip} not found under {base}", row=line)
                continue
            out.append(clip_sample("ferv39k", clip, path, label, {"source": str(annotation), "row": line}, float(fps or FPS)))
        return out
    if base is None:
        raise DatasetError("ferv39k: give root (the dataset folder) or annotation (a 4_setups split list)")
    out = []
    for scene in _listdir(base):
        for emotion in (e for e in _listdir(scene) if e.is_dir()):
            for clip in (c for c in _listdir(emotion) if c.is_dir()):
                cid = f"{scene.name}/{emotion.name}/{clip.name}"
                out.append(clip_sample("ferv39k", cid, clip, emotion.name.lower(), {}, float(fps or FPS)))
    if not out:
        raise DatasetError(f"ferv39k: wrong root {root}? no Scene/Emotion/clip folders found (expected layout {LAYOUT})")
    return out
