"""Figures for the book, each returned as a matplotlib ``Figure`` (no pyplot state, safe under Agg).

Figures are built with ``matplotlib.figure.Figure`` directly, so a notebook shows one only when it is
displayed or glued (:func:`mernb.report.glue.glue_figure`), never twice.

- :func:`plot_confusion`: MPT Fig. 4, confusion matrices in every paper notebook.
- :func:`plot_tsne`: one t-SNE scatter coloured by class (:func:`plot_tsne_folds` is MPT Fig. 9).
- :func:`pca_first_component_maps`, :func:`plot_pca_components`: HLoRA Fig. 4.
- :func:`plot_bars`: MPT Fig. 6 (per-class accuracy, baseline vs MPT).
- :func:`plot_curve`: MPT Fig. 5 (number of prompts), HLoRA Fig. 3 (N_l), MA2MI Fig. 4 (interval).
- :func:`plot_clip_gallery`: data/statistics (one clip per dataset, the aligned crop).
- :func:`plot_image_grid`: HLoRA Fig. 6, MA2MI Fig. 6 (reconstructions); :func:`plot_attention`: HLoRA Fig. 5.
- :func:`plot_predictions`: MPT Fig. 7; :func:`plot_gradcam`: MPT Fig. 8, MA2MI Fig. 6; :func:`plot_tsne_folds`:
  MPT Fig. 9; :func:`plot_magnification`: MPT Table X.

Every title goes through :func:`figure_title`: dataset names written out and, on synthetic builds,
"(SynthME smoke)" appended (:func:`mernb.report.page.smoke_caption`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mernb.errors import MernbError


def figure_title(title: str | None) -> str | None:
    """A figure's title as shown: dataset keys written as names, "(SynthME smoke)" on synthetic builds."""
    from mernb.report.page import display_names, smoke_caption

    return smoke_caption(display_names(title)) if title else title


