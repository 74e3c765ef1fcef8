"""SynthME release layouts: annotation rows (real fixtures or generated) and the exact on-disk formats.

One :class:`Layout` per release says where the rows come from (the real annotation file under the
fixtures folder, read cell by cell so text stays text and numbers stay numbers), how to invent rows
of the same shape, where each frame file goes, and how to write the annotation file back.
Formats follow ``shared/reference/datasets.md``. Used by :func:`mernb.data.synth.generate`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openpyxl

from mernb.data.synth.motion import EMOTION_AUS, canonical_emotion
from mernb.data.synth.xlsx import write_xlsx
from mernb.errors import DatasetError


@dataclass
class Row:
    """One annotated expression: ids as used in folder names, frame numbers, AU cell, emotion, raw cells."""

    subject: str
    clip: str
    onset: int | None
    apex: int | None
    offset: int | None
    aus: object
    emotion: str
    cells: list[object]


def as_int(value: object) -> int | None:
    """Integer of a cell (``46``, ``'46'``, ``46.0``); None for ``/``, blanks and text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return None if value != value else int(value)
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _au_cell(text: str) -> object:
    """AU cell typed like the real sheets: a plain number is stored as a number, anything else as text."""
    return int(text) if text.isdigit() else text


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _typical_aus(rng: np.random.Generator, emotion: str) -> str:
    pool = EMOTION_AUS.get(canonical_emotion(emotion), EMOTION_AUS["others"])
    return pool[int(rng.integers(len(pool)))]


def _timing(rng: np.random.Generator, fps: float, start: int, seconds: tuple[float, float]) -> tuple[int, int, int]:
    """(onset, apex, offset) of a clip starting at ``start`` lasting ``seconds`` (range) at ``fps``."""
    n = max(3, round(rng.uniform(*seconds) * fps))
    apex = start + int(round(rng.uniform(0.3, 0.6) * (n - 1)))
    return start, apex, start + n - 1


class Layout:
    """Base class: subclasses set the class attributes and implement the five format methods."""

    name = ""
    fps = 0.0
    grayscale = False
    ext = ".jpg"
    fixture: str | None = None  # relative to the fixtures folder
    root_name = ""
    default_subjects = 10
    default_per_subject = 10
    micro = True

    def read_fixture(self, path: Path) -> list[Row]:
        raise NotImplementedError

    def generate_rows(self, rng: np.random.Generator, n_subjects: int, per_subject: int) -> list[Row]:
        raise NotImplementedError

    def frame_path(self, root: Path, row: Row, number: int) -> Path:
        raise NotImplementedError

    def write_annotation(self, out_dir: Path, root: Path, rows: list[Row]) -> Path | None:
        raise NotImplementedError

    def folder_key(self, row: Row) -> tuple[str, str]:
        """Rows with the same key share one frame folder (several MEs of one CAS(ME)^3 video)."""
        return (row.subject, row.clip)


def _sheet_rows(path: Path, sheet: str | int = 0, data_only: bool = False) -> list[list[object]]:
    if not path.is_file():
        raise DatasetError(f"SynthME fixture annotation not found: {path}")
    wb = openpyxl.load_workbook(path, data_only=data_only)
    ws = wb.worksheets[sheet] if isinstance(sheet, int) else wb[sheet]
    return [list(r) for r in ws.iter_rows(values_only=True)]


