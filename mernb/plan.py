"""Run plans: YAML → SynthME generation → papermill executions → Jupyter Book.

A plan (``plans/smoke.yaml``, ``plans/paper.yaml``) lists, per notebook, parameter groups (one per
table row or ablation), in the spirit of a papermill run manifest::

    name: smoke
    kind: synthetic            # synthetic (SynthME smoke numbers) | reproduction (real data)
    description: ...
    synthme:                   # optional: datasets `mernb synth` generates before the run
      out: runs/smoke/synthme
      seed: 0
      datasets: {casme2: {max_subjects: 6}, smic: {}}
    global_params: {device: auto}
    notebooks:
      mpt/table6_learning_strategies:
        parameter_groups:
          w_o_pretraining: {model: vit_test, epochs: 3}

``mernb run PLAN`` executes every notebook × group into ``runs/<plan>/executed/<notebook>/<group>.ipynb``.
Each execution receives the global parameters, its group's parameters and ``plan``, ``group``,
``groups`` (every group of that notebook, so the last one can tabulate all rows) and ``results_dir``.
Notebooks train-or-load, so re-running reuses results. The last group of a notebook is its book page.
``mernb book PLAN`` copies the page notebooks into ``runs/book/`` (what ``_toc.yml`` points to) and
builds the book with execution off and ``-W -n --keep-going``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mernb.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_STAGE = "runs/book"  # _toc.yml points here; `mernb book` fills it from a plan's executed pages
PLAN_KINDS = ("synthetic", "reproduction")


@dataclass
class Plan:
    """A parsed run plan; ``notebooks`` maps notebook (path under notebooks/, no suffix) → groups."""

    name: str
    kind: str
    description: str
    path: Path
    global_params: dict[str, Any] = field(default_factory=dict)
    notebooks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    synthme: dict[str, Any] | None = None
    kernel_name: str = "python3"

    @property
    def run_dir(self) -> Path:
        return REPO_ROOT / "runs" / self.name

    def executions(self, only: str | None = None) -> list[tuple[str, str]]:
        """(notebook, group) pairs in plan order, filtered by a shell pattern on ``nb`` or ``nb:group``."""
        pairs = [(nb, group) for nb, groups in self.notebooks.items() for group in groups]
        if only:
            pairs = [p for p in pairs if fnmatch.fnmatch(p[0], only) or fnmatch.fnmatch(f"{p[0]}:{p[1]}", only)]
        return pairs

    def page_group(self, notebook: str) -> str:
        """The group whose executed copy is the notebook's book page (the last one)."""
        return list(self.notebooks[notebook])[-1]

    def executed_path(self, notebook: str, group: str) -> Path:
        return self.run_dir / "executed" / notebook / f"{group}.ipynb"

    def results_dir(self, notebook: str) -> Path:
        return self.run_dir / "results" / notebook

    def parameters(self, notebook: str, group: str, force: bool = False) -> dict[str, Any]:
        """Everything injected into one execution (JSON-serialisable)."""
        groups = self.notebooks[notebook]
        params = dict(self.global_params)
        params.update(groups[group])
        params.update(
            plan=self.name,
            plan_kind=self.kind,
            group=group,
            groups={name: {**self.global_params, **values} for name, values in groups.items()},
            results_dir=str(self.results_dir(notebook).relative_to(REPO_ROOT)),
            force=bool(force),
        )
        return params


