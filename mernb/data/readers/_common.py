"""Shared machinery of the spreadsheet readers: find the header, parse cells, apply corrections, find frames.

Used by every module in ``mernb.data.readers`` (and, through them, by ``mernb data check``, SynthME and the
notebooks). A dataset module only declares a :class:`SheetSpec` (column names, subject form, labels, frame
layout); :func:`read_sheet_dataset` does the rest.

Rules shared by all readers (see ``book/`` datasets page and ``reference/datasets.md``):

* The header row is found by scanning the first rows of every sheet for the expected column names
  (case, spaces and underscores ignored), so preamble rows (SAMM) and CSV exports both work. Each release's
  names are completed by :data:`COMMON_COLUMNS` (``Onset``/``Apex``/``Offset``, ``Label``...); where a header
  holds two names of one field the first column is used and the other reported (``column_choice``). A
  user mapping (``datasets.<name>.columns`` / ``.labels``) replaces a field's names / renames labels; a
  near-miss header gets the mapping suggested in the error.
* MEGC-style lists (``data, subject, clip, label``, header row or none, onset/apex/offset optional) are read
  by every spreadsheet reader: rows of other datasets are ignored; without onset/offset a clip is every
  frame of its folder.
* A row repeating an earlier one exactly (same subject, clip, frames, label, AUs) is dropped and reported
  (``duplicate_row``); a file with a header and no data row is reported (``no_samples``).
* Text cells and folder names are compared in Unicode NFC (macOS copies carry NFD names).
* Row numbers in messages are Excel-style (1-based, header included) for spreadsheets, and 1-based line
  numbers for CSV files.
* Subject ids may be int or text; they are normalised to the release's folder form (``sub01``, ``006``...).
* Labels are stored in lower case, with per-dataset aliases (SAMM ``Other`` -> ``others``).
* Known row errors are fixed from ``corrections.csv`` (a data table, one reason per row) and recorded in
  ``meta['corrections']``. A correction applies only while the cell still holds the ``old`` value, so
  already-corrected copies are read unchanged.
* Apex ``/``, empty, -1, 0 or outside [onset, offset] gives ``apex=None`` and ``meta['apex_fallback']``
  (the reason); ``Sample.apex_frame`` then falls back to the midpoint of onset..offset.
* Frames are mapped by the LAST number in the file name (``img46.jpg``, ``reg_img46.jpg``,
  ``006_05562.jpg``, ``355.jpg``, ``image036237.bmp``); hidden files (macOS ``._img46.jpg``) are ignored; two
  files with one number are reported (``duplicate_frames``) and the folder's most common format is used. A clip with no frame in onset..offset is *missing*
  (error, or skipped with ``on_missing="skip"``); a clip with some frames absent is kept and reported
  (``meta['missing_frames']``, problem kind ``frame_gaps``).
"""

from __future__ import annotations

import csv
import difflib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from mernb.data.records import Sample, make_sample_id
from mernb.errors import ConfigError, DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
HEADER_SCAN_ROWS = 60
CORRECTIONS_FILE = Path(__file__).with_name("corrections.csv")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class Problem:
    """One thing a reader noticed: ``kind`` is apex_fallback, correction, missing_frames, frame_gaps,
    duplicate_frames, skipped_row, ignored_row, duplicate_id, duplicate_row, no_samples, label_mapping,
    column_choice or note (``mernb data check --root`` adds corrupt_frame and frame_size)."""

    kind: str
    message: str
    sample_id: str | None = None
    file: str | None = None
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


# ----------------------------------------------------------------------------------------- cells
def is_blank(value: Any) -> bool:
    """True for None, NaN and whitespace-only text."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def cell_text(value: Any) -> str:
    """Cell as text: ints stay ints (``12.0`` -> ``'12'``), blanks become ``''``, text in Unicode NFC."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return nfc(str(value).strip())


def parse_int(value: Any) -> int | None:
    """Integer cell (int, integral float, or digit text); None for blanks and ``/``; ValueError otherwise."""
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError(repr(value))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(repr(value))
    text = str(value).strip()
    if text in {"/", "-", "?"}:
        return None
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return int(float(text))
    raise ValueError(repr(value))


def parse_aus(value: Any) -> tuple[str, ...]:
    """AU string -> tokens: split on ``+``, keep modifiers (``'4+L10'`` -> ``('4', 'L10')``, ``'R14A'``)."""
    text = cell_text(value)
    tokens = (re.sub(r"\s+", " ", t).strip() for t in text.split("+"))
    return tuple(t for t in tokens if t and t != "?")


def frame_number(path: str | Path) -> int | None:
    """The last number in a file name's stem (``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562)."""
    match = _LAST_NUMBER.search(Path(path).stem)
    return int(match.group(1)) if match else None


def norm_key(text: str) -> str:
    """Header/label comparison key: lower case, no spaces, underscores, dashes or dots."""
    return re.sub(r"[\s_\-.()]+", "", str(text).lower())


# --------------------------------------------------------------------------------------- subjects
def _subject_number(value: Any, prefix: str = "") -> int:
    text = cell_text(value)
    match = re.fullmatch(rf"(?i)(?:{prefix})?\s*0*(\d+)", text) if prefix else re.fullmatch(r"0*(\d+)", text)
    if not match:
        raise ValueError(f"subject {text!r}")
    return int(match.group(1))