class Casme2(Layout):
    """CASME II: ``sub01/EP02_01f/img46.jpg``; ``CASME2-coding-20140508.xlsx`` (blank columns, ``/`` apex)."""

    name, fps, fixture, root_name = "casme2", 200.0, "CASME2/CASME2-coding-20140508.xlsx", "CASME2_RAW_selected"
    default_subjects, default_per_subject = 26, 10
    header = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion"]
    emotions = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25, "sadness": 7, "fear": 2}

    def _row(self, cells: list[object]) -> Row:
        return Row(f"{as_int(cells[0]):02d}", str(cells[1]), as_int(cells[3]), as_int(cells[4]), as_int(cells[5]),
                   cells[7], str(cells[8]), cells)

    def read_fixture(self, path: Path) -> list[Row]:
        rows = _sheet_rows(path)
        return [self._row((r + [None] * 9)[:9]) for r in rows[1:] if r and r[0] is not None]

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(1, n_subjects + 1):
            eps = rng.choice(np.arange(1, 20), size=per_subject, replace=per_subject > 19)
            for k, ep in enumerate(eps, start=1):
                emotion = _pick(rng, self.emotions)
                onset, apex, offset = _timing(rng, self.fps, int(rng.integers(1, 300)), (0.2, 0.5))
                apex_cell: object = "/" if rng.random() < 0.03 else apex
                clip = f"EP{ep:02d}_{k:02d}" + ("f" if rng.random() < 0.5 else "")
                au = _au_cell(_typical_aus(rng, emotion))
                rows.append(self._row([f"{s:02d}", clip, None, onset, apex_cell, offset, None, au, emotion]))
        return rows

    def frame_path(self, root, row, number):
        return root / f"sub{row.subject}" / row.clip / f"img{number}.jpg"

    def write_annotation(self, out_dir, root, rows):
        sheets = [("Sheet1", [self.header] + [r.cells for r in rows]), ("Sheet2", []), ("Sheet3", [])]
        return write_xlsx(out_dir / "CASME2-coding-20140508.xlsx", sheets)


SAMM_PREAMBLE = [
    ["SAMM Dataset - Master FACS Codes (SynthME synthetic stand-in: synthetic faces, not the real data)"],
    [],
    ["Rows follow the layout of SAMM_Micro_FACS_Codes_v2.xlsx: 13 rows of notes, the header on row 14."],
    ["Frames are rendered by mernb.data.synth from these rows."],
    [],
    ["Symbol Key:"],
    ['"/" = or'],
    ['"?" = unclear offset'],
    [],
    ["AU Help:"],
    ['"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'],
    ['"A2" = Asymmetric AU 2'],
    [],
]
SAMM_OBJECTIVE = {"happiness": 1, "surprise": 2, "anger": 3, "contempt": 3, "disgust": 4, "sadness": 5, "fear": 6}


class Samm(Layout):
    """SAMM: grayscale ``006/006_1_2/006_05562.jpg``; ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet
    ``MICRO_ONLY``, 13 preamble rows, header on Excel row 14, ``Duration`` as a formula."""

    name, fps, grayscale, fixture, root_name = "samm", 200.0, True, "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM"
    default_subjects, default_per_subject = 28, 6
    header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
              "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
    emotions = {"Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12, "Disgust": 9,
                "Fear": 8, "Sadness": 6}

    def _row(self, cells: list[object]) -> Row:
        return Row(f"{as_int(cells[0]):03d}", str(cells[1]), as_int(cells[3]), as_int(cells[4]), as_int(cells[5]),
                   cells[8], str(cells[9]), cells)

    def read_fixture(self, path):
        rows = _sheet_rows(path, "MICRO_ONLY")
        start = next((i for i, r in enumerate(rows) if r and r[0] == "Subject"), None)
        if start is None:
            raise DatasetError(f"{path}: no row starting with 'Subject' (SAMM header)")
        return [self._row((r + [None] * 12)[:12]) for r in rows[start + 1:] if r and r[0] is not None]

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(6, 6 + n_subjects):
            for k in range(1, per_subject + 1):
                emotion = _pick(rng, self.emotions)
                induce = int(rng.integers(1, 8))
                onset, apex, offset = _timing(rng, self.fps, int(rng.integers(500, 6000)), (0.25, 0.5))
                apex_cell = -1 if rng.random() < 0.02 else apex
                au = _au_cell(_typical_aus(rng, emotion))
                cells = [f"{s:03d}", f"{s:03d}_{induce}_{k}", induce, onset, apex_cell, offset, None, "Micro - 1/2",
                         au, emotion, SAMM_OBJECTIVE.get(emotion.lower(), 7), None]
                rows.append(self._row(cells))
        return rows

    def frame_path(self, root, row, number):
        return root / row.subject / row.clip / f"{row.subject}_{number:05d}.jpg"

    def write_annotation(self, out_dir, root, rows):
        body, cached = [], {}
        first = len(SAMM_PREAMBLE) + 2  # Excel row of the first data row
        for i, r in enumerate(rows):
            cells = list(r.cells)
            excel_row = first + i
            cells[6] = f"=SUM(F{excel_row}-D{excel_row})+1"
            if r.onset is not None and r.offset is not None:
                cached[(0, f"G{excel_row}")] = r.offset - r.onset + 1
            body.append(cells)
        sheets = [("MICRO_ONLY", SAMM_PREAMBLE + [self.header] + body)]
        return write_xlsx(out_dir / "SAMM_Micro_FACS_Codes_v2.xlsx", sheets, cached)


