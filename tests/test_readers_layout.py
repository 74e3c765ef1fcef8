"""Readers on CSV exports, small frame layouts built in tmp_path, and bad input (clear errors, skip mode)."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from mernb.data.readers import (
    frame_number,
    parse_aus,
    read_afew,
    read_casme2,
    read_casme3,
    read_dataset,
    read_dataset_report,
    read_dfew,
    read_ferv39k,
    read_megc2019,
    read_meview,
    read_mmew,
    read_samm,
    read_smic,
)
from mernb.errors import DatasetError
from tests.conftest import fixture_file


def touch_frames(folder, names):
    """Tiny 2x2 jpg files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("L", (2, 2)).save(folder / name)


def key(samples):
    return [(s.sample_id, s.subject, s.clip, s.onset, s.apex, s.offset, s.label, s.aus) for s in samples]


# ------------------------------------------------------------------------------------ CSV exports
@pytest.mark.parametrize(
    ("name", "relative", "sheet"),
    [
        ("casme2", "CASME2/CASME2-coding-20140508.xlsx", 0),
        ("samm", "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx", 0),
        ("casme3", "CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "label"),
        ("smic_e", "SMIC/SMIC-HS-E_annotation_orig.xlsx", "HS"),
    ],
)
def test_csv_export_reads_the_same(tmp_path, name, relative, sheet):
    path = fixture_file(relative)
    expected = read_dataset(name, annotation=path)
    raw = pd.read_excel(path, sheet_name=sheet, header=None, dtype=object)
    export = tmp_path / "export.csv"
    raw.to_csv(export, header=False, index=False)  # preamble rows (SAMM) kept as in the sheet
    assert key(read_dataset(name, annotation=export)) == key(expected)


def test_samm_export_without_preamble_and_unpadded_subjects(tmp_path):
    path = fixture_file("SAMM/SAMM_Micro_FACS_Codes_v2.xlsx")
    expected = read_samm(annotation=path)
    df = pd.read_excel(path, header=13)
    df["Subject"] = df["Subject"].astype(int)  # 6, not '006'
    df.to_csv(tmp_path / "samm.csv", index=False)
    got = read_samm(annotation=tmp_path / "samm.csv")
    assert key(got) == key(expected)
    assert got[0].subject == "006" and got[0].meta["row"] == 2


def test_casme2_and_casme3_unpadded_or_renamed_subjects(tmp_path):
    c2 = fixture_file("CASME2/CASME2-coding-20140508.xlsx")
    df = pd.read_excel(c2)
    df["Subject"] = "sub" + df["Subject"].astype(str).str.zfill(2)
    df.to_csv(tmp_path / "c2.csv", index=False)
    assert key(read_casme2(annotation=tmp_path / "c2.csv")) == key(read_casme2(annotation=c2))
    c3 = fixture_file("CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")
    df = pd.read_excel(c3)
    df["Subject"] = df["Subject"].str.replace("spNO.", "", regex=False).astype(int)
    df["emotion"] = df["emotion"].str.upper()
    df.to_csv(tmp_path / "c3.csv", index=False)
    assert key(read_casme3(annotation=tmp_path / "c3.csv")) == key(read_casme3(annotation=c3))


# -------------------------------------------------------------------------------------- helpers
def test_frame_number_and_aus():
    names = ["img46.jpg", "reg_img46.jpg", "006_05562.jpg", "355.jpg", "image036237.bmp", "reg_image036237.bmp"]
    assert [frame_number(n) for n in names] == [46, 46, 5562, 355, 36237, 36237]
    assert parse_aus("4+L10") == ("4", "L10") and parse_aus(12) == ("12",) and parse_aus("R14A or 17A") == ("R14A or 17A",)
    assert parse_aus("?") == () and parse_aus(None) == () and parse_aus("12+15 ") == ("12", "15")


# ------------------------------------------------------------------------------------ frame layouts
CASME2_CSV = """Subject,Filename,,OnsetFrame,ApexFrame,OffsetFrame,,Action Units,Estimated Emotion
1,EP02_01f,,8,10,12,,12,happiness
1,EP03_02,,5,/,7,,4+L10,Others
2,EP01_11f,,20,-1,22,,15,repression
"""


@pytest.fixture
def casme2_root(tmp_path):
    root = tmp_path / "CASME2_RAW_selected"
    touch_frames(root / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in range(8, 13)])
    touch_frames(root / "sub01" / "ep03_02", [f"reg_img{n}.jpg" for n in (5, 7)])  # folder case differs, gap at 6
    touch_frames(root / "sub02" / "EP01_11f", [f"img{n}.jpg" for n in range(20, 23)])
    (tmp_path / "CASME2-coding-20140508.csv").write_text(CASME2_CSV)
    return root


