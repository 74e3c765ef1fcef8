"""Mutation score per file and package from mutmut 3's ``mutants/**/*.meta`` (``make mutation``).

Statuses follow mutmut's own table (``mutmut.stats.status_by_exit_code``): *killed* (tests failed, or a
timeout: the mutant made the tests hang), *survived*, *no tests* (no selected test reaches it), *not run*
(mutmut has not reached it yet).

Two modes:

* ``--sample N --seed S`` generates the mutants (mutmut's own generation step, no test run) when
  ``mutants/`` has none, draws N mutants per package (a seeded shuffle of the sorted names, so a larger N
  extends a smaller one), writes them to ``mutants/sample.txt`` (one name a line, for ``mutmut run``) and
  prints the count per package.
* otherwise it tallies: per file and package over every mutant, or, when ``mutants/sample.txt`` exists (and
  ``--all`` is not given), over the sampled mutants only, with a 95 % Wilson interval of the killed share
  per package. Sample score = killed / (killed + survived + no tests): a mutant no selected test reaches
  is undetected, so it counts against the score.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path("mutants")
SAMPLE_FILE = ROOT / "sample.txt"


def _status(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    if code is None:
        return "not run"
    status = status_by_exit_code[code]
    if status in ("killed", "timeout", "segfault"):
        return "timeout" if status == "timeout" else "killed"
    return status if status in ("survived", "no tests") else "other"


def load(root: Path = ROOT) -> dict[str, tuple[str, int | None]]:
    """Every mutant name -> (its source file, relative to ``root``, and its exit code or None)."""
    out: dict[str, tuple[str, int | None]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        source = str(meta.relative_to(root).with_suffix(""))
        for name, code in codes.items():
            out[name] = (source, code)
    return out


def package_of(source: str) -> str:
    return str(Path(source).parent)


def tally(root: Path = ROOT, names: set[str] | None = None) -> dict[str, Counter]:
    """Counter of statuses per source file (timeouts counted both as ``killed`` and as ``timeout``)."""
    per_file: dict[str, Counter] = {}
    for name, (source, code) in load(root).items():
        if names is not None and name not in names:
            continue
        status = _status(code)
        counts = per_file.setdefault(source, Counter())
        counts[status] += 1
        if status == "timeout":
            counts["killed"] += 1
    return per_file


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion k/n (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def draw(names_by_package: dict[str, list[str]], n: int, seed: int) -> dict[str, list[str]]:
    """``n`` names per package: the first ``n`` of a ``random.Random(seed)`` shuffle of the sorted names."""
    out = {}
    for package in sorted(names_by_package):
        names = sorted(names_by_package[package])
        random.Random(f"{seed}:{package}").shuffle(names)
        out[package] = names[:n]
    return out


def generate() -> None:
    """mutmut's mutant generation step only (the first part of ``mutmut run``; no test is run)."""
    from os import makedirs

    from mutmut.__main__ import create_mutants, store_lines_covered_by_tests
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    makedirs(ROOT, exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    store_lines_covered_by_tests()
    create_mutants(1)


def sample(n: int, seed: int) -> int:
    if not any(ROOT.rglob("*.py.meta")):
        generate()
    by_package: dict[str, list[str]] = {}
    for name, (source, _) in load().items():
        by_package.setdefault(package_of(source), []).append(name)
    drawn = draw(by_package, n, seed)
    SAMPLE_FILE.write_text("".join(f"{name}\n" for names in drawn.values() for name in names))
    for package, names in drawn.items():
        print(f"{package}: {len(names)} of {len(by_package[package])} mutants drawn (seed {seed})")
    print(f"wrote {SAMPLE_FILE}")
    return 0


def report(use_sample: bool) -> int:
    names = set(SAMPLE_FILE.read_text().split()) if use_sample and SAMPLE_FILE.exists() else None
    per_file = tally(names=names)
    if not per_file:
        print("no mutmut results under mutants/ (run `make mutation` first)")
        return 1
    packages: dict[str, Counter] = {}
    print(f"{'file':44} {'killed':>7} {'timeout':>7} {'survived':>8} {'no tests':>8} {'not run':>8} {'score':>6}")
    for name, c in sorted(per_file.items()):
        packages.setdefault(package_of(name), Counter()).update(c)
        done = c["killed"] + c["survived"] + c["no tests"]
        score = f"{100 * c['killed'] / done:5.1f}%" if done else "    –"
        print(f"{name:44} {c['killed']:7} {c['timeout']:7} {c['survived']:8} {c['no tests']:8} {c['not run']:8} "
              f"{score:>6}")
    label = "sample" if names is not None else "all mutants"
    for name, c in sorted(packages.items()):
        done = c["killed"] + c["survived"] + c["no tests"]
        low, high = wilson(c["killed"], done)
        print(f"package {name} ({label}): {c['killed']} killed ({c['timeout']} by timeout) / {done} run = "
              f"{100 * c['killed'] / done if done else 0:.1f}% [95% Wilson {100 * low:.1f}–{100 * high:.1f}%] "
              f"({c['survived']} survived, {c['no tests']} without tests, {c['not run']} not run)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, metavar="N", help="draw N mutants per package into mutants/sample.txt")
    parser.add_argument("--seed", type=int, default=11, help="seed of the draw (default 11)")
    parser.add_argument("--all", action="store_true", help="tally every mutant, not only mutants/sample.txt")
    args = parser.parse_args(argv)
    if args.sample is not None:
        return sample(args.sample, args.seed)
    return report(use_sample=not args.all)


if __name__ == "__main__":
    sys.exit(main())
