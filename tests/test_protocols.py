"""Class protocols on the real annotation fixtures: class order, counts, and the MEGC 2019 composite rebuilt from
rules + exceptions (compared with the official 442-clip list, which is read from ../shared, never copied)."""

from __future__ import annotations

import csv
from functools import cache

import pytest

from mernb.data.protocols import PROTOCOLS, megc2019_exceptions, protocol, protocols_for
from mernb.data.readers import normalise_subject, read_dataset, read_smic
from mernb.data.readers._common import normalise_smic_clip
from mernb.errors import ConfigError, DatasetError
from tests.conftest import fixture_file


@cache
def samples(name: str, relative: str):
    return tuple(read_dataset(name, annotation=fixture_file(relative)))


def casme2():
    return samples("casme2", "CASME2/CASME2-coding-20140508.xlsx")


def samm():
    return samples("samm", "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx")


def casme3():
    return samples("casme3", "CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")


def test_class_orders():
    assert protocol("casme2_5class").classes == ("happiness", "disgust", "repression", "surprise", "others")
    assert protocol("samm_5class").classes == ("anger", "contempt", "happiness", "surprise", "others")
    assert protocol("smic_3class").classes == ("negative", "positive", "surprise")
    assert protocol("casme2_3class").classes == protocol("samm_3class").classes == ("positive", "surprise", "negative")
    assert protocol("meview_3class").classes == ("positive", "surprise", "negative")
    assert protocol("casme3_7class").classes == ("others", "happy", "surprise", "sad", "disgust", "fear", "anger")
    assert protocol("casme3_4class").classes == ("negative", "positive", "surprise", "others")
    assert protocol("casme3_3class").classes == protocol("megc2019_3class").classes == ("negative", "positive", "surprise")
    assert protocol("mmew") is protocol("mmew_6class")
    assert protocol("mmew").classes == ("happiness", "disgust", "surprise", "sadness", "anger", "fear")
    assert protocol("holdout_casme2_samm").classes == ("happiness", "surprise", "others")
    assert (protocol("holdout_samm_casme2").train_dataset, protocol("holdout_samm_casme2").test_dataset) == ("samm", "casme2")
    assert protocol("megc2019_3class").datasets == ("casme2", "samm", "smic")
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocol("casme2_7class")


@pytest.mark.parametrize(
    ("name", "source", "counts", "subjects"),
    [
        ("casme2_5class", casme2, {"happiness": 32, "disgust": 63, "repression": 27, "surprise": 25, "others": 99}, 26),
        ("samm_5class", samm, {"anger": 57, "contempt": 12, "happiness": 26, "surprise": 15, "others": 26}, 27),
        ("casme2_3class", casme2, {"positive": 32, "surprise": 25, "negative": 99}, 25),
        ("samm_3class", samm, {"positive": 26, "surprise": 15, "negative": 92}, 28),
        ("casme3_7class", casme3, {"others": 161, "happy": 55, "surprise": 187, "sad": 57, "disgust": 250, "fear": 86,
                                   "anger": 64}, 94),
        ("casme3_4class", casme3, {"negative": 457, "positive": 55, "surprise": 187, "others": 161}, 94),
        ("casme3_3class", casme3, {"negative": 457, "positive": 55, "surprise": 187}, 88),
    ],
)
def test_protocol_counts(name, source, counts, subjects):
    p = protocol(name)
    selected = p.select(source())
    assert p.class_counts(source()) == counts and list(p.class_counts(source())) == list(p.classes)
    assert len(selected) == sum(counts.values())
    assert len({s.subject_key for s in selected}) == subjects


def test_select_keeps_emotion_and_is_idempotent():
    p = protocol("casme2_3class")
    selected = p.select(casme2())
    assert {s.meta["emotion"] for s in selected if s.label == "negative"} == {"disgust", "repression", "fear", "sadness"}
    assert all(s.meta["protocol"] == "casme2_3class" for s in selected)
    again = p.select(selected)
    assert [(s.sample_id, s.label, s.meta["emotion"]) for s in again] == [(s.sample_id, s.label, s.meta["emotion"]) for s in selected]
    assert casme2()[0].label == "happiness"  # inputs untouched
    with pytest.raises(DatasetError, match="reads \\['samm'\\]"):
        protocol("samm_5class").select(casme2())


