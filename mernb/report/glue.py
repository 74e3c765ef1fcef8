"""Thin wrappers over ``myst_nb.glue`` for numbers, tables and figures (``display=False`` by default).

Key naming (stable across runs and plans, unique within a notebook): lower case, ``_`` separated,
``<paper>_<artifact>_<dataset>_<metric>[_<who>]`` where artifact is the table/figure as numbered in the
paper and who is ``ours`` / ``paper`` / ``delta``, e.g. ``mpt_table6_smic_acc_ours``,
``hlora_table3_casme2_f1_paper``, ``ma2mi_table1_table`` (a whole table), ``hlora_fig4_pca`` (a figure).
Build them with :func:`glue_key`. Book pages paste them with ``{glue:text}`key` ``,
``{glue:}`key` `` or ``{glue:figure} key`` with a ``:name:`` label (pages refer to the label).
Used by every paper notebook.
"""

from __future__ import annotations

import io
import re
import unicodedata
from typing import Any

from mernb.errors import MernbError

_KEY = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


def glue_key(*parts: Any) -> str:
    """Join parts into a valid key: ``glue_key("mpt", "Table VI", "smic", "acc", "ours")`` → ``mpt_table_vi_smic_acc_ours``."""
    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    # symbols by name (MA2MI and MA2MI† must not share a key): "†" → "dagger"; ASCII punctuation → "_"
    text = "".join(f"_{unicodedata.name(ch, '').lower()}_" if ord(ch) > 127 and not ch.isalnum() else ch
                   for ch in text)
    key = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not key:
        raise MernbError(f"glue_key: no usable characters in {parts!r}")
    return key


def _check(key: str) -> str:
    if not _KEY.match(key):
        raise MernbError(f"glue key {key!r} must be lower case letters/digits joined by '_' (see glue_key)")
    return key


class GluedNumber(float):
    """A float whose text form is already formatted, so ``{glue:}`key` `` shows e.g. ``86.59``."""

    fmt: str

    def __new__(cls, value: float, fmt: str = "{:.2f}") -> GluedNumber:
        obj = super().__new__(cls, value)
        obj.fmt = fmt
        return obj

    def __repr__(self) -> str:
        value = float(self)
        return self.fmt.format(value) if "{" in self.fmt else format(value, self.fmt)

    __str__ = __repr__


def glue_number(key: str, value: float, fmt: str = "{:.2f}", *, display: bool = False) -> None:
    """Glue a number shown with ``fmt`` (``"{:.2f}"`` or ``".1f"``); ``{glue:text}`key:.1f` `` still works.

    The glue helpers return None, so a glue call as a cell's last line shows nothing twice.
    """
    number = GluedNumber(float(value), fmt)
    repr(number)  # fail here on a bad format, not in the book build
    _glue(_check(key), number, display)


class GluedTable:
    """A table glued with its data: the HTML a page shows plus, in the output's metadata, the table as CSV
    (``{"mernb": {"csv": ...}}``), which ``mernb book`` turns into a download on the status page."""

    def __init__(self, table: Any, data: Any = None) -> None:
        self.table = table
        self.data = data

    def frame(self) -> Any:
        """The data behind the table (the DataFrame glued, or the Styler's data)."""
        if self.data is not None:
            return self.data
        return self.table.data if hasattr(self.table, "data") and hasattr(self.table, "to_html") else self.table

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        html = self.table.to_html() if hasattr(self.table, "data") else self.table._repr_html_()
        frame = self.frame()
        csv = ""
        if hasattr(frame, "to_csv"):
            from pandas import RangeIndex

            csv = frame.to_csv(index=not isinstance(frame.index, RangeIndex))
        return {"text/html": html, "text/plain": str(frame)}, {"mernb": {"csv": csv}}


def glue_table(key: str, table: Any, *, display: bool = False) -> None:
    """Glue a DataFrame or pandas Styler (e.g. from :func:`mernb.report.tables.style_table`).

    Plain DataFrames are glued as :func:`mernb.report.tables.style_table` shows them (dataset names, no
    header artefacts); the table's data travel along as CSV for the status page's downloads.
    """
    data = None
    if hasattr(table, "to_csv") and not hasattr(table, "data"):
        from mernb.report.tables import style_table

        data, table = table, style_table(table)
    _glue(_check(key), GluedTable(table, data), display)


class FigureImage:
    """A matplotlib Figure rendered to PNG, whatever the notebook's backend (``_repr_png_`` for IPython)."""

    def __init__(self, fig: Any, dpi: int = 150) -> None:
        self.fig = fig
        self.dpi = dpi

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()

    def __repr__(self) -> str:
        width, height = self.fig.get_size_inches()
        return f"<Figure {width:.1f}x{height:.1f} in>"


def figure_texts(fig: Any) -> list[str]:
    """The figure's title texts: its suptitle and every axes title (left, centre, right)."""
    sup = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    return [sup] + [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]


def mark_smoke(fig: Any) -> Any:
    """On synthetic builds, a figure none of whose titles says "SynthME smoke" gets it: appended to its
    suptitle (:func:`mernb.report.page.smoke_caption`), or as its suptitle. Returns ``fig``."""
    from mernb.report.page import current_kind, smoke_caption

    if current_kind() == "synthetic" and not any("SynthME smoke" in t for t in figure_texts(fig)):
        sup = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
        fig.suptitle(smoke_caption(sup) if sup else "SynthME smoke", fontsize=11)
    return fig


def glue_figure(key: str, fig: Any, *, display: bool = False, dpi: int = 150) -> None:
    """Glue a matplotlib Figure as PNG; place it with ``{glue:figure} key`` and a ``:name:`` label.

    The figure is rendered here, so it works for the bare ``Figure`` objects of
    :mod:`mernb.report.figures` without pyplot or the inline backend. On synthetic builds it says
    "SynthME smoke" in a title (:func:`mark_smoke`).
    """
    _glue(_check(key), FigureImage(mark_smoke(fig), dpi), display)


def _glue(key: str, obj: Any, display: bool) -> None:
    from myst_nb import glue

    glue(key, obj, display=display)
