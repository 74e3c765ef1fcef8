"""Small helpers several notebooks share (so the notebooks only set parameters and show results).

* :func:`start_notebook`: torch threads and the run admonition (first code cell).
* :func:`metrics_of`: a row's metrics (mean over seeds when several; {} when it did not run).
* :func:`show_paper_vs_ours`: paper-vs-ours table of one paper table and dataset: glued and shown.
* :func:`effect_sentence` / :func:`show_effect`: one sentence saying whether the rows of an ablation differ.
* :func:`apex_position`: index of the apex among T frames sampled uniformly over onset..offset.
* :func:`measured_tparas`: the #Tparas column of MPT Tables VI–VIII, measured on the paper-size model.
* :func:`named_clips`: find the clips a paper names in a figure (HLoRA-MER Fig. 6) among the samples.
* :func:`row_predictions`: ground truth, prediction and its probability for given samples of a row.
* :func:`per_fold_groups`: held-out samples grouped by the fold model that embedded them (MPT Fig. 9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mernb.models.info import model_info


def start_notebook(*, plan_kind: str, threads: int | None = None, **info: Any) -> None:
    """Set torch's CPU threads (``threads``; None keeps torch's default) and show the page's *run* admonition
    (:func:`mernb.report.page.run_admonition` of ``info``: plan, group, settings). The smoke banner is the
    book's (every page of a synthetic build gets it when the book is staged). Returns nothing (a value would
    be echoed as the cell's result).
    First code cell of the MPT, HLoRA-MER and MA2MI notebooks."""
    import torch
    from IPython.display import display

    from mernb.report.page import run_admonition

    if threads:
        torch.set_num_threads(int(threads))
    info = dict(info)
    plan, group = info.pop("plan", "interactive"), info.pop("group", "default")
    shown = run_admonition(plan=plan, group=group, device=info.pop("device", "auto") or "auto",
                           model=info.pop("model", None), seed=info.pop("seed", None),
                           notebook=info.pop("notebook", None), **info)
    display(shown)


def metrics_of(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """A row's metrics for a table: mean ± std over its seeds when it ran several, else its pooled metrics;
    ``{}`` when the row did not run (HLoRA notebooks; :func:`mernb.experiments.common.row_metrics`)."""
    from mernb.experiments.common import row_metrics

    return row_metrics(doc)


def show_paper_vs_ours(paper: str, table_name: str, dataset: str, ours: Mapping[str, Mapping[str, Any]],
                       metrics: Sequence[Any], key: str, title: str | None = None,
                       highlight: str | None = None) -> Any:
    """Paper numbers of ``paper``/``table_name`` on ``dataset`` beside ``ours``: glued under ``key``,
    shown with ``title`` as its caption (default: paper, table and dataset; "(SynthME smoke)" added on
    synthetic builds); returns the table (:func:`mernb.report.tables.paper_vs_ours`).
    Used by the HLoRA-MER table notebooks and Fig. 3.
    """
    from IPython.display import display

    from mernb.report.dashboard import PAPER_TITLES
    from mernb.report.glue import glue_table
    from mernb.report.page import dataset_name
    from mernb.report.paper import paper_numbers
    from mernb.report.tables import paper_vs_ours, style_table

    table = paper_vs_ours(paper_numbers(paper, table_name, dataset=dataset), ours, metrics=tuple(metrics))
    glue_table(key, table)
    caption = title or f"{PAPER_TITLES.get(paper, paper)} {table_name}, {dataset_name(dataset)}"
    display(style_table(table, caption=caption, highlight=highlight))
    show_effect(ours)
    return table


def effect_sentence(ours: Mapping[str, Mapping[str, Any]], metric: str = "uf1", tolerance: float = 0.01) -> str | None:
    """Whether the rows of an ablation differ on this build, in words (reference rows left out): "no effect"
    when their ``metric`` spans less than ``tolerance``, else the lowest and highest row. None for < 2 rows."""
    values = {row: float(m[metric]) for row, m in ours.items()
              if not row.startswith("reference:") and metric in m and m[metric] == m[metric]}
    if len(values) < 2:
        return None
    low, high = min(values, key=values.get), max(values, key=values.get)
    label = metric.upper()
    spread = 100 * (values[high] - values[low])
    if values[high] - values[low] < tolerance:
        return (f"**No effect on this build:** the {len(values)} rows' {label} lie within {spread:.2f} points "
                f"({100 * values[low]:.2f}–{100 * values[high]:.2f} %), so this build cannot show the paper's "
                "differences between them.")
    return (f"**The rows differ on this build:** {label} from {100 * values[low]:.2f} % ({low}) to "
            f"{100 * values[high]:.2f} % ({high}), a spread of {spread:.2f} points.")


def show_effect(ours: Mapping[str, Mapping[str, Any]], metric: str = "uf1") -> None:
    """Display :func:`effect_sentence` under an ablation table (MPT Tables VI–XI, Fig. 5; HLoRA-MER Tables
    3–9 through :func:`show_paper_vs_ours`; MA2MI Tables 1–4). Returns nothing (a value would be echoed)."""
    from IPython.display import Markdown, display

    text = effect_sentence(ours, metric)
    if text:
        display(Markdown(text))


def apex_position(sample: Any, num_frames: int) -> int:
    """Index (0..T-1) of the frame nearest the apex among ``num_frames`` frames sampled uniformly from
    onset (index 0) to offset (index T-1); the middle frame when the apex, onset or offset is unknown.
    Used by ``notebooks/mpt/fig7_predictions`` and ``fig8_gradcam``.
    """
    onset, apex, offset = sample.onset, sample.apex, sample.offset
    if apex is None or onset is None or offset is None or offset <= onset:
        return num_frames // 2
    position = int(round((apex - onset) / (offset - onset) * (num_frames - 1)))
    return min(max(position, 0), num_frames - 1)

__all__ = ["start_notebook", "metrics_of", "show_paper_vs_ours", "effect_sentence", "show_effect", "apex_position", "measured_tparas", "named_clips", "row_predictions", "per_fold_groups"]


def measured_tparas(
    rows: Mapping[str, Mapping[str, Any]], paper_config: Mapping[str, Any], num_classes: int
) -> dict[str, dict[str, float]]:
    """``{row: {"params_m": trainable parameters in millions}}`` measured with :func:`model_info`.

    ``paper_config`` is the paper-size MPT configuration (``model`` plus builder options such as
    ``img_size`` and ``num_frames``); each row's overrides are MPT options (``prompt``, ``adapter``,
    ``num_prompts``, ...), or name another ``model`` (a ``vit_b16_*`` baseline), which then gets only
    ``img_size`` from the configuration. ``kind`` keys (the recipe's row kind) are ignored. Models are
    built on the meta device without weights. Used by ``notebooks/mpt/table6-8``; feed the result to
    ``recipe.ours_metrics(done, extra=...)``.
    """
    base = dict(paper_config)
    base_model = base.pop("model")
    out: dict[str, dict[str, float]] = {}
    for name, overrides in rows.items():
        options = {k: v for k, v in overrides.items() if k != "kind"}
        model = options.pop("model", None)
        if model is None:
            model, options = base_model, {**base, **options}
        else:
            options = {**({"img_size": base["img_size"]} if "img_size" in base else {}), **options}
        options.pop("weights", None)
        info = model_info(model, num_classes=num_classes, macs=False, **options)
        out[name] = {"params_m": info["trainable_params"] / 1e6}
    return out


def named_clips(samples: Sequence[Any], named: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, list[Any]]:
    """``{dataset: [sample, ...]}`` for the (subject, clip) pairs a paper names, where present.

    Subjects compare as text without leading zeros (``"03"`` == ``"3"``, ``"007"`` == ``"7"``), clips
    as text; a pair absent from ``samples`` is left out (SynthME usually lacks the real clip names).
    Used by ``notebooks/hlora/fig6_failure_cases``.
    """
    def norm(subject: Any) -> str:
        text = str(subject).strip()
        text = text.removeprefix("sub") if text.startswith("sub") and text[3:].isdigit() else text
        return text.lstrip("0") or "0"

    out: dict[str, list[Any]] = {}
    for dataset, pairs in named.items():
        wanted = {(norm(s), str(c)) for s, c in pairs}
        out[dataset] = [s for s in samples
                        if s.dataset == dataset and (norm(s.subject), str(s.clip)) in wanted]
    return out


def row_predictions(doc: Mapping[str, Any], samples: Sequence[Any],
                    classes: Sequence[str]) -> list[tuple[Any, str, str, float]]:
    """``(sample, ground truth, prediction, p(prediction))`` of each of ``samples`` a row's results predicted.

    ``doc`` is a row's results document (``result.predictions`` with ``sample_id``, ``y_true``,
    ``y_pred`` and optional ``scores``); samples without a prediction are left out. Used by
    ``notebooks/hlora/fig6_failure_cases`` for the clips the paper names.
    """
    by_id = {p["sample_id"]: p for p in doc["result"]["predictions"]}
    out = []
    for s in samples:
        p = by_id.get(s.sample_id)
        if p is None:
            continue
        conf = float(p["scores"][p["y_pred"]]) if p.get("scores") else float("nan")
        out.append((s, classes[p["y_true"]], classes[p["y_pred"]], conf))
    return out


def per_fold_groups(folds: Sequence[Any], min_size: int = 2) -> list[tuple[Any, np.ndarray]]:
    """Indices of the held-out samples of each fold, largest folds first (ties: first seen first).

    ``folds[i]`` is the fold (model) that embedded sample ``i``; folds with fewer than ``min_size``
    samples are dropped (nothing to embed). Used by ``notebooks/mpt/fig9_tsne`` to run one t-SNE per
    fold model instead of mixing the feature spaces of different fold models.
    """
    keys = list(dict.fromkeys(folds))
    arr = np.asarray([keys.index(f) for f in folds])
    groups = [(key, np.flatnonzero(arr == i)) for i, key in enumerate(keys)]
    groups = [g for g in groups if len(g[1]) >= min_size]
    return sorted(groups, key=lambda g: -len(g[1]))
