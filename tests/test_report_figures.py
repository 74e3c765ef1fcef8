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
    assert len(curve.axes[0].lines) == 2 and curve.axes[0].margins()[1] >= 0.15  # room for the labels
    labels = {(t.get_text(), t.xyann[1]) for t in curve.axes[0].texts}
    assert ("80.00", 5) in labels and ("79.00", -7) in labels  # Acc labels above, F1 labels below the points
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


# ------------------------------------------------ figures moved out of the notebooks (MPT 7–9, Table X, ...)

def _sample(sid, label, aus=(), onset=0, apex=None, offset=None):
    from types import SimpleNamespace

    return SimpleNamespace(sample_id=sid, label=label, aus=list(aus), onset=onset, apex=apex, offset=offset)


@pytest.fixture
def synthetic(monkeypatch):
    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")


def test_figure_title_names_datasets_and_says_smoke_on_synthetic_builds(monkeypatch):
    from mernb.report.figures import figure_title

    monkeypatch.setenv("MERNB_PLAN_KIND", "reproduction")
    assert figure_title("MPT Fig. 9, smic") == "MPT Fig. 9, SMIC-HS"
    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")
    assert figure_title("MPT Fig. 9, smic") == "MPT Fig. 9, SMIC-HS (SynthME smoke)"
    assert figure_title(None) is None


def test_every_titled_helper_carries_the_smoke_caption(synthetic):
    img = np.zeros((4, 4, 3))
    figs = {
        "grid": plot_image_grid({"a": [img]}, title="T"),
        "curve": plot_curve([1, 2], {"Acc": [1.0, 2.0]}, title="T"),
        "bars": plot_bars({"x": 1.0}, title="T"),
        "gallery": plot_clip_gallery({"a": [img, img]}, title="T"),
        "pca": plot_pca_components(np.zeros((1, 2, 2)), title="T"),
        "attention": plot_attention(np.eye(2), title="T"),
        "confusion": plot_confusion(np.eye(2), ["a", "b"], title="T"),
    }
    for name, fig in figs.items():
        titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
        assert "T (SynthME smoke)" in titles, (name, titles)


def test_pick_by_class_takes_the_first_of_each_class_in_prediction_order():
    from mernb.report.figures import pick_by_class

    samples = [_sample("a", "happiness"), _sample("b", "surprise"), _sample("c", "happiness"), _sample("d", "other")]
    preds = [{"sample_id": i} for i in ("c", "b", "a", "d")]
    assert [s.sample_id for s in pick_by_class(preds, samples, ["happiness", "surprise", "disgust"])] == ["c", "b"]
    assert [s.sample_id for s in pick_by_class(preds, samples, ["disgust"], fallback=2)] == ["c", "b"]


def test_predictions_show_the_apex_frame_and_each_models_scores(synthetic):
    from mernb.report.figures import plot_predictions

    classes = ["happiness", "surprise", "disgust"]
    clip = np.stack([np.full((4, 4, 3), 10 * t, dtype=np.uint8) for t in range(4)])  # frame t has value 10·t
    samples = [_sample("s1", "surprise", aus=["1", "2"], onset=0, apex=6, offset=6),  # apex = last frame (3)
               _sample("s2", "happiness")]  # no apex: the middle frame (2)
    preds = {"baseline": [{"sample_id": "s1", "scores": [0.6, 0.3, 0.1], "y_true": 1, "y_pred": 0},
                          {"sample_id": "s2", "scores": [0.7, 0.2, 0.1], "y_true": 0, "y_pred": 0}],
             "MPT": [{"sample_id": "s1", "scores": [0.1, 0.8, 0.1], "y_true": 1, "y_pred": 1},
                     {"sample_id": "s2", "scores": [0.5, 0.4, 0.1], "y_true": 0, "y_pred": 0}]}
    fig = plot_predictions(samples, {"s1": clip, "s2": clip}, preds, classes, title="MPT Fig. 7, casme2")
    axes = np.asarray(fig.axes).reshape(2, 3)
    assert axes[0, 0].images[0].get_array()[0, 0, 0] == 30 and axes[1, 0].images[0].get_array()[0, 0, 0] == 20
    assert axes[0, 0].get_title() == "s1" and axes[0, 0].get_xlabel() == "surprise; AUs 1, 2"
    assert [axes[0, 1].get_title(), axes[0, 2].get_title()] == ["baseline: happiness (wrong)", "MPT: surprise (right)"]
    assert [round(b.get_width(), 2) for b in axes[0, 2].patches] == [0.1, 0.8, 0.1]
    green = matplotlib.colors.to_hex("tab:green")
    base_colours = [matplotlib.colors.to_hex(b.get_facecolor()) for b in axes[0, 1].patches]
    assert base_colours.count(green) == 1 and base_colours[1] == green  # the true class, not the predicted one
    assert fig.get_suptitle() == "MPT Fig. 7, CASME II (SynthME smoke)"
    with pytest.raises(MernbError, match="no MPT prediction"):
        plot_predictions([_sample("s3", "happiness")], {"s3": clip}, {"MPT": preds["MPT"]}, classes)