_SPNO = r"spno\.?"
SUBJECT_FORMS: dict[str, Callable[[Any], str]] = {
    "casme2": lambda v: f"sub{_subject_number(v, 'sub'):02d}",
    "samm": lambda v: f"{_subject_number(v):03d}",
    "smic": lambda v: f"s{_subject_number(v, 's'):d}",
    "smic_e": lambda v: f"s{_subject_number(v, 's'):02d}",
    "casme3": lambda v: "spNO." + str(_subject_number(v, _SPNO)),
    "mmew": lambda v: f"S{_subject_number(v, 's'):02d}",
}


def normalise_subject(dataset: str, value: Any) -> str:
    """Subject id in the release's folder form (``casme2``: ``sub01``; ``samm``: ``006``; ``smic``: ``s1``;
    ``smic_e``: ``s01``; ``casme3``: ``spNO.1``; ``mmew``: ``S01``; others: the text as given)."""
    form = SUBJECT_FORMS.get(dataset)
    return form(value) if form else cell_text(value)


def normalise_smic_clip(clip: str) -> str:
    """SMIC clip names unpadded as in the release folders (``s01_ne_01`` -> ``s1_ne_01``)."""
    return re.sub(r"^[sS]0*(\d+)_", r"s\1_", clip.strip())


# ------------------------------------------------------------------------------------------ tables
@dataclass
class Table:
    """Data rows of one sheet below its header: ``rows`` is a list of (row number, {field: cell});
    ``columns`` the header name used per field (``column 3`` in a headerless file, ``header_row`` 0);
    ``ignored`` further header names of a field (the first column wins)."""

    path: Path
    sheet: str | None
    header_row: int
    columns: dict[str, str]
    rows: list[tuple[int, dict[str, Any]]]
    ignored: dict[str, list[str]] = field(default_factory=dict)


def _raw_sheets(path: Path) -> tuple[list[tuple[str | None, Callable[[], list[list[Any]]]]], Callable[[], None]]:
    """(sheet name, loader) pairs, parsed only when the header search reaches them, and a close function."""
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt", ".tsv"}:
        return [(None, lambda: _csv_rows(path))], lambda: None
    if suffix in {".xlsx", ".xlsm", ".xls"}:
        import pandas as pd

        try:
            book = pd.ExcelFile(path, engine="xlrd" if suffix == ".xls" else "openpyxl")
        except Exception as exc:  # noqa: BLE001 - any parser error is a bad file for the user
            raise DatasetError(f"{path}: cannot read the spreadsheet ({exc})") from exc

        def loader(name: str) -> Callable[[], list[list[Any]]]:
            return lambda: book.parse(name, header=None, dtype=object).values.tolist()

        return [(str(name), loader(name)) for name in book.sheet_names], book.close
    raise DatasetError(f"{path}: unsupported annotation file type {suffix!r} (expected .xlsx, .xls or .csv)")


def _csv_rows(path: Path) -> list[list[Any]]:
    raw = path.read_bytes()
    text = raw.decode("latin-1")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    delimiter = "\t" if path.suffix.lower() == ".tsv" or text.count("\t") > text.count(",") else ","
    return [list(r) for r in csv.reader(text.splitlines(), delimiter=delimiter)]


#: Header names that are not aliases but may mean a field: ``mernb data check`` suggests a column mapping.
NEAR_MISS = {
    "subject": ("participant", "person", "subjectid", "sid", "id"),
    "clip": ("video", "videoname", "name", "file", "sequence", "episode", "sample", "folder"),
    "onset": ("start", "begin", "first", "startframe", "beginframe", "firstframe"),
    "apex": ("peak", "max", "top", "peakframe"),
    "offset": ("end", "stop", "last", "endframe", "lastframe"),
    "emotion": ("class", "category", "catego", "expression", "emotionlabel", "emotionclass"),
    "dataset": ("db", "corpus", "source", "database"),
}

Positional = Callable[[list[Any]], "dict[str, int] | None"]


