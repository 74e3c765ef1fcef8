"""SynthME: formats of every layout, determinism, motion, readability by the real readers, learnability."""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from PIL import Image

from mernb.data.synth import DATASETS, generate, preview_figure
from mernb.data.synth.faces import make_subject
from mernb.data.synth.motion import AU, au_field, envelope, parse_aus
from mernb.errors import ConfigError, DatasetError

SMALL = {"max_subjects": 2, "max_samples_per_subject": 2, "frame_step": 8}


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "SYNTHME.json"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, object]:
    """One small generated-rows set per layout (shared by the format and reader tests)."""
    base = tmp_path_factory.mktemp("synth")
    return {name: generate(name, base / name, rows="generated", **SMALL) for name in DATASETS}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate("samm", tmp_path / "a", rows="generated", seed=3, **SMALL)
    b = generate("samm", tmp_path / "b", rows="generated", seed=3, **SMALL)
    c = generate("samm", tmp_path / "c", rows="generated", seed=4, **SMALL)
    ha, hb, hc = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(ha) == a.n_frames + 1 and ha == hb
    assert ha != hc
    assert a.n_frames == b.n_frames and a.apex_displacement_px == b.apex_displacement_px
    assert c.n_samples == 4


def test_reuse_and_overwrite(tmp_path):
    first = generate("casme3", tmp_path, rows="generated", **SMALL)
    again = generate("casme3", tmp_path, rows="generated", **SMALL)
    assert again == first  # read back from SYNTHME.json, nothing re-rendered
    with pytest.raises(DatasetError, match="overwrite=True"):
        generate("casme3", tmp_path, rows="generated", seed=1, **SMALL)
    other = generate("casme3", tmp_path, rows="generated", seed=1, overwrite=True, **SMALL)
    assert other.root == first.root and other.n_samples == first.n_samples
    with pytest.raises(ConfigError, match="unknown"):
        generate("casme9", tmp_path / "x")
    with pytest.raises(ConfigError, match="no fixture file"):
        generate("dfew", tmp_path / "y", rows="fixtures")


def test_casme2_format(generated):
    info = generated["casme2"]
    assert info.annotation.name == "CASME2-coding-20140508.xlsx"
    wb = openpyxl.load_workbook(info.annotation)
    assert wb.sheetnames == ["Sheet1", "Sheet2", "Sheet3"]
    header = [c.value for c in wb["Sheet1"][1]]
    assert header == ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                      "Estimated Emotion"]
    first = [c for c in wb["Sheet1"][2]]
    assert first[0].value == "01" and first[0].data_type == "s" and isinstance(first[3].value, int)
    df = pd.read_excel(info.annotation)
    assert list(df.columns[[2, 6]]) == ["Unnamed: 2", "Unnamed: 6"] and len(df) == info.n_samples
    row = df.iloc[0]
    folder = info.root / f"sub{int(row.Subject):02d}" / row.Filename
    assert (folder / f"img{row.OnsetFrame}.jpg").is_file() and (folder / f"img{row.OffsetFrame}.jpg").is_file()
    assert Image.open(folder / f"img{row.OnsetFrame}.jpg").size == (112, 112)


def test_samm_format(generated):
    info = generated["samm"]
    wb = openpyxl.load_workbook(info.annotation)
    assert wb.sheetnames == ["MICRO_ONLY"]
    assert wb["MICRO_ONLY"]["A14"].value == "Subject" and wb["MICRO_ONLY"]["G15"].value.startswith("=SUM(F15-D15)")
    df = pd.read_excel(info.annotation, header=13, dtype={"Subject": str})
    assert len(df) == info.n_samples and df.columns[7] == "Micro"
    assert (df["Duration"] == df["Offset Frame"] - df["Onset Frame"] + 1).all()  # cached formula values
    row = df.iloc[0]
    frame = info.root / row.Subject / row.Filename / f"{row.Subject}_{row['Onset Frame']:05d}.jpg"
    assert Image.open(frame).mode == "L"


