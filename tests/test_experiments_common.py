"""The data entry point every notebook calls (prepare_protocol_data, summary, max_subjects, holdout) on a
small SynthME set, and the digests rows are keyed on."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from mernb.data.protocols import protocol
from mernb.data.sources import load_samples
from mernb.data.synth import generate
from mernb.experiments import hlora as H
from mernb.experiments import mpt as M
from mernb.experiments.common import ProtocolData, metrics_over_seeds, prepare_protocol_data, seed_list
from mernb.train.loso import loso_folds


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthme")
    for name in ("casme2", "samm"):
        generate(name, root / name, rows="generated", max_subjects=3, max_samples_per_subject=3, size=64)
    return root


def test_prepare_protocol_data_selects_prepares_and_summarises(synth_root, tmp_path):
    samples, _ = load_samples("casme2", synth_root)
    expected = protocol("casme2_5class").select(samples)
    data = prepare_protocol_data("casme2", "casme2_5class", data_root=synth_root, cache_dir=tmp_path, num_frames=4,
                                 size=32, align=False)
    assert [s.sample_id for s in data.samples] == [s.sample_id for s in expected]
    assert set(data.clips) == {s.sample_id for s in expected}
    assert {c.shape for c in data.clips.values()} == {(4, 32, 32, 3)}
    assert {c.dtype for c in data.clips.values()} == {np.dtype(np.uint8)}
    counts = Counter(s.label for s in expected)
    subjects = len({s.subject_key for s in expected})
    assert f"{len(expected)} samples, {subjects} subjects" in data.summary()
    assert str({c: counts.get(c, 0) for c in data.classes}) in data.summary()
    # prepared once: the second call reads every clip from the cache
    again = prepare_protocol_data("casme2", "casme2_5class", data_root=synth_root, cache_dir=tmp_path, num_frames=4,
                                  size=32, align=False)
    assert again.input_digests() == data.input_digests()


def test_max_subjects_keeps_the_first_subjects_in_natural_order(synth_root, tmp_path):
    settings = dict(num_frames=4, image_size=32)
    full = M.load_data("casme2", "casme2_5class", settings, data_root=synth_root, cache_dir=tmp_path,
                       align_fallback="center_crop")
    two = M.load_data("casme2", "casme2_5class", settings, data_root=synth_root, cache_dir=tmp_path,
                      align_fallback="center_crop", max_subjects=2)
    first_two = [f.test_subjects[0] for f in loso_folds(full.samples)][:2]
    assert sorted({s.subject_key for s in two.samples}) == sorted(first_two)
    assert [s.sample_id for s in two.samples] == [s.sample_id for s in full.samples if s.subject_key in first_two]
    assert set(two.clips) == {s.sample_id for s in two.samples}


def test_holdout_preparation_joins_both_datasets_in_one_split(synth_root, tmp_path):
    data, (samples, fold) = H.prepare_holdout_data("holdout_samm_casme2", data_root=synth_root, cache_dir=tmp_path,
                                                   size=32, align=False)
    train = [samples[i] for i in fold.train_idx]
    test = [samples[i] for i in fold.test_idx]
    assert {s.dataset for s in train} == {"samm"} and {s.dataset for s in test} == {"casme2"}
    assert set(data.classes) == set(protocol("holdout_samm_casme2").classes)
    assert set(data.clips) == {s.sample_id for s in samples}


def test_data_digest_follows_labels_frames_and_onsets():
    sample = M.Sample("casme2", "01", "EP1", 1, 3, 5, "happiness")
    clip = np.zeros((2, 4, 4, 3), np.uint8)
    base = ProtocolData("casme2", "p", ["happiness", "others"], [sample], {sample.sample_id: clip})
    same = ProtocolData("casme2", "p", ["happiness", "others"], [sample], {sample.sample_id: clip.copy()})
    assert base.digest() == same.digest()
    relabel = ProtocolData("casme2", "p", base.classes, [dataclasses.replace(sample, label="others")], base.clips)
    offset = ProtocolData("casme2", "p", base.classes, [dataclasses.replace(sample, offset=6)], base.clips)
    frames = ProtocolData("casme2", "p", base.classes, [sample], {sample.sample_id: clip + 1})
    assert len({base.digest(), relabel.digest(), offset.digest(), frames.digest()}) == 4


def test_seed_helpers():
    assert seed_list(3, None) == [3] and seed_list(3, [0, 1, 2]) == [0, 1, 2]
    with pytest.raises(Exception, match="distinct"):
        seed_list(0, [1, 1])
    docs = [{"result": {"seed": s, "metrics": {"acc": a, "uf1": a / 2, "uar": a, "war": a,
                                                   "confusion": [[1, 0], [0, 1]]}}}
            for s, a in ((0, 0.5), (1, 0.7), (2, 0.9))]
    m = metrics_over_seeds(docs)
    assert m["acc"] == pytest.approx(0.7) and m["acc_std"] == pytest.approx(0.2)  # hand: sd of .5 .7 .9
    assert m["confusion"] == [[3, 0], [0, 3]] and m["seeds"] == [0, 1, 2]


def test_row_key_follows_the_weight_files(tmp_path):
    """A re-trained checkpoint at the same path is a new row (smoke pre-training re-run with other settings)."""
    import os

    import torch

    from mernb.experiments.common import SharedRow, weight_files
    from tests.test_loso import torch_experiment

    ckpt = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, ckpt)
    config = {"details": {"row": {"options": {"weights": str(ckpt)}}, "vae": None}}
    stamp = weight_files(config)
    assert list(stamp) == [str(ckpt)] and stamp[str(ckpt)][0] == ckpt.stat().st_size
    assert weight_files({"weights": str(tmp_path / "absent.pth")}) == {str(tmp_path / "absent.pth"): None}

    sample = M.Sample("casme2", "01", "EP1", 1, 3, 5, "happiness")
    other = M.Sample("casme2", "02", "EP1", 1, 3, 5, "others")
    clips = {s.sample_id: np.zeros((2, 4, 4, 3), np.uint8) for s in (sample, other)}
    data = ProtocolData("casme2", "p", ["happiness", "others"], [sample, other], clips)
    exp = torch_experiment(details={"weights": str(ckpt)}, num_classes=2)
    row = SharedRow("t", exp, data, tmp_path / "r" / "t")
    before = row.key
    torch.save({"a": torch.ones(3)}, ckpt)
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    assert row.key != before
