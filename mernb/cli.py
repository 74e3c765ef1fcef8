"""The ``mernb`` command: ``data check``, ``synth``, ``pretrain-smoke``, ``model info``, ``run``, ``book``.

Each subcommand lives with its concern; this module only parses arguments and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mernb.errors import MernbError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mernb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="samples, subjects, class counts per protocol, and problems found")
    check.add_argument("--dataset", required=True, help="casme2, samm, smic, smic_e, casme3, mmew, meview, megc2019, dfew, ferv39k, afew")
    check.add_argument("--root", help="dataset folder (frames are checked only when given)")
    check.add_argument("--annotation", help="annotation file (default: looked up under --root or the user config)")
    check.add_argument("--full", action="store_true", help="decode every frame (default: first, apex and last of each clip)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler="mernb.data.check:main")

    synth = sub.add_parser("synth", help="generate the SynthME datasets a run plan needs")
    synth.add_argument("plan", help="run plan YAML (its 'synthme' section)")
    synth.add_argument("--force", action="store_true", help="regenerate even if present")
    synth.set_defaults(handler="mernb.plan:main_synth")

    pre = sub.add_parser("pretrain-smoke", help="pre-train the smoke plan's tiny backbones on SynthME macro-expressions")
    pre.add_argument("plan", help="run plan YAML (its 'pretrain' section)")
    pre.add_argument("--force", action="store_true", help="retrain even if the checkpoints are up to date")
    pre.set_defaults(handler="mernb.smoke_pretrain:main")

    model = sub.add_parser("model", help="model tools").add_subparsers(dest="model_command", required=True)
    info = model.add_parser("info", help="parameters per module (total/trainable) and MACs per sample")
    info.add_argument("config", help="registered model config, e.g. mpt_base_patch16 or mpt_test")
    info.add_argument("--json", action="store_true")
    info.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster on CPU)")
    info.set_defaults(handler="mernb.models.info:main")

    run = sub.add_parser("run", help="execute every notebook x parameter group of a plan with papermill")
    run.add_argument("plan")
    run.add_argument("--only", help="shell-style pattern on 'notebook' or 'notebook:group'")
    run.add_argument("--force", action="store_true", help="re-execute and retrain even where results exist")
    run.add_argument("--jobs", type=int, default=1, help="notebooks executed at once (default 1; CPU smoke: 2)")
    run.set_defaults(handler="mernb.plan:main_run")

    book = sub.add_parser("book", help="build the Jupyter Book from the executed notebooks of a plan")
    book.add_argument("plan")
    book.set_defaults(handler="mernb.plan:main_book")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args) or 0)
    except MernbError as exc:
        print(f"mernb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
