"""Byte-reproducible .xlsx writing for SynthME annotation files (fixed timestamps, cached formula values).

openpyxl stamps the save time into ``docProps/core.xml`` and the zip entries, and cannot store a
formula's cached value; this module rewrites the saved archive so the same rows give the same bytes
and formulas such as SAMM's ``Duration`` (``=SUM(F15-D15)+1``) carry their value like Excel's files.
Used by :mod:`mernb.data.synth.layouts`.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import openpyxl

FIXED_TIME = "2014-05-08T00:00:00Z"


def write_xlsx(
    path: Path,
    sheets: Sequence[tuple[str, Sequence[Sequence[object]]]],
    cached: dict[tuple[int, str], object] | None = None,
) -> Path:
    """Write ``[(sheet_name, rows), ...]`` (cells as given: str stays text, int stays number, a str
    starting with ``=`` is a formula). ``cached[(sheet_index, "G15")]`` is a formula's stored value."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets:
        ws = wb.create_sheet(name)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    ws.cell(row=r, column=c, value=value)
    buffer = io.BytesIO()
    wb.save(buffer)
    by_sheet: dict[int, dict[str, object]] = {}
    for (sheet, ref), value in (cached or {}).items():
        by_sheet.setdefault(sheet, {})[ref] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist()):
            data = src.read(name)
            if name == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", FIXED_TIME.encode(), data)
            match = re.fullmatch(r"xl/worksheets/sheet(\d+)\.xml", name)
            if match and int(match.group(1)) - 1 in by_sheet:
                values = by_sheet[int(match.group(1)) - 1]

                def fill(m: re.Match[bytes], values: dict[str, object] = values) -> bytes:
                    ref = m.group(1).decode()
                    if ref not in values:
                        return m.group(0)
                    return m.group(0)[: -len(m.group(3))] + f"<v>{values[ref]}</v></c>".encode()

                data = re.sub(rb'<c r="([A-Z]+\d+)"[^>]*><f>([^<]*)</f>(<v ?/></c>|<v></v></c>)', fill, data)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, data)
    return path
