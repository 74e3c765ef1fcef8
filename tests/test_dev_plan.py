"""tools/dev_plan.py: the dev draw on which smoke settings are chosen differs from the smoke plan only in
the SynthME seed, its run folder and its notebook list."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("dev_plan", ROOT / "tools" / "dev_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_plan_is_the_smoke_plan_on_another_seed():
    tool = _tool()
    smoke = yaml.safe_load((ROOT / "plans" / "smoke.yaml").read_text())
    dev = tool.dev_plan(smoke)
    assert dev["synthme"]["seed"] == 7 != smoke["synthme"]["seed"]
    assert sorted(dev["notebooks"]) == sorted(tool.MAIN) and set(tool.MAIN) <= set(smoke["notebooks"])
    text = yaml.safe_dump(dev)
    assert "runs/smoke/" not in text and "runs/smoke_dev/" in text
    # everything else is the smoke plan's: the settings chosen on the dev draw are the ones the book runs
    for name in tool.MAIN:
        assert yaml.safe_dump(dev["notebooks"][name]) == yaml.safe_dump(smoke["notebooks"][name]).replace(
            "runs/smoke/", "runs/smoke_dev/")
    assert dev["synthme"]["datasets"] == smoke["synthme"]["datasets"]


def test_dev_plan_loads_as_a_plan(tmp_path):
    from mernb.plan import load_plan

    tool = _tool()
    target = ROOT / "plans" / "_test_dev_plan.yaml"  # plans/ so that the project root is found as for any plan
    try:
        target.write_text(yaml.safe_dump(tool.dev_plan(yaml.safe_load((ROOT / "plans" / "smoke.yaml").read_text()))))
        plan = load_plan(target)
        assert plan.name == "smoke_dev" and plan.kind == "synthetic" and len(plan.notebooks) == len(tool.MAIN)
    finally:
        target.unlink(missing_ok=True)
