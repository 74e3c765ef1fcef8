"""Protocol counts vs the papers' counts, with a reason for every difference (real annotation files)."""

from __future__ import annotations

from mernb.data.readers import read_dataset
from mernb.report.statistics import count_notes, counts_table, paper_counts
from tests.conftest import fixture_file


def test_casme2_counts_against_both_papers_with_reasons():
    samples = read_dataset("casme2", annotation=fixture_file("CASME2/CASME2-coding-20140508.xlsx"))
    table = counts_table(samples, "casme2_5class")
    assert table.loc["surprise", "ours"] == 25
    assert table.loc["surprise", "HLoRA-MER Table 1"] == 28
    assert table.loc["surprise", "Δ vs HLoRA-MER Table 1"] == -3
    assert "later revision" in table.loc["surprise", "why"]
    assert table.loc["disgust", "Δ vs MPT §IV-A"] == -1 and "247" in table.loc["disgust", "why"]
    assert table.loc["total", "ours"] == 246 and "sum" in table.loc["total", "why"]
    assert table.loc["happiness", "why"] == ""  # equal counts need no reason


def test_samm_counts_match_both_papers():
    samples = read_dataset("samm", annotation=fixture_file("SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"))
    table = counts_table(samples, "samm_5class")
    deltas = table[[c for c in table.columns if c.startswith("Δ")]]
    assert (deltas == 0).all().all()
    assert (table["why"] == "").all()


def test_synthetic_differences_are_attributed_to_synthme():
    samples = read_dataset("samm", annotation=fixture_file("SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"))[:40]
    table = counts_table(samples, "samm_5class", synthetic=True)
    assert table.loc["total", "ours"] < 136
    assert "SynthME" in table.loc["total", "why"]
    assert (table.drop(index="total")["why"] == "").all()  # said once, not on every class row


def test_paper_class_names_map_onto_protocol_classes():
    counts = paper_counts("casme3_7class")[("hlora", "Table 1")]
    assert counts["happy"] == 64 and counts["sad"] == 64 and counts["others"] == 170
    assert sum(counts.values()) == 943
    assert set(paper_counts("casme2_3class")[("hlora", "Table 2")]) == {"positive", "surprise", "negative"}
    assert {"protocol", "class", "paper", "table", "note"} <= set(count_notes().columns)