def read_table(
    path: str | Path,
    columns: dict[str, Sequence[str]],
    required: Iterable[str],
    sheets: Sequence[str] = (),
    hint: str = "",
    *,
    also: Sequence[Sequence[str]] = (),
    positional: Positional | None = None,
    dataset: str = "",
    numbers: Mapping[str, int] | None = None,
) -> Table:
    """Find the header row (any sheet, ``sheets`` tried first) holding all ``required`` fields (or all of one
    of the ``also`` sets) and return the rows below it. ``columns`` maps a field to its accepted header
    names; where a row holds two names of one field, the first column is used (``Table.ignored`` lists the
    others). A file without any header row is read by ``positional`` (which maps its first data row's cells
    to fields, or returns None). ``numbers`` (field -> 0-based column) reads the first sheet by position
    instead, skipping a first row that does not hold a number where ``onset`` is. Raises DatasetError naming
    the file, the columns looked for and, on a near-miss header, the ``datasets.<dataset>.columns`` mapping
    that would read it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    aliases = {field: {norm_key(a) for a in names} for field, names in columns.items()}
    needs = [list(required), *[list(a) for a in also]]
    loaders, close = _raw_sheets(path)
    try:
        if numbers:
            return _numbered_table(path, loaders, sheets, dict(numbers))
        return _find_header(path, loaders, aliases, needs, sheets, columns, hint, positional, dataset)
    finally:
        close()


def _numbered_table(path: Path, loaders: list[tuple[str | None, Callable[[], list[list[Any]]]]],
                    sheets: Sequence[str], numbers: dict[str, int]) -> Table:
    sheet, load = sorted(loaders, key=lambda t: sheets.index(t[0]) if t[0] in sheets else len(sheets))[0]
    data = load()
    start = 0
    probe = numbers.get("onset")
    if data and probe is not None:
        try:
            parse_int(data[0][probe] if probe < len(data[0]) else None)
        except ValueError:
            start = 1  # a header row
    rows = [(k, {f: (values[j] if j < len(values) else None) for f, j in numbers.items()})
            for k, values in enumerate(data[start:], start=start + 1)]
    return Table(path, sheet, start, {f: f"column {j + 1}" for f, j in numbers.items()}, rows, {})


def _header_fields(row: list[Any], aliases: dict[str, set[str]]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """field -> first column holding one of its names, and field -> the names of further such columns."""
    found: dict[str, int] = {}
    ignored: dict[str, list[str]] = {}
    for j, cell in enumerate(row):
        key = norm_key(cell_text(cell))
        for field_name, names in aliases.items():
            if key and key in names:
                if field_name in found:
                    ignored.setdefault(field_name, []).append(cell_text(cell))
                else:
                    found[field_name] = j
    return found, ignored


def near_misses(row: list[Any], found: dict[str, int], wanted: Sequence[str],
                aliases: dict[str, set[str]]) -> dict[str, str]:
    """Header cells of ``row`` that probably name a missing field (``{'onset': 'Start Frame'}``)."""
    used = set(found.values())
    out: dict[str, str] = {}
    for field_name in wanted:
        if field_name in found:
            continue
        keys = aliases.get(field_name, set()) | set(NEAR_MISS.get(field_name, ()))
        for j, cell in enumerate(row):
            text = cell_text(cell)
            key = norm_key(text)
            if j in used or not key or key.isdigit():
                continue
            close = any(
                key == k or (len(k) >= 4 and k in key) or (len(key) >= 4 and key in k)
                or difflib.SequenceMatcher(None, key, k).ratio() >= 0.8
                for k in keys
            )
            if close:
                out[field_name] = text
                used.add(j)
                break
    return out


def _find_header(
    path: Path,
    loaders: list[tuple[str | None, Callable[[], list[list[Any]]]]],
    aliases: dict[str, set[str]],
    needs: list[list[str]],
    sheets: Sequence[str],
    columns: dict[str, Sequence[str]],
    hint: str,
    positional: Positional | None,
    dataset: str,
) -> Table:
    order = sorted(loaders, key=lambda t: sheets.index(t[0]) if t[0] in sheets else len(sheets))
    required = needs[0]
    best: tuple[int, str | None, int, list[str], dict[str, str]] = (0, None, 0, required, {})
    first_data: tuple[str | None, list[list[Any]]] | None = None
    for sheet, load in order:
        data = load()
        if first_data is None:
            first_data = (sheet, data)
        for i, row in enumerate(data[:HEADER_SCAN_ROWS]):
            found, ignored = _header_fields(row, aliases)
            if any(all(f in found for f in need) for need in needs):
                rows = []
                for k, values in enumerate(data[i + 1 :], start=i + 2):
                    cells = {f: (values[j] if j < len(values) else None) for f, j in found.items()}
                    rows.append((k, cells))
                header = {f: cell_text(data[i][j]) for f, j in found.items()}
                return Table(path, sheet, i + 1, header, rows, ignored)
            missing = [f for f in required if f not in found]
            suggested = near_misses(row, found, missing, aliases)
            score = len(required) - len(missing) + len(suggested)
            if score > best[0]:
                best = (score, sheet, i + 1, missing, suggested)
    if positional is not None and first_data is not None:
        sheet, data = first_data
        start = next((i for i, r in enumerate(data) if any(not is_blank(c) for c in r)), None)
        found = positional(data[start]) if start is not None else None
        if found:
            rows = [(k, {f: (values[j] if j < len(values) else None) for f, j in found.items()})
                    for k, values in enumerate(data[start:], start=start + 1)]
            return Table(path, sheet, 0, {f: f"column {j + 1}" for f, j in found.items()}, rows, {})
    _, sheet, rownum, missing, suggested = best
    where = f" (best candidate: sheet {sheet!r} row {rownum}, lacking {missing})" if best[0] > 0 else ""
    expected = ", ".join(f"{f} ({' / '.join(columns[f][:2])})" for f in required)
    mapping = ""
    if suggested and len(suggested) + (len(required) - len(missing)) >= 2:
        pairs = ", ".join(f"{f}: {t!r}" for f, t in suggested.items())
        found_text = ", ".join(f"{t!r} for {f}" for f, t in suggested.items())
        key = f"datasets.{dataset}.columns" if dataset else "the reader's columns"
        mapping = (f". Near miss: row {rownum} has {found_text}; if so, map them in the user config: "
                   f"{key}: {{{pairs}}}")
    raise DatasetError(
        f"{path}: header row not found in the first {HEADER_SCAN_ROWS} rows of any sheet; expected columns "
        f"{expected}{where}{mapping}{'. ' + hint if hint else ''}"
    )


def list_positional(names: Iterable[str], label_field: str = "emotion") -> Positional:
    """Reader of headerless MEGC-style lists (the official MEGC 2019 ground truth has no header row):
    ``dataset, subject, clip, label[, onset, apex, offset][, frame paths...]``, recognised by a first cell
    naming one of the datasets ``names``; onset/apex/offset are taken when those cells are frame numbers
    (or blank), further columns are kept as frame paths (fields ``path_1``...)."""
    keys = {norm_key(n) for n in names}

    def columns(row: list[Any]) -> dict[str, int] | None:
        cells = [cell_text(c) for c in row]
        if len(cells) < 4 or norm_key(cells[0]) not in keys:
            return None
        found = {"dataset": 0, "subject": 1, "clip": 2, label_field: 3}
        rest = 4
        if len(cells) >= 7 and all(c == "" or re.fullmatch(r"-?\d+", c) for c in cells[4:7]):
            found.update(onset=4, apex=5, offset=6)
            rest = 7
        found.update({f"path_{k - rest + 1}": k for k in range(rest, len(cells))})
        return found

    return columns


# ------------------------------------------------------------------------------------- corrections
@lru_cache(maxsize=1)
def load_corrections() -> tuple[dict[str, str], ...]:
    """The shipped row corrections (``corrections.csv``: dataset, subject, clip, onset, column, old, new, reason)."""
    with CORRECTIONS_FILE.open(newline="", encoding="utf-8") as fh:
        return tuple(dict(r) for r in csv.DictReader(fh))


def _same(a: Any, b: Any) -> bool:
    return cell_text(a).lower() == cell_text(b).lower()


def apply_corrections(dataset: str, subject: str, clip: str, values: dict[str, Any]) -> list[dict[str, str]]:
    """Apply the corrections of one row in place (matched on dataset, subject, clip and the original onset,
    and only while the cell still holds ``old``); returns those applied."""
    applied = []
    onset0 = values.get("onset")
    for c in load_corrections():
        if c["dataset"] != dataset or c["subject"] != subject or not _same(c["clip"], clip):
            continue
        if not _same(c["onset"], onset0) or not _same(values.get(c["column"]), c["old"]):
            continue
        new = c["new"]
        values[c["column"]] = parse_int(new) if c["column"] in {"onset", "apex", "offset"} else new
        applied.append({"column": c["column"], "old": c["old"], "new": new, "reason": c["reason"]})
    return applied


# ------------------------------------------------------------------------------------------ frames
def child_dir(parent: Path, name: str) -> Path | None:
    """``parent/name`` matched case-insensitively and across Unicode normal forms (``spNo.1`` finds
    ``spNO.1``; an NFC ``é`` finds an NFD folder name); None when absent."""
    exact = parent / name
    if exact.is_dir() and not name.startswith("."):
        return exact
    wanted = name_key(name)
    for entry in _listdir(parent):
        if name_key(entry.name) == wanted and entry.is_dir():
            return entry
    return None


def nfc(text: str) -> str:
    """Unicode NFC form of a name (macOS file systems hand out NFD: ``e`` + combining accent for ``é``)."""
    return unicodedata.normalize("NFC", text)


def name_key(name: str) -> str:
    """Folder-name comparison key: NFC, case-folded (annotation names and folder names meet on this form)."""
    return nfc(name).casefold()


@lru_cache(maxsize=4096)
def _listdir_cached(parent: str, mtime: float) -> tuple[Path, ...]:
    p = Path(parent)
    return tuple(sorted(e for e in p.iterdir() if not e.name.startswith("."))) if p.is_dir() else ()


def _listdir(parent: Path) -> tuple[Path, ...]:
    """Entries of a folder, sorted, without hidden files (``.DS_Store``, macOS AppleDouble ``._img46.jpg``)."""
    try:
        mtime = parent.stat().st_mtime
    except OSError:
        return ()
    return _listdir_cached(str(parent), mtime)


def resolve(root: Path, parts: Sequence[str]) -> Path | None:
    """Walk ``root/parts...`` with case-insensitive folder matching."""
    current: Path | None = root
    for part in parts:
        current = child_dir(current, part) if current is not None else None
        if current is None:
            return None
    return current


def scan_frames(folder: Path) -> tuple[dict[int, Path], dict[int, tuple[Path, ...]]]:
    """(index, duplicates): image files of a folder by frame number (the last number in the name), hidden
    files (``._img46.jpg``) ignored. Where two files carry one number (``img100.jpg`` beside ``img100.png``,
    ``img7.jpg`` beside ``img07.jpg``) the index holds the one in the folder's most common format, then the
    first by name; ``duplicates`` maps such numbers to all their files, the one used first."""
    by_number: dict[int, list[Path]] = {}
    for entry in _listdir(folder):
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            n = frame_number(entry)
            if n is not None:
                by_number.setdefault(n, []).append(entry)
    formats = Counter(p.suffix.lower() for files in by_number.values() for p in files)
    index: dict[int, Path] = {}
    duplicates: dict[int, tuple[Path, ...]] = {}
    for n, files in by_number.items():
        files.sort(key=lambda p: (-formats[p.suffix.lower()], p.name))
        index[n] = files[0]
        if len(files) > 1:
            duplicates[n] = tuple(files)
    return index, duplicates


def frame_index(folder: Path) -> dict[int, Path]:
    """Image files of a folder by frame number (see :func:`scan_frames` for hidden files and duplicates)."""
    return scan_frames(folder)[0]


def describe_duplicates(duplicates: dict[int, tuple[Path, ...]], limit: int = 3) -> str:
    """``img100.jpg/img100.png -> img100.jpg; ...`` for a problem message."""
    items = sorted(duplicates.items())
    text = "; ".join("/".join(p.name for p in files) + f" -> {files[0].name}" for _, files in items[:limit])
    return text + ("; ..." if len(items) > limit else "")


def check_root(root: str | Path, dataset: str, layout: str) -> Path:
    """``root`` as a Path, or DatasetError when it is not a folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{dataset}: root {path} is not a folder (expected layout {layout})")
    return path


