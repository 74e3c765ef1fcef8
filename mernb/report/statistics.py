"""Class counts per protocol, from the readers, beside the papers' own counts (data/statistics notebook).

``protocol_counts`` counts what the readers give; ``counts_table`` sets them beside every paper table that
prints counts for that protocol (HLoRA Tables 1–2, MPT §IV-A) and explains each difference: from the
notes table ``count_notes.csv`` (known differences between the releases' files and the papers), or, for
synthetic data, because SynthME renders only a subset of rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import pandas as pd

from mernb.data.protocols import protocol as get_protocol
from mernb.data.records import Sample
from mernb.report.paper import paper_numbers

NOTES_FILE = Path(__file__).with_name("count_notes.csv")

# protocol → the paper tables that print its class counts: (paper, table, dataset)
PAPER_COUNT_TABLES: dict[str, list[tuple[str, str, str]]] = {
    "casme2_5class": [("hlora", "Table 1", "casme2"), ("mpt", "§IV-A", "casme2")],
    "samm_5class": [("hlora", "Table 1", "samm"), ("mpt", "§IV-A", "samm")],
    "smic_3class": [("mpt", "§IV-A", "smic")],
    "casme2_3class": [("hlora", "Table 2", "casme2")],
    "samm_3class": [("hlora", "Table 2", "samm")],
    "casme3_7class": [("hlora", "Table 1", "casme3")],
    "meview_3class": [("hlora", "Table 2", "meview")],
}
# paper class names → protocol class names where they differ
CLASS_ALIASES = {"happiness": ("happy", "positive"), "sadness": ("sad",), "other": ("others",)}
PAPER_LABELS = {"hlora": "HLoRA-MER", "mpt": "MPT"}


@lru_cache(maxsize=1)
def count_notes() -> pd.DataFrame:
    """The known differences between the releases' files and the papers' counts (one reason per row)."""
    return pd.read_csv(NOTES_FILE, dtype=str).fillna("")


def protocol_counts(samples: Iterable[Sample], protocol_name: str) -> dict[str, int]:
    """Per-class counts of ``protocol_name`` on ``samples`` (every class, zeros included)."""
    proto = get_protocol(protocol_name)
    return dict(proto.class_counts(proto.select(list(samples))))


def paper_counts(protocol_name: str) -> dict[tuple[str, str], dict[str, int]]:
    """{(paper, table): {protocol class: count}} for the paper tables that print this protocol's counts."""
    classes = get_protocol(protocol_name).classes
    found: dict[tuple[str, str], dict[str, int]] = {}
    for paper, table, dataset in PAPER_COUNT_TABLES.get(protocol_name, []):
        rows = paper_numbers(paper, table, dataset=dataset, metric="count")
        counts: dict[str, int] = {}
        for name, value in zip(rows["row"], rows["value"], strict=True):
            key = str(name).lower()
            candidates = (key, *CLASS_ALIASES.get(key, ()))
            match = next((c for c in candidates if c in classes), None)
            if match is not None:
                counts[match] = int(value)
        if counts:
            found[(paper, table)] = counts
    return found


def _note(protocol_name: str, cls: str, paper: str, table: str) -> str:
    notes = count_notes()
    hit = notes[(notes["protocol"] == protocol_name) & (notes["paper"] == paper) & (notes["table"] == table)
                & notes["class"].isin([cls, "*"])]
    return hit["note"].iloc[0] if len(hit) else ""


def counts_table(samples: Iterable[Sample], protocol_name: str, *, synthetic: bool = False) -> pd.DataFrame:
    """Ours vs each paper's counts per class, with the difference and why (one row per class + total).

    On synthetic data the reason is given once, on the total row (SynthME renders a subset of the rows).
    """
    ours = protocol_counts(samples, protocol_name)
    papers = paper_counts(protocol_name)
    rows = []
    for cls in [*ours, "total"]:
        row: dict[str, object] = {"class": cls, "ours": sum(ours.values()) if cls == "total" else ours[cls]}
        reasons = []
        for (paper, table), counts in papers.items():
            label = f"{PAPER_LABELS[paper]} {table}"
            value = sum(counts.values()) if cls == "total" else counts.get(cls)
            row[label] = value
            delta = None if value is None else int(row["ours"]) - int(value)
            row[f"Δ vs {label}"] = delta
            if delta:
                if synthetic:  # said once, on the total row: every class differs for this one reason
                    if cls == "total":
                        reasons.append("SynthME renders only a subset of the release's rows (smoke plan), "
                                       "so every class differs")
                elif cls == "total":
                    reasons.append("the sum of the class differences above")
                else:
                    reasons.append(_note(protocol_name, cls, paper, table)
                                   or "no known reason: check your annotation file version with `mernb data check`")
        row["why"] = " ".join(dict.fromkeys(r for r in reasons if r))
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("class")
    for column in frame.columns:
        if column.startswith(("Δ", "HLoRA", "MPT")) or column == "ours":
            frame[column] = frame[column].astype("Int64")
    return frame
