"""Value tests of the readers' shared code (mernb/data/readers/_common.py) found by mutation testing (issue 11):
apex bounds, single-frame clips, AU cells and the root check."""

from __future__ import annotations

import pytest

from mernb.data.readers import read_dataset_report
from mernb.data.readers._common import apex_fallback, check_root, parse_aus
from mernb.errors import DatasetError


def test_apex_on_either_bound_of_the_clip_is_kept():
    assert apex_fallback(10, 10, 20) == (10, None)
    assert apex_fallback(10, "20", 20) == (20, None)
    assert apex_fallback(10, 21, 20) == (None, "apex 21 outside [onset 10, offset 20]")
    assert apex_fallback(10, 9, 20) == (None, "apex 9 outside [onset 10, offset 20]")


def test_single_frame_clip_onset_equal_to_offset_is_read(tmp_path):
    path = tmp_path / "casme2.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,Estimated Emotion\n1,EP01,30,30,30,happiness\n")
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert [(s.clip, s.onset, s.apex, s.offset) for s in samples] == [("EP01", 30, 30, 30)] and not problems
    path.write_text("Subject,Filename,Onset,Apex,Offset,Estimated Emotion\n1,EP02,40,40,39,happiness\n")
    with pytest.raises(DatasetError, match="row 2: offset 39 is before onset 40"):
        read_dataset_report("casme2", annotation=path)


def test_parse_aus_reads_the_cell():
    assert parse_aus(" 4 + L10 ") == ("4", "L10")
    assert parse_aus(12) == ("12",)


def test_check_root_accepts_a_folder_and_names_a_missing_one(tmp_path):
    assert check_root(tmp_path, "casme2", "sub01/EP01/img1.jpg") == tmp_path
    with pytest.raises(DatasetError, match="is not a folder"):
        check_root(tmp_path / "missing", "casme2", "sub01/EP01/img1.jpg")


def test_empty_frame_number_cell_is_a_skipped_row_in_skip_mode(tmp_path):
    path = tmp_path / "casme2.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,Estimated Emotion\n1,EP01,,5,9,happiness\n"
                    "1,EP02,3,5,9,happiness\n")
    samples, problems = read_dataset_report("casme2", annotation=path, on_missing="skip")
    assert [s.clip for s in samples] == ["EP02"]
    assert [(p.kind, p.row) for p in problems] == [("skipped_row", 2)]
    assert problems[0].message == "casme2.csv row 2: Onset is empty (expected a frame number) (skipped)"


def test_two_files_of_one_frame_number_are_reported(tmp_path):
    from PIL import Image

    folder = tmp_path / "sub01" / "EP01"
    folder.mkdir(parents=True)
    for n in (1, 2, 3):
        Image.new("L", (2, 2)).save(folder / f"img{n}.jpg")
    Image.new("L", (2, 2)).save(folder / "img2.png")
    path = tmp_path / "casme2.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,Estimated Emotion\n1,EP01,1,2,3,happiness\n")
    samples, problems = read_dataset_report("casme2", root=tmp_path, annotation=path)
    assert [p.frame_numbers for p in samples] == [(1, 2, 3)]
    assert [p.name for p in samples[0].frame_paths] == ["img1.jpg", "img2.jpg", "img3.jpg"]
    assert [p.kind for p in problems] == ["duplicate_frames"]
    assert "1 frame number(s) with two files" in problems[0].message


def test_a_known_row_error_is_corrected_once_and_reported(tmp_path):
    """corrections.csv: SAMM 028_4_1 (onset 1071) has apex 1143 outside [1071, 1134]; the fix is 1113. A copy
    already holding 1113 is read unchanged."""
    header = "Subject,Filename,Onset Frame,Apex Frame,Offset Frame,Action Units,Estimated Emotion\n"
    path = tmp_path / "samm.csv"
    path.write_text(header + "028,028_4_1,1071,1143,1134,12,Happiness\n")
    samples, problems = read_dataset_report("samm", annotation=path)
    assert samples[0].apex == 1113
    assert [(c["column"], c["old"], c["new"]) for c in samples[0].meta["corrections"]] == [("apex", "1143", "1113")]
    assert [(p.kind, p.row) for p in problems] == [("correction", 2)]
    assert problems[0].message.startswith("samm.csv row 2: apex 1143 -> 1113 (")
    path.write_text(header + "028,028_4_1,1071,1113,1134,12,Happiness\n")
    samples, problems = read_dataset_report("samm", annotation=path)
    assert samples[0].apex == 1113 and "corrections" not in samples[0].meta and not problems


def test_a_row_without_clip_or_frames_is_ignored_and_noted(tmp_path):
    path = tmp_path / "casme2.csv"
    path.write_text("Subject,Filename,Onset,Apex,Offset,Estimated Emotion\n1,EP01,3,5,9,happiness\n"
                    "Total,,,,,12 clips\n")
    samples, problems = read_dataset_report("casme2", annotation=path)
    assert [s.clip for s in samples] == ["EP01"]
    assert [(p.kind, p.row, p.message) for p in problems] == [
        ("ignored_row", 3, "casme2.csv row 3: not a data row (no clip or frames): 'Total 12 clips'")]


def test_missing_header_error_names_the_row_with_most_columns(tmp_path):
    path = tmp_path / "casme2.csv"
    path.write_text("notes\nSubject,Filename,Onset\nxyz\n")
    with pytest.raises(DatasetError, match=r"best candidate: sheet None row 2, lacking \['offset', 'emotion'\]"):
        read_dataset_report("casme2", annotation=path)