def find_annotation(root: Path | None, patterns: Sequence[str], dataset: str) -> Path:
    """The default annotation file: first match of ``patterns`` (case-insensitive globs) in root or its parent."""
    if root is None:
        raise DatasetError(f"{dataset}: give root (the dataset folder) or annotation (the annotation file)")
    for folder in (root, root.parent):
        entries = _listdir(folder)
        for pattern in patterns:
            rx = re.compile(_glob_to_regex(pattern), re.IGNORECASE)
            hits = [e for e in entries if e.is_file() and rx.fullmatch(e.name)]
            if hits:
                return hits[0]
    raise DatasetError(
        f"{dataset}: no annotation file given and none matching {list(patterns)} in {root} or {root.parent}; "
        f"pass annotation=<file> (or --annotation)"
    )


def _glob_to_regex(pattern: str) -> str:
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)


# ------------------------------------------------------------------------------------------ reader
#: Header names every spreadsheet reader accepts besides its release's own (variants seen in circulated
#: copies: ``Onset``/``Apex``/``Offset``, ``Label``, MEGC-style ``data``/``subject``/``clip``/``label`` lists).
COMMON_COLUMNS: dict[str, tuple[str, ...]] = {
    "dataset": ("data", "dataset", "database"),
    "subject": ("Subject", "sub", "subject_id"),
    "clip": ("Filename", "clip", "filename_o", "video_name"),
    "onset": ("OnsetFrame", "Onset", "onset_frame", "OnsetF"),
    "apex": ("ApexFrame", "Apex", "apex_frame", "ApexF"),
    "offset": ("OffsetFrame", "Offset", "offset_frame", "OffsetF"),
    "emotion": ("Estimated Emotion", "Emotion", "Label"),
    "aus": ("Action Units", "AU", "AUs"),
    "objective_class": ("Objective Class", "Objective Classes"),
    "onset_path": ("onset_path", "onset_image", "onset_file"),
    "apex_path": ("apex_path", "apex_image", "apex_file"),
    "offset_path": ("offset_path", "offset_image", "offset_file"),
    "image": ("imagename", "image_path", "image_name"),
}
#: Fields of a MEGC-style list (``data, subject, clip, label``; onset/apex/offset optional).
LIST_REQUIRED = ("dataset", "subject", "clip", "emotion")
#: Megc-style label codes (0 negative, 1 positive, 2 surprise), used by readers with those classes.
MEGC_CODES = {"0": "negative", "1": "positive", "2": "surprise"}
FRAME_FILE_FIELDS = ("onset_path", "apex_path", "offset_path", "image")