class Smic(Layout):
    """SMIC original HS: ``HS/s1/micro/negative/s1_ne_01/image036237.bmp``; labels from folders, no file.

    Fixture rows come from the SMIC-E HS sheet (the original release's folder list is not public).
    """

    name, fps, ext, fixture, root_name = "smic", 100.0, ".bmp", "SMIC/SMIC-HS-E_annotation_orig.xlsx", "SMIC_all_raw"
    default_subjects, default_per_subject = 16, 10
    emotions = {"negative": 70, "positive": 51, "surprise": 43}
    short = {"negative": "ne", "positive": "po", "surprise": "sur"}

    def read_fixture(self, path):
        rows = _sheet_rows(path, "HS", data_only=True)
        col = {name: i for i, name in enumerate(rows[0]) if name}
        out = []
        for r in rows[1:]:
            subject, onset, offset = as_int(r[col["Subject"]]), as_int(r[col["OnsetF"]]), as_int(r[col["OffsetF"]])
            if subject is None or onset is None or r[col["Emotion"]] is None:
                continue
            emotion = str(r[col["Emotion"]]).strip().lower()
            out.append(Row(str(subject), str(r[col["Filename"]]).strip(), onset, None, offset, None, emotion, []))
        return out

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(1, n_subjects + 1):
            counts: dict[str, int] = {}
            for _ in range(per_subject):
                emotion = _pick(rng, self.emotions)
                counts[emotion] = counts.get(emotion, 0) + 1
                onset, _, offset = _timing(rng, self.fps, int(rng.integers(10_000, 900_000)), (0.2, 0.5))
                clip = f"s{s}_{self.short[emotion]}_{counts[emotion]:02d}"
                rows.append(Row(str(s), clip, onset, None, offset, None, emotion, []))
        return rows

    def frame_path(self, root, row, number):
        return root / "HS" / f"s{row.subject}" / "micro" / row.emotion / row.clip / f"image{number:06d}.bmp"

    def write_annotation(self, out_dir, root, rows):
        return None