def test_casme2_frames_mapped_by_number(casme2_root):
    samples, problems = read_dataset_report("casme2", casme2_root)  # annotation found beside the root
    a, b, c = samples
    assert a.frame_numbers == (8, 9, 10, 11, 12)  # numeric, not lexicographic order
    assert [p.name for p in a.frame_paths] == ["img8.jpg", "img9.jpg", "img10.jpg", "img11.jpg", "img12.jpg"]
    assert b.label == "others" and b.apex is None and b.apex_frame == 6 and b.frame_numbers == (5, 7)
    assert b.meta["missing_frames"] == 1 and c.apex is None and "-1" in c.meta["apex_fallback"]
    assert {p.kind for p in problems} == {"apex_fallback", "frame_gaps"}
    assert any(p.kind == "frame_gaps" and "(6)" in p.message for p in problems)


def test_missing_clip_folder_error_and_skip(casme2_root):
    (casme2_root / "sub02" / "EP01_11f" / "img20.jpg").unlink()
    for f in (casme2_root / "sub02" / "EP01_11f").iterdir():
        f.unlink()
    (casme2_root / "sub02" / "EP01_11f").rmdir()
    with pytest.raises(DatasetError, match=r"CASME2-coding-20140508.csv row 4 \(sub02 EP01_11f\): clip folder not found"):
        read_casme2(casme2_root)
    samples, problems = read_dataset_report("casme2", casme2_root, on_missing="skip")
    assert [s.clip for s in samples] == ["EP02_01f", "EP03_02"]
    assert any(p.kind == "missing_frames" and "row 4" in p.message for p in problems)


def test_no_frames_in_range_is_missing(casme2_root):
    for f in (casme2_root / "sub01" / "EP02_01f").iterdir():
        f.rename(f.with_name(f"img{frame_number(f) + 100}.jpg"))
    with pytest.raises(DatasetError, match=r"no frame numbered 8..12"):
        read_casme2(casme2_root)


def test_wrong_root_and_missing_files(tmp_path, casme2_root):
    annotation = casme2_root.parent / "CASME2-coding-20140508.csv"
    with pytest.raises(DatasetError, match="wrong root"):
        read_casme2(tmp_path / "CASME2_RAW_selected" / "sub01", annotation)
    with pytest.raises(DatasetError, match="is not a folder"):
        read_casme2(tmp_path / "nowhere", annotation)
    with pytest.raises(DatasetError, match="does not exist"):
        read_casme2(annotation=tmp_path / "missing.xlsx")
    empty = tmp_path / "elsewhere" / "empty"  # neither it nor its parent holds an annotation file
    empty.mkdir(parents=True)
    with pytest.raises(DatasetError, match="no annotation file given"):
        read_casme2(empty)
    with pytest.raises(DatasetError, match="give root"):
        read_casme2()


def test_unknown_label_names_the_row(tmp_path):
    bad = tmp_path / "c2.csv"
    bad.write_text(CASME2_CSV.replace("repression", "tense"))
    with pytest.raises(DatasetError, match=r"c2.csv row 4: unknown casme2 label 'tense'"):
        read_casme2(annotation=bad)
    samples, problems = read_dataset_report("casme2", annotation=bad, on_missing="skip")
    assert len(samples) == 2 and any(p.kind == "skipped_row" and p.row == 4 for p in problems)


