"""Mutation score per file and package from mutmut 3's ``mutants/**/*.meta`` (``make mutation``).

Statuses follow mutmut's own table (``mutmut.stats.status_by_exit_code``): *killed* (tests failed, or a
timeout: the mutant made the tests hang), *survived*, *no tests* (no selected test reaches it), *not run*
(mutmut has not reached it yet). Score = killed / (killed + survived).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def tally(root: Path = Path("mutants")) -> dict[str, Counter]:
    per_file: dict[str, Counter] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        counts = Counter()
        for code in codes.values():
            status = status_by_exit_code[code]
            counts["not run" if code is None else "killed" if status in ("killed", "timeout", "segfault")
                   else status if status in ("survived", "no tests") else "other"] += 1
        if codes:
            per_file[str(meta.relative_to(root).with_suffix(""))] = counts
    return per_file


def main() -> int:
    per_file = tally()
    if not per_file:
        print("no mutmut results under mutants/ (run `make mutation` first)")
        return 1
    packages: dict[str, Counter] = {}
    print(f"{'file':44} {'killed':>7} {'survived':>8} {'no tests':>8} {'not run':>8} {'score':>6}")
    for name, c in per_file.items():
        packages.setdefault(str(Path(name).parent), Counter()).update(c)
        done = c["killed"] + c["survived"]
        score = f"{100 * c['killed'] / done:5.1f}%" if done else "    –"
        print(f"{name:44} {c['killed']:7} {c['survived']:8} {c['no tests']:8} {c['not run']:8} {score:>6}")
    for name, c in packages.items():
        done = c["killed"] + c["survived"]
        print(f"package {name}: {c['killed']} killed / {done} run = "
              f"{100 * c['killed'] / done if done else 0:.1f}% ({c['not run']} not run, {c['no tests']} without tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