@dataclass
class SheetSpec:
    """What one spreadsheet release looks like. ``frame_dirs(root, sample_fields)`` yields candidate clip
    folders (first existing wins); ``labels`` are the valid lower-case labels, ``label_aliases`` rename;
    ``list_names`` are the names of the dataset in a list's ``data`` column (besides ``name``)."""

    name: str
    fps: float
    columns: dict[str, Sequence[str]]
    required: tuple[str, ...]
    labels: frozenset[str]
    layout: str
    annotation_patterns: tuple[str, ...]
    frame_dirs: Callable[[Path, dict[str, Any]], list[Path | None]]
    label_aliases: dict[str, str] = field(default_factory=dict)
    sheets: tuple[str, ...] = ()
    clip_form: Callable[[str], str] = field(default=str.strip)
    hint: str = ""
    apex_column: bool = True
    meta_fields: tuple[str, ...] = ("objective_class",)
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    list_names: tuple[str, ...] = ()
    column_numbers: dict[str, int] = field(default_factory=dict)

    def all_columns(self) -> dict[str, list[str]]:
        """The release's header names per field, then :data:`COMMON_COLUMNS`."""
        out = {f: list(names) for f, names in self.columns.items()}
        for f, names in COMMON_COLUMNS.items():
            out.setdefault(f, [])
            out[f] += [n for n in names if norm_key(n) not in {norm_key(m) for m in out[f]}]
        return out

    def with_mapping(self, columns: Mapping[str, Any] | None, labels: Mapping[Any, Any] | None) -> SheetSpec:
        """This spec with a user mapping (``datasets.<name>.columns`` / ``.labels`` of the user config): a
        mapped field is read from that header only (or, when every value is a number, from that column of a
        file without a header row: 1 = first); mapped labels are renamed before the aliases. ConfigError for
        unknown fields or labels."""
        all_columns = self.all_columns()
        if columns:
            unknown = sorted(set(columns) - set(all_columns))
            if unknown:
                raise ConfigError(f"datasets.{self.name}.columns: unknown field(s) {unknown} (fields: "
                                  f"{', '.join(sorted(all_columns))})")
            numbers = {f: v for f, v in columns.items() if isinstance(v, int) and not isinstance(v, bool)}
            if numbers and (len(numbers) < len(columns) or min(numbers.values()) < 1):
                raise ConfigError(f"datasets.{self.name}.columns: give header names or column numbers (1 = first "
                                  f"column, for a file without a header row), not both: {dict(columns)}")
            if numbers:
                missing = [f for f in self.required if f not in numbers]
                if missing:
                    raise ConfigError(f"datasets.{self.name}.columns: column numbers must include {missing}")
                return replace(self, columns=all_columns, label_aliases=self._labels(labels),
                               column_numbers={f: n - 1 for f, n in numbers.items()})
            for f, header in columns.items():
                if is_blank(header) or not isinstance(header, str):
                    raise ConfigError(f"datasets.{self.name}.columns.{f}: expected a header name, not {header!r}")
                all_columns[f] = [str(header)]
        return replace(self, columns=all_columns, label_aliases=self._labels(labels))

    def _labels(self, labels: Mapping[Any, Any] | None) -> dict[str, str]:
        aliases = dict(self.label_aliases)
        if labels:
            for raw, label in labels.items():
                target = cell_text(label).lower()
                if target not in self.labels:
                    raise ConfigError(f"datasets.{self.name}.labels: {raw!r} maps to {label!r}, which is not a "
                                      f"{self.name} label (expected one of {sorted(self.labels)})")
                aliases[cell_text(raw).lower()] = target
        return aliases

    @property
    def names(self) -> set[str]:
        """Keys (:func:`norm_key`) of this dataset's names in a list's ``data`` column."""
        return {norm_key(n) for n in (self.name, *self.list_names)}