def _class_indices(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for value in labels:
        if isinstance(value, str):
            if value not in index:
                raise MernbError(f"label {value!r} is not one of the classes {list(classes)}")
            out.append(index[value])
        else:
            i = int(value)
            if not 0 <= i < len(classes):
                raise MernbError(f"label index {i} outside [0, {len(classes)})")
            out.append(i)
    return np.asarray(out, dtype=int)


def plot_confusion(cm: Any, classes: Sequence[str], *, normalize: bool = True, title: str | None = None,
                   cmap: str = "Blues") -> Figure:
    """Confusion matrix heatmap (rows = truth, columns = prediction), every cell annotated.

    ``normalize=True`` divides each row by its number of true samples and prints percentages; otherwise
    counts. Each true class is labelled with its n; a class absent from the pool (n = 0) is labelled
    "absent", its row hatched grey and left unannotated (0 % would read as a result). Dataset keys in the
    title are written as names (CASME II).
    """
    import seaborn as sns


    cm = np.asarray(cm, dtype=float)
    k = len(classes)
    if cm.shape != (k, k):
        raise MernbError(f"confusion matrix has shape {cm.shape}, expected ({k}, {k}) for classes {list(classes)}")
    totals = cm.sum(axis=1)
    absent = totals == 0
    if normalize:
        shown = np.divide(cm, totals[:, None], out=np.zeros_like(cm), where=totals[:, None] > 0) * 100.0
        fmt, vmax = ".1f", 100.0
    else:
        shown, fmt, vmax = cm, ".0f", None
    annot = np.array([[format(v, fmt) for v in row] for row in shown], dtype=object)
    annot[absent, :] = ""
    masked = np.ma.masked_array(shown, mask=np.repeat(absent[:, None], k, axis=1))
    size = max(3.6, 0.8 * k + 2.0)
    fig = Figure(figsize=(size + 1.4, size), layout="constrained")
    ax = fig.add_subplot()
    ylabels = [f"{c} (absent)" if a else f"{c} (n={int(n)})" for c, n, a in zip(classes, totals, absent, strict=True)]
    sns.heatmap(shown, annot=annot, fmt="", cmap=cmap, vmin=0.0, vmax=vmax, square=True, cbar=True,
                mask=masked.mask, xticklabels=list(classes), yticklabels=ylabels, ax=ax,
                annot_kws={"fontsize": 10}, cbar_kws={"label": "% of true class" if normalize else "samples",
                                                      "shrink": 0.8})
    for i in np.flatnonzero(absent):
        ax.add_patch(_hatched_row(i, k))
    ax.set_xlabel("Predicted", fontsize=11)
    ax.set_ylabel("True", fontsize=11)
    ax.tick_params(axis="x", labelrotation=45, labelsize=10)
    ax.tick_params(axis="y", labelrotation=0, labelsize=10)
    if title:
        ax.set_title(figure_title(title), fontsize=11)
    return fig


def _hatched_row(i: int, k: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((0, i), k, 1, facecolor="#eeeeee", edgecolor="#999999", hatch="///", linewidth=0.0)


def _scatter_by_class(ax: Any, xy: np.ndarray, idx: np.ndarray, classes: Sequence[str]) -> None:
    import seaborn as sns

    palette = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    for i, name in enumerate(classes):
        mask = idx == i
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=22, color=palette[i], label=f"{name} (n={int(mask.sum())})",
                       alpha=0.85, edgecolors="white", linewidths=0.4)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(frameon=False, fontsize=10, markerscale=1.4, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def tsne_embedding(features: Any, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` (N, D); perplexity is clamped to (N − 1) / 3 (at least 1) for small N."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    n = len(x)
    if n < 3:
        raise MernbError(f"t-SNE needs at least 3 samples, got {n}")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def plot_tsne(features: Any, labels: Sequence[Any], classes: Sequence[str], *, seed: int = 0,
              perplexity: float = 30.0, title: str | None = None) -> Figure:
    """t-SNE scatter of features coloured by class (labels: indices or class names)."""
    idx = _class_indices(labels, classes)
    if len(idx) != len(features):
        raise MernbError(f"{len(features)} feature rows but {len(idx)} labels")

    xy = tsne_embedding(features, seed=seed, perplexity=perplexity)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    _scatter_by_class(ax, xy, idx, classes)
    if title:
        ax.set_title(figure_title(title), fontsize=11)
    return fig


def pca_first_component_maps(patch_features: Any, *, normalize: bool = True) -> np.ndarray:
    """First PCA component of ViT patch features, one map per image (HLoRA Fig. 4, as in DINOv2).

    ``patch_features`` is (N, h, w, d); one PCA is fitted on all N·h·w patches so the maps share a
    scale. Returns (N, h, w), min-max scaled to [0, 1] over all maps when ``normalize``.
    """
    from sklearn.decomposition import PCA

    f = np.asarray(patch_features, dtype=np.float64)
    if f.ndim != 4:
        raise MernbError(f"patch features must be (N, h, w, d), got shape {f.shape}")
    n, h, w, d = f.shape
    flat = f.reshape(-1, d)
    if len(flat) < 2:
        raise MernbError("PCA needs at least two patches")
    comp = PCA(n_components=1).fit_transform(flat)[:, 0]
    if normalize:
        lo, hi = comp.min(), comp.max()
        comp = (comp - lo) / (hi - lo) if hi > lo else np.zeros_like(comp)
    return comp.reshape(n, h, w)


def plot_pca_components(maps: Any | Mapping[str, Any], *, images: Any | None = None,
                        titles: Sequence[str] | None = None, cmap: str = "viridis",
                        title: str | None = None) -> Figure:
    """Grid of first-component maps: one row per setting (dict label → (N, h, w)), one column per image.

    ``images`` (N, H, W[, 3]) adds a top row with the input frames (HLoRA Fig. 4: frames, N_l = 0, N_l = 2).
    """
    rows = dict(maps) if isinstance(maps, Mapping) else {"": maps}
    rows = {k: np.asarray(v) for k, v in rows.items()}
    counts = {v.shape[0] for v in rows.values()}
    if len(counts) != 1 or any(v.ndim != 3 for v in rows.values()):
        raise MernbError(f"every map set must be (N, h, w) with the same N; got {[v.shape for v in rows.values()]}")
    n = counts.pop()
    grid = ([("input", np.asarray(images))] if images is not None else []) + list(rows.items())
    if images is not None and len(grid[0][1]) != n:
        raise MernbError(f"{len(grid[0][1])} images for {n} maps")
    fig = Figure(figsize=(1.8 * n + 0.6, 1.8 * len(grid)), layout="constrained")
    axes = np.asarray(fig.subplots(len(grid), n, squeeze=False))
    for r, (label, stack) in enumerate(grid):
        for c in range(n):
            ax = axes[r, c]
            img = stack[c]
            if label == "input":
                ax.imshow(img if img.ndim == 3 else img, cmap=None if img.ndim == 3 else "gray")
            else:
                ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0 if img.max() <= 1.0 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and label:
                ax.set_ylabel(label)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize="small")
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_bars(per_class: Mapping[str, Any], *, classes: Sequence[str] | None = None,
              ylabel: str = "Accuracy (%)", title: str | None = None, annotate: bool = True) -> Figure:
    """Grouped bars per class: ``{series: {class: value}}`` (e.g. baseline vs MPT), or one ``{class: value}``."""
    first = next(iter(per_class.values()), None)
    if first is None:
        raise MernbError("plot_bars: nothing to plot")
    series = dict(per_class) if isinstance(first, Mapping) else {"": dict(per_class)}
    if classes is None:
        classes = list(dict.fromkeys(c for s in series.values() for c in s))
    k, m = len(classes), len(series)
    width = 0.8 / m
    fig = Figure(figsize=(max(4.0, 0.9 * k * max(1, m) / 1.5 + 1.5), 3.4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(k)
    for j, (name, values) in enumerate(series.items()):
        heights = [float(values.get(c, np.nan)) for c in classes]
        bars = ax.bar(x - 0.4 + width * (j + 0.5), heights, width, label=name or None)
        if annotate:
            ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=1)
    ax.set_xticks(x, list(classes))
    ax.set_ylabel(ylabel)
    if m > 1:
        ax.legend(frameon=False, fontsize="small")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(figure_title(title))
    return fig


def plot_curve(x: Sequence[Any], ys: Mapping[str, Sequence[float]], *, xlabel: str = "", ylabel: str = "",
               title: str | None = None, marker: str = "o", annotate: bool = False) -> Figure:
    """Lines over a sweep (e.g. Acc and F1 vs number of prompts or N_l); NaN points are left out."""

    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    xs = list(x)
    markers = [marker, "s", "^", "D", "v", "P"]
    styles = ["-", "--", "-.", ":"]
    for j, (label, values) in enumerate(ys.items()):
        values = [np.nan if v is None else float(v) for v in values]
        if len(values) != len(xs):
            raise MernbError(f"series {label!r} has {len(values)} values for {len(xs)} x positions")
        # series that coincide (e.g. Acc = F1) stay visible: own marker, hollow and shrinking, own line style
        ax.plot(xs, values, marker=markers[j % len(markers)], linestyle=styles[j % len(styles)], label=label,
                markersize=max(4.0, 9.0 - 2.0 * j), markerfacecolor="none" if j else None, linewidth=1.6)
        if annotate:
            ax.margins(y=0.15)  # room for the labels above the highest point
            for xv, yv in zip(xs, values, strict=True):
                if not np.isnan(yv):
                    below = j % 2 == 1  # a second series labels under its points, so close values stay apart
                    ax.annotate(f"{yv:.2f}", (xv, yv), textcoords="offset points", xytext=(0, -7 if below else 5),
                                ha="center", va="top" if below else "bottom", fontsize="x-small")
    if all(isinstance(v, int | np.integer) for v in xs):
        ax.set_xticks(xs)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(alpha=0.3)
    if len(ys) > 1:
        ax.legend(frameon=False, fontsize=10)
    if title:
        ax.set_title(figure_title(title), fontsize=11)
    return fig


def plot_clip_gallery(clips: Mapping[str, Sequence[Any]], *, gain: float = 10.0,
                      columns: Sequence[str] = ("onset", "apex"), title: str | None = None) -> Figure:
    """One row per clip: its frames (e.g. onset, apex, aligned apex) and ``|apex − onset| × gain``.

    ``clips`` maps a row label (dataset names are written out) to images (H, W[, 3]) in ``columns``
    order; the difference column uses the first two. Used by ``notebooks/data/statistics`` (SynthME
    gallery and one aligned clip).
    """
    from mernb.report.page import display_names

    if not clips:
        raise MernbError("plot_clip_gallery: no clip to show")
    n_cols = len(columns) + 1
    fig = Figure(figsize=(1.9 * n_cols + 1.2, 1.9 * len(clips) + 0.3), layout="constrained")
    axes = np.asarray(fig.subplots(len(clips), n_cols, squeeze=False))
    for r, (label, images) in enumerate(clips.items()):
        if len(images) != len(columns):
            raise MernbError(f"clip {label!r}: {len(images)} images for columns {list(columns)}")
        arrays = [np.asarray(im, dtype=np.float32) for im in images]
        diff = np.abs(arrays[1] - arrays[0]) if arrays[0].shape == arrays[1].shape else np.zeros_like(arrays[1])
        diff = diff.mean(-1) if diff.ndim == 3 else diff
        for c, image in enumerate([*arrays, np.clip(diff * gain, 0, 255)]):
            ax = axes[r, c]
            gray = image.ndim == 2
            ax.imshow(image.astype(np.uint8), cmap="gray" if gray else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title([*columns, f"|apex − onset| × {gain:g}"][c], fontsize=10)
            if c == 0:
                ax.set_ylabel(display_names(label), fontsize=10)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_image_grid(rows: Mapping[str, Sequence[Any]], *, col_titles: Sequence[str] | None = None,
                    cmap: str | Sequence[str | None] | None = None, vmax: float | None = None,
                    colorbar: str | None = None, title: str | None = None, cell: float = 2.1) -> Figure:
    """A grid of images legible at page width: one row per label (written left of the row, 10 pt), column
    titles on top, optional per-column colour maps and one shared colourbar (``colorbar`` = its label).

    For HLoRA Fig. 6 (``notebooks/hlora/fig6_failure_cases``, with :func:`key_frames`) and MA2MI Fig. 6
    (``notebooks/ma2mi/fig6_reconstruction_gradcam``, reconstructions): images are (H, W[, 3]) arrays in
    [0, 1] or [0, 255]; ``None`` leaves a cell empty.
    """
    from mernb.report.page import display_names

    if not rows:
        raise MernbError("plot_image_grid: no row to show")
    n_cols = max(len(images) for images in rows.values())
    cmaps = list(cmap) if isinstance(cmap, list | tuple) else [cmap] * n_cols
    fig = Figure(figsize=(cell * n_cols + 1.4 + (0.6 if colorbar else 0.0), cell * len(rows) + 0.5),
                 layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), n_cols, squeeze=False))
    mappable = None
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = images[c] if c < len(images) else None
            if image is None:
                ax.set_axis_off()
                continue
            image = np.asarray(image)
            gray = image.ndim == 2
            shown = ax.imshow(image, cmap=(cmaps[c] or "gray") if gray else None, vmin=0 if gray else None,
                              vmax=vmax if gray else None)
            if gray and cmaps[c]:
                mappable = shown
            if c == 0:
                ax.set_ylabel(display_names(label), fontsize=10)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=10)
    if colorbar and mappable is not None:
        fig.colorbar(mappable, ax=axes[:, -1].tolist(), shrink=0.8, label=colorbar)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_attention(matrix: Any, *, frames: Sequence[Any] | None = None, title: str | None = None,
                   label: str = "frame", heading: str = "IFFA attention $a_{ij}$") -> Figure:
    """HLoRA Fig. 5 (``notebooks/hlora/fig5_iffa_attention``): a t×t attention heatmap (titled ``heading``)
    with every tick labelled 1..t and each cell's value printed, beside the t frames (two columns) when
    given; ``title`` is the figure's title."""
    a = np.asarray(matrix, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise MernbError(f"attention must be a square (t, t) matrix, got shape {a.shape}")
    t = a.shape[0]
    cols = min(2, t) if frames is not None else 0  # the frames in two columns beside the heatmap
    rows = max(1, -(-t // cols)) if cols else 1
    fig = Figure(figsize=(5.0 + 1.1 * cols, 4.4), layout="constrained")
    grid = fig.add_gridspec(rows, 1 + cols, width_ratios=[4.4] + [1.0] * cols)
    ax = fig.add_subplot(grid[:, 0])
    im = ax.imshow(a, cmap="viridis")
    ticks = [str(i + 1) for i in range(t)]
    ax.set_xticks(range(t), ticks, fontsize=9)
    ax.set_yticks(range(t), ticks, fontsize=9)
    ax.set_xlabel(f"{label} j", fontsize=10)
    ax.set_ylabel(f"{label} i", fontsize=10)
    ax.set_title(heading, fontsize=11)
    if t <= 10:
        mid = (a.max() + a.min()) / 2
        for i in range(t):
            for j in range(t):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if a[i, j] < mid else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    for k, frame in enumerate(frames or []):
        axk = fig.add_subplot(grid[k // cols, 1 + k % cols])
        axk.imshow(np.asarray(frame))
        axk.set_axis_off()
        axk.set_title(f"{label} {k + 1}", fontsize=9)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def _sample_text(sample: Any) -> str:
    aus = ", ".join(getattr(sample, "aus", None) or []) or "–"
    return f"{sample.label}; AUs {aus}"


def sample_label(sample: Any) -> str:
    """A row label for a clip: its id, then its class and action units (``"s01/ep1\\nhappiness; AUs 6, 12"``)."""
    return f"{sample.sample_id}\n{_sample_text(sample)}"


def apex_frame(sample: Any, clip: Any) -> np.ndarray:
    """The frame of a sampled clip (T, H, W[, 3]) nearest the sample's apex (the middle one when unknown)."""
    from mernb.report.notebook_helpers import apex_position

    clip = np.asarray(clip)
    return clip[apex_position(sample, clip.shape[0])]


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def pick_by_class(predictions: Sequence[Mapping[str, Any]], samples: Sequence[Any], classes: Sequence[str],
                  fallback: int = 3) -> list[Any]:
    """The first sample (in ``predictions`` order) of each of ``classes``; the first ``fallback`` predicted
    samples when none matches. Used by ``notebooks/mpt/fig7_predictions``."""
    by_id = {s.sample_id: s for s in samples}
    order = [by_id[p["sample_id"]] for p in predictions if p["sample_id"] in by_id]
    chosen = [s for c in classes for s in [next((s for s in order if s.label == c), None)] if s is not None]
    return chosen or order[:fallback]


def plot_predictions(samples: Sequence[Any], clips: Mapping[str, Any],
                     predictions: Mapping[str, Sequence[Mapping[str, Any]]], classes: Sequence[str], *,
                     title: str | None = None) -> Figure:
    """MPT Fig. 7 (``notebooks/mpt/fig7_predictions``): one row per sample, its apex frame, then per model
    (``{model: [prediction dicts with sample_id, scores, y_true, y_pred]}``) the class scores as bars,
    the true class green; panel titles say the predicted class and whether it is right."""
    if not samples:
        raise MernbError("plot_predictions: no sample to show")
    by_model = {m: {p["sample_id"]: p for p in preds} for m, preds in predictions.items()}
    n_cols = 1 + len(by_model)
    fig = Figure(figsize=(2.0 + 2.9 * len(by_model), 2.1 * len(samples) + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(len(samples), n_cols, squeeze=False,
                                   gridspec_kw={"width_ratios": [1.0] + [1.5] * len(by_model)}))
    for r, sample in enumerate(samples):
        axes[r, 0].imshow(apex_frame(sample, clips[sample.sample_id]))
        _bare(axes[r, 0])
        axes[r, 0].set_title(str(sample.sample_id), fontsize=9)
        axes[r, 0].set_xlabel(_sample_text(sample), fontsize=9)
        for j, (model, preds) in enumerate(by_model.items(), start=1):
            ax = axes[r, j]
            p = preds.get(sample.sample_id)
            if p is None:
                raise MernbError(f"plot_predictions: no {model} prediction for {sample.sample_id}")
            colors = ["tab:green" if k == p["y_true"] else "tab:gray" for k in range(len(classes))]
            ax.barh(list(classes), p["scores"], color=colors)
            ax.set_xlim(0, 1)
            ax.invert_yaxis()
            ax.tick_params(labelsize=9)
            if j > 1:
                ax.set_yticklabels([])
            ok = "right" if p["y_pred"] == p["y_true"] else "wrong"
            ax.set_title(f"{model}: {classes[p['y_pred']]} ({ok})", fontsize=10)
            if r == len(samples) - 1:
                ax.set_xlabel("score", fontsize=9)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_gradcam(rows: Mapping[str, Sequence[Any]], cams: Mapping[str, Sequence[Any]], *,
                 col_titles: Sequence[str] | None = None, alpha: float = 0.45, title: str | None = None,
                 cell: float = 2.0) -> Figure:
    """Grad-CAM panels (MPT Fig. 8 ``notebooks/mpt/fig8_gradcam``, MA2MI Fig. 6
    ``notebooks/ma2mi/fig6_reconstruction_gradcam``): per row (label → images, e.g. [apex] or [onset, apex])
    the images, then each map series (``{name: [one (h, w) map in [0, 1] per row]}``) laid over the row's
    last image, stretched to its size (jet, ``alpha``)."""
    from mernb.report.page import display_names

    if not rows:
        raise MernbError("plot_gradcam: no row to show")
    n_img = max(len(v) for v in rows.values())
    for name, maps in cams.items():
        if len(maps) != len(rows):
            raise MernbError(f"plot_gradcam: {len(maps)} {name} maps for {len(rows)} rows")
    n_cols = n_img + len(cams)
    fig = Figure(figsize=(cell * n_cols + 1.4, cell * len(rows) + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), n_cols, squeeze=False))
    titles = list(col_titles) if col_titles is not None else [f"image {k + 1}" for k in range(n_img)] + list(cams)
    for r, (label, images) in enumerate(rows.items()):
        images = [np.asarray(im) for im in images]
        for c in range(n_cols):
            ax = axes[r, c]
            _bare(ax)
            if c < len(images):
                ax.imshow(images[c])
            elif c >= n_img:
                base = images[-1]
                h, w = base.shape[:2]
                ax.imshow(base)
                ax.imshow(np.asarray(list(cams.values())[c - n_img][r], dtype=float), cmap="jet", alpha=alpha,
                          vmin=0.0, vmax=1.0, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            else:
                ax.set_axis_off()
            if r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=10)
        axes[r, 0].set_ylabel(display_names(label), fontsize=9)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_tsne_folds(features: Mapping[str, tuple[Any, Any, Sequence[str]]], fold_of: Mapping[str, str],
                    classes: Sequence[str], *, n_folds: int = 3, seed: int = 0, min_size: int = 3,
                    title: str | None = None) -> Figure:
    """MPT Fig. 9 (``notebooks/mpt/fig9_tsne``): one row per setting (``{name: (features, y, sample_ids)}``),
    one t-SNE per fold model in the ``n_folds`` folds with the most held-out clips (colours: true classes,
    one legend), and a last column embedding all folds at once coloured by fold (× markers)."""
    import seaborn as sns

    from mernb.report.notebook_helpers import per_fold_groups

    if not features:
        raise MernbError("plot_tsne_folds: no setting to show")
    first_ids = next(iter(features.values()))[2]
    shown = [(fold, len(idx)) for fold, idx in per_fold_groups([fold_of[i] for i in first_ids],
                                                                min_size=min_size)][:n_folds]
    palette = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    n_cols = len(shown) + 1
    fig = Figure(figsize=(1.9 * n_cols + 0.6, 1.9 * len(features) + 0.9), layout="constrained")
    axes = np.asarray(fig.subplots(len(features), n_cols, squeeze=False))
    handles: dict[str, Any] = {}
    for r, (name, (feats, y, ids)) in enumerate(features.items()):
        feats, y = np.asarray(feats), np.asarray(y)
        folds = np.asarray([fold_of[i] for i in ids])
        for c, (fold, n) in enumerate(shown):
            idx = np.flatnonzero(folds == fold)
            xy = tsne_embedding(feats[idx], seed=seed)
            for k, cls in enumerate(classes):
                m = y[idx] == k
                if m.any():
                    handles[cls] = axes[r, c].scatter(xy[m, 0], xy[m, 1], s=16, color=palette[k], label=cls)
            if r == 0:
                axes[r, c].set_title(f"fold {fold}\n({n} clips)", fontsize=10)
        xy = tsne_embedding(feats, seed=seed)
        fold_index = {f: j for j, f in enumerate(dict.fromkeys(folds))}  # its own colour scale, not the classes'
        axes[r, -1].scatter(xy[:, 0], xy[:, 1], s=14, marker="x", c=[fold_index[f] for f in folds], cmap="viridis")
        if r == 0:
            axes[r, -1].set_title("all folds, one embedding\n(× colour = fold)", fontsize=10)
        axes[r, 0].set_ylabel(name, fontsize=10)
        for ax in axes[r]:
            _bare(ax)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles),
                   frameon=False, fontsize=10)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def plot_magnification(frames: Sequence[Any], motions: Sequence[Any], alphas: Sequence[float], *,
                       title: str | None = None, cell: float = 1.9) -> Figure:
    """MPT Table X (``notebooks/mpt/table10_magnification``): top row the frame magnified with each α
    ("original" for α = 0), bottom row its |motion| map (magma, each scaled to its own maximum; α = 0 on
    a 0–1 scale, so no motion reads black)."""
    if not len(frames) == len(motions) == len(alphas):
        raise MernbError(f"plot_magnification: {len(frames)} frames, {len(motions)} motion maps, {len(alphas)} α")
    fig = Figure(figsize=(cell * len(alphas) + 0.8, 2 * cell + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(alphas), squeeze=False))
    for j, (frame, motion, a) in enumerate(zip(frames, motions, alphas, strict=True)):
        motion = np.asarray(motion, dtype=float)
        axes[0, j].imshow(np.clip(np.asarray(frame, dtype=float), 0.0, 1.0))
        axes[0, j].set_title("original" if a == 0 else f"α = {a:g}", fontsize=10)
        axes[1, j].imshow(motion, cmap="magma", vmin=0.0, vmax=max(float(motion.max()), 1e-6) if a else 1.0)
        _bare(axes[0, j])
        _bare(axes[1, j])
    axes[0, 0].set_ylabel("frame", fontsize=10)
    axes[1, 0].set_ylabel("|motion|", fontsize=10)
    if title:
        fig.suptitle(figure_title(title), fontsize=11)
    return fig


def key_frames(sample: Any) -> list[np.ndarray]:
    """Onset, apex and offset frames of a clip read from disk (apex: the middle frame when it is not among
    the clip's frame numbers), for :func:`plot_image_grid` rows in ``notebooks/hlora/fig6_failure_cases``."""
    from mernb.data.clips import load_frame

    numbers = list(sample.frame_numbers)
    if not numbers or len(sample.frame_paths) != len(numbers):
        raise MernbError(f"key_frames: {sample.sample_id} has no frame files")
    apex = numbers.index(sample.apex) if sample.apex in numbers else len(numbers) // 2
    return [load_frame(sample.frame_paths[i]) for i in (0, apex, -1)]


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save ``fig`` (format from the suffix: .png, .svg, .pdf), creating parent folders; returns the path."""
    path = Path(path)
    if not path.suffix:
        raise MernbError(f"save_figure: {path} has no suffix (.png, .svg or .pdf)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