def test_mmew_and_holdout():
    mmew = read_dataset("mmew", annotation=fixture_file("MMEW/MMEW_Micro_Exp_delete_others.csv"))
    assert protocol("mmew").class_counts(mmew) == {"happiness": 36, "disgust": 72, "surprise": 89, "sadness": 13,
                                                   "anger": 8, "fear": 16}
    both = casme2() + samm()
    p = protocol("holdout_casme2_samm")
    assert p.dataset_counts(both) == {"casme2": {"happiness": 32, "surprise": 25, "others": 99},
                                      "samm": {"happiness": 26, "surprise": 15, "others": 26}}
    assert {s.meta["emotion"] for s in p.select(samm()) if s.label == "others"} == {"others"}


def official_megc_list():
    """(dataset, subject, clip, label) rows of the official list, normalised to the readers' forms."""
    names = ("negative", "positive", "surprise")
    with fixture_file("MEGC2019/combined_3_class_gt.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        clip = normalise_smic_clip(r["clip"]) if r["data"] == "smic" else r["clip"]
        out.append((r["data"], normalise_subject(r["data"], r["subject"]), clip, names[int(r["label"])]))
    return out


def smic_tree_from(rows, root):
    """A folder-labelled SMIC-HS tree (one tiny frame per clip) for the SMIC clips of a list, built in tmp."""
    for dataset, subject, clip, label in rows:
        if dataset == "smic":
            folder = root / subject / "micro" / label / clip
            folder.mkdir(parents=True)
            (folder / "image1.jpg").write_bytes(b"")
    return root


def test_megc2019_rules_and_exceptions_reproduce_the_official_list(tmp_path):
    official = official_megc_list()
    assert len(official) == 442
    smic = read_smic(smic_tree_from(official, tmp_path / "SMIC"))
    p = protocol("megc2019_3class")
    composite = p.select(list(casme2()) + list(samm()) + smic)
    rebuilt = [(s.dataset, s.subject, s.clip, s.label) for s in composite]
    assert sorted(rebuilt) == sorted(official) and len(set(rebuilt)) == 442
    assert p.dataset_counts(composite) == {
        "casme2": {"negative": 88, "positive": 32, "surprise": 25},
        "samm": {"negative": 92, "positive": 26, "surprise": 15},
        "smic": {"negative": 70, "positive": 51, "surprise": 43},
    }
    assert p.class_counts(composite) == {"negative": 250, "positive": 109, "surprise": 83}
    assert len({s.subject_key for s in composite}) == 68
    # without the exceptions the rules alone give two CASME II clips too many
    assert len(protocol("casme2_5class").select(casme2())) - 99 == 147 == 145 + len(megc2019_exceptions())
    assert all(e["reason"] and e["action"] in {"exclude", "include"} for e in megc2019_exceptions())


def test_megc2019_list_samples_pass_through_and_smic_e_agrees():
    listed = read_dataset("megc2019", annotation=fixture_file("MEGC2019/combined_3_class2_for_optical_flow.csv"))
    selected = protocol("megc2019_3class").select(listed)
    assert sorted((s.dataset, s.subject, s.clip, s.label) for s in selected) == sorted(official_megc_list())
    smic_e = samples("smic_e", "SMIC/SMIC-HS-E_annotation_orig.xlsx")
    official_smic = {clip: label for d, _, clip, label in official_megc_list() if d == "smic"}
    assert {s.clip for s in smic_e} <= set(official_smic)  # the 162 SMIC-E clips are all in the list
    # one label differs: SMIC-E codes s18_sur_03 as negative, the composite (folder label) as surprise
    assert [(s.clip, s.label) for s in smic_e if official_smic[s.clip] != s.label] == [("s18_sur_03", "negative")]
    assert protocol("smic_3class").class_counts(smic_e) == {"negative": 70, "positive": 51, "surprise": 41}


def test_protocols_for_datasets():
    assert {p.name for p in protocols_for("casme2")} == {
        "casme2_5class", "casme2_3class", "megc2019_3class", "holdout_casme2_samm", "holdout_samm_casme2"}
    assert [p.name for p in protocols_for("megc2019")] == ["megc2019_3class"]
    assert {p.name for p in protocols_for("meview")} == {"meview_3class"}
    assert set(PROTOCOLS) >= {"smic_3class", "mmew_6class", "casme3_3class"}
