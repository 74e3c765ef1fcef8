"""Paper-vs-ours tables for the book: the paper's printed number, ours, and the difference.

Used by every paper notebook (results cell) and by ``book/`` reproduction summary; ``counts_vs_paper``
by ``notebooks/data/*`` (class counts per dataset against the papers' dataset tables).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from mernb.errors import MernbError

MISSING = "–"
METRIC_LABELS = {"acc": "Acc (%)", "f1": "F1 (%)", "uf1": "UF1 (%)", "uar": "UAR (%)", "war": "WAR (%)",
                 "params_m": "#Params (M)", "gflops": "GFLOPs"}
UNSCALED = frozenset({"params_m", "gflops", "count", "fps"})
PARTS = ("paper", "this build", "Δ")  # "(paper)" vs "(this build)", never the ambiguous "Ours"
MetricSpec = str | tuple[str, str]


def _paper_frame(paper_rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(paper_rows)) if not isinstance(paper_rows, pd.DataFrame) else paper_rows.copy()
    missing = {"row", "metric", "value"} - set(df.columns)
    if missing:
        raise MernbError(f"paper rows need columns row, metric, value (missing {sorted(missing)}); "
                         "pass mernb.report.paper.paper_numbers(...) filtered to one dataset")
    if "dataset" in df.columns and df["dataset"].nunique() > 1:
        raise MernbError(f"paper rows cover several datasets ({', '.join(df['dataset'].unique())}); "
                         "filter to one dataset, e.g. paper_numbers(..., dataset='casme2')")
    if "unit" in df.columns:  # MA2MI prints UF1 as a ratio (0.8882)
        ratio = df["unit"] == "ratio"
        df.loc[ratio, "value"] = df.loc[ratio, "value"].astype(float) * 100.0
    df["value"] = df["value"].astype(float)
    dup = df.duplicated(["row", "metric"])
    if dup.any():
        raise MernbError(f"paper rows repeat (row, metric): {df.loc[dup, ['row', 'metric']].values.tolist()}")
    return df


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise MernbError(f"not a number: {value!r}") from exc


def _scale_for(scale: float | Mapping[str, float], metric: str) -> float:
    if isinstance(scale, Mapping):
        return float(scale.get(metric, 1.0 if metric in UNSCALED else 100.0))
    return 1.0 if metric in UNSCALED else float(scale)


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return MISSING
    spec = ".2f" if value == 0 or abs(value) >= 0.1 else ".2g"  # 0.003 M params stays visible
    if signed:
        text = format(value, "+" + spec)
        return text.replace("-", "−") if value < 0 else text
    return format(value, spec)


def paper_vs_ours(
    paper_rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    ours: Mapping[str, Mapping[str, Any]],
    metrics: Iterable[MetricSpec] = ("acc", "f1"),
    *,
    scale: float | Mapping[str, float] = 100.0,
    formatted: bool = True,
    delta: bool | None = None,
) -> pd.DataFrame:
    """One row per method/setting; per metric the columns "paper", "this build" and Δ (this build − paper).

    ``paper_rows``: long-format numbers of one dataset (``paper_numbers(...)`` output, or records with
    row/metric/value[/unit]); ratio units are turned into percent. ``ours``: ``{row: {metric: value}}``
    with values as fractions (``scale=100`` turns 0.8659 into 86.59; use ``scale=1`` for percent; a dict
    sets it per ours-metric; params_m/gflops/count/fps are never scaled unless the dict says so). A metric
    may be a pair ``(paper_metric, ours_metric)``, e.g. ``("f1", "uf1")`` to set our UF1 beside the
    paper's F1. Rows keep the paper's order; ours-only rows come last. ``formatted=True`` gives strings
    with two decimals and "–" for missing values, ``False`` floats with NaN. ``delta``: show the Δ
    columns; ``None`` shows them only on real-data builds (a smoke build's difference to the paper means
    nothing), see :func:`mernb.report.page.current_kind`. A row of ``ours`` that ran several seeds
    (``n_seeds`` > 1, with ``<metric>_std``: :func:`mernb.experiments.common.metrics_over_seeds`) shows
    "mean ± std"; its Δ is taken on the mean.
    """
    if delta is None:
        from mernb.report.page import current_kind

        delta = current_kind() != "synthetic"
    parts = PARTS if delta else PARTS[:2]
    df = _paper_frame(paper_rows)
    specs = [(m, m) if isinstance(m, str) else (m[0], m[1]) for m in metrics]
    if not specs:
        raise MernbError("paper_vs_ours: give at least one metric")
    rows = list(dict.fromkeys(df["row"].tolist()))
    rows += [r for r in ours if r not in rows]
    lookup = {(r, m): v for r, m, v in df[["row", "metric", "value"]].itertuples(index=False)}
    columns = pd.MultiIndex.from_tuples(
        [(METRIC_LABELS.get(pm, pm), part) for pm, _ in specs for part in parts], names=["metric", ""]
    )
    data, spread = [], {}
    for row in rows:
        line: list[float] = []
        for pm, om in specs:
            paper = lookup.get((row, pm), math.nan)
            mine = _num(ours.get(row, {}).get(om)) * _scale_for(scale, om)
            line += [paper, mine, round(mine - paper, 6)][:len(parts)]
            std = ours.get(row, {}).get(f"{om}_std")
            if std is not None and int(ours.get(row, {}).get("n_seeds", 1)) > 1:  # mean ± std over seeds
                spread[(row, METRIC_LABELS.get(pm, pm))] = _num(std) * _scale_for(scale, om)
        data.append(line)
    out = pd.DataFrame(data, index=pd.Index(rows, name="Method"), columns=columns)
    if not formatted:
        return out

    def cell(row: str, col: tuple[str, str], value: float) -> str:
        text = _fmt(value, signed=col[1] == "Δ")
        if col[1] == PARTS[1] and (row, col[0]) in spread and not math.isnan(value):
            text += f" ± {spread[(row, col[0])]:.2f}"
        return text

    return pd.DataFrame(
        {col: [cell(row, col, v) for row, v in zip(out.index, out[col], strict=True)] for col in out.columns},
        index=out.index,
    ).set_axis(columns, axis=1)


def counts_vs_paper(ours_counts: Mapping[str, int], paper_counts: Mapping[str, int], *,
                    total: bool = True) -> pd.DataFrame:
    """Class counts (ours from the dataset reader vs the paper's table), with Δ = ours − paper.

    Classes keep the paper's order, then ours-only classes; absent counts are <NA>. A "Total" row
    sums each column over the classes it has.
    """
    classes = list(dict.fromkeys([*paper_counts, *ours_counts]))
    paper = pd.array([paper_counts.get(c) for c in classes], dtype="Int64")
    mine = pd.array([ours_counts.get(c) for c in classes], dtype="Int64")
    out = pd.DataFrame({"Paper": paper, "Ours": mine}, index=pd.Index(classes, name="Class"))
    if total:
        out.loc["Total"] = [out["Paper"].sum(min_count=1), out["Ours"].sum(min_count=1)]
        out = out.astype("Int64")
    out["Δ"] = out["Ours"] - out["Paper"]
    return out


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader sees it: dataset keys written as names (``casme2`` → CASME II) in the index,
    the columns and text cells; a named index becomes the first column, so no pandas header artefacts
    (a ``metric`` corner or an empty ``Method`` row) remain."""
    from mernb.report.page import display_names

    out = df.copy()
    out.index = out.index.map(display_names) if not isinstance(out.index, pd.MultiIndex) else out.index
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = pd.MultiIndex.from_tuples([tuple(display_names(v) for v in col) for col in out.columns])
    else:
        out.columns = [display_names(c) for c in out.columns]
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(display_names)
    if any(out.index.names) and not isinstance(out.index, pd.RangeIndex):
        out = out.reset_index()  # with MultiIndex columns the label sits in the top level ("Method", "")
    return out


def style_table(df: pd.DataFrame, *, caption: str | None = None, hide_index: bool | None = None,
                highlight: str | None = None, precision: int = 2) -> Styler:
    """Clean HTML for the book: "–" for missing, ``precision`` decimals, dataset names, no header artefacts.

    A named index (e.g. "Method") becomes the first column; an unnamed 0..n-1 index is hidden. ``highlight``
    bolds the row with that index label (e.g. "MPT (Ours)"). On synthetic builds the caption says
    "SynthME smoke". Glue the returned Styler with :func:`mernb.report.glue.glue_table`.
    """
    from mernb.report.page import display_names, smoke_caption

    if highlight is not None and highlight not in df.index:
        raise MernbError(f"style_table: no row {highlight!r} to highlight; rows: {list(df.index)}")
    named = any(df.index.names) and not isinstance(df.index, pd.RangeIndex)
    position = list(df.index).index(highlight) if highlight is not None else None
    shown = display_table(df)
    styler = shown.style.format(na_rep=MISSING, precision=precision)
    if hide_index is None:
        hide_index = named or isinstance(df.index, pd.RangeIndex)
    if hide_index:
        styler = styler.hide(axis="index")
    styler = styler.hide(axis="columns", names=True) if isinstance(shown.columns, pd.MultiIndex) or \
        shown.columns.name else styler
    caption = smoke_caption(display_names(caption))
    if caption:
        styler = styler.set_caption(caption)
    rules = [
        {"selector": "th", "props": "text-align: center; padding: 0.25em 0.6em;"},
        {"selector": "td", "props": "text-align: right; padding: 0.25em 0.6em;"},
        {"selector": "caption", "props": "caption-side: top; font-weight: bold;"},
    ]
    if named:  # the former index (method, class) reads left-aligned
        rules.append({"selector": "td:first-child", "props": "text-align: left;"})
    styler = styler.set_table_styles(rules)
    if position is not None:
        styler = styler.set_properties(subset=pd.IndexSlice[[shown.index[position]], :], **{"font-weight": "bold"})
    return styler
