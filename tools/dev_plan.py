"""Derive the smoke *dev* plan from ``plans/smoke.yaml``: the same settings on another SynthME draw.

Smoke settings (data sizes, schedules) are chosen on this dev plan, never on the smoke plan's own subjects:
SynthME seed 7 instead of 0 (other faces, other rows), results under ``runs/smoke_dev``, and only the main
tables' notebooks (MPT Tables I–III, HLoRA-MER Tables 3–4, MA2MI Table 1) unless ``--all``. Used by
``docs/smoke_numbers.md``::

    python tools/dev_plan.py > plans/smoke_dev.yaml   # git-ignored
    mernb synth plans/smoke_dev.yaml && mernb pretrain-smoke plans/smoke_dev.yaml
    mernb run plans/smoke_dev.yaml --jobs 2 && mernb book plans/smoke_dev.yaml   # status page: the learning check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

MAIN = ("mpt/table1_casme2", "mpt/table2_samm", "mpt/table3_smic", "hlora/table3_5class", "hlora/table4_3class",
        "ma2mi/table1_pretraining")


def dev_plan(smoke: dict, *, seed: int = 7, name: str = "smoke_dev", keep_all: bool = False) -> dict:
    """``smoke`` (a loaded plan) with SynthME ``seed``, every ``runs/smoke/`` path moved to ``runs/<name>/``."""
    text = yaml.safe_dump(smoke, sort_keys=False).replace("runs/smoke/", f"runs/{name}/")
    plan = yaml.safe_load(text)
    plan["name"] = name
    plan["synthme"]["seed"] = seed
    plan["description"] = f"Dev draw of the smoke plan (SynthME seed {seed}): smoke settings are chosen here."
    if not keep_all:
        plan["notebooks"] = {k: v for k, v in plan["notebooks"].items() if k in MAIN}
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(Path(__file__).resolve().parents[1] / "plans" / "smoke.yaml"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="smoke_dev")
    parser.add_argument("--all", action="store_true", help="keep every notebook, not only the main tables")
    args = parser.parse_args(argv)
    smoke = yaml.safe_load(Path(args.plan).read_text())
    yaml.safe_dump(dev_plan(smoke, seed=args.seed, name=args.name, keep_all=args.all), sys.stdout, sort_keys=False,
                   allow_unicode=True, width=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