def _require(mapping: dict, key: str, kind: type, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where}: missing '{key}'")
    if not isinstance(mapping[key], kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {type(mapping[key]).__name__}")
    return mapping[key]


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan; errors name the file and the offending entry."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f"run plan {path} not found")
    path = path.resolve()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    where = str(path)
    name = _require(raw, "name", str, where)
    kind = _require(raw, "kind", str, where)
    if kind not in PLAN_KINDS:
        raise ConfigError(f"{where}: kind must be one of {PLAN_KINDS}, got {kind!r}")
    notebooks_raw = _require(raw, "notebooks", dict, where)
    notebooks: dict[str, dict[str, dict[str, Any]]] = {}
    for nb, entry in notebooks_raw.items():
        source = REPO_ROOT / "notebooks" / f"{nb}.ipynb"
        if not source.is_file():
            raise ConfigError(f"{where}: notebook {nb!r} has no source notebooks/{nb}.ipynb")
        groups = (entry or {}).get("parameter_groups") or {"default": {}}
        if not isinstance(groups, dict):
            raise ConfigError(f"{where}: notebooks.{nb}.parameter_groups must be a mapping of group → parameters")
        notebooks[nb] = {str(g): dict(v or {}) for g, v in groups.items()}
    unknown = set(raw) - {"name", "kind", "description", "synthme", "pretrain", "global_params", "notebooks", "kernel_name"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    return Plan(
        name=name,
        kind=kind,
        description=str(raw.get("description", "")).strip(),
        path=path,
        global_params=dict(raw.get("global_params") or {}),
        notebooks=notebooks,
        synthme=raw.get("synthme"),
        kernel_name=str(raw.get("kernel_name", "python3")),
    )


# --------------------------------------------------------------------------------------------- synth


def synthesize(plan: Plan, force: bool = False) -> list[Any]:
    """Generate the plan's SynthME datasets into ``synthme.out/<dataset>`` (an unchanged set is reused)."""
    from mernb.data import synth

    spec = plan.synthme
    if not spec:
        print(f"[synth] plan {plan.name!r} needs no synthetic data")
        return []
    out = REPO_ROOT / spec.get("out", f"runs/{plan.name}/synthme")
    shared = {k: v for k, v in spec.items() if k not in ("out", "datasets")}
    infos = []
    for dataset, options in (spec.get("datasets") or {}).items():
        start = time.perf_counter()
        info = synth.generate(dataset, out / dataset, overwrite=force, **{**shared, **(options or {})})
        print(f"[synth] {dataset}: {info.n_samples} clips, {info.n_frames} frames "
              f"({info.rows} rows) in {time.perf_counter() - start:.1f}s → {info.root}")
        infos.append(info)
    return infos


def main_synth(args) -> int:
    synthesize(load_plan(args.plan), force=args.force)
    return 0


# ----------------------------------------------------------------------------------------------- run


def _params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_fresh(executed: Path, source: Path, digest: str) -> bool:
    """True when an executed copy ran to completion with the same parameters and code after the source changed."""
    if not executed.is_file() or executed.stat().st_mtime < source.stat().st_mtime:
        return False
    try:
        meta = json.loads(executed.read_text()).get("metadata", {})
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("mernb", {}).get("digest") == digest and meta.get("mernb", {}).get("status") == "ok"


def _hide_parameter_cells(nb_path: Path, digest: str, status: str, seconds: float) -> None:
    """Tag papermill's injected cell and the defaults cell ``remove-cell``; record run metadata."""
    nb = json.loads(nb_path.read_text())
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.setdefault("metadata", {})["mernb"] = {"digest": digest, "status": status, "seconds": round(seconds, 1)}
    tmp = nb_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1))
    os.replace(tmp, nb_path)


def execute(plan: Plan, notebook: str, group: str, force: bool = False, rerun: bool = False) -> tuple[str, float]:
    """Execute one notebook × group with papermill; returns (status, seconds). Status: ok|reused|failed.

    An up-to-date executed copy is reused unless ``force`` (re-execute and retrain) or ``rerun``
    (re-execute, reusing results: used for a page after other rows changed).
    """
    import papermill

    source = REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    target = plan.executed_path(notebook, group)
    params = plan.parameters(notebook, group, force=force)
    digest = _params_digest({**params, "_code": _code_version()})  # new code → pages re-executed
    if not (force or rerun) and _is_fresh(target, source, digest):
        return "reused", 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    (REPO_ROOT / params["results_dir"]).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status = "ok"
    try:
        papermill.execute_notebook(
            str(source), str(target), parameters=params, kernel_name=plan.kernel_name,
            cwd=str(REPO_ROOT), progress_bar=False, log_output=False, report_mode=False,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no per-kernel transport warnings
        )
    except papermill.PapermillExecutionError as exc:
        status = "failed"
        print(f"[run] {notebook}:{group} FAILED: {exc.ename}: {exc.evalue}", file=sys.stderr)
    seconds = time.perf_counter() - start
    if target.is_file():
        _hide_parameter_cells(target, digest, status, seconds)
    return status, seconds