def test_smic_casme3_mmew_dfew_formats(generated):
    smic = generated["smic"]
    assert smic.annotation is None
    clips = sorted((smic.root / "HS").glob("s*/micro/*/s*_*"))
    assert len(clips) == smic.n_samples and all(c.parent.name in {"negative", "positive", "surprise"} for c in clips)
    assert all(p.suffix == ".bmp" and p.stem.startswith("image") and len(p.stem) >= 11 for p in clips[0].iterdir())
    c3 = generated["casme3"]
    wb = openpyxl.load_workbook(c3.annotation)
    assert wb.sheetnames == ["label", "Sheet1", "Sheet3"]
    assert all(c.data_type == "s" for row in wb["label"].iter_rows() for c in row if c.value is not None)
    first = [c.value for c in wb["label"][2]]
    assert (c3.root / first[0] / first[1] / "color" / f"{first[2]}.jpg").is_file()
    mm = generated["mmew"]
    df = pd.read_excel(mm.annotation)
    assert list(df.columns) == ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                                "Estimated Emotion", "remarks"]
    r = df.iloc[0]
    assert (mm.root / "Micro_Expression" / r["Estimated Emotion"] / r.Filename / f"{r.OnsetFrame}.jpg").is_file()
    dfew = generated["dfew"]
    assert dfew.annotation.parent.name == "train(single-labeled)"
    labels = pd.read_csv(dfew.annotation)
    assert list(labels.columns) == ["video_name", "label"] and labels.label.between(1, 7).all()
    assert (dfew.root / "Clip" / "clip_224x224" / f"{labels.video_name[0]:05d}").is_dir()


def test_au_parsing_and_envelope():
    assert parse_aus("4+L10") == [AU(4), AU(10, "L")]
    assert parse_aus(12) == [AU(12)]
    assert parse_aus("(R6 or R12)+R15") == [AU(6, "R"), AU(15, "R")]
    assert parse_aus("ref(7B)+43C")[0] == AU(7, "", 0.75)
    assert parse_aus("?") == [] and parse_aus(None) == []
    env = envelope(np.arange(0, 12), 2, 5, 10)
    assert env[1] == 0 and env[5] == 1 and env[11] == 0 and np.all(np.diff(env[2:6]) > 0) and np.all(np.diff(env[5:11]) < 0)


def test_au_fields_move_the_right_regions():
    subject = make_subject(np.random.default_rng(0), 112)
    lm = subject.landmarks

    def magnitude(field, points):
        return float(np.mean([np.hypot(*field[:, int(round(y)), int(round(x))]) for x, y in points]))

    smile, brows = au_field(subject, AU(12)), au_field(subject, AU(1))
    corners, inner_brows = lm[[48, 54]], lm[[21, 22]]
    assert magnitude(smile, corners) > 0.8 and magnitude(smile, inner_brows) < 0.05
    assert magnitude(brows, inner_brows) > 0.8 and magnitude(brows, corners) < 0.05
    assert brows[1, int(lm[21, 1]), int(lm[21, 0])] < 0  # AU1 moves the brow up (towards row 0)
    left = au_field(subject, AU(12, "L"))  # subject's left = image landmark 54
    assert magnitude(left, lm[[54]]) > 0.8 and magnitude(left, lm[[48]]) < 0.05


def test_faces_are_detected_by_dlib_hog(generated):
    import dlib

    detector = dlib.get_frontal_face_detector()
    frames = [next(iter(sorted(p.iterdir()))) for p in sorted(generated["casme2"].root.glob("sub*/*"))]
    frames += [next(iter(sorted(p.glob("color/*")))) for p in sorted(generated["casme3"].root.glob("spNO.*/*"))]
    found = [len(detector(np.asarray(Image.open(f).convert("RGB")), 0)) > 0 for f in frames]
    assert len(found) >= 6 and all(found)


def test_apex_displacement_is_micro_and_macro_is_larger(generated):
    micro = np.concatenate([generated[n].apex_displacement_px for n in ("casme2", "samm", "smic", "mmew")])
    macro = np.asarray(generated["dfew"].apex_displacement_px)
    assert 0.3 <= micro.min() and micro.max() <= 4.0 and 0.5 < np.median(micro) < 2.0
    assert np.median(macro) > 3 * np.median(micro)


def test_readers_read_generated_sets(generated):
    from mernb.data.readers import read_dataset

    for name, info in generated.items():
        samples = read_dataset(name, info.root, info.annotation)
        expected = info.n_samples if name != "dfew" else len(pd.read_csv(info.annotation))
        assert len(samples) == expected, name
        for s in samples:
            assert s.frame_paths and all(Path(p).is_file() for p in s.frame_paths), s.sample_id
            if s.onset is not None and name not in ("smic", "dfew"):
                assert s.frame_numbers[0] == s.onset and s.frame_numbers[-1] == s.offset, s.sample_id
    casme2 = read_dataset("casme2", generated["casme2"].root, generated["casme2"].annotation)
    sheet = pd.read_excel(generated["casme2"].annotation)
    assert collections.Counter(s.label for s in casme2) == collections.Counter(sheet["Estimated Emotion"])


