"""`mernb synth` after an interruption: the unfinished set is redone, and a foreign folder names `--force`."""

from __future__ import annotations

import json

import pytest

from mernb.data.synth import core, generate
from mernb.errors import DatasetError

SMALL = {"rows": "generated", "max_subjects": 2, "max_samples_per_subject": 2, "frame_step": 8}


def test_interrupted_generation_is_redone_on_the_next_run(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write = core._write

    def interrupted_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of rendering frames
        return real_write(*args, **kwargs)

    monkeypatch.setattr(core, "_write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        generate("casme3", tmp_path, **SMALL)
    assert not (tmp_path / core.MARKER).exists() and (tmp_path / core.PARTIAL_MARKER).exists()
    monkeypatch.setattr(core, "_write", real_write)
    redone = generate("casme3", tmp_path, **SMALL)  # no "already exists" error: the run is redone cleanly
    reference = generate("casme3", tmp_path / "fresh", **SMALL)
    assert redone.n_frames == reference.n_frames and redone.n_samples == reference.n_samples
    files = sorted(p.relative_to(tmp_path) for p in redone.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "fresh") for p in reference.root.rglob("*") if p.is_file())
    assert not (tmp_path / core.PARTIAL_MARKER).exists()
    assert json.loads((tmp_path / core.MARKER).read_text())["info"]["root"] == redone.root.name


def test_foreign_folder_names_the_force_flag(tmp_path):
    (tmp_path / "CAS(ME)3_part_A").mkdir(parents=True)  # someone else's folder where SynthME would write
    root_name = core.LAYOUTS["casme3"].root_name
    (tmp_path / root_name).mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match="mernb synth PLAN --force"):
        generate("casme3", tmp_path, **SMALL)