class Casme3(Layout):
    """CAS(ME)^3 Part A: ``spNO.1/a/color/355.jpg``; ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``
    (sheet ``label`` with every value as text, empty ``Sheet1``/``Sheet3``); MEs of one video share frames."""

    name, fps, fixture, root_name = "casme3", 30.0, "CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "part_A"
    default_subjects, default_per_subject = 94, 9
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    emotions = {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64, "sad": 57, "happy": 55}
    objective = {"happy": "I", "surprise": "II", "anger": "III", "disgust": "IV", "sad": "V", "fear": "VI"}

    def _row(self, cells: list[object]) -> Row:
        return Row(str(cells[0]), str(cells[1]), as_int(cells[2]), as_int(cells[3]), as_int(cells[4]), cells[5],
                   str(cells[7]), cells)

    def read_fixture(self, path):
        rows = _sheet_rows(path, "label")
        return [self._row((r + [None] * 8)[:8]) for r in rows[1:] if r and r[0] is not None]

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(1, n_subjects + 1):
            next_free: dict[str, int] = {}
            for _ in range(per_subject):
                video = "abcdefghijklm"[int(rng.integers(13))]
                start = next_free.get(video, int(rng.integers(10, 400))) + int(rng.integers(5, 120))
                onset, apex, offset = _timing(rng, self.fps, start, (0.3, 1.0))
                next_free[video] = offset
                emotion = _pick(rng, self.emotions)
                cells = [f"spNO.{s}", video, str(onset), str(apex), str(offset), _typical_aus(rng, emotion),
                         self.objective.get(emotion, "VII"), emotion]
                rows.append(self._row(cells))
        return rows

    def frame_path(self, root, row, number):
        return root / row.subject / row.clip / "color" / f"{number}.jpg"

    def write_annotation(self, out_dir, root, rows):
        body = [[None if c is None else str(c) for c in r.cells] for r in rows]
        sheets = [("label", [self.header] + body), ("Sheet1", []), ("Sheet3", [])]
        return write_xlsx(out_dir / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", sheets)


class Mmew(Layout):
    """MMEW: ``Micro_Expression/<emotion>/<Filename>/1.jpg``; ``MMEW_Micro_Exp.xlsx`` with columns
    Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion, remarks."""

    name, fps, fixture, root_name = "mmew", 90.0, "MMEW/MMEW_Micro_Exp_delete_others.csv", "MMEW_Final"
    default_subjects, default_per_subject = 30, 10
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion", "remarks"]
    emotions = {"surprise": 89, "disgust": 72, "others": 66, "happiness": 36, "fear": 16, "sadness": 13, "anger": 8}

    def _row(self, cells: list[object]) -> Row:
        return Row(str(as_int(cells[0])), str(cells[1]), as_int(cells[2]), as_int(cells[3]), as_int(cells[4]),
                   cells[5], str(cells[6]), cells)

    def read_fixture(self, path):
        if not path.is_file():
            raise DatasetError(f"SynthME fixture annotation not found: {path}")
        with path.open(newline="", encoding="utf-8-sig") as fh:
            records = list(csv.DictReader(fh))
        rows = []
        for rec in records:
            cells: list[object] = [as_int(rec["Subject"]), rec["Filename"], as_int(rec["OnsetFrame"]),
                                   as_int(rec["ApexFrame"]), as_int(rec["OffsetFrame"]), _au_cell(rec["Action Units"]),
                                   rec["Estimated Emotion"], rec.get("remarks") or None]
            rows.append(self._row(cells))
        return rows

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(1, n_subjects + 1):
            for k in range(1, per_subject + 1):
                emotion = _pick(rng, self.emotions)
                onset, apex, offset = _timing(rng, self.fps, 1, (0.2, 0.6))
                cells = [s, f"S{s:02d}-{int(rng.integers(1, 6)):02d}-{k:03d}", onset, apex, offset,
                         _au_cell(_typical_aus(rng, emotion)), emotion, None]
                rows.append(self._row(cells))
        return rows

    def frame_path(self, root, row, number):
        return root / "Micro_Expression" / row.emotion / row.clip / f"{number}.jpg"

    def write_annotation(self, out_dir, root, rows):
        (root / "Macro_Expression").mkdir(parents=True, exist_ok=True)
        sheets = [("Sheet1", [self.header] + [r.cells for r in rows])]
        return write_xlsx(root / "MMEW_Micro_Exp.xlsx", sheets)


class Dfew(Layout):
    """DFEW-like macro-expressions: ``Clip/clip_224x224/00001/00001_001.jpg`` (the folder name is the
    release's; frames are ``size``²) and ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_1.csv``
    (``video_name,label``, labels 1–7 = Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear)."""

    name, fps, fixture, root_name, micro = "dfew", 25.0, None, "DFEW", False
    default_subjects, default_per_subject = 20, 10
    labels = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(n_subjects):
            for k in range(per_subject):
                video = s * per_subject + k + 1
                label = int(rng.integers(1, 8))
                n = int(rng.integers(16, 33))
                apex = int(round(rng.uniform(0.4, 0.7) * n))
                rows.append(Row(f"id{s:03d}", f"{video:05d}", 1, apex, n, None, self.labels[label - 1], [video, label]))
        return rows

    def frame_path(self, root, row, number):
        return root / "Clip" / "clip_224x224" / row.clip / f"{row.clip}_{number:03d}.jpg"

    def write_annotation(self, out_dir, root, rows):
        split = root / "EmoLabel_DataSplit"
        paths = {}
        for part, keep in (("train", lambda i: i % 5 != 4), ("test", lambda i: i % 5 == 4)):
            path = split / f"{part}(single-labeled)" / "set_1.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = ["video_name,label"] + [f"{r.cells[0]},{r.cells[1]}" for i, r in enumerate(rows) if keep(i)]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            paths[part] = path
        return paths["train"]


class Ferv39k(Layout):
    """FERV39K-like macro-expressions: ``2_ClipsforFaceCrop/<Scene>/<Emotion>/<4-digit clip>/<n>.jpg`` and a
    split list ``4_setups/All_scenes/train_All.csv`` (lines ``Scene/Emotion/0001 Emotion``); the reader takes
    the label from the emotion folder."""

    name, fps, fixture, root_name, micro = "ferv39k", 25.0, None, "FERV39K", False
    default_subjects, default_per_subject = 20, 10
    scenes = ("Action", "Daily", "Speech")
    emotions = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    _emotion_names = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
                      "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise"}

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(n_subjects):
            for k in range(per_subject):
                number = s * per_subject + k + 1
                scene = self.scenes[int(rng.integers(len(self.scenes)))]
                emotion = self.emotions[int(rng.integers(len(self.emotions)))]
                n = int(rng.integers(16, 33))
                apex = int(round(rng.uniform(0.4, 0.7) * n))
                clip = f"{scene}/{emotion}/{number:04d}"
                rows.append(Row(f"id{s:03d}", clip, 1, apex, n, None, self._emotion_names[emotion], [clip, emotion]))
        return rows

    def frame_path(self, root, row, number):
        return root / "2_ClipsforFaceCrop" / Path(row.clip) / f"{number:03d}.jpg"

    def write_annotation(self, out_dir, root, rows):
        path = root / "4_setups" / "All_scenes" / "train_All.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(f"{r.cells[0]} {r.cells[1]}" for r in rows) + "\n", encoding="utf-8")
        return path


