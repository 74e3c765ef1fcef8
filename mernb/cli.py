"""The ``mernb`` command: ``data check``, ``synth``, ``pretrain-smoke``, ``model info``, ``run``, ``bench``, ``book``.

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
    run.epilog = ("Kernels are forked from a process that imported torch/timm/peft once (Linux; "
                  "MERNB_KERNEL=plain for plain kernels). Ctrl-C stops the run (exit 130); a plan's "
                  "'timeout' limits each notebook.")
    run.set_defaults(handler="mernb.plan:main_run")
    # preflight (mernb.preflight) and fold executors (mernb.train.executors)
    run.add_argument("--check", action="store_true",
                     help="preflight without training: data, weights, one real step per model, cost table")
    run.add_argument("--gpu", help="--check: estimate hours on this GPU (e.g. H100, A100; default: the present one)")
    run.add_argument("--utilisation", type=float, default=0.35,
                     help="--check: assumed fraction of the GPU's bf16 peak reached in training (default 0.35)")
    run.add_argument("--executor", choices=("local", "slurm", "submitit-local"),
                     help="where folds run: in the notebook's process (local, default) or one SLURM job per fold")
    run.add_argument("--slurm-partition", help="--executor slurm: partition of the fold jobs")
    run.add_argument("--gpus-per-job", type=int, help="--executor slurm: GPUs per fold job (default 1)")
    run.add_argument("--max-jobs", type=int, help="--executor slurm: fold jobs of one row queued at once (default 64)")

    bench = sub.add_parser("bench", help="time training steps and inference of a model config on this device")
    bench.add_argument("config", help="registered model config, e.g. mpt_base_patch16 or mpt_test")
    bench.add_argument("--batch-size", type=int, default=16)
    bench.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup untimed ones)")
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--img-size", type=int, help="input side (default: the config's)")
    bench.add_argument("--num-frames", type=int, help="frames per clip (default: the config's)")
    bench.add_argument("--num-classes", type=int, default=5)
    bench.add_argument("--kwargs", default="{}", help="JSON of further model options, e.g. '{\"finetune\": \"full\"}'")
    bench.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    bench.add_argument("--no-amp", action="store_true", help="float32 on CUDA (default: bfloat16 autocast)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(handler="mernb.bench:main")

    book = sub.add_parser("book", help="build the Jupyter Book from the executed notebooks of a plan")
    book.add_argument("plan")
    book.set_defaults(handler="mernb.plan:main_book")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":  # --check runs the preflight; --executor reaches the kernels as MERNB_* variables
        args.handler = "mernb.preflight:main" if args.check else args.handler
        importlib.import_module("mernb.train.executors").export_env(args)
    module_name, func_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args) or 0)
    except MernbError as exc:
        print(f"mernb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `mernb run` handles Ctrl-C itself; elsewhere: no traceback, the shell's code
        print("\nmernb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
