"""The papers' numbers as data: spot values checked against the paper text, unique keys, clear errors."""

import pytest

from mernb.errors import MernbError
from mernb.report.paper import KEY, as_percent, ours_row, paper_numbers, paper_value


@pytest.mark.parametrize(
    ("paper", "table", "row", "metric", "dataset", "value"),
    [
        ("mpt", "Table I", "MPT (Ours)", "acc", "casme2", 87.85),
        ("mpt", "Table I", "FFDIN", "f1", "casme2", 83.09),
        ("mpt", "Table II", "LTR3O", "acc", "samm", 80.15),
        ("mpt", "Table III", "MPT (Ours)", "f1", "smic", 86.01),
        ("mpt", "Table IV", "M2MTNet", "f1", "samm", 76.40),
        ("mpt", "Table IV", "KD", "acc", "smic", 76.06),
        ("mpt", "Table V", "SLSTT", "gflops", None, 791.4),
        ("mpt", "Table V", "SRMCL", "params_m", None, 315.7),
        ("mpt", "Table VI", "w/o pretraining", "acc", None, 73.17),
        ("mpt", "Table VI", "w/o pretraining", "f1", None, 72.35),
        ("mpt", "Table VI", "w/o pretraining", "params_m", None, 86.4),
        ("mpt", "Table VI", "partial fine-tuning", "params_m", None, 0.003),
        ("mpt", "Table VII", "VPT-Deep", "params_m", None, 5.8),
        ("mpt", "Table VIII", "primitive adapter", "f1", None, 83.56),
        ("mpt", "Table IX", "CLIP-ViT-B/32", "acc", None, 83.54),
        ("mpt", "Table X", "alpha=50", "f1", None, 77.56),
        ("mpt", "Table XI", "reduction=4", "acc", None, 85.98),
        ("mpt", "§IV-A", "Disgust", "count", "casme2", 64),
        ("mpt", "§IV-A", "Negative", "count", "smic", 70),
        ("hlora", "Table 1", "Disgust", "count", "casme3", 281),
        ("hlora", "Table 2", "Negative", "count", "samm", 92),
        ("hlora", "Table 3", "HLoRA-MER", "f1", "casme2", 84.24),
        ("hlora", "Table 3", "HLoRA-MER", "f1", "samm", 83.07),
        ("hlora", "Table 3", "MiNet&MaNet", "acc", "samm", 76.70),
        ("hlora", "Table 4", "MER-Supcon", "f1", "casme2", 88.06),
        ("hlora", "Table 5", "HTNet", "uar", "casme3", 54.15),
        ("hlora", "Table 6", "HLoRA-MER", "acc", "meview", 83.87),
        ("hlora", "Table 7", "Khor et al.", "war", "samm->casme2", 57.8),
        ("hlora", "Table 7", "HLoRA-MER", "uar", "avg", 43.1),
        ("hlora", "Table 8", "Full Fine-Tuning", "params_m", None, 1100),
        ("hlora", "Table 9", "HLoRA-MER w/o IFFA", "f1", None, 76.82),
        ("ma2mi", "Table 1", "MAER", "uf1", "samm", 0.7214),
        ("ma2mi", "Table 2", "recon + FAE", "acc", "casme2", 85.54),
        ("ma2mi", "Table 3", "FERV39K", "acc", "casme2", 89.96),
        ("ma2mi", "Table 4", "w/o FPE", "acc", "mmew", 70.94),
        ("ma2mi", "Table 5", "MMNet", "uf1", "casme2", 0.8676),
    ],
)
def test_spot_values(paper, table, row, metric, dataset, value):
    assert paper_value(paper, table, row, metric, dataset) == pytest.approx(value)


def test_keys_unique_and_complete():
    df = paper_numbers()
    assert not df.duplicated(list(KEY)).any()
    assert df["value"].notna().all()
    tables = {(p, t) for p, t in df[["paper", "table"]].itertuples(index=False)}
    mpt = {"Table " + n for n in "I II III IV V VI VII VIII IX X XI".split()}
    assert mpt <= {t for p, t in tables if p == "mpt"}
    assert {f"Table {i}" for i in range(1, 10)} <= {t for p, t in tables if p == "hlora"}
    assert {f"Table {i}" for i in range(1, 6)} <= {t for p, t in tables if p == "ma2mi"}


def test_ours_rows_and_counts_consistent():
    assert ours_row("mpt", "Table VI") == "MPT (Ours)"
    assert ours_row("hlora", "Table 8") == "HLoRA"
    # every ours row in the MPT ablations is the same SMIC result
    ours = paper_numbers("mpt", ours=True, metric="acc", dataset="smic")
    assert set(ours["value"]) == {86.59}
    # HLoRA Table 1 class counts sum to the dataset sizes given in §4.1.1
    t1 = paper_numbers("hlora", "Table 1")
    assert t1.groupby("dataset")["value"].sum().to_dict() == {"casme2": 255, "samm": 159, "casme3": 943}
    casme2 = paper_numbers("mpt", "§IV-A", dataset="casme2", metric="count")
    assert casme2[~casme2.row.isin(["samples", "subjects"])]["value"].sum() == 247


def test_filters_and_percent():
    df = paper_numbers("ma2mi", "Table 1", dataset=["casme2", "samm"], metric="uf1")
    assert len(df) == 8 and set(df["unit"]) == {"ratio"}
    assert as_percent(df)["value"].max() == pytest.approx(88.82)


def test_clear_errors():
    with pytest.raises(MernbError, match="w/o pretraining"):
        paper_value("mpt", "Table VI", "w/o pretrain", "acc")
    with pytest.raises(MernbError, match="several datasets"):
        paper_value("hlora", "Table 3", "HLoRA-MER", "acc")
    with pytest.raises(MernbError, match="Table VI"):
        paper_value("mpt", "Table 6", "MPT (Ours)", "acc")
    with pytest.raises(MernbError, match="unknown paper"):
        paper_numbers("vit")
    with pytest.raises(MernbError, match="unknown column"):
        paper_numbers("mpt", method="x")
