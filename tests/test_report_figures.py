"""Figures return matplotlib Figures with the expected axes and annotations (Agg, small inputs)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mernb.errors import MernbError  # noqa: E402
from mernb.report.figures import (  # noqa: E402
    pca_first_component_maps,
    plot_attention,
    plot_bars,
    plot_clip_gallery,
    plot_confusion,
    plot_curve,
    plot_image_grid,
    plot_pca_components,
    plot_tsne,
    save_figure,
)

CLASSES = ["positive", "negative", "surprise"]


def test_confusion_annotates_every_cell():
    cm = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 0]])
    fig = plot_confusion(cm, CLASSES, title="SMIC")
    assert isinstance(fig, Figure)
    heat = fig.axes[0]
    texts = [t.get_text() for t in heat.texts]
    assert len(texts) == 6  # the absent class's row is hatched, not annotated with 0 %
    assert "83.3" in texts and "60.0" in texts  # row-normalised percent
    counts = plot_confusion(cm, CLASSES, normalize=False)
    assert "6" in [t.get_text() for t in counts.axes[0].texts]
    with pytest.raises(MernbError, match="shape"):
        plot_confusion(np.zeros((2, 2)), CLASSES)


def test_confusion_names_n_per_true_class_and_marks_absent_classes():
    cm = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 0]])
    ax = plot_confusion(cm, CLASSES, title="HLoRA-MER, casme2").axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["positive (n=6)", "negative (n=10)", "surprise (absent)"]
    assert any(getattr(p, "get_hatch", lambda: None)() == "///" for p in ax.patches)
    assert ax.get_title() == "HLoRA-MER, CASME II"


def test_tsne_small_n(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 16))
    labels = ["positive"] * 4 + ["negative"] * 4 + [2] * 4
    fig = plot_tsne(feats, labels, CLASSES, seed=0)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 12
    path = save_figure(fig, tmp_path / "sub" / "tsne.png")
    assert path.is_file() and path.stat().st_size > 0
    with pytest.raises(MernbError, match="not one of"):
        plot_tsne(feats, ["x"] * 12, CLASSES)


def test_pca_first_component_maps_and_grid():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 4, 5, 8))
    feats[..., 0] += np.linspace(0, 10, 5)  # a dominant direction
    maps = pca_first_component_maps(feats)
    assert maps.shape == (3, 4, 5)
    assert maps.min() == pytest.approx(0.0) and maps.max() == pytest.approx(1.0)
    fig = plot_pca_components({"N_l = 0": maps, "N_l = 2": maps}, images=rng.random((3, 16, 16, 3)),
                              titles=["a", "b", "c"])
    assert len(fig.axes) == 9
    with pytest.raises(MernbError, match=r"\(N, h, w, d\)"):
        pca_first_component_maps(np.zeros((3, 4, 5)))


def test_bars_and_curve():
    fig = plot_bars({"baseline": {"positive": 60.0, "negative": 70.0}, "MPT": {"positive": 80.0, "negative": 90.0}},
                    classes=["positive", "negative"])
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == ["positive", "negative"]
    single = plot_bars({"positive": 1.0, "negative": 2.0, "surprise": 3.0})
    assert len(single.axes[0].patches) == 3
    curve = plot_curve([0, 1, 3, 5, 7], {"Acc": [80, 82, 84, 86.59, 85], "F1": [79, None, 83, 86.01, 84]},
                       xlabel="motion prompts", annotate=True)
    assert len(curve.axes[0].lines) == 2
    first, second = curve.axes[0].lines  # equal series must not hide each other
    assert first.get_marker() != second.get_marker() and first.get_linestyle() != second.get_linestyle()
    with pytest.raises(MernbError, match="values for"):
        plot_curve([1, 2], {"Acc": [1.0]})


def test_clip_gallery_shows_the_amplified_difference():
    onset = np.full((8, 8, 3), 100, dtype=np.uint8)
    apex = onset.copy()
    apex[2, 3] = 103  # a 3-grey-level change, ×10 → 30
    fig = plot_clip_gallery({"casme2": [onset, apex], "samm": [onset[..., 0], apex[..., 0]]})
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "CASME II"
    diff = fig.axes[2].images[0].get_array()
    assert diff[2, 3] == 30 and diff.sum() == 30
    with pytest.raises(MernbError, match="images for columns"):
        plot_clip_gallery({"x": [onset]})


def test_image_grid_labels_rows_and_shares_a_colourbar():
    rgb, heat = np.zeros((6, 6, 3)), np.arange(36.0).reshape(6, 6)
    fig = plot_image_grid({"casme2/sub01": [rgb, heat], "samm": [rgb, None]}, col_titles=["frame", "|motion|"],
                          cmap=[None, "magma"], colorbar="|motion|")
    axes = fig.axes
    assert axes[0].get_ylabel() == "casme2/sub01" and axes[2].get_ylabel() == "SAMM"
    assert [axes[0].get_title(), axes[1].get_title()] == ["frame", "|motion|"]
    assert axes[-1].get_ylabel() == "|motion|" and len(axes) == 5  # 4 cells + the colourbar
    assert not axes[3].axison  # the empty cell


def test_attention_heatmap_labels_every_frame():
    a = np.full((4, 4), 0.25)
    a[0, 1] = 0.5
    fig = plot_attention(a, frames=[np.zeros((4, 4, 3))] * 4)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert "0.50" in [t.get_text() for t in ax.texts] and len(ax.texts) == 16
    with pytest.raises(MernbError, match="square"):
        plot_attention(np.zeros((2, 3)))
