"""Sphinx extension for the book (listed in ``_config.yml``): smoke note, announcement, offline maths.

``mernb book PLAN`` writes ``runs/book/build.json`` (plan name and kind). From it this extension

- puts the smoke note as a warning admonition (class ``mernb-smoke``) under the title of every page and
  a site-wide announcement banner on synthetic builds, and appends "(SynthME smoke)" to figure captions;
- makes wide tables scroll inside the page column;
- renders LaTeX maths as MathML with docutils' converter, so pages need no MathJax from a CDN (compute
  nodes are offline; browsers render MathML natively).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes

from mernb.report.page import SMOKE_NOTE

BUILD_INFO = "runs/book/build.json"
ANNOUNCEMENT = ("SynthME smoke build: every number comes from synthetic clips and tiny CPU models. "
                "It tests the pipeline; it is not a reproduction of the papers.")


def build_info(srcdir: str | Path) -> dict[str, Any]:
    """The staged build's plan name and kind ({} when ``mernb book`` did not stage this tree)."""
    path = Path(srcdir) / BUILD_INFO
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _synthetic(app: Any) -> bool:
    return build_info(app.srcdir).get("kind") == "synthetic"


def _config_inited(app: Any, config: Any) -> None:
    if build_info(app.srcdir).get("kind") == "synthetic":
        options = dict(config.html_theme_options or {})
        options["announcement"] = ANNOUNCEMENT
        config.html_theme_options = options


# Wide tables scroll inside the page column instead of overflowing it; the page id column stays on one line.
CSS = """<style>
.cell_output table, .output table, .bd-article table.table { display: block; max-width: 100%; overflow-x: auto; }
.cell_output table caption { text-align: left; }
</style>"""


def _page_context(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    context["metatags"] = context.get("metatags", "") + CSS


def _smoke_admonition() -> nodes.Element:
    """SMOKE_NOTE (Markdown with **bold** runs) as a docutils warning admonition."""
    para = nodes.paragraph()
    for i, part in enumerate(SMOKE_NOTE.split("**")):
        if part:
            para += nodes.strong(text=part) if i % 2 else nodes.Text(part)
    return nodes.warning("", para, classes=["mernb-smoke"])


def _doctree_read(app: Any, doctree: nodes.document) -> None:
    if not _synthetic(app):
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None:
        title = next((i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), -1)
        section.insert(title + 1, _smoke_admonition())
    else:
        doctree.insert(0, _smoke_admonition())
    for caption in doctree.findall(nodes.caption):
        if "SynthME smoke" not in caption.astext():
            caption += nodes.Text(" (SynthME smoke)")


def _mathml(latex: str, block: bool) -> str:
    from docutils.utils.math import latex2mathml

    try:
        return latex2mathml.tex2mathml(latex, as_block=block)
    except Exception:  # an unsupported macro: show the source rather than failing the build
        from html import escape

        return f'<code class="math-source">{escape(latex)}</code>'


def _visit_math(self: Any, node: nodes.Element) -> None:
    self.body.append(f'<span class="math">{_mathml(node.astext(), False)}</span>')
    raise nodes.SkipNode


def _visit_displaymath(self: Any, node: nodes.Element) -> None:
    latex = node["latex"] if "latex" in node else node.astext()
    number = f'<span class="eqno">({node["number"]})</span>' if node.get("number") else ""
    self.body.append(f'<div class="math">{_mathml(latex, True)}{number}</div>')
    raise nodes.SkipNode


def setup(app: Any) -> dict[str, Any]:
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_displaymath, None))
    app.connect("config-inited", _config_inited)
    app.connect("doctree-read", _doctree_read)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
