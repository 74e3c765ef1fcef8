"""The three papers' printed numbers, as data (``paper_numbers.csv`` beside this file).

One row per printed number: ``paper`` (mpt | hlora | ma2mi), ``table`` as printed ("Table VI", "Table 3",
"Fig. 5", or a section such as "§IV-A" for dataset counts given in prose), ``row`` (method or setting
name, citation numbers dropped), ``dataset`` (casme2, samm, smic, casme3, meview, mmew, dfew, …; HDE
rows use "casme2->samm", "samm->casme2", "avg"), ``protocol`` (loso-5class, loso-3class, loso-7class,
hde-3class, 5fold-6class, or empty), ``metric`` (acc, f1, uf1, uar, war, params_m, gflops, count, fps),
``value`` (as printed; '-' cells are omitted), ``unit`` ("%", "ratio" for MA2MI's UF1 printed as
0.8882, "M", "GFLOPs", "count", "fps"), ``ours`` (the paper's proposed method in its final setting)
and ``note`` (year/venue, lost symbols, disagreements inside a paper).

Used by every paper notebook (``notebooks/{mpt,hlora,ma2mi}/*``) to put the paper's claim beside our
result, and by the book's reproduction summary.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

import pandas as pd

from mernb.errors import MernbError

CSV_PATH = Path(__file__).with_name("paper_numbers.csv")
KEY = ("paper", "table", "row", "dataset", "metric")
COLUMNS = ("paper", "table", "row", "dataset", "protocol", "metric", "value", "unit", "ours", "note")
PAPERS = ("mpt", "hlora", "ma2mi")


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    df = pd.read_csv(CSV_PATH, dtype=str, keep_default_na=False)
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise MernbError(f"{CSV_PATH} lacks columns {sorted(missing)}")
    df["value"] = df["value"].astype(float)
    df["ours"] = df["ours"].str.lower().map({"true": True, "false": False})
    if df["ours"].isna().any():
        raise MernbError(f"{CSV_PATH}: column 'ours' must be true/false")
    return df[list(COLUMNS)]


def paper_numbers(paper: str | None = None, table: str | None = None, **filters: object) -> pd.DataFrame:
    """The transcribed numbers, filtered by column equality (``dataset="samm"``, ``metric="acc"``, ``ours=True``).

    A filter value may be a list/tuple/set to accept several values. Returns a fresh copy, index reset.
    """
    if paper is not None and paper not in PAPERS:
        raise MernbError(f"unknown paper {paper!r}; choose one of {', '.join(PAPERS)}")
    df = _load()
    crit = {"paper": paper, "table": table, **filters}
    for col, want in crit.items():
        if want is None:
            continue
        if col not in df.columns:
            raise MernbError(f"paper_numbers: unknown column {col!r}; columns are {', '.join(COLUMNS)}")
        if isinstance(want, list | tuple | set | frozenset):
            df = df[df[col].isin(list(want))]
        else:
            df = df[df[col] == want]
    return df.reset_index(drop=True).copy()


def _close(word: str, options: list[str]) -> str:
    near = difflib.get_close_matches(word, options, n=5, cutoff=0.4) or sorted(options)[:12]
    return ", ".join(repr(o) for o in near)


def paper_value(paper: str, table: str, row: str, metric: str, dataset: str | None = None) -> float:
    """One printed number, e.g. ``paper_value("mpt", "Table VI", "w/o pretraining", "acc")`` → 73.17.

    ``dataset`` may be left out when the row has the metric for one dataset only. A missing key raises
    :class:`MernbError` naming the closest tables, rows, metrics or datasets that do exist.
    """
    df = paper_numbers(paper=paper)
    for col, want in (("table", table), ("row", row), ("metric", metric)):
        hit = df[df[col] == want]
        if hit.empty:
            where = f"{paper} {table}" if col != "table" else paper
            raise MernbError(
                f"no {col} {want!r} in {where}; close matches: {_close(want, df[col].unique().tolist())}"
            )
        df = hit
    if dataset is not None:
        hit = df[df["dataset"] == dataset]
        if hit.empty:
            raise MernbError(
                f"{paper} {table} {row!r} has no {metric} for dataset {dataset!r}; "
                f"it has: {', '.join(repr(d) for d in df['dataset'].unique())}"
            )
        df = hit
    if len(df) > 1:
        raise MernbError(
            f"{paper} {table} {row!r} {metric} exists for several datasets "
            f"({', '.join(repr(d) for d in df['dataset'])}); pass dataset="
        )
    return float(df["value"].iloc[0])


def ours_row(paper: str, table: str) -> str:
    """Name of the row marked ``ours`` in one table (e.g. "MPT (Ours)", "HLoRA-MER", "FPE + FAE")."""
    names = paper_numbers(paper=paper, table=table, ours=True)["row"].unique().tolist()
    if len(names) != 1:
        raise MernbError(f"{paper} {table}: expected one row marked ours, found {names}")
    return names[0]


def as_percent(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with ratio values (MA2MI's UF1 printed as 0.8882) turned into percent (88.82)."""
    out = df.copy()
    ratio = out["unit"] == "ratio"
    out.loc[ratio, "value"] = (out.loc[ratio, "value"] * 100.0).round(6)
    out.loc[ratio, "unit"] = "%"
    return out
