"""mernb.report.deviations: one data file feeds every notebook's Deviations section and book/deviations.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mernb.errors import MernbError
from mernb.report.deviations import (
    book_page,
    deviations_markdown,
    load_deviations,
    main,
    page_deviations,
    paper_of,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/*/*.ipynb"))


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _source(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"])


def test_every_notebook_of_a_listed_paper_has_an_entry_and_renders_it():
    papers = load_deviations()
    checked = [nb for nb in NOTEBOOKS if nb.parent.name in papers]
    assert {nb.parent.name for nb in checked} >= {"mpt", "hlora", "data", "ma2mi"}
    for nb in checked:
        name = _name(nb)
        assert name in papers[nb.parent.name]["artifacts"], f"{name} missing from deviations.yaml artifacts"
        assert page_deviations(name), f"{name} has no deviation entry"
        assert "show_deviations(" in _source(nb), f"{name} does not render its Deviations from the data file"
        assert _source(nb).count("## Deviations") == 1, f"{name} keeps a hand-written Deviations list"


def test_listed_artifacts_exist_and_every_calling_notebook_is_listed():
    for paper in load_deviations().values():
        for page in paper["artifacts"]:
            assert (ROOT / "notebooks" / f"{page}.ipynb").exists(), f"stale artifact {page}"
    for nb in NOTEBOOKS:
        if "show_deviations(" in _source(nb):
            paper_of(_name(nb))  # raises when missing


def test_artifacts_follow_the_book_order():
    """Each paper's ``artifacts`` list its pages in the order of ``_toc.yml``."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for paper in load_deviations().values():
        pages = list(paper["artifacts"])
        positions = [toc.find(f"notebooks/{page}\n") for page in pages]
        assert -1 not in positions, [p for p, i in zip(pages, positions, strict=True) if i == -1]
        assert positions == sorted(positions), pages


def test_book_page_lists_every_entry_and_every_page():
    page = book_page()
    for paper in load_deviations().values():
        assert f"## {paper['title']}" in page
        for artifact, title in paper["artifacts"].items():
            assert f"### {title}" in page and f"/runs/book/notebooks/{artifact}>" in page
        for dev in paper["deviations"]:
            assert dev.markdown() in page, dev.title


def test_book_page_is_up_to_date():
    assert (ROOT / "book" / "deviations.md").read_text(encoding="utf-8") == book_page(), (
        "book/deviations.md is stale: python -m mernb.report.deviations --write book/deviations.md")


def test_page_order_and_rendering(tmp_path):
    f = tmp_path / "dev.yaml"
    f.write_text(
        "papers:\n"
        "  p:\n"
        "    title: Paper P\n"
        "    artifacts: {p/a: Table A, p/b: Table B, p/c: Table C}\n"
        "    groups: {ab: [p/a, p/b]}\n"
        "    deviations:\n"
        "      - {title: Everywhere, pages: all, text: On every page.}\n"
        "      - {title: Both, pages: ab, text: 'On A and B: x.'}\n"
        "      - {title: Epochs, pages: [p/a], text: fixed at 50.}\n"
        "      - {title: '', pages: [p/c], text: Untitled note.}\n",
        encoding="utf-8")
    assert deviations_markdown("p/a", f) == (
        "- **Epochs** fixed at 50.\n- **Both.** On A and B: x.\n- **Everywhere.** On every page.")
    assert deviations_markdown("notebooks/p/c.ipynb", f) == "- Untitled note.\n- **Everywhere.** On every page."
    page = book_page(f)
    assert page.index("### Every page") < page.index("### Several pages") < page.index("### Table A")
    assert "- **Both.** On A and B: x. *Pages: Table A, Table B.*" in page
    section_b = page[page.index("### Table B"):page.index("### Table C")]
    assert "*Also (see above):* Both." in section_b and "Epochs" not in section_b
    with pytest.raises(MernbError, match="no deviations entry"):
        deviations_markdown("p/zzz", f)


@pytest.mark.parametrize("pages", ["[p/x]", "nogroup", "[]"])
def test_bad_pages_are_rejected(tmp_path, pages):
    f = tmp_path / f"bad{abs(hash(pages))}.yaml"
    f.write_text("papers:\n  p:\n    artifacts: {p/a: A}\n    deviations:\n"
                 f"      - {{title: T, pages: {pages}, text: t}}\n", encoding="utf-8")
    with pytest.raises(MernbError, match="pages"):
        load_deviations(f)


def test_check_command(tmp_path, capsys):
    stale = tmp_path / "deviations.md"
    stale.write_text("old\n", encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0


def test_content_the_review_asked_for():
    """Issue 7: facts that must be on the rendered pages (each checked against its source in the text)."""
    table1 = deviations_markdown("mpt/table1_casme2")
    assert "**drops** the fear" in table1 and "regroup" not in table1.replace("not regrouped", "")
    assert "247" in table1 and "246" in table1 and "63 disgust" in table1
    assert "SRMCL" in deviations_markdown("mpt/fig4_confusion")
    fig9 = deviations_markdown("mpt/fig9_tsne")
    assert "per fold" in fig9
    fig6 = deviations_markdown("hlora/fig6_failure_cases")
    assert "EP18_06" in fig6 and "007_6_1" in fig6
    for page in ("mpt/table6_learning_strategies", "mpt/table7_prompt_types", "mpt/table8_adapters"):
        text = deviations_markdown(page)
        assert "#Tparas" in text and "never reach the head" in text
    assert "VPT-Deep prompt branches get no gradient" in deviations_markdown("mpt/table7_prompt_types")
    hl = deviations_markdown("hlora/table3_5class")
    for fact in ("first epoch only", "weight decay 1e-3", "strict=False", "own mean and maximum", "dlib"):
        assert fact in hl, fact
    assert "no weight decay" not in book_page()
    assert "Linear(1531, C)" in deviations_markdown("hlora/table9_hfm_ablation")


def test_ma2mi_pages_carry_the_model_and_recipe_readings():
    """The readings of mernb/models/ma2mi.py and mernb/experiments/ma2mi.py are on every MA2MI page."""
    for page in load_deviations()["ma2mi"]["artifacts"]:
        text = deviations_markdown(page)
        for fact in ("F = A + P", "P is detached", "L_dis (eq. 2)", "Hungarian", "L_eq (eq. 5)",
                     "no diffusion noise", "224×224", "[1, 4]", "γ = 0.96", "`pretrain_weight_decay`",
                     "one pair (I_t, I_{t+k}) per clip", "No epoch selection", "Smoke plan"):
            assert fact in text, (page, fact)
    table1 = deviations_markdown("ma2mi/table1_pretraining")
    assert "patch 8 times" in table1 and "**MAER**" in table1 and "`backbone_weights`" in table1
    assert "posterior mean" in deviations_markdown("ma2mi/fig6_reconstruction_gradcam")
    assert "patch 8 times" not in deviations_markdown("ma2mi/table4_fpe")
