"""Every reader on every relevant real annotation file (../shared/fixtures/annotations; skipped when absent).

Counts are those of the fixtures README and reference/datasets.md.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest

from mernb.data.readers import read_dataset, read_dataset_report
from mernb.errors import DatasetError
from tests.conftest import fixture_file

CASME2_2014 = "CASME2/CASME2-coding-20140508.xlsx"
CASME2_QQ = "CASME2/QqXuyujie_Micro-Expression-Datasets/CASME2-coding-20140508.xlsx"
SAMM_V2 = "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_DAVID = "SAMM/davidnvq_me_recognition/SAMM_Micro_FACS_Codes_v2.xlsx"
CASME3_V2 = "CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_GENBING = "CASME3/genbing99_SFAMNet/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


@cache
def read(name: str, relative: str, **kw):
    """(samples, problems) of one fixture, cached across tests (the xlsx files take a moment)."""
    return read_dataset_report(name, annotation=fixture_file(relative), **kw)


def labels(samples) -> dict[str, int]:
    return dict(Counter(s.label for s in samples))


CASME2_COUNTS = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25, "sadness": 7, "fear": 2}


@pytest.mark.parametrize("relative", [CASME2_2014, CASME2_QQ])
def test_casme2_versions(relative):
    samples, _ = read("casme2", relative)
    assert len(samples) == 255
    assert labels(samples) == CASME2_COUNTS
    assert len({s.subject for s in samples}) == 26
    first = samples[0]
    assert (first.subject, first.clip, first.onset, first.apex, first.offset) == ("sub01", "EP02_01f", 46, 59, 86)
    assert first.fps == 200.0 and first.meta["row"] == 2
    assert next(s for s in samples if s.clip == "EP19_05f").aus == ("4", "L10")
    assert len({s.sample_id for s in samples}) == 255


def test_casme2_slash_apex_falls_back():
    samples, problems = read("casme2", CASME2_2014)
    (s,) = [s for s in samples if (s.subject, s.clip) == ("sub04", "EP12_01f")]
    assert s.apex is None and "'/'" in s.meta["apex_fallback"]
    assert s.apex_frame == (s.onset + s.offset) // 2
    assert [p.kind for p in problems] == ["apex_fallback"] and problems[0].row == 31
    cleaned, cleaned_problems = read("casme2", CASME2_QQ)
    assert next(x for x in cleaned if x.clip == "EP12_01f").apex == 300 and not cleaned_problems


SAMM_COUNTS = {"anger": 57, "others": 26, "happiness": 26, "surprise": 15, "contempt": 12, "disgust": 9, "fear": 8, "sadness": 6}


@pytest.mark.parametrize("relative", [SAMM_V2, SAMM_DAVID])
def test_samm_versions(relative):
    samples, problems = read("samm", relative)
    assert len(samples) == 159 and labels(samples) == SAMM_COUNTS
    assert len({s.subject for s in samples}) == 29
    assert samples[0].subject == "006" and samples[0].meta["row"] == 15  # header on Excel row 14
    assert samples[0].meta["objective_class"] == "3"
    assert not any("apex_fallback" in s.meta for s in samples)
    assert all(p.kind == "correction" for p in problems)


def test_samm_apex_corrections_are_data():
    official, problems = read("samm", SAMM_V2)
    corrected, _ = read("samm", SAMM_DAVID)
    assert [(s.sample_id, s.apex) for s in official] == [(s.sample_id, s.apex) for s in corrected]
    fixed = {s.clip: s for s in official if "corrections" in s.meta}
    assert set(fixed) == {"028_4_1", "032_3_1"} and len(problems) == 2
    assert fixed["028_4_1"].apex == 1113 and fixed["028_4_1"].meta["corrections"][0]["old"] == "1143"
    raw, raw_problems = read("samm", SAMM_V2, corrections=False)
    bad = {s.clip: s for s in raw if s.apex is None}
    assert set(bad) == {"028_4_1", "032_3_1"}
    assert "outside" in bad["032_3_1"].meta["apex_fallback"]
    assert {p.kind for p in raw_problems} == {"apex_fallback"}


def test_samm_long_videos_is_rejected_clearly():
    with pytest.raises(DatasetError, match="Long Videos") as err:
        read_dataset("samm", annotation=fixture_file("SAMM/SAMM_LongVideos_V2_Release.csv"))
    assert "SAMM_LongVideos_V2_Release.csv" in str(err.value) and "emotion" in str(err.value)


@pytest.mark.parametrize(
    ("relative", "n", "counts"),
    [
        ("SMIC/SMIC-HS-E_annotation_orig.xlsx", 162, {"negative": 70, "positive": 51, "surprise": 41}),
        ("SMIC/SMIC-HS-E_annotation.xlsx", 157, {"negative": 66, "positive": 51, "surprise": 40}),
    ],
)
def test_smic_e_versions(relative, n, counts):
    samples, problems = read("smic_e", relative)
    assert len(samples) == n and labels(samples) == counts
    assert len({s.subject for s in samples}) == 16 and samples[0].subject == "s20"
    assert samples[0].onset == 17581039 and samples[0].meta["first_frame"] == 17580887
    assert all(s.apex is None and s.fps == 100.0 for s in samples)
    assert [p.kind for p in problems] == ["apex_fallback"]  # one note for the whole file, no apex column


CASME3_7 = {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64, "sad": 57, "happy": 55}


def test_casme3_v2_official():
    samples, problems = read("casme3", CASME3_V2)
    assert len(samples) == 860 and labels(samples) == CASME3_7
    assert len({s.subject for s in samples}) == 94
    assert len({s.sample_id for s in samples}) == 860
    per_video = Counter((s.subject, s.clip) for s in samples)
    assert sum(1 for n in per_video.values() if n > 1) == 191 and max(per_video.values()) == 17
    assert {s.clip for s in samples} == set("abcdefghijklm")  # 'J' stored lower case
    assert all(s.onset <= s.offset for s in samples)
    assert all(s.apex is None or s.onset <= s.apex <= s.offset for s in samples)
    assert Counter(p.kind for p in problems) == {"correction": 6}
    by_id = {s.sample_id: s for s in samples}
    assert by_id["casme3/spNO.149/d/112"].apex == 160
    assert by_id["casme3/spNO.216/d/2647"].meta["corrections"][0]["old"] == "3647"
    assert by_id["casme3/spNO.216/e/1"].apex == 1
    assert {by_id["casme3/spNO.40/e/1812"].offset, by_id["casme3/spNO.40/e/2327"].offset} == {1845, 2403}


def test_casme3_corrected_copy_matches_official_after_corrections():
    official, _ = read("casme3", CASME3_V2)
    corrected, problems = read("casme3", CASME3_GENBING)
    key = [(s.sample_id, s.apex, s.offset, s.label) for s in official]
    assert key == [(s.sample_id, s.apex, s.offset, s.label) for s in corrected]
    assert Counter(p.kind for p in problems) == {"correction": 2}  # only spNO.216 e was left uncorrected there
    with pytest.raises(DatasetError, match=r"row 751: offset 2694 is before onset 3647"):
        read_dataset("casme3", annotation=fixture_file(CASME3_V2), corrections=False)


def test_casme3_v1_and_htnet_csv():
    v1, _ = read("casme3", "CASME3/cas(me)3_part_A_ME_label_JpgIndex_v1.xls")
    assert len(v1) == 921
    assert labels(v1) == {"disgust": 275, "surprise": 199, "others": 166, "fear": 91, "anger": 67, "sad": 63, "happy": 60}
    edited, _ = read("casme3", "CASME3/cas(me)3_part_A_edited.csv")
    assert len(edited) == 687
    assert labels(edited) == {"disgust": 247, "surprise": 184, "fear": 83, "anger": 64, "sad": 55, "happy": 54}


def test_casme3_all_expressions_workbook_is_rejected():
    with pytest.raises(DatasetError, match="header row not found") as err:
        read_dataset("casme3", annotation=fixture_file("CASME3/CAS(ME)3_part_A_v2.xls"))
    assert "emotion" in str(err.value) and "AU+Emotion" in str(err.value)


@pytest.mark.parametrize(
    ("relative", "n"),
    [("MMEW/MMEW_Micro_Exp_delete_others.csv", 234), ("MMEW/MMEW_Micro_Exp_delete_others_anger.csv", 226)],
)
def test_mmew_csvs(relative, n):
    samples, problems = read("mmew", relative)
    counts = {"surprise": 89, "disgust": 72, "happiness": 36, "fear": 16, "sadness": 13}
    if n == 234:
        counts["anger"] = 8
    assert len(samples) == n and labels(samples) == counts
    # the file has 'Estimated Emotion' and, later, an integer 'label' column: the first column is used
    (choice,) = problems
    assert choice.kind == "column_choice" and "'Estimated Emotion' used, 'label' ignored" in choice.message
    assert samples[0].meta["frame_files"] == {"image": "happiness/S01-01-001/15.jpg"}  # imagename column
    assert len({s.subject for s in samples}) == 30
    assert (samples[0].subject, samples[0].clip, samples[0].apex, samples[0].aus) == ("S01", "S01-01-001", 15, ("6", "12"))
    assert samples[0].fps == 90.0


@pytest.mark.parametrize("relative", ["MEGC2019/combined_3_class_gt.csv", "MEGC2019/combined_3_class2_for_optical_flow.csv"])
def test_megc2019_lists(relative):
    samples, problems = read("megc2019", relative)
    assert len(samples) == 442 and not problems
    per = Counter((s.dataset, s.label) for s in samples)
    assert {d: sum(n for (x, _), n in per.items() if x == d) for d in ("casme2", "smic", "samm")} == {
        "casme2": 145, "smic": 164, "samm": 133}
    assert labels(samples) == {"negative": 250, "positive": 109, "surprise": 83}
    assert per[("casme2", "negative")] == 88 and per[("samm", "negative")] == 92 and per[("smic", "surprise")] == 43
    assert len({s.subject_key for s in samples}) == 68
    assert {s.subject for s in samples if s.dataset == "samm"} >= {"006", "037"}
    assert any(s.dataset == "smic" and (s.subject, s.clip) == ("s1", "s1_ne_01") for s in samples)
