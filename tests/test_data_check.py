"""``mernb data check`` through the CLI: annotation file alone, --json, user-config defaults, frames and errors."""

from __future__ import annotations

import json

from PIL import Image

from mernb.cli import main
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
