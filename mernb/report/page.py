"""Page helpers for the book: the run admonition, the smoke note, warnings as a short list, display names.

Every notebook page shows, near its top, one compact *run* admonition (plan, group, model, seeds, device,
commit, time) instead of a printed dict, and the reader warnings as a short list instead of ``Problem(...)``
reprs. ``mernb book`` (:func:`mernb.plan.stage_book`) uses the same functions for pages that do not call
them yet, and :func:`sanitize_text` to keep build paths and terminal codes out of the HTML.

- :func:`run_admonition`: every paper notebook (setup cell), replacing ``print(run_info(...))``.
- :func:`warnings_list`: every notebook that loads data (after ``recipe.load_data``); :func:`data_summary`
  replaces ``print(data.summary())`` (one sentence plus the warnings list).
- :func:`smoke_note`: the smoke note text (the book's Sphinx extension puts it at the top of every page).
- :func:`dataset_name`, :func:`display_names`: "CASME II" for ``casme2`` in tables, captions, titles.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

DATASET_NAMES: dict[str, str] = {
    "casme2": "CASME II", "samm": "SAMM", "smic": "SMIC-HS", "smic_e": "SMIC-E-HS", "casme3": "CAS(ME)³",
    "mmew": "MMEW", "meview": "MEVIEW", "megc2019": "MEGC 2019 composite", "composite": "MEGC 2019 composite",
    "dfew": "DFEW", "ferv39k": "FERV39k", "afew": "AFEW",
}
_NAME_RE = re.compile(r"(?<![A-Za-z0-9_/.-])(" + "|".join(sorted(DATASET_NAMES, key=len, reverse=True))
                      + r")(?![A-Za-z0-9_/.-])")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ABS_PATH_RE = re.compile(r"(?<![\w.:])(/(?:work|root|home|tmp|scratch|mnt|data|private|var|Users)/[^\s'\",;:)\]}]*)")
_PROBLEM_RE = re.compile(r"Problem\(kind='(?P<kind>[^']*)', message=(?P<q>['\"])(?P<message>.*?)(?P=q)(?:,[^\n]*)?\)")
_FLAT_DICT_RE = re.compile(r"\{(?:'[^'{}]+': [^,{}]+(?:, )?)+\}")
_REPO = Path(__file__).resolve().parents[2]

SMOKE_NOTE = ("**SynthME smoke build.** The results in this book come from tiny models trained for a few "
              "epochs on SynthME synthetic clips on the CPU. They show that the pipeline runs end to end; they are "
              "**not** a reproduction of the papers, whose numbers are shown beside them for layout only.")
REAL_NOTE = ("**Real-data build.** The numbers of this build come from the licensed datasets with the paper's "
             "settings; see each page's Deviations section for what differs from the paper.")


@lru_cache(maxsize=8)
def _plan_kind(name: str) -> str | None:
    import yaml

    for path in sorted((_REPO / "plans").glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict) and raw.get("name") == name:
            return raw.get("kind")
    return None


def current_kind() -> str | None:
    """The kind of build this kernel runs for: ``synthetic``, ``reproduction``, or None (interactive).

    ``MERNB_PLAN_KIND`` when set, else the kind of the plan ``mernb run`` names in ``MERNB_PLAN``. Tables
    and captions use it: no Δ to the paper and a "SynthME smoke" caption on synthetic builds.
    """
    kind = os.environ.get("MERNB_PLAN_KIND")
    if kind:
        return kind
    name = os.environ.get("MERNB_PLAN")
    return _plan_kind(name) if name else None


def smoke_caption(caption: str | None) -> str | None:
    """``caption`` with "(SynthME smoke)" appended on synthetic builds (unchanged otherwise)."""
    if caption and current_kind() == "synthetic" and "SynthME smoke" not in caption:
        return f"{caption} (SynthME smoke)"
    return caption


def dataset_name(key: str) -> str:
    """The dataset's published name: ``casme2`` → ``CASME II`` (unknown keys unchanged)."""
    return DATASET_NAMES.get(str(key), str(key))


def display_names(text: Any) -> Any:
    """Replace dataset keys standing as whole words in ``text`` by their names (non-strings unchanged).

    ``"HLoRA-MER, casme2 (hlora_test)"`` → ``"HLoRA-MER, CASME II (hlora_test)"``; file names and paths
    (``casme2/sub01``, ``casme2_5class``) are left alone.
    """
    if not isinstance(text, str):
        return text
    return _NAME_RE.sub(lambda m: DATASET_NAMES[m.group(1)], text)


def smoke_note(kind: str = "synthetic") -> str:
    """The one-paragraph note on what a build's numbers mean (``synthetic`` or ``reproduction``)."""
    return SMOKE_NOTE if kind == "synthetic" else REAL_NOTE


def sanitize_text(text: str, root: str | os.PathLike[str] | None = None) -> str:
    """Text fit for a reader: no terminal colour codes, no absolute build paths (made relative to the
    project or reduced to the file name), reader ``Problem(...)`` reprs reduced to their message and flat
    dict reprs ``{'a': 1, 'b': 2}`` written as ``a 1, b 2``."""
    text = _ANSI_RE.sub("", text)
    text = _PROBLEM_RE.sub(lambda m: m.group("message"), text)
    for base in {str(Path(root or _REPO).resolve()), str(Path(root or _REPO))}:
        text = text.replace(base.rstrip("/") + "/", "")
    text = _ABS_PATH_RE.sub(lambda m: Path(m.group(1)).name or "…", text)
    return _FLAT_DICT_RE.sub(lambda m: ", ".join(
        f"{k.strip(chr(39))} {v}" for k, v in (item.split(": ", 1) for item in m.group(0)[1:-1].split(", "))), text)