class _Collector:
    """Raises in ``error`` mode, records and skips in ``skip`` mode."""

    def __init__(self, on_missing: str, problems: list[Problem] | None) -> None:
        if on_missing not in {"error", "skip"}:
            raise ValueError(f"on_missing must be 'error' or 'skip', not {on_missing!r}")
        self.on_missing = on_missing
        self.problems = problems if problems is not None else []

    def note(self, kind: str, message: str, **kw: Any) -> None:
        self.problems.append(Problem(kind, message, **kw))

    def fail(self, kind: str, message: str, **kw: Any) -> None:
        if self.on_missing == "error":
            raise DatasetError(message)
        self.problems.append(Problem(kind, message + " (skipped)", **kw))


def apex_fallback(onset: int, apex: Any, offset: int) -> tuple[int | None, str | None]:
    """(apex, None) when usable, else (None, reason)."""
    raw = cell_text(apex)
    try:
        value = parse_int(apex)
    except ValueError:
        return None, f"apex {raw!r} is not a frame number"
    if value is None:
        return None, f"apex not annotated ({raw!r})" if raw else "apex not annotated (empty)"
    if value == -1:
        return None, "apex -1 (not annotated)"
    if value == 0:
        return None, "apex 0 (not annotated)"
    if not onset <= value <= offset:
        return None, f"apex {value} outside [onset {onset}, offset {offset}]"
    return value, None


def attach_frames(
    sample_fields: dict[str, Any], dirs: list[Path | None], collect: _Collector, where: str, layout: str
) -> bool:
    """Fill frame_paths/frame_numbers from the first existing candidate folder; False when the clip is missing.
    A row without onset/offset (a MEGC-style list) takes every frame of its folder, onset/offset their first
    and last number."""
    folder = next((d for d in dirs if d is not None and d.is_dir()), None)
    onset, offset, sid = sample_fields["onset"], sample_fields["offset"], sample_fields["sample_id"]
    if folder is None:
        collect.fail("missing_frames", f"{where}: clip folder not found (expected layout {layout})", sample_id=sid)
        return False
    index, duplicates = scan_frames(folder)
    if onset is None or offset is None:
        if not index:
            collect.fail("missing_frames", f"{where}: no image file in {folder}", sample_id=sid)
            return False
        onset, offset = min(index), max(index)
        sample_fields.update(onset=onset, offset=offset)
        apex = sample_fields["apex"]
        if apex is not None and not onset <= apex <= offset:
            sample_fields["apex"] = None
            sample_fields["meta"]["apex_fallback"] = f"apex {apex} outside the clip's frames [{onset}, {offset}]"
            collect.note("apex_fallback", f"{where}: {sample_fields['meta']['apex_fallback']}; apex falls back to "
                         "the midpoint", sample_id=sid)
    numbers = sorted(n for n in index if onset <= n <= offset)
    if not numbers:
        collect.fail(
            "missing_frames",
            f"{where}: no frame numbered {onset}..{offset} in {folder} (found {len(index)} image files)",
            sample_id=sid,
        )
        return False
    absent = [n for n in range(onset, offset + 1) if n not in index]
    if absent:
        sample_fields["meta"]["missing_frames"] = len(absent)
        shown = ", ".join(map(str, absent[:8])) + (", ..." if len(absent) > 8 else "")
        collect.note("frame_gaps", f"{where}: {len(absent)} of {offset - onset + 1} frames absent in {folder} ({shown})", sample_id=sid)
    duplicates = {n: files for n, files in duplicates.items() if onset <= n <= offset}
    if duplicates:
        sample_fields["meta"]["duplicate_frames"] = len(duplicates)
        collect.note("duplicate_frames", f"{where}: {len(duplicates)} frame number(s) with two files in {folder}, "
                     f"the folder's most common format used ({describe_duplicates(duplicates)})", sample_id=sid)
    sample_fields["frame_paths"] = tuple(index[n] for n in numbers)
    sample_fields["frame_numbers"] = tuple(numbers)
    return True