def test_bad_numbers_and_header(tmp_path):
    bad = tmp_path / "c2.csv"
    bad.write_text(CASME2_CSV.replace("20,-1,22", "x,-1,22"))
    with pytest.raises(DatasetError, match=r"row 4: OnsetFrame 'x' is not a frame number"):
        read_casme2(annotation=bad)
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"nohead.csv: header row not found.*Estimated Emotion"):
        read_casme2(annotation=nohead)


def test_duplicate_rows_get_unique_ids(tmp_path):
    path = tmp_path / "c3.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,AU,Objective class,emotion\n"
                    "spNO.1,a,10,12,20,4,III,disgust\nspNO.1,a,10,11,15,4,III,Others\nspNO.1,J,30,31,40,12,I,happy\n")
    samples, problems = read_dataset_report("casme3", annotation=path)
    assert [s.sample_id for s in samples] == ["casme3/spNO.1/a/10", "casme3/spNO.1/a/10#2", "casme3/spNO.1/j/30"]
    assert samples[1].label == "others" and samples[1].meta["duplicate_of"] == "casme3/spNO.1/a/10"
    assert [p.kind for p in problems] == ["duplicate_id"]


def test_casme3_layout_case_insensitive_shared_video(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,AU,Objective class,emotion\n"
                    "spNO.1,a,355,357,360,5,II,others\nspNO.1,a,370,372,374,4,III,disgust\n")
    touch_frames(tmp_path / "part_A" / "spNo.1" / "A" / "color", [f"{n}.jpg" for n in range(350, 376) if n != 356])
    samples, problems = read_dataset_report("casme3", tmp_path / "part_A", path)
    assert [s.frame_numbers for s in samples] == [(355, 357, 358, 359, 360), (370, 371, 372, 373, 374)]
    assert samples[0].meta["missing_frames"] == 1 and samples[0].fps == 30.0
    assert [p.kind for p in problems] == ["frame_gaps"]


def test_samm_and_mmew_layouts(tmp_path):
    samm_csv = tmp_path / "samm.csv"
    samm_csv.write_text("notes\n\nSubject,Filename,Inducement Code,Onset Frame,Apex Frame,Offset Frame,Duration,Micro,"
                        "Action Units,Estimated Emotion,Objective Classes,Notes\n6,006_1_2,1,5562,5563,5564,3,Micro,4+7,Other,7,\n")
    touch_frames(tmp_path / "SAMM" / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5560, 5567)])
    (s,) = read_samm(tmp_path / "SAMM", samm_csv)
    assert s.label == "others" and s.frame_numbers == (5562, 5563, 5564) and s.meta["row"] == 4
    mmew_csv = tmp_path / "mmew.csv"
    mmew_csv.write_text("Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion,remarks\n"
                        "1,S01-01-001,1,2,3,12,happiness,\n2,S02-01-001,1,0,3,4,others,\n")
    touch_frames(tmp_path / "MMEW" / "Micro_Expression" / "happiness" / "S01-01-001", ["1.jpg", "2.jpg", "3.jpg"])
    touch_frames(tmp_path / "MMEW" / "Micro_Expression" / "repression" / "S02-01-001", ["1.jpg", "2.jpg", "3.jpg"])
    a, b = read_mmew(tmp_path / "MMEW", mmew_csv)
    assert a.frame_numbers == (1, 2, 3) and b.label == "others" and "repression" in str(b.frame_paths[0])
    assert b.apex is None and b.meta["apex_fallback"] == "apex 0 (not annotated)"


def test_smic_folder_labels(tmp_path):
    root = tmp_path / "SMIC_all_cropped"
    touch_frames(root / "HS" / "s1" / "micro" / "negative" / "s1_ne_01", [f"reg_image{n:06d}.bmp" for n in range(36237, 36241)])
    touch_frames(root / "HS" / "s12" / "micro" / "Surprise" / "s12_sur_02", [f"image{n}.jpg" for n in (99, 100, 101)])
    touch_frames(root / "HS" / "s1" / "non_micro" / "n_01", ["image1.jpg"])
    samples, problems = read_dataset_report("smic", root)
    assert [(s.subject, s.clip, s.label, s.onset, s.offset) for s in samples] == [
        ("s1", "s1_ne_01", "negative", 36237, 36240), ("s12", "s12_sur_02", "surprise", 99, 101)]
    assert samples[0].apex is None and samples[0].apex_frame == 36238 and samples[0].fps == 100.0
    with pytest.raises(DatasetError, match="smic_e"):
        read_smic(root, tmp_path / "x.xlsx")
    with pytest.raises(DatasetError, match="wrong root"):
        read_smic(root / "HS" / "s1")