def run_plan(plan: Plan, only: str | None = None, force: bool = False,
             jobs: int = 1) -> dict[tuple[str, str], tuple[str, float]]:
    """Execute the plan's notebooks × groups (filtered by ``only``); returns {(notebook, group): (status, s)}.

    Each notebook's groups run in plan order with its page group last (re-executed when another row
    ran, so the page tabulates every row). ``jobs`` > 1 runs that many notebooks at once (each in its
    own kernel; shared result rows are locked by ``train_or_load``, so none is trained twice).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    selected = plan.executions(only)
    if not selected:
        raise ConfigError(f"--only {only!r} matches no notebook or notebook:group of plan {plan.name!r}")
    per_notebook: dict[str, list[str]] = {}
    for notebook, _ in selected:
        page = plan.page_group(notebook)
        per_notebook[notebook] = [g for nb, g in selected if nb == notebook and g != page] + [page]
    os.environ.setdefault("MERNB_PLAN", plan.name)
    if jobs > 1:  # kernels share the cores: keep each kernel's BLAS/OpenMP pool small
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(max(1, (os.cpu_count() or 1) // jobs)))

    def run_notebook(notebook: str) -> dict[tuple[str, str], tuple[str, float]]:
        done: dict[tuple[str, str], tuple[str, float]] = {}
        for group in per_notebook[notebook]:
            is_page = group == plan.page_group(notebook)
            rows_changed = any(status == "ok" for status, _ in done.values())
            done[(notebook, group)] = execute(plan, notebook, group, force=force and (notebook, group) in selected,
                                              rerun=is_page and rows_changed)
            status, seconds = done[(notebook, group)]
            tqdm.write(f"[run] {notebook}:{group}: {status} ({seconds:.1f}s)")
        return done

    results: dict[tuple[str, str], tuple[str, float]] = {}
    start = time.perf_counter()
    with tqdm(total=len(per_notebook), desc=f"plan {plan.name}", unit="nb") as bar, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in as_completed([pool.submit(run_notebook, nb) for nb in per_notebook]):
            results.update(future.result())
            bar.update(1)
    outcomes = {(nb, g): results[(nb, g)] for nb, groups in per_notebook.items() for g in groups}
    summary = {s: sum(1 for v in outcomes.values() if v[0] == s) for s in ("ok", "reused", "failed")}
    print(f"[run] plan {plan.name}: {summary['ok']} executed, {summary['reused']} reused, "
          f"{summary['failed']} failed in {time.perf_counter() - start:.0f}s (jobs={jobs}); "
          f"executed notebooks in {plan.run_dir.relative_to(REPO_ROOT)}/executed")
    return outcomes


def main_run(args) -> int:
    outcomes = run_plan(load_plan(args.plan), only=args.only, force=args.force, jobs=args.jobs)
    return 1 if any(status == "failed" for status, _ in outcomes.values()) else 0


# ---------------------------------------------------------------------------------------------- book


def toc_notebooks() -> list[str]:
    """Notebook pages listed in _toc.yml (entries under runs/book/notebooks/)."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            file = node.get("file")
            prefix = f"{BOOK_STAGE}/notebooks/"
            if isinstance(file, str) and file.startswith(prefix):
                found.append(file[len(prefix):])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return found


def _code_version() -> str:
    """The commit of the code (plus a dirty mark), so pages are re-executed when mernb changes."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "mernb"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty = ""
    return _git_commit() + ("+dirty" if dirty else "")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stage_book(plan: Plan) -> Path:
    """Fill runs/book/ with the plan's page notebooks (placeholders name the command for missing ones)."""
    stage = REPO_ROOT / BOOK_STAGE
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "notebooks").mkdir(parents=True)
    missing = []
    for notebook in toc_notebooks():
        dest = stage / "notebooks" / f"{notebook}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = plan.executed_path(notebook, plan.page_group(notebook)) if notebook in plan.notebooks else None
        if source is not None and source.is_file():
            shutil.copy2(source, dest)
        else:
            missing.append(notebook)
            why = (f"is not part of plan `{plan.name}`" if notebook not in plan.notebooks
                   else f"has not been executed yet: run `mernb run {plan.path.relative_to(REPO_ROOT)} --only '{notebook}'`")
            dest.with_suffix(".md").write_text(f"# {notebook}\n\n```{{note}}\nThis page {why}.\n```\n")
    kind_text = {
        "synthetic": "**Every number in this build is a smoke result on SynthME synthetic data with tiny models on "
                     "the CPU. It exercises the full pipeline; it is not a reproduction of the papers.** The papers' "
                     "numbers are shown beside ours for layout only.",
        "reproduction": "**This build holds reproductions on the real licensed datasets with the papers' settings** "
                        "(see each page's Deviations section for what differs from the paper).",
    }[plan.kind]
    lines = [
        "```{admonition} Which numbers are these?", ":class: important", "",
        f"Run plan `{plan.name}` (`{plan.path.relative_to(REPO_ROOT)}`), kind **{plan.kind}**. {kind_text}", "",
        f"Built {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from commit `{_git_commit()}`.",
    ]
    if plan.description:
        lines += ["", plan.description]
    if missing:
        lines += ["", f"Pages not executed in this plan: {', '.join(f'`{m}`' for m in missing)}."]
    lines.append("```")
    (stage / "plan.md").write_text("\n".join(lines) + "\n")
    return stage


def build_book(plan: Plan) -> Path:
    """Stage the plan's pages and run ``jupyter-book build . -W -n --keep-going`` (execution off)."""
    stage_book(plan)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(REPO_ROOT), "-W", "-n", "--keep-going"]
    print("[book]", " ".join(cmd))
    result = subprocess.run(cmd, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise ConfigError(f"jupyter-book build failed (exit {result.returncode}); see the warnings above")
    html = REPO_ROOT / "_build" / "html" / "index.html"
    print(f"[book] done: {html}")
    return html


def main_book(args) -> int:
    build_book(load_plan(args.plan))
    return 0
