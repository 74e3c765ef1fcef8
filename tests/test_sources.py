"""Locating a dataset: SynthME folders (smoke plan) or the user config (paper plan)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mernb.data.sources import SYNTH_MARKER, locate_dataset
from mernb.errors import ConfigError


def test_synthme_marker_gives_root_and_annotation(tmp_path):
    (tmp_path / "casme2").mkdir()
    info = {"root": str(tmp_path / "casme2/CASME2_RAW_selected"), "annotation": str(tmp_path / "casme2/a.xlsx")}
    (tmp_path / "casme2" / SYNTH_MARKER).write_text(json.dumps({"params": {}, "info": info}))
    root, annotation = locate_dataset("casme2", tmp_path)
    assert root.name == "CASME2_RAW_selected" and annotation.name == "a.xlsx"
    with pytest.raises(ConfigError, match="mernb synth"):
        locate_dataset("samm", tmp_path)


def test_user_config_gives_paths_or_names_the_setting(tmp_path, monkeypatch):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"datasets:\n  samm: {{root: {tmp_path}, annotation: {tmp_path}/s.xlsx}}\n")
    monkeypatch.setenv("MERNB_CONFIG", str(config))
    root, annotation = locate_dataset("samm")
    assert root == tmp_path and annotation == tmp_path / "s.xlsx"
    with pytest.raises(ConfigError, match=r"datasets\.casme2\.root"):
        locate_dataset("casme2")


def _project(tmp_path):
    """A minimal project root (``_toc.yml`` beside ``notebooks/``) with a notebook folder."""
    (tmp_path / "notebooks" / "mpt").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    return tmp_path


def test_relative_data_root_resolves_against_the_project_root_from_a_notebook_folder(tmp_path, monkeypatch):
    from mernb.data.synth import generate

    root = _project(tmp_path)
    monkeypatch.delenv("MERNB_ROOT", raising=False)
    info = generate("casme2", root / "runs/smoke/synthme/casme2", rows="generated", max_subjects=2,
                    max_samples_per_subject=2, frame_step=8)
    monkeypatch.chdir(root / "notebooks" / "mpt")  # where JupyterLab starts the notebook's kernel
    found_root, annotation = locate_dataset("casme2", "runs/smoke/synthme")
    assert found_root.resolve() == info.root.resolve() and annotation.resolve() == info.annotation.resolve()
    (root / "runs/smoke/synthme/casme2/SYNTHME.json").unlink()
    with pytest.raises(ConfigError) as err:
        locate_dataset("casme2", "runs/smoke/synthme")
    assert "`make book` (or `mernb synth plans/smoke.yaml`)" in str(err.value)
    assert f"in {root.resolve()}" in str(err.value)


def test_a_moved_runs_folder_still_reads_its_own_synthme_data(tmp_path):
    import shutil

    from mernb.data.synth import generate

    first = _project(tmp_path / "a")
    generate("casme3", first / "runs/s/casme3", rows="generated", max_subjects=2, max_samples_per_subject=2,
             frame_step=8)
    marker = json.loads((first / "runs/s/casme3" / SYNTH_MARKER).read_text())["info"]
    assert not Path(marker["root"]).is_absolute() and not Path(marker["annotation"]).is_absolute()
    moved = tmp_path / "b"
    shutil.move(first, moved)  # the old location is gone
    root, annotation = locate_dataset("casme3", moved / "runs/s")
    assert root == moved / "runs/s/casme3" / Path(marker["root"]) and root.is_dir() and annotation.is_file()
    # Older markers with absolute paths are still read as they are.
    old = {"root": str(root), "annotation": str(annotation)}
    (moved / "runs/s/casme3" / SYNTH_MARKER).write_text(json.dumps({"params": {}, "info": old}))
    assert locate_dataset("casme3", moved / "runs/s") == (root, annotation)