def test_meview_frames_and_videos(tmp_path):
    csv = tmp_path / "meview.csv"
    csv.write_text("subject,clip,onset,apex,offset,emotion,aus,fps\np01,poker_01,3,4,5,Happy,12,\np02,tv_02,10,,20,negative,,30\n")
    touch_frames(tmp_path / "clips" / "poker_01", [f"frame_{n:04d}.png" for n in range(1, 8)])
    (tmp_path / "clips" / "tv_02.mp4").write_bytes(b"\x00")
    a, b = read_meview(tmp_path / "clips")
    assert a.label == "happiness" and a.frame_numbers == (3, 4, 5) and a.fps == 25.0
    assert b.frame_paths == (tmp_path / "clips" / "tv_02.mp4",) and b.fps == 30.0 and b.apex is None
    assert read_meview(annotation=csv)[1].frame_paths == ()


def test_megc2019_list_with_root(tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text("data,subject,clip,label\ncasme2,sub01,EP02_01f,1\nsamm,6,006_1_2,0\nsmic,s01,s01_ne_01,0\n")
    touch_frames(tmp_path / "root" / "CASME2" / "sub01" / "EP02_01f", ["img46.jpg", "img47.jpg"])
    touch_frames(tmp_path / "root" / "samm" / "006" / "006_1_2", ["006_05562.jpg"])
    touch_frames(tmp_path / "root" / "SMIC" / "HS" / "s1" / "micro" / "negative" / "s1_ne_01", ["image5.jpg"])
    samples = read_megc2019(tmp_path / "root", lst)
    assert [(s.dataset, s.subject, s.clip, s.label, s.onset, s.offset) for s in samples] == [
        ("casme2", "sub01", "EP02_01f", "positive", 46, 47), ("samm", "006", "006_1_2", "negative", 5562, 5562),
        ("smic", "s1", "s1_ne_01", "negative", 5, 5)]


def test_macro_clip_readers(tmp_path):
    dfew = tmp_path / "DFEW"
    touch_frames(dfew / "Clip" / "clip_224x224" / "00001", ["1_1.jpg", "1_2.jpg"])
    touch_frames(dfew / "Clip" / "clip_224x224" / "00002", ["2_1.jpg"])
    split = dfew / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    split.parent.mkdir(parents=True)
    split.write_text("video_name,label\n1,5\n")
    assert [(s.clip, s.label) for s in read_dfew(dfew)] == [("00001", ""), ("00002", "")]
    (s,) = read_dfew(dfew, split)
    assert (s.clip, s.label, s.meta["split"], s.frame_numbers) == ("00001", "surprise", "train", (1, 2))
    ferv = tmp_path / "FERV39K"
    touch_frames(ferv / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010", ["0.jpg", "1.jpg"])
    (ferv / "train_All.csv").write_text("Action/Sad/0010 Sad\n")
    assert [(s.clip, s.label) for s in read_ferv39k(ferv)] == [("Action/Sad/0010", "sad")]
    assert read_ferv39k(ferv, ferv / "train_All.csv")[0].frame_numbers == (0, 1)
    afew = tmp_path / "AFEW"
    (afew / "Train_AFEW" / "Angry").mkdir(parents=True)
    (afew / "Train_AFEW" / "Angry" / "013736360.avi").write_bytes(b"\x00")
    (s,) = read_afew(afew)
    assert (s.clip, s.label, s.meta["split"]) == ("013736360", "angry", "train") and s.meta["video"].endswith(".avi")
    with pytest.raises(DatasetError, match="wrong root"):
        read_afew(tmp_path)