def read_sheet_dataset(
    spec: SheetSpec,
    root: str | Path | None,
    annotation: str | Path | None,
    *,
    on_missing: str = "error",
    fps: float | None = None,
    problems: list[Problem] | None = None,
    corrections: bool = True,
    columns: Mapping[str, Any] | None = None,
    labels: Mapping[Any, Any] | None = None,
    duplicates: str = "drop",
) -> list[Sample]:
    """Read one spreadsheet release into Samples (see the module docstring for the rules).

    ``columns``/``labels``: a user mapping (:meth:`SheetSpec.with_mapping`). ``duplicates="drop"`` drops a row
    that repeats an earlier one exactly (same subject, clip, frames, label and AUs; reported as
    ``duplicate_row``); ``"keep"`` keeps it as ``<id>#2``. A MEGC-style list (``data, subject, clip, label``,
    with or without a header row) is read too: rows of other datasets are ignored, and without onset/offset
    columns every frame of the clip folder is used."""
    if duplicates not in {"drop", "keep"}:
        raise ValueError(f"duplicates must be 'drop' or 'keep', not {duplicates!r}")
    collect = _Collector(on_missing, problems)
    spec = spec.with_mapping(columns, labels)
    root_path = check_root(root, spec.name, spec.layout) if root is not None else None
    if annotation is not None:
        path = Path(annotation).expanduser()
    else:
        path = find_annotation(root_path, spec.annotation_patterns, spec.name)
    table = read_table(path, spec.columns, spec.required, spec.sheets, spec.hint, also=(LIST_REQUIRED,),
                       positional=list_positional(spec.names), dataset=spec.name, numbers=spec.column_numbers)
    for f, names in table.ignored.items():
        collect.note("column_choice", f"{path.name}: two columns for {f}: {table.columns[f]!r} used, "
                     f"{', '.join(map(repr, names))} ignored", file=str(path))
    has_apex = spec.apex_column and "apex" in table.columns
    rows: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    contents: dict[tuple[Any, ...], int] = {}
    other: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for rownum, cells in table.rows:
        where = f"{path.name} row {rownum}"
        if "dataset" in table.columns and not is_blank(cells.get("dataset")):
            name = cell_text(cells["dataset"])
            if norm_key(name) not in spec.names:
                other[name] += 1
                continue
        fields = _row_fields(spec, table, rownum, cells, has_apex, collect, corrections, fps, unknown)
        if fields is None:
            continue
        content = tuple(fields[k] for k in ("subject", "clip", "onset", "apex", "offset", "label", "aus"))
        if duplicates == "drop" and content in contents:
            collect.note("duplicate_row", f"{where}: repeats row {contents[content]} exactly; dropped",
                         file=str(path), row=rownum)
            continue
        contents.setdefault(content, rownum)
        base_id = make_sample_id(spec.name, fields["subject"], fields["clip"], fields["onset"])
        fields["sample_id"] = base_id
        if base_id in seen:
            seen[base_id] += 1
            fields["sample_id"] = f"{base_id}#{seen[base_id]}"
            fields["meta"]["duplicate_of"] = base_id
            collect.note("duplicate_id", f"{where}: {base_id} repeats an earlier row; id {fields['sample_id']}",
                         sample_id=fields["sample_id"])
        else:
            seen[base_id] = 1
        meta = fields["meta"]
        for a in meta.get("corrections", []):
            collect.note("correction", f"{where}: {a['column']} {a['old']} -> {a['new']} ({a['reason']})",
                         sample_id=fields["sample_id"], file=str(path), row=rownum)
        if has_apex and "apex_fallback" in meta:
            collect.note("apex_fallback", f"{where}: {meta['apex_fallback']}; apex falls back to the midpoint",
                         sample_id=fields["sample_id"], file=str(path), row=rownum)
        rows.append((where, fields))
    if other:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(other.items()))
        collect.note("ignored_row", f"{path.name}: {sum(other.values())} rows of other datasets ignored ({counts})",
                     file=str(path))
    if unknown:
        shown = ", ".join(f"{k!r}" for k in sorted(unknown)[:8])
        example = ", ".join(f"{k!r}: <label>" for k in sorted(unknown)[:3])
        collect.note("label_mapping", f"{path.name}: {sum(unknown.values())} rows have labels that are not "
                     f"{spec.name} labels ({shown}); if they encode {spec.name} labels, map them in the user "
                     f"config: datasets.{spec.name}.labels: {{{example}}} (labels: {', '.join(sorted(spec.labels))})",
                     file=str(path))
    if not table.rows or all(all(is_blank(v) for v in cells.values()) for _, cells in table.rows):
        where = f"header on row {table.header_row} but " if table.header_row else ""
        collect.note("no_samples", f"{path.name}: {where}no data rows (0 samples)", file=str(path))
    if not has_apex and rows:
        collect.note("apex_fallback", f"{path.name}: no apex column; apex falls back to the midpoint for all "
                     f"{len(rows)} samples", file=str(path))
    if root_path is None:
        return [Sample(**fields) for _, fields in rows]
    candidates = [spec.frame_dirs(root_path, fields) for _, fields in rows]
    if rows and not any(d is not None and d.is_dir() for dirs in candidates for d in dirs):
        raise DatasetError(
            f"{spec.name}: wrong root {root_path}? none of the {len(rows)} clip folders of {path.name} is there "
            f"(expected layout {spec.layout})"
        )
    samples = []
    for (where, fields), dirs in zip(rows, candidates, strict=True):
        if attach_frames(fields, dirs, collect, f"{where} ({fields['subject']} {fields['clip']})", spec.layout):
            samples.append(Sample(**fields))
    return samples