def _fmt_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return str(value)


def run_admonition_text(*, plan: str, group: str, notebook: str | None = None, model: Any = None,
                        seeds: Iterable[int] | int | None = None, device: str | None = None,
                        commit: str | None = None, when: str | None = None, seconds: float | None = None,
                        settings: Mapping[str, Any] | None = None, plan_file: str | None = None) -> str:
    """MyST source of the collapsed *run* admonition (class ``mernb-run``); see :func:`run_admonition`."""
    seeds_text = (", ".join(str(s) for s in seeds) if isinstance(seeds, Iterable) and not isinstance(seeds, str)
                  else seeds)
    items = [("plan", f"`{plan}`, group `{group}`"), ("model", model), ("seeds", seeds_text),
             ("device", device), ("commit", f"`{commit}`" if commit else None), ("run", when),
             ("time", f"{seconds:.0f} s" if seconds is not None else None)]
    if settings:
        items.append(("settings", "; ".join(f"{k}: {_fmt_value(v)}" for k, v in settings.items()
                                             if v is not None and k != "groups")))
    if notebook and plan_file:
        items.append(("rerun", f"`mernb run {plan_file} --only '{notebook}'`"))
    body = "\n".join(f"- **{k}**: {sanitize_text(str(v))}" for k, v in items if v not in (None, ""))
    return f"````{{admonition}} Run\n:class: note dropdown mernb-run\n\n{body}\n````\n"


def run_admonition(*, plan: str, group: str, device: str = "auto", model: Any = None, seed: int | None = None,
                   notebook: str | None = None, **settings: Any) -> Any:
    """The page's *run* admonition as a Markdown display object (show it with ``display(...)``).

    Names the plan and group, the model, the seed, the device actually used, the code commit and the
    time. Replaces ``print(run_info(...))`` in the notebooks' setup cell; extra keyword arguments are
    listed as settings (dicts as ``key value`` pairs, never as reprs).
    """
    import torch
    from IPython.display import Markdown

    from mernb.report.results import provenance

    prov = provenance()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    used = f"{device} ({prov.get('device')})" if prov.get("device") else device
    commit = (prov.get("git_commit") or "")[:12] + ("+dirty" if prov.get("git_dirty") else "")
    text = run_admonition_text(plan=plan, group=group, notebook=notebook, model=model, seeds=seed, device=used,
                               commit=commit or None, when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               settings=settings or None)
    return Markdown(text)


def warnings_list(problems: Iterable[Any], *, limit: int = 5, title: str = "Data warnings") -> Any:
    """Reader problems (``Problem`` objects, dicts with kind/message, or strings) as a short Markdown list: the first ``limit``
    messages, then how many more (grouped by kind). Returns a Markdown display object ("" when none)."""
    from IPython.display import Markdown

    return Markdown(warnings_markdown(problems, limit=limit, title=title))


def warnings_markdown(problems: Iterable[Any], *, limit: int = 5, title: str = "Data warnings") -> str:
    """The MyST text of :func:`warnings_list` (empty string when there is no problem)."""
    messages: list[tuple[str, str]] = []
    for p in problems:
        kind = (p.get("kind") if isinstance(p, Mapping) else getattr(p, "kind", "")) or ""
        message = (p.get("message") if isinstance(p, Mapping) else getattr(p, "message", None)) or str(p)
        messages.append((kind, display_names(sanitize_text(str(message)))))
    if not messages:
        return ""
    lines = [f"- {m}" for _, m in messages[:limit]]
    rest = messages[limit:]
    if rest:
        kinds: dict[str, int] = {}
        for kind, _ in rest:
            kinds[kind or "other"] = kinds.get(kind or "other", 0) + 1
        lines.append(f"- … and {len(rest)} more ({', '.join(f'{n} {k}' for k, n in kinds.items())})")
    return f"```{{admonition}} {title} ({len(messages)})\n:class: warning mernb-warnings\n\n" + "\n".join(lines) + "\n```\n"


def data_summary_markdown(data: Any) -> str:
    """A ProtocolData (``recipe.load_data``) as one sentence plus the warnings list, for a reader.

    "CASME II, protocol `casme2_5class`: 15 samples from 3 subjects; happiness 2, …, surprise 0 (absent).
    Clips: 33/33 ready." — no dict reprs, no paths.
    """
    samples = list(getattr(data, "samples", []))
    classes = list(getattr(data, "classes", []))
    counts = {c: sum(getattr(s, "label", None) == c for s in samples) for c in classes}
    subjects = len({getattr(s, "subject_key", None) for s in samples})
    per_class = ", ".join(f"{c} {n}" + (" (absent)" if n == 0 else "") for c, n in counts.items())
    text = (f"{dataset_name(getattr(data, 'dataset', ''))}, protocol `{getattr(data, 'protocol', '')}`: "
            f"{len(samples)} samples from {subjects} subjects; {per_class}.")
    prepare = getattr(data, "prepare", None)
    if prepare is not None:
        text += f" Clips: {sanitize_text(str(prepare))}."
    dropped = list(getattr(data, "dropped", []) or [])
    if dropped:
        text += f" {len(dropped)} clip(s) dropped at preparation (listed below)."
    problems = list(getattr(data, "problems", []) or []) + [f"dropped {a}: {b}" for a, b in dropped]
    return text + "\n\n" + warnings_markdown(problems)


def data_summary(data: Any) -> Any:
    """:func:`data_summary_markdown` as a Markdown display object; replaces ``print(data.summary())``."""
    from IPython.display import Markdown

    return Markdown(data_summary_markdown(data))
