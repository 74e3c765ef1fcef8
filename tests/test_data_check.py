"""``mernb data check`` through the CLI: annotation file alone, --json, user-config defaults, frames and errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from mernb.cli import main
from mernb.data.check import main as check_main
from mernb.data.check import summarize
from tests.conftest import fixture_file


def run(capsys, *argv):
    rc = main(["data", "check", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_annotation_alone_text(capsys):
    rc, out, _ = run(capsys, "--dataset", "casme2", "--annotation", str(fixture_file("CASME2/CASME2-coding-20140508.xlsx")))
    assert rc == 0
    assert "samples     255  subjects 26" in out
    assert "protocol casme2_5class: 246 samples, 26 subjects (happiness 32, disgust 63, repression 27, surprise 25, others 99)" in out
    assert "protocol casme2_3class: 156 samples" in out
    assert "[apex_fallback] CASME2-coding-20140508.xlsx row 31: apex not annotated ('/')" in out
    assert "frames not checked" in out


def test_check_json(capsys):
    rc, out, _ = run(capsys, "--dataset", "casme3", "--annotation",
                     str(fixture_file("CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")), "--json")
    summary = json.loads(out)
    assert rc == 0 and summary["samples"] == 860 and summary["subjects"] == 94
    assert summary["protocols"]["casme3_7class"]["samples"] == 860
    assert summary["protocols"]["casme3_3class"] == {
        "classes": {"negative": 457, "positive": 55, "surprise": 187}, "samples": 699, "subjects": 88}
    assert summary["problem_counts"] == {"correction": 6}
    assert all({"kind", "message"} <= set(p) for p in summary["problems"])


def test_check_megc_composite_per_dataset(capsys):
    rc, out, _ = run(capsys, "--dataset", "megc2019", "--annotation", str(fixture_file("MEGC2019/combined_3_class_gt.csv")))
    assert rc == 0 and "megc2019_3class: 442 samples, 68 subjects (negative 250, positive 109, surprise 83)" in out
    assert "smic: 164 (negative 70, positive 51, surprise 43)" in out


def test_check_defaults_from_user_config(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  samm: {{annotation: '{fixture_file('SAMM/SAMM_Micro_FACS_Codes_v2.xlsx')}'}}\n")
    monkeypatch.setenv("MERNB_CONFIG", str(config))
    rc, out, _ = run(capsys, "--dataset", "samm")
    assert rc == 0 and "protocol samm_5class: 136 samples" in out and "[correction]" in out
    rc, _, err = run(capsys, "--dataset", "casme2")
    assert rc == 2 and "datasets.casme2.root" in err


def test_check_with_root_reports_missing_frames(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text(
        "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n"
        "1,EP02_01f,1,2,3,12,happiness\n1,EP03_02,1,2,3,4,disgust\n")
    clip = tmp_path / "root" / "sub01" / "EP02_01f"
    clip.mkdir(parents=True)
    for n in (1, 3):
        Image.new("L", (2, 2)).save(clip / f"img{n}.jpg")
    rc, out, _ = run(capsys, "--dataset", "casme2", "--root", str(tmp_path / "root"), "--annotation", str(tmp_path / "labels.csv"))
    assert rc == 1
    assert "with frames 1" in out and "[frame_gaps]" in out
    assert "[missing_frames] labels.csv row 3 (sub01 EP03_02): clip folder not found" in out
    summary = summarize("casme2", tmp_path / "root", tmp_path / "labels.csv")
    assert summary["frames_checked"] and summary["problem_counts"] == {"frame_gaps": 1, "missing_frames": 1}


def test_check_errors(tmp_path, capsys):
    rc, _, err = run(capsys, "--dataset", "casme2", "--annotation", str(tmp_path / "none.xlsx"))
    assert rc == 2 and "does not exist" in err
    rc, _, err = run(capsys, "--dataset", "nope", "--annotation", "x.csv")
    assert rc == 2 and "unknown dataset 'nope'" in err
    rc, _, err = run(capsys, "--dataset", "samm", "--annotation", str(fixture_file("SAMM/SAMM_LongVideos_V2_Release.csv")))
    assert rc == 2 and "Long Videos" in err


def _jpeg(path, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def _frames_dataset(tmp_path):
    """One CASME II clip, frames 1..8 (apex 3), with every defect of issue 10 section 3."""
    (tmp_path / "labels.csv").write_text(
        "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n1,EP01_01,1,3,8,12,happiness\n")
    clip = tmp_path / "root" / "sub01" / "EP01_01"
    clip.mkdir(parents=True)
    for n in range(1, 9):
        _jpeg(clip / f"img{n}.jpg", size=(80, 48) if n == 4 else (64, 48), seed=n)
    for n in (3, 6):  # truncated inside the image data (apex 3 is decoded by default, 6 only with --full)
        data = (clip / f"img{n}.jpg").read_bytes()
        assert len(data) > 3000
        (clip / f"img{n}.jpg").write_bytes(data[: len(data) * 2 // 3])
    (clip / "img5.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (64, 48)).save(clip / "img2.png")  # a second file numbered 2
    (clip / "._img1.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")  # sorts first; ignored
    (clip / ".hidden7.jpg").write_bytes(b"")
    return tmp_path / "root", tmp_path / "labels.csv", clip


def test_check_frames_decodes_sizes_duplicates(tmp_path):
    root, labels, clip = _frames_dataset(tmp_path)
    summary = summarize("casme2", root, labels)
    assert summary["frames_decoded"] == "first, apex, last"
    by_kind = {}
    for p in summary["problems"]:
        by_kind.setdefault(p["kind"], []).append(p["message"])
    assert summary["problem_counts"] == {"duplicate_frames": 1, "corrupt_frame": 2, "frame_size": 1}
    (dup,) = by_kind["duplicate_frames"]
    assert "img2.jpg/img2.png -> img2.jpg" in dup  # the folder's common format (jpg) wins
    corrupt = sorted(by_kind["corrupt_frame"])
    assert "img3.jpg: truncated JPEG" in corrupt[0] and "img5.jpg: not a readable image" in corrupt[1]
    (odd,) = by_kind["frame_size"]
    assert "1 of 8 frames differ in size from the clip's 64x48 (img4.jpg 80x48)" in odd
    assert not any("._img1" in m or "hidden7" in m for ms in by_kind.values() for m in ms)
    full = summarize("casme2", root, labels, full=True)
    assert full["frames_decoded"] == "all" and full["problem_counts"]["corrupt_frame"] == 3
    assert any("img6.jpg: truncated JPEG" in p["message"] for p in full["problems"])


def test_check_frames_exit_status_and_full_flag(tmp_path, capsys):
    root, labels, _ = _frames_dataset(tmp_path)
    args = argparse.Namespace(dataset="casme2", root=str(root), annotation=str(labels), json=True, full=True)
    assert check_main(args) == 1  # clips with corrupt or odd-sized frames fail at preparation
    assert json.loads(capsys.readouterr().out)["problem_counts"]["corrupt_frame"] == 3


def test_check_header_only_file_is_a_problem(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text(
        "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n\n")
    rc, out, _ = run(capsys, "--dataset", "casme2", "--annotation", str(tmp_path / "labels.csv"))
    assert rc == 1 and "no problems found" not in out
    assert "[no_samples]" in out and "0 samples" in out