class Afew(Layout):
    """AFEW-like macro-expressions as frame folders: ``Train_AFEW/<Emotion>/<9-digit clip>/<n>.jpg`` (the
    reader also accepts the release's ``.avi`` files); no annotation file (labels are the emotion folders)."""

    name, fps, fixture, root_name, micro = "afew", 25.0, None, "AFEW", False
    default_subjects, default_per_subject = 10, 10
    emotions = Ferv39k.emotions
    _emotion_names = Ferv39k._emotion_names

    def generate_rows(self, rng, n_subjects, per_subject):
        rows = []
        for s in range(n_subjects):
            for k in range(per_subject):
                emotion = self.emotions[int(rng.integers(len(self.emotions)))]
                clip = f"{13736360 + 7 * (s * per_subject + k):09d}"
                n = int(rng.integers(16, 33))
                apex = int(round(rng.uniform(0.4, 0.7) * n))
                rows.append(Row(f"id{s:03d}", clip, 1, apex, n, None, self._emotion_names[emotion], [clip, emotion]))
        return rows

    def frame_path(self, root, row, number):
        return root / "Train_AFEW" / row.cells[1] / row.clip / f"{number:03d}.jpg"

    def write_annotation(self, out_dir, root, rows):
        (root / "Train_AFEW").mkdir(parents=True, exist_ok=True)
        return None


LAYOUTS: dict[str, Layout] = {cls.name: cls() for cls in (Casme2, Samm, Smic, Casme3, Mmew, Dfew, Ferv39k, Afew)}