def test_gradcam_lays_each_map_over_the_rows_last_image():
    from mernb.report.figures import plot_gradcam

    onset, apex = np.zeros((8, 6, 3)), np.ones((8, 6, 3))
    cam_a, cam_b = np.full((4, 4), 0.25), np.full((4, 4), 0.75)
    fig = plot_gradcam({"x": [onset, apex], "y": [onset, apex]}, {"A": [cam_a, cam_a], "B": [cam_b, cam_a]},
                       title="Grad-CAM")
    axes = np.asarray(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["image 1", "image 2", "A", "B"]
    overlay = axes[0, 3].images
    assert len(overlay) == 2 and overlay[0].get_array().mean() == 1.0  # the apex below
    assert overlay[1].get_array()[0, 0] == 0.75 and overlay[1].get_extent() == [-0.5, 5.5, 7.5, -0.5]
    assert axes[1, 0].get_ylabel() == "y" and fig.get_suptitle() == "Grad-CAM"
    with pytest.raises(MernbError, match="1 A maps for 2 rows"):
        plot_gradcam({"x": [apex], "y": [apex]}, {"A": [cam_a]})


def test_tsne_folds_one_panel_per_largest_fold_and_one_over_all():
    from mernb.report.figures import plot_tsne_folds

    rng = np.random.default_rng(0)
    ids = [f"id{i}" for i in range(12)]
    fold_of = dict(zip(ids, ["f1"] * 3 + ["f2"] * 5 + ["f3"] * 4, strict=True))
    y = np.array([0, 1] * 6)
    features = {"(a) head": (rng.normal(size=(12, 5)), y, ids), "(d) MPT": (rng.normal(size=(12, 5)), y, ids)}
    fig = plot_tsne_folds(features, fold_of, ["neg", "pos"], n_folds=2, title="MPT Fig. 9")
    axes = np.asarray([ax for ax in fig.axes]).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["fold f2\n(5 clips)", "fold f3\n(4 clips)",
                                                   "all folds, one embedding\n(× colour = fold)"]
    assert sum(len(c.get_offsets()) for c in axes[1, 0].collections) == 5
    assert len(axes[1, 2].collections[0].get_offsets()) == 12
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["(a) head", "(d) MPT"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["neg", "pos"]


def test_magnification_rows_frames_and_motion_each_on_its_own_scale():
    from mernb.report.figures import plot_magnification

    frames = [np.full((4, 4, 3), 0.5)] * 3
    motions = [np.zeros((4, 4)), np.full((4, 4), 0.2), np.full((4, 4), 0.4)]
    fig = plot_magnification(frames, motions, [0, 10, 20.5])
    axes = np.asarray(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["original", "α = 10", "α = 20.5"]
    assert [axes[1, j].images[0].get_clim()[1] for j in range(3)] == pytest.approx([1.0, 0.2, 0.4])
    assert [axes[0, 0].get_ylabel(), axes[1, 0].get_ylabel()] == ["frame", "|motion|"]
    with pytest.raises(MernbError, match="2 motion maps"):
        plot_magnification(frames, motions[:2], [0, 10, 20])


def test_key_frames_read_onset_apex_and_offset(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from mernb.report.figures import key_frames

    paths = []
    for k in range(4):
        paths.append(tmp_path / f"img{k}.png")
        Image.fromarray(np.full((3, 3, 3), 40 * k, dtype=np.uint8)).save(paths[-1])
    clip = SimpleNamespace(sample_id="x", frame_numbers=[10, 11, 12, 13], frame_paths=paths, apex=11)
    assert [int(f[0, 0, 0]) for f in key_frames(clip)] == [0, 40, 120]
    clip.apex = 99  # not among the frames: the middle one
    assert [int(f[0, 0, 0]) for f in key_frames(clip)] == [0, 80, 120]


def test_glue_marks_figures_without_smoke_title(monkeypatch):
    from mernb.report.glue import mark_smoke

    monkeypatch.setenv("MERNB_PLAN_KIND", "synthetic")
    bare = Figure()
    bare.add_subplot()
    assert mark_smoke(bare).get_suptitle() == "SynthME smoke"
    titled = Figure()
    titled.suptitle("MPT Fig. 7")
    assert mark_smoke(titled).get_suptitle() == "MPT Fig. 7 (SynthME smoke)"
    done = Figure()
    done.add_subplot().set_title("x (SynthME smoke)")
    assert mark_smoke(done).get_suptitle() == ""
    monkeypatch.setenv("MERNB_PLAN_KIND", "reproduction")
    assert mark_smoke(Figure()).get_suptitle() == ""


def test_attention_frames_sit_in_two_columns_beside_the_heatmap(tmp_path):
    frames = [np.full((4, 4, 3), k, dtype=np.uint8) for k in range(8)]
    fig = plot_attention(np.full((8, 8), 1 / 8), frames=frames, title="HLoRA-MER Fig. 5")
    heat, panels = fig.axes[0], [ax for ax in fig.axes[1:] if ax.images and ax.get_title().startswith("frame")]
    assert [ax.get_title() for ax in panels] == [f"frame {k + 1}" for k in range(8)]
    assert [int(ax.images[0].get_array()[0, 0, 0]) for ax in panels] == list(range(8))
    save_figure(fig, tmp_path / "a.png")  # positions are final after a draw
    lefts = sorted({round(ax.get_position().x0, 3) for ax in panels})
    assert len(lefts) == 2 and min(lefts) > heat.get_position().x1  # two columns, right of the heatmap
    assert fig.get_suptitle() == "HLoRA-MER Fig. 5"
