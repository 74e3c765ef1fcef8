"""Deviations of every paper in one data file: each notebook's section and the book page come from it.

``deviations.yaml`` (beside this module) lists, per paper, its notebook pages (``artifacts``) and every
deviation or choice with the pages it applies to. A notebook ends with ``show_deviations(NOTEBOOK)``
(all ``notebooks/mpt/*``, ``notebooks/hlora/*`` and ``notebooks/ma2mi/*`` pages and
``notebooks/data/statistics``), and
``book/deviations.md`` is :func:`book_page`'s output, written by
``python -m mernb.report.deviations --write book/deviations.md`` (``--check`` fails when it is stale;
``tests/test_report_deviations.py`` checks it).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mernb.errors import MernbError

__all__ = ["Deviation", "DEVIATIONS_FILE", "load_deviations", "paper_of", "page_deviations",
           "deviations_markdown", "show_deviations", "book_page", "main"]

DEVIATIONS_FILE = Path(__file__).with_name("deviations.yaml")

_HEADER = """\
# Deviations and choices

<!-- Generated from mernb/report/deviations.yaml by `python -m mernb.report.deviations --write
book/deviations.md`; edit the YAML, not this page. -->

Where a paper is ambiguous, silent, or contradicted by its authors' public code, we pick the most
defensible reading and record it here. Every entry below also appears in the **Deviations** section
at the end of each page it applies to (both are generated from `mernb/report/deviations.yaml`).
Per paper: the entries of every page, the entries of several pages (with the pages named), then
each page's own entries.
"""


@dataclass(frozen=True)
class Deviation:
    """One deviation: a bold ``title``, a markdown ``text`` and the notebook ``pages`` it applies to."""

    title: str
    text: str
    pages: tuple[str, ...]
    everywhere: bool  # ``pages: all`` in the file

    def markdown(self) -> str:
        text = " ".join(self.text.split())
        if not self.title:
            return text
        if text[:1] in ("=", "(") or text[:1].islower():  # the title starts the sentence
            return f"**{self.title}** {text}"
        return f"**{self.title}.** {text}"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("papers"), dict):
        raise MernbError(f"{path}: expected a mapping with 'papers'")
    papers: dict[str, Any] = {}
    for name, paper in doc["papers"].items():
        artifacts = dict(paper.get("artifacts") or {})
        groups = {g: list(p) for g, p in (paper.get("groups") or {}).items()}
        items = []
        for i, entry in enumerate(paper.get("deviations") or []):
            where = f"{path}: papers.{name}.deviations[{i}]"
            if not entry.get("text"):
                raise MernbError(f"{where} has no text")
            pages = entry.get("pages")
            if pages == "all":
                resolved, everywhere = list(artifacts), True
            elif isinstance(pages, str) and pages in groups:
                resolved, everywhere = groups[pages], False
            elif isinstance(pages, list) and pages:
                resolved, everywhere = pages, False
            else:
                raise MernbError(f"{where}: pages must be 'all', a group name or a list, got {pages!r}")
            unknown = [p for p in resolved if p not in artifacts]
            if unknown:
                raise MernbError(f"{where} names pages not in papers.{name}.artifacts: {unknown}")
            items.append(Deviation(str(entry.get("title") or ""), str(entry["text"]), tuple(resolved), everywhere))
        papers[name] = {"title": paper.get("title", name), "artifacts": artifacts, "deviations": items}
    return papers


def load_deviations(path: str | Path | None = None) -> dict[str, Any]:
    """``{paper: {"title", "artifacts": {page: title}, "deviations": [Deviation]}}`` from the YAML file."""
    return _load(str(path or DEVIATIONS_FILE))


def paper_of(notebook: str, path: str | Path | None = None) -> str:
    """The paper whose ``artifacts`` list ``notebook`` (``"mpt/table6_learning_strategies"``)."""
    notebook = notebook.removesuffix(".ipynb").removeprefix("notebooks/")
    for name, paper in load_deviations(path).items():
        if notebook in paper["artifacts"]:
            return name
    raise MernbError(f"no deviations entry for notebook {notebook!r}: add it to {DEVIATIONS_FILE.name}")


def page_deviations(notebook: str, path: str | Path | None = None) -> list[Deviation]:
    """Deviations of one page: its own entries, then those shared with some pages, then the paper-wide ones."""
    notebook = notebook.removesuffix(".ipynb").removeprefix("notebooks/")
    items = [d for d in load_deviations(path)[paper_of(notebook, path)]["deviations"] if notebook in d.pages]
    return sorted(items, key=lambda d: (d.everywhere, len(d.pages) > 1))  # stable: file order within each kind


def deviations_markdown(notebook: str, path: str | Path | None = None) -> str:
    """The markdown bullet list a notebook shows under its "Deviations" heading."""
    return "\n".join(f"- {d.markdown()}" for d in page_deviations(notebook, path))


def show_deviations(notebook: str, path: str | Path | None = None) -> None:
    """Display a notebook's Deviations (used by the last cell of every MPT/HLoRA/MA2MI/data notebook)."""
    from IPython.display import Markdown, display

    display(Markdown(deviations_markdown(notebook, path)))


def book_page(path: str | Path | None = None) -> str:
    """``book/deviations.md``: per paper the entries of every page, of several pages, then each page's own."""
    out = [_HEADER]
    for paper in load_deviations(path).values():
        titles = paper["artifacts"]
        out.append(f"## {paper['title']}\n")
        common = [d for d in paper["deviations"] if d.everywhere]
        shared = [d for d in paper["deviations"] if not d.everywhere and len(d.pages) > 1]
        if common:
            out.append("### Every page\n")
            out += [f"- {d.markdown()}" for d in common]
            out.append("")
        if shared:
            out.append("### Several pages\n")
            out += [f"- {d.markdown()} *Pages: {', '.join(titles[p] for p in d.pages)}.*" for d in shared]
            out.append("")
        for page, title in titles.items():
            own = [d for d in paper["deviations"] if not d.everywhere and len(d.pages) == 1 and page in d.pages]
            also = [d.title or "(untitled)" for d in shared if page in d.pages]
            out.append(f"### {title}\n")
            out.append(f"Page: {{doc}}`{title} </runs/book/notebooks/{page}>` (`notebooks/{page}.ipynb`).\n")
            out += [f"- {d.markdown()}" for d in own]
            if also:
                out.append(f"- *Also (see above):* {'; '.join(also)}.")
            if not own and not also:
                out.append("- Only the entries of every page.")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m mernb.report.deviations [--write PAGE | --check PAGE]``: print, write or check the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PAGE", help="write the book page (book/deviations.md)")
    group.add_argument("--check", metavar="PAGE", help="exit 1 if PAGE differs from the generated page")
    args = parser.parse_args(argv)
    page = book_page()
    if args.write:
        Path(args.write).write_text(page, encoding="utf-8")
    elif args.check:
        current = Path(args.check).read_text(encoding="utf-8") if Path(args.check).exists() else ""
        if current != page:
            print(f"{args.check} is stale: run python -m mernb.report.deviations --write {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