def _frame_number_cell(table: Table, cells: dict[str, Any], key: str, where: str, collect: _Collector,
                       rownum: int) -> tuple[bool, int | None]:
    """(ok, value) of an onset/offset cell; a bad or empty one fails the row."""
    column = table.columns.get(key, key)
    try:
        value = parse_int(cells.get(key))
    except ValueError:
        collect.fail("skipped_row", f"{where}: {column} {cell_text(cells.get(key))!r} is not a frame number",
                     file=str(table.path), row=rownum)
        return False, None
    if value is None:
        collect.fail("skipped_row", f"{where}: {column} is empty (expected a frame number)", file=str(table.path),
                     row=rownum)
        return False, None
    return True, value


def _row_fields(
    spec: SheetSpec, table: Table, rownum: int, cells: dict[str, Any], has_apex: bool,
    collect: _Collector, corrections: bool, fps: float | None, unknown: Counter[str] | None = None,
) -> dict[str, Any] | None:
    """Sample fields of one row, or None (blank, note or skipped row). Without onset/offset columns (a list),
    onset/offset are None and the apex is checked once the frames are known."""
    path = table.path
    where = f"{path.name} row {rownum}"
    spans = "onset" in table.columns and "offset" in table.columns
    if all(is_blank(cells.get(f)) for f in ("subject", "clip", "onset", "offset", "emotion")):
        return None
    if is_blank(cells.get("clip")) and (not spans or (is_blank(cells.get("onset")) and is_blank(cells.get("offset")))):
        text = " ".join(cell_text(v) for v in cells.values() if not is_blank(v))[:60]
        collect.note("ignored_row", f"{where}: not a data row (no clip or frames): {text!r}", file=str(path), row=rownum)
        return None
    try:
        subject = normalise_subject(spec.name, cells.get("subject"))
    except ValueError:
        collect.fail("skipped_row", f"{where}: subject {cell_text(cells.get('subject'))!r} is not a {spec.name} "
                     f"subject id", file=str(path), row=rownum)
        return None
    clip = spec.clip_form(cell_text(cells.get("clip")))
    values: dict[str, Any] = {"apex": cells.get("apex") if has_apex else None, "onset": None, "offset": None}
    if spans:
        for key in ("onset", "offset"):
            ok, values[key] = _frame_number_cell(table, cells, key, where, collect, rownum)
            if not ok:
                return None
    raw_label = cell_text(cells.get("emotion"))
    values["label"] = raw_label
    applied = apply_corrections(spec.name, subject, clip, values) if corrections else []
    label = values["label"].strip().lower()
    label = spec.label_aliases.get(label, label)
    if label not in spec.labels:
        if unknown is not None:
            unknown[raw_label] += 1
        collect.fail("skipped_row", f"{where}: unknown {spec.name} label {raw_label!r} (expected one of "
                     f"{sorted(spec.labels)})", file=str(path), row=rownum)
        return None
    onset, offset = values["onset"], values["offset"]
    if spans and offset < onset:
        collect.fail("skipped_row", f"{where}: offset {offset} is before onset {onset} (expected onset <= offset)",
                     file=str(path), row=rownum)
        return None
    meta: dict[str, Any] = {"source": str(path), "row": rownum, "emotion_raw": raw_label}
    if not has_apex:
        apex, reason = None, "no apex in this annotation"
    elif spans:
        apex, reason = apex_fallback(onset, values["apex"], offset)
    else:  # a list without onset/offset: the apex range is checked against the frames on disk
        apex, reason = apex_fallback(-(2**62), values["apex"], 2**62)
    if reason:
        meta["apex_fallback"] = reason
    if applied:
        meta["corrections"] = applied
    meta.update({f: cell_text(cells.get(f)) for f in spec.meta_fields if cell_text(cells.get(f))})
    files = {f: cell_text(v) for f, v in cells.items()
             if (f in FRAME_FILE_FIELDS or f.startswith("path_")) and cell_text(v)}
    if files:
        meta["frame_files"] = files
    if not spans:
        meta["list"] = "no onset/offset in the annotation: frames are the clip folder's first to last"
    if spec.extra:
        meta.update(spec.extra(cells))
    return {
        "dataset": spec.name, "subject": subject, "clip": clip, "onset": onset, "apex": apex, "offset": offset,
        "label": label, "aus": parse_aus(cells.get("aus")), "fps": float(fps) if fps is not None else row_fps(cells, spec.fps),
        "meta": meta,
    }


def row_fps(cells: dict[str, Any], default: float) -> float:
    """A per-row ``fps`` cell when present and numeric (MEVIEW), else ``default``."""
    try:
        return float(cell_text(cells.get("fps"))) if not is_blank(cells.get("fps")) else float(default)
    except ValueError:
        return float(default)
