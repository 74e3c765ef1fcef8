"""Annotation files as users have them (issue 10 sections 1-2, 6): renamed and extra columns, MEGC-style lists
with and without a header, a user column/label mapping, near-miss headers, duplicate rows, header-only files,
Unicode normal forms and hidden files. Every file is built here in the format seen in circulated copies (no real
annotation file is copied)."""

from __future__ import annotations

import unicodedata

import pytest
from openpyxl import Workbook
from PIL import Image

from mernb.cli import main
from mernb.data.readers import (
    read_casme2,
    read_dataset,
    read_dataset_report,
    read_megc2019,
    read_samm,
    read_smic_e,
)
from mernb.data.readers._common import read_table
from mernb.errors import ConfigError, DatasetError


def write_xlsx(path, rows):
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def frames(folder, numbers, name="img{}.jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        Image.new("L", (2, 2)).save(folder / name.format(n))


def fields(samples):
    return [(s.sample_id, s.subject, s.clip, s.onset, s.apex, s.offset, s.label, s.aus) for s in samples]


# ------------------------------------------------------------------------------ renamed columns
def test_casme2_renamed_and_extra_columns_xlsx(tmp_path):
    """Onset/Apex/Offset, Label, extra catego/Duration/Objective Classes, no blank columns, subject ids plain,
    zero-padded and prefixed, a trailing empty row."""
    path = write_xlsx(tmp_path / "casme2.xlsx", [
        ["Subject", "Filename", "Onset", "Apex", "Offset", "Duration", "Action Units", "Label", "catego",
         "Objective Classes"],
        [1, "EP02_01f", 46, 59, 86, 41, "12", "happiness", 1, 1],
        ["04", "EP12_01f", 100, "/", 120, 21, "4+L10", "Disgust", 0, 7],
        ["sub26", "EP18_50", 5, 9, 7, 3, "?", "others", 3, 3],
        [None, None, None, None, None, None, None, None, None, None],
    ])
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert fields(samples) == [
        ("casme2/sub01/EP02_01f/46", "sub01", "EP02_01f", 46, 59, 86, "happiness", ("12",)),
        ("casme2/sub04/EP12_01f/100", "sub04", "EP12_01f", 100, None, 120, "disgust", ("4", "L10")),
        ("casme2/sub26/EP18_50/5", "sub26", "EP18_50", 5, None, 7, "others", ()),
    ]
    assert samples[0].meta["objective_class"] == "1"
    assert [p.kind for p in problems] == ["apex_fallback", "apex_fallback"]
    assert "apex 9 outside [onset 5, offset 7]" in problems[1].message


def test_samm_renamed_columns_csv_plain_and_padded_subjects(tmp_path):
    path = write_csv(tmp_path / "samm.csv", [
        "Subject,Filename,Inducement Code,Onset,Apex,Offset,Duration,Type,Action Units,Notes,Label,Objective Classes",
        "6,006_1_2,1,5562,5588,5624,63,Micro - 1/2,4+7,,Anger,3",
        "007,007_3_1,3,1000,1010,1030,31,Micro - 1/2,R14A,,Other,7",
        "",
    ])
    samples, problems = read_dataset_report("samm", annotation=path)
    assert fields(samples) == [
        ("samm/006/006_1_2/5562", "006", "006_1_2", 5562, 5588, 5624, "anger", ("4", "7")),
        ("samm/007/007_3_1/1000", "007", "007_3_1", 1000, 1010, 1030, "others", ("R14A",)),
    ]
    assert samples[1].meta["objective_class"] == "7" and not problems
    same = write_csv(tmp_path / "samm_release.csv", [
        "Subject,Filename,Onset Frame,Apex Frame,Offset Frame,Action Units,Estimated Emotion",
        "006,006_1_2,5562,5588,5624,4+7,Anger", "7,007_3_1,1000,1010,1030,R14A,Other"])
    assert fields(read_samm(annotation=same)) == fields(samples)


def test_two_names_for_one_field_take_the_first_column(tmp_path):
    path = write_csv(tmp_path / "two.csv", [
        "Subject,Filename,Onset,OnsetFrame,Offset,Estimated Emotion,Label",
        "1,EP01,10,99,20,happiness,0",
    ])
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert (samples[0].onset, samples[0].label) == (10, "happiness")
    kinds = sorted((p.kind, p.message) for p in problems)
    assert ("column_choice", "two.csv: two columns for onset: 'Onset' used, 'OnsetFrame' ignored") in kinds
    assert ("column_choice", "two.csv: two columns for emotion: 'Estimated Emotion' used, 'Label' ignored") in kinds
    table = read_table(path, {"x": ["OnsetFrame", "Onset"]}, ["x"])  # column order decides, not alias order
    assert table.columns == {"x": "Onset"} and table.rows[0][1]["x"] == "10"


# ------------------------------------------------------------------------------ MEGC-style lists
MEGC_ROWS = ["casme2,sub01,EP02_01f,1", "casme2,sub01,EP19_05f,0", "samm,6,006_1_2,0", "smic,s01,s01_ne_01,0",
             "smic,s3,s3_sur_01,2"]


def test_megc_official_list_without_header(tmp_path):
    path = write_csv(tmp_path / "megc2019_gt.csv", MEGC_ROWS)
    samples = read_megc2019(annotation=path)
    assert [(s.dataset, s.subject, s.clip, s.label) for s in samples] == [
        ("casme2", "sub01", "EP02_01f", "positive"), ("casme2", "sub01", "EP19_05f", "negative"),
        ("samm", "006", "006_1_2", "negative"), ("smic", "s1", "s1_ne_01", "negative"),
        ("smic", "s3", "s3_sur_01", "surprise")]
    assert samples[0].meta["row"] == 1 and samples[0].onset is None
    with_header = write_csv(tmp_path / "with_header.csv", ["data,subject,clip,label", *MEGC_ROWS])
    assert fields(read_megc2019(annotation=with_header)) == fields(samples)


def test_megc_list_with_frames_and_paths_headerless_and_headed(tmp_path):
    rows = ["casme2,sub01,EP02_01f,1,46,59,86,sub01/EP02_01f/img46.jpg,sub01/EP02_01f/img59.jpg",
            "samm,006,006_1_2,0,5562,,5624,006/006_1_2/006_05562.jpg,"]
    headerless = read_megc2019(annotation=write_csv(tmp_path / "a.csv", rows))
    assert [(s.sample_id, s.onset, s.apex, s.offset) for s in headerless] == [
        ("casme2/sub01/EP02_01f/46", 46, 59, 86), ("samm/006/006_1_2/5562", 5562, None, 5624)]
    assert headerless[0].meta["frame_files"] == {"path_1": "sub01/EP02_01f/img46.jpg", "path_2": "sub01/EP02_01f/img59.jpg"}
    header = "dataset,subject,clip,label,onset_frame,apex_frame,offset_frame,onset_path,apex_path"
    headed = read_megc2019(annotation=write_csv(tmp_path / "b.csv", [header, *rows]))
    assert fields(headed) == fields(headerless)
    assert headed[0].meta["frame_files"] == {"onset_path": "sub01/EP02_01f/img46.jpg", "apex_path": "sub01/EP02_01f/img59.jpg"}
    root = tmp_path / "root"
    frames(root / "CASME2" / "sub01" / "EP02_01f", range(40, 90))
    frames(root / "SAMM" / "006" / "006_1_2", range(5560, 5630), "006_{:05d}.jpg")
    located = read_megc2019(root, tmp_path / "b.csv")
    assert [(s.frame_numbers[0], s.frame_numbers[-1], s.apex) for s in located] == [(46, 86, 59), (5562, 5624, None)]


def test_smic_e_reads_a_smic_hs_list_with_apex_frames(tmp_path):
    """The same list format for one dataset: SMIC-HS clips with apex frames, labels 0/1/2, on the release's
    folders (root/s1/micro/<label>/<clip>); onset/offset are the clip folder's first and last frames."""
    root = tmp_path / "SMIC_HS"
    frames(root / "s1" / "micro" / "negative" / "s1_ne_01", range(90823, 90830), "image{:06d}.bmp")
    frames(root / "s3" / "micro" / "surprise" / "s3_sur_01", range(500, 511), "image{:06d}.bmp")
    headed = write_csv(tmp_path / "smic_list.csv", [
        "data,subject,clip,label,apex_frame", "smic,s01,s1_ne_01,0,90826", "smic,3,s3_sur_01,2,"])
    samples, problems = read_dataset_report("smic_e", root, headed)
    assert [(s.subject, s.clip, s.label, s.onset, s.apex, s.offset, len(s.frame_paths)) for s in samples] == [
        ("s01", "s1_ne_01", "negative", 90823, 90826, 90829, 7), ("s03", "s3_sur_01", "surprise", 500, None, 510, 11)]
    assert samples[1].apex_frame == 505 and samples[0].sample_id == "smic_e/s01/s1_ne_01/na"
    headerless = write_csv(tmp_path / "smic_gt.csv", ["smic,s01,s1_ne_01,0,90823,90826,90829", "smic,s3,s3_sur_01,2,500,,510"])
    again = read_smic_e(root, headerless)
    assert [(s.onset, s.apex, s.offset, s.label) for s in again] == [
        (90823, 90826, 90829, "negative"), (500, None, 510, "surprise")]
    assert not any(p.kind in {"skipped_row", "missing_frames"} for p in problems)


def test_single_dataset_reader_takes_its_rows_of_a_composite_list(tmp_path):
    path = write_csv(tmp_path / "list.csv", ["data,subject,clip,label",
                                             "casme2,sub01,EP02_01f,happiness", "samm,006,006_1_2,anger",
                                             "smic,s1,s1_ne_01,negative"])
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert [(s.sample_id, s.label) for s in samples] == [("casme2/sub01/EP02_01f/na", "happiness")]
    assert [p.message for p in problems if p.kind == "ignored_row"] == [
        "list.csv: 2 rows of other datasets ignored (samm 1, smic 1)"]


# ------------------------------------------------------------------------------ user mapping
ODD = ["Participant,Video,Start,Peak,End,Class", "1,EP02_01f,46,59,86,1", "2,EP03_02,10,12,20,2"]


def _config(tmp_path, monkeypatch, body):
    config = tmp_path / "config.yaml"
    config.write_text(body)
    monkeypatch.setenv("MERNB_CONFIG", str(config))
    return config


def test_near_miss_header_suggests_the_mapping(tmp_path, capsys):
    path = write_csv(tmp_path / "odd.csv", ODD)
    with pytest.raises(DatasetError) as info:
        read_casme2(annotation=path)
    assert ("if so, map them in the user config: datasets.casme2.columns: {subject: 'Participant', "
            "clip: 'Video', onset: 'Start', offset: 'End', emotion: 'Class'}") in str(info.value)
    rc = main(["data", "check", "--dataset", "casme2", "--annotation", str(path)])
    assert rc == 2 and "datasets.casme2.columns: {subject: 'Participant'" in capsys.readouterr().err


def test_column_and_label_mapping_from_the_user_config(tmp_path, monkeypatch, capsys):
    path = write_csv(tmp_path / "odd.csv", ODD)
    _config(tmp_path, monkeypatch, f"datasets:\n  casme2:\n    annotation: {path}\n"
            "    columns: {subject: Participant, clip: Video, onset: Start, apex: Peak, offset: End, emotion: Class}\n"
            "    labels: {1: happiness, 2: Disgust}\n")
    expected = [("casme2/sub01/EP02_01f/46", "sub01", "EP02_01f", 46, 59, 86, "happiness", ()),
                ("casme2/sub02/EP03_02/10", "sub02", "EP03_02", 10, 12, 20, "disgust", ())]
    assert fields(read_dataset("casme2", annotation=path)) == expected
    rc = main(["data", "check", "--dataset", "casme2"])
    assert rc == 0 and "samples     2  subjects 2" in capsys.readouterr().out
    # another file is not read with this file's mapping; explicit keywords work without a config
    other = write_csv(tmp_path / "other.csv", ODD)
    with pytest.raises(DatasetError, match="Near miss"):
        read_dataset("casme2", annotation=other)
    mapping = {"subject": "Participant", "clip": "Video", "onset": "Start", "offset": "End", "emotion": "Class"}
    assert fields(read_casme2(annotation=other, columns=mapping, labels={1: "happiness", "2": "disgust"}))[1][6] == "disgust"


def test_mapping_errors_name_the_setting(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "odd.csv", ODD)
    with pytest.raises(ConfigError, match=r"datasets.casme2.columns: unknown field\(s\) \['start'\]"):
        read_casme2(annotation=path, columns={"start": "Start"})
    with pytest.raises(ConfigError, match="datasets.casme2.labels: 1 maps to 'joy', which is not a casme2 label"):
        read_casme2(annotation=path, labels={1: "joy"})
    config = _config(tmp_path, monkeypatch, f"datasets:\n  casme2:\n    annotation: {path}\n    columns: [Start]\n")
    with pytest.raises(ConfigError, match=f"{config}: datasets.casme2.columns must map names to names"):
        read_dataset("casme2", annotation=path)
    _config(tmp_path, monkeypatch, "datasets:\n  smic:\n    root: /x\n    labels: {0: negative}\n    colums: {}\n")
    with pytest.raises(ConfigError, match=r"datasets.smic: unknown settings \['colums'\]"):
        read_dataset("smic", root="/x")
    with pytest.raises(ConfigError, match="smic is not read from an annotation table"):
        read_dataset("smic", root=tmp_path, labels={0: "negative"})


def test_column_numbers_read_a_file_without_header(tmp_path):
    """A headerless copy (as the CAS(ME)^2 code sheet circulates): columns by number, 1 = first."""
    rows = ["1,anger1_1,557,572,608,4+10,negative,micro-expression,disgust",
            "15,happy2_3,100,110,130,12,positive,macro-expression,happiness"]
    mapping = {"subject": 1, "clip": 2, "onset": 3, "apex": 4, "offset": 5, "aus": 6, "emotion": 9}
    expected = [("casme2/sub01/anger1_1/557", "sub01", "anger1_1", 557, 572, 608, "disgust", ("4", "10")),
                ("casme2/sub15/happy2_3/100", "sub15", "happy2_3", 100, 110, 130, "happiness", ("12",))]
    assert fields(read_casme2(annotation=write_csv(tmp_path / "a.csv", rows), columns=mapping)) == expected
    headed = write_csv(tmp_path / "b.csv", ["sub,clip,on,ap,off,au,emo4,type,emo", *rows])  # a header row is skipped
    assert fields(read_casme2(annotation=headed, columns=mapping)) == expected
    with pytest.raises(ConfigError, match="header names or column numbers"):
        read_casme2(annotation=headed, columns={**mapping, "emotion": "emo"})
    with pytest.raises(ConfigError, match=r"column numbers must include \['offset'\]"):
        read_casme2(annotation=headed, columns={k: v for k, v in mapping.items() if k != "offset"})


def test_unknown_labels_suggest_a_label_mapping(tmp_path):
    path = write_csv(tmp_path / "codes.csv", ["Subject,Filename,Onset,Offset,Label", "1,EP01,1,5,0", "2,EP02,1,5,3",
                                              "2,EP03,1,5,3"])
    samples, problems = read_dataset_report("casme2", annotation=path, on_missing="skip")
    (hint,) = [p.message for p in problems if p.kind == "label_mapping"]
    assert not samples and "3 rows have labels that are not casme2 labels ('0', '3')" in hint
    assert "datasets.casme2.labels: {'0': <label>, '3': <label>}" in hint


# ------------------------------------------------------------------------------ duplicates, empty files
def test_exact_duplicate_rows_are_dropped_and_reported(tmp_path):
    header = "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion"
    path = write_csv(tmp_path / "dup.csv", [header, "1,EP01,10,12,20,4,disgust", "1,EP01,10,12,20,4,disgust",
                                            "1,EP01,10,12,20,4,happiness"])
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert [(s.sample_id, s.label) for s in samples] == [("casme2/sub01/EP01/10", "disgust"),
                                                         ("casme2/sub01/EP01/10#2", "happiness")]
    assert [(p.kind, p.message) for p in problems] == [
        ("duplicate_row", "dup.csv row 3: repeats row 2 exactly; dropped"),
        ("duplicate_id", "dup.csv row 4: casme2/sub01/EP01/10 repeats an earlier row; id casme2/sub01/EP01/10#2")]
    kept = read_casme2(annotation=path, duplicates="keep")
    assert [s.sample_id for s in kept] == ["casme2/sub01/EP01/10", "casme2/sub01/EP01/10#2", "casme2/sub01/EP01/10#3"]
    megc = read_dataset_report("megc2019", annotation=write_csv(tmp_path / "m.csv", [MEGC_ROWS[0], MEGC_ROWS[0]]))
    assert len(megc[0]) == 1 and [p.kind for p in megc[1]] == ["duplicate_row"]


def test_header_only_file_reports_no_samples(tmp_path):
    path = write_csv(tmp_path / "empty.csv", ["Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion", ""])
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert samples == [] and [(p.kind, p.message) for p in problems] == [
        ("no_samples", "empty.csv: header on row 1 but no data rows (0 samples)")]


# ------------------------------------------------------------------------------ names and folders
def test_nfd_folder_names_meet_nfc_annotations(tmp_path):
    nfc, nfd = "EP_Épée", unicodedata.normalize("NFD", "EP_Épée")
    assert nfc != nfd
    root = tmp_path / "root"
    frames(root / "sub01" / nfd, range(1, 4))  # a macOS copy: the folder name is NFD
    header = "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion"
    (sample,) = read_casme2(root, write_csv(tmp_path / "nfc.csv", [header, f"1,{nfc},1,2,3,happiness"]))
    assert sample.clip == nfc and sample.frame_numbers == (1, 2, 3)
    # and the other way round: an NFD name in the annotation is read as NFC and finds an NFC folder
    frames(root / "sub02" / nfc, range(1, 4))
    (other,) = read_casme2(root, write_csv(tmp_path / "nfd.csv", [header, f"2,{nfd},1,2,3,happiness"]))
    assert other.clip == nfc and other.sample_id == f"casme2/sub02/{nfc}/1" and len(other.frame_paths) == 3


def test_appledouble_and_hidden_files_are_not_frames(tmp_path):
    clip = tmp_path / "root" / "sub01" / "EP01"
    frames(clip, range(1, 4))
    (clip / "._img1.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # sorts before img1.jpg
    (clip / ".img2.jpg").write_bytes(b"")
    path = write_csv(tmp_path / "l.csv", ["Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion",
                                          "1,EP01,1,2,3,happiness"])
    (s,) = read_casme2(tmp_path / "root", path)
    assert [p.name for p in s.frame_paths] == ["img1.jpg", "img2.jpg", "img3.jpg"]
    # the annotation file is looked up past its AppleDouble twin too
    (tmp_path / "root" / "._CASME2-coding-2014.csv").write_bytes(b"\x00\x05\x16\x07")
    path.rename(tmp_path / "root" / "CASME2-coding-2014.csv")
    (again,) = read_casme2(tmp_path / "root")
    assert again.meta["source"].endswith("/CASME2-coding-2014.csv") and again.frame_paths == s.frame_paths
