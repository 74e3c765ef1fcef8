"""Checks over the built book (``_build/html``): what a reader sees must be clean and complete.

Skipped unless the HTML exists; ``MERNB_BOOK_HTML`` points at another build, and under CI
(``MERNB_REQUIRE_BOOK=1``, set by ``.ci/run`` after ``make book``) a missing build fails instead.
The pure checkers are tested on small hand-written pages first, so each check is known to fail.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("MERNB_BOOK_HTML", ROOT / "_build" / "html"))
REQUIRED = os.environ.get("MERNB_REQUIRE_BOOK") == "1"

RAW_REPRS = re.compile(r"Problem\(kind=|Sample\(dataset=| object at 0x[0-9a-f]+|<Figure size |<matplotlib\."
                       r"|\{'[A-Za-z_ ]+': "  # a printed dict
                       r"|\{admonition\}")  # MyST source shown as text (a cell's echoed return value)
ABS_PATHS = re.compile(r"(?<![\w.:/])/(?:work|root|home|tmp)/")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|<div class=\"[^\"]*\btraceback\b")
ANSI = re.compile(r"\x1b\[|\\u001b\[|\[0;3\dm|\[1;3\dm")


class _Page(HTMLParser):
    """Visible text, links (href/src) and element ids of one HTML page (scripts and styles skipped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.classes: set[str] = set()
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if attr.get("id"):
            self.ids.add(attr["id"] or "")
        self.classes.update((attr.get("class") or "").split())
        for key in ("href", "src"):
            if attr.get(key) and not (tag == "link" and key == "href" and attr.get("rel") == "preload"):
                self.links.append(attr[key] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def page_problems(html: str, *, synthetic: bool) -> list[str]:
    """What is wrong with one page as a reader sees it (empty list: clean)."""
    page = parse(html)
    text = " ".join(page.text)
    problems = []
    if synthetic and "mernb-smoke" not in page.classes:
        problems.append("no smoke note (admonition class mernb-smoke)")
    if synthetic and ("bd-header-announcement" not in page.classes or "SynthME smoke build" not in text):
        problems.append("no SynthME announcement banner")
    for name, pattern, where in (("raw repr", RAW_REPRS, text), ("absolute path", ABS_PATHS, html),
                                 ("traceback", TRACEBACK, html), ("ANSI code", ANSI, html)):
        hit = pattern.search(where)
        if hit:
            problems.append(f"{name}: …{where[max(0, hit.start() - 60):hit.end() + 60]}…")
    if re.search(r"<script[^>]+src=\"https?://[^\"]*mathjax", html, re.I):
        problems.append("loads MathJax from the network")
    return problems


class _Tables(HTMLParser):
    """The caption text of every pandas table (a Styler's ``<table id="T_…">`` or a raw DataFrame's
    ``<table class="dataframe">``) of one page, in order (``""``: no caption)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.captions: list[str] = []
        self._depth = 0  # <table> nesting inside a pandas table
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table":
            if self._depth:
                self._depth += 1
            elif (attr.get("id") or "").startswith("T_") or "dataframe" in (attr.get("class") or "").split():
                self._depth = 1
                self.captions.append("")
        elif tag == "caption" and self._depth == 1:
            self._in_caption = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._depth:
            self._depth -= 1
        elif tag == "caption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.captions[-1] += data


def table_caption_problems(html: str, *, synthetic: bool) -> list[str]:
    """Pandas tables of a notebook page without a caption naming them, or, on synthetic builds, whose
    caption does not say "SynthME smoke" (``style_table(df, caption=...)`` appends it)."""
    parser = _Tables()
    parser.feed(html)
    problems = []
    for k, caption in enumerate(parser.captions, start=1):
        caption = " ".join(caption.split())
        if not caption:
            problems.append(f"table {k} has no caption")
        elif synthetic and "SynthME smoke" not in caption:
            problems.append(f"table {k} caption lacks 'SynthME smoke': {caption!r}")
    return problems


def broken_links(path: Path, html: str, root: Path, ids_of: dict[Path, set[str]]) -> list[str]:
    """Internal links of ``path`` whose target file (or #anchor in it) does not exist."""
    broken = []
    for link in parse(html).links:
        parts = urlsplit(link)
        if parts.scheme or link.startswith(("//", "mailto:", "javascript:", "data:")):
            continue
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
        if parts.path and not target.exists():
            broken.append(link)
            continue
        if parts.fragment and target.suffix == ".html":
            if target not in ids_of:
                ids_of[target] = parse(target.read_text(errors="replace")).ids
            if unquote(parts.fragment) not in ids_of[target]:
                broken.append(link)
    return broken


def toc_files(toc: dict) -> list[str]:
    """Every ``file`` of a Jupyter Book ``_toc.yml`` (root first)."""
    found = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


# ------------------------------------------------------------------ the checkers on hand-written pages

CLEAN = ('<html><body><div class="bd-header-announcement">SynthME smoke build: synthetic</div>'
         '<div class="admonition warning mernb-smoke"><p>SynthME smoke</p></div>'
         '<a href="other.html#sec">x</a><img src="_images/a.png"><p id="top">runs/smoke/x.json</p>'
         '<a href="https://example.org/">ext</a></body></html>')


def test_checkers_accept_a_clean_page():
    assert page_problems(CLEAN, synthetic=True) == []


@pytest.mark.parametrize("bad, expected", [
    ("<p>reader: Problem(kind='apex_fallback', message='x')</p>", "raw repr"),
    ("<pre>{'model': 'mpt_test', 'epochs': 2}</pre>", "raw repr"),
    ("<pre>'````{admonition} Run\\n:class: note'</pre>", "raw repr"),
    ("<p>file='/work/main/runs/smoke/x.xlsx'</p>", "absolute path"),
    ("<p>see /home/user/data</p>", "absolute path"),
    ("<pre>Traceback (most recent call last):</pre>", "traceback"),
    ("<pre>\x1b[0;31mValueError</pre>", "ANSI code"),
    ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>', "MathJax"),
])
def test_checkers_catch_each_problem(bad, expected):
    problems = page_problems(CLEAN.replace("</body>", bad + "</body>"), synthetic=True)
    assert any(expected in p for p in problems), problems


def test_checkers_require_the_smoke_note_on_synthetic_builds_only():
    bare = "<html><body><p>numbers</p></body></html>"
    assert len(page_problems(bare, synthetic=True)) == 2
    assert page_problems(bare, synthetic=False) == []


STYLED = ('<table id="T_ab12"><caption>MPT Table I: comparison on CASME II (SynthME smoke)</caption>'
          '<thead><tr><th>Method</th></tr></thead><tbody><tr><td>MPT</td></tr></tbody></table>')


def test_table_captions_accepted_when_named_and_marked():
    page = CLEAN.replace("</body>", STYLED + '<table class="table"><tr><td>markdown table</td></tr></table></body>')
    assert table_caption_problems(page, synthetic=True) == []
    assert table_caption_problems(STYLED.replace(" (SynthME smoke)", ""), synthetic=False) == []


@pytest.mark.parametrize("bad, expected", [
    ('<table id="T_x"><thead><tr><th>a</th></tr></thead></table>', "table 2 has no caption"),  # style_table(df)
    ('<table border="1" class="dataframe"><tr><td>1</td></tr></table>', "table 2 has no caption"),  # display(df)
    ('<table id="T_y"><caption>MA2MI Fig. 4: Acc</caption></table>', "table 2 caption lacks 'SynthME smoke'"),
])
def test_table_captions_catch_each_problem(bad, expected):
    problems = table_caption_problems(STYLED + bad, synthetic=True)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_table_captions_on_style_tables_html(monkeypatch):
    """The checker reads what ``style_table`` writes: no caption before, "(SynthME smoke)" with one."""
    import pandas as pd

    from mernb.report.tables import style_table

    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")
    df = pd.DataFrame({"Acc (%)": [86.59]}, index=pd.Index(["MPT"], name="Method"))
    assert table_caption_problems(style_table(df).to_html(), synthetic=True) == ["table 1 has no caption"]
    assert table_caption_problems(style_table(df, caption="MPT Table I, casme2").to_html(), synthetic=True) == []
    assert table_caption_problems(df.to_html(), synthetic=True) == ["table 1 has no caption"]


def test_broken_links_found(tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "a.png").write_bytes(b"")
    (tmp_path / "other.html").write_text('<h1 id="sec">S</h1>')
    page = tmp_path / "index.html"
    page.write_text(CLEAN)
    assert broken_links(page, CLEAN, tmp_path, {}) == []
    bad = CLEAN + '<a href="missing.html">m</a><a href="other.html#nope">n</a><a href="#top">ok</a>'
    assert broken_links(page, bad, tmp_path, {}) == ["missing.html", "other.html#nope"]


def test_toc_files_lists_every_entry():
    toc = {"root": "book/intro", "parts": [{"caption": "A", "chapters": [
        {"file": "book/a", "sections": [{"file": "runs/book/notebooks/x/y"}]}]}]}
    assert toc_files(toc) == ["book/intro", "book/a", "runs/book/notebooks/x/y"]


# ----------------------------------------------------------------------------------- the built book

@pytest.fixture(scope="module")
def book() -> tuple[Path, dict]:
    if not (HTML / "index.html").is_file():
        if REQUIRED:
            pytest.fail(f"no built book at {HTML} (run `make book` first)")
        pytest.skip(f"no built book at {HTML}; run `make book` (or set MERNB_BOOK_HTML)")
    info_file = HTML / "mernb-build.json"
    if not info_file.is_file():
        pytest.fail(f"{info_file} missing: build the book with `mernb book PLAN`, not jupyter-book directly")
    return HTML, json.loads(info_file.read_text())


def _pages(html_root: Path) -> list[Path]:
    """The book's pages (not Sphinx's index/search pages, static files or the root redirect)."""
    skip = ("_static", "_sources", "_images", "_downloads", "_sphinx_design_static")
    pages = [p for p in sorted(html_root.rglob("*.html")) if p.relative_to(html_root).parts[0] not in skip
             and p.name not in ("genindex.html", "search.html")]
    return [p for p in pages if 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower()]


def test_every_toc_entry_is_built(book):
    html_root, _ = book
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    missing = [f for f in toc_files(toc) if not (html_root / f"{f}.html").is_file()]
    assert not missing, f"TOC entries without a page: {missing}"


def test_pages_are_clean(book):
    html_root, info = book
    synthetic = info.get("kind") == "synthetic"
    report = {}
    for page in _pages(html_root):
        problems = page_problems(page.read_text(errors="replace"), synthetic=synthetic)
        if problems:
            report[str(page.relative_to(html_root))] = problems[:3]
    assert not report, json.dumps(report, indent=1, ensure_ascii=False)


def test_notebook_tables_are_captioned(book):
    """Every pandas table on a notebook page has a caption; on synthetic builds it says "SynthME smoke"."""
    html_root, info = book
    synthetic = info.get("kind") == "synthetic"
    report = {}
    for page in _pages(html_root):
        if "notebooks" not in page.relative_to(html_root).parts:
            continue
        problems = table_caption_problems(page.read_text(errors="replace"), synthetic=synthetic)
        if problems:
            report[str(page.relative_to(html_root))] = problems[:3]
    assert not report, json.dumps(report, indent=1, ensure_ascii=False)


def test_no_broken_internal_links(book):
    html_root, _ = book
    ids_of: dict[Path, set[str]] = {}
    report = {}
    for page in _pages(html_root):
        broken = broken_links(page, page.read_text(errors="replace"), html_root, ids_of)
        if broken:
            report[str(page.relative_to(html_root))] = broken[:5]
    assert not report, json.dumps(report, indent=1)


def test_no_page_failed(book):
    _, info = book
    assert info.get("failed", []) == [], f"pages that failed in the run: {info['failed']}"
