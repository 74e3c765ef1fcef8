"""DFEW reader (macro-expression videos for MA2MI pre-training): clip enumeration, labels optional.

Layout: ``root/Clip/clip_224x224/<5-digit id>/*.jpg`` (also ``clip_224x224_16f/``, or ``original/<id>.mp4``;
``root`` may also be the ``Clip`` folder or one of those folders). Labels, when ``annotation`` is given, come
from a split file ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_N.csv`` (``video_name,label``, 1-7 =
happy, sad, neutral, angry, surprise, disgust, fear); only the listed clips are returned. Without annotation
every clip is returned unlabelled (``label=''``). ``subject`` is the clip id.
Used by the MA2MI pre-training notebook and ``mernb data check --dataset dfew``.
"""

from __future__ import annotations

from pathlib import Path

from mernb.data.readers._common import Problem, _Collector, _listdir, check_root, read_table, resolve
from mernb.data.readers._macro import clip_sample, is_clip
from mernb.data.records import Sample
from mernb.errors import DatasetError

FPS = 0.0  # unknown (varies per clip)
LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
LAYOUT = "root/Clip/clip_224x224/00001/*.jpg (or clip_224x224_16f/, original/00001.mp4)"
VARIANTS = ("clip_224x224", "clip_224x224_16f", "original", "clip_224x224_avi")


def _clip_folder(root: Path) -> Path | None:
    for base in (root, resolve(root, ["Clip"])):
        if base is None:
            continue
        for variant in VARIANTS:
            if (found := resolve(base, [variant])) is not None:
                return found
    if any(e.name.split(".")[0].isdigit() and is_clip(e) for e in _listdir(root)):
        return root
    return None


def read_dfew(
    root: str | Path | None = None,
    annotation: str | Path | None = None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
) -> list[Sample]:
    """DFEW clips (labelled when ``annotation`` is a split file)."""
    collect = _Collector(on_missing, problems)
    folder = None
    if root is not None:
        folder = _clip_folder(check_root(root, "dfew", LAYOUT))
        if folder is None:
            raise DatasetError(f"dfew: wrong root {root}? no clip folder found (expected layout {LAYOUT})")
    clips = {e.name.split(".")[0].zfill(5): e for e in _listdir(folder) if is_clip(e)} if folder else {}
    if annotation is None:
        if folder is None:
            raise DatasetError("dfew: give root (the dataset folder) or annotation (a set_N.csv split file)")
        return [clip_sample("dfew", cid, path, "", {}, float(fps or FPS)) for cid, path in sorted(clips.items())]
    table = read_table(annotation, {"clip": ["video_name"], "label": ["label"]}, ("clip", "label"))
    split = Path(annotation).parent.name.split("(")[0].lower()
    samples = []
    for rownum, cells in table.rows:
        where = f"{Path(annotation).name} row {rownum}"
        cid = str(cells["clip"]).strip().removesuffix(".0").zfill(5)
        raw = str(cells["label"]).strip().removesuffix(".0")
        if not (raw.isdigit() and 1 <= int(raw) <= 7):
            collect.fail("skipped_row", f"{where}: label {raw!r} is not 1-7 ({', '.join(LABELS)})", row=rownum)
            continue
        path = clips.get(cid)
        if folder is not None and path is None:
            collect.fail("missing_frames", f"{where}: clip {cid} not found in {folder}", row=rownum)
            continue
        meta = {"source": str(annotation), "row": rownum, "split": split}
        samples.append(clip_sample("dfew", cid, path, LABELS[int(raw) - 1], meta, float(fps or FPS)))
    return samples