@pytest.mark.parametrize("name", ["casme2", "samm", "smic", "casme3", "mmew"])
def test_readers_read_sets_from_real_rows(name, fixtures_dir, tmp_path):
    from mernb.data.readers import read_dataset

    info = generate(name, tmp_path, rows="fixtures", fixtures_dir=fixtures_dir, max_subjects=3,
                    max_samples_per_subject=4, frame_step=10)
    assert info.rows == "fixtures"
    samples = read_dataset(name, info.root, info.annotation, on_missing="skip")
    assert len(samples) == info.n_samples
    assert len({s.subject for s in samples}) == 3
    for s in samples:
        numbers = set(s.frame_numbers)
        assert s.onset is None or s.onset < 1 or s.onset in numbers or name == "smic"
        assert s.apex is None or s.apex in numbers


def test_onset_apex_difference_baseline_is_learnable_not_trivial(tmp_path):
    """LOSO (8 subjects): |apex − onset| at 28² → PCA → logistic regression beats chance, is not perfect."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from mernb.data.readers import read_dataset

    info = generate("smic", tmp_path, rows="generated", max_subjects=8, max_samples_per_subject=12,
                    max_clip_frames=3)
    samples = read_dataset("smic", info.root)
    features, labels, groups = [], [], []
    for s in samples:
        onset = np.asarray(Image.open(s.frame_paths[0]).convert("L"), np.float32)
        # SMIC has no apex: take the frame of largest change from onset (the rendered apex is among them)
        others = [np.asarray(Image.open(p).convert("L"), np.float32) for p in s.frame_paths[1:]]
        apex = max(others, key=lambda f: float(np.abs(f - onset).sum()))
        diff = np.abs(apex - onset)
        features.append(diff.reshape(28, 4, 28, 4).mean((1, 3)).ravel())
        labels.append(s.label)
        groups.append(s.subject)
    x, y = np.asarray(features), np.asarray(labels)
    model = make_pipeline(StandardScaler(), PCA(20, random_state=0), LogisticRegression(max_iter=2000))
    with threadpool_limits(1):  # tiny problem: BLAS threads only add contention
        pred = cross_val_predict(model, x, y, groups=groups, cv=LeaveOneGroupOut())
    accuracy = float((pred == y).mean())
    majority = max(collections.Counter(y).values()) / len(y)
    print(f"LOSO accuracy {accuracy:.3f} vs majority {majority:.3f} (n={len(y)})")
    assert accuracy > majority + 0.1  # 0.59 vs 0.42 majority (chance 1/3) when written
    assert accuracy < 0.98


def test_preview_figure(generated):
    info = generated["casme2"]
    folder = sorted(info.root.glob("sub*/*"))[0]
    frames = sorted(folder.iterdir(), key=lambda p: int(p.stem[3:]))
    fig = preview_figure(frames[0], frames[len(frames) // 2], gain=8, title=folder.name)
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "|apex − onset| × 8"
    with pytest.raises(ValueError, match="shape"):
        preview_figure(np.zeros((4, 4, 3)), np.zeros((5, 5, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["casme2", "samm", "smic", "casme3", "mmew"])
def test_full_sets_from_real_rows_read_back_with_the_files_label_counts(name, fixtures_dir, tmp_path):
    """Every real row rendered (every 10th frame) and read back: same rows, same label counts as the file."""
    from mernb.data.readers import read_dataset_report
    from mernb.data.synth.layouts import LAYOUTS

    info = generate(name, tmp_path, rows="fixtures", fixtures_dir=fixtures_dir, frame_step=10)
    samples, problems = read_dataset_report(name, info.root, info.annotation, on_missing="skip")
    rows = LAYOUTS[name].read_fixture(fixtures_dir / LAYOUTS[name].fixture)
    expected = collections.Counter(r.emotion.strip().lower().replace("other", "others").replace("otherss", "others")
                                   for r in rows)
    assert len(samples) == len(rows) == info.n_samples
    assert collections.Counter(s.label for s in samples) == expected
    assert not [p for p in problems if p.kind in ("missing_frames", "skipped_row")]
