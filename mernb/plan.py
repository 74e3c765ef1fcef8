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
    timeout: 3600              # optional: seconds per notebook execution (default: none)
    notebooks:
      mpt/table6_learning_strategies:
        timeout: 600           # optional, this notebook's own limit
        parameter_groups:
          w_o_pretraining: {model: vit_test, epochs: 3}

The project root (``notebooks/``, ``runs/``) is the folder holding the plan (:func:`mernb.paths.find_root`),
not the installed package. Every parameter must be one the notebook's ``parameters`` cell defines.
``mernb run PLAN`` executes every notebook × group into ``runs/<plan>/executed/<notebook>/<group>.ipynb``,
each in its own kernel started in the project root (a forked kernel where safe: :mod:`mernb.kernels`).
Each execution receives the global parameters, its group's parameters and ``plan``, ``group``,
``groups`` (every group of that notebook, so the last one can tabulate all rows) and ``results_dir``.
Notebooks train-or-load, so re-running reuses results. The last group of a notebook is its book page.
Ctrl-C cancels the queued notebooks, interrupts the running kernels and exits with 130.
``mernb book PLAN`` copies the page notebooks into ``runs/book/`` (what ``_toc.yml`` points to) and
builds the book with execution off and ``-W -n --keep-going``.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mernb.errors import ConfigError
from mernb.io import digest, git, write_text_atomic
from mernb.paths import PACKAGE_ROOT, ROOT_ENV, find_root, project_root

REPO_ROOT = PACKAGE_ROOT  # mernb's own checkout (its git commit versions the pages); plans carry their root
BOOK_STAGE = "runs/book"  # _toc.yml points here; `mernb book` fills it from a plan's executed pages
PLAN_KINDS = ("synthetic", "reproduction")
PLAN_KEYS = ("name", "kind", "description", "synthme", "pretrain", "global_params", "notebooks", "kernel_name",
             "timeout")
NOTEBOOK_KEYS = ("parameter_groups", "timeout")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # plan names are folders under runs/
KILL_GRACE_S = 30.0  # after an interrupt (timeout), seconds before the kernel is killed


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
    root: Path = REPO_ROOT
    timeouts: dict[str, float | None] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.name

    def source(self, notebook: str) -> Path:
        return self.root / "notebooks" / f"{notebook}.ipynb"

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
            results_dir=str(self.results_dir(notebook).relative_to(self.root)),
            force=bool(force),
        )
        return params


def _require(mapping: dict, key: str, kind: type, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where}: missing '{key}'")
    if not isinstance(mapping[key], kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {type(mapping[key]).__name__}")
    return mapping[key]


def _mapping(value: Any, where: str, key: str, what: str) -> dict[str, Any]:
    """``value`` as a mapping (None → empty); a scalar or list is a ConfigError naming file and key."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a mapping of {what}, got {type(value).__name__} {value!r}")
    return value


def _unknown(keys: Any, known: tuple[str, ...] | set[str], where: str, key: str) -> list[str]:
    """One message per unknown key, with the closest known spelling."""
    problems = []
    for name in sorted(set(keys) - set(known), key=str):
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known))})"
        problems.append(f"{where}: unknown key {key}{name}{hint}")
    return problems


def _timeout(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number of seconds, got {value!r}")
    return float(value)


def notebook_parameters(source: Path) -> set[str] | None:
    """Names assigned in a notebook's cell tagged ``parameters`` (None: it has no such cell)."""
    cells = json.loads(source.read_text()).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                tree = ast.parse(text)
            except SyntaxError as exc:
                raise ConfigError(f"{source}: parameters cell is not valid Python: {exc}") from exc
            names = set()
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            return names
    return None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan; errors name the file and the offending entry.

    Every problem found is listed (unknown keys with their closest spelling, scalars or lists where a
    mapping belongs, parameters a notebook's ``parameters`` cell does not define), not just the first.
    """
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists():
        path = project_root() / path
    if not path.is_file():
        raise ConfigError(f"run plan {path} not found")
    path = path.resolve()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a plan is a mapping (name, kind, notebooks, ...), got {type(raw).__name__}")
    problems = _unknown(raw, PLAN_KEYS, where, "")
    if problems:
        raise ConfigError("\n".join(problems))
    root = find_root(path) or project_root()
    name = _require(raw, "name", str, where)
    if not NAME_PATTERN.fullmatch(name) or name in ("book",):
        raise ConfigError(f"{where}: name {name!r} must be a plain folder name under runs/ (letters, digits, "
                          "'.', '_', '-'; no '/', no '..'; not 'book')")
    kind = _require(raw, "kind", str, where)
    if kind not in PLAN_KINDS:
        raise ConfigError(f"{where}: kind must be one of {PLAN_KINDS}, got {kind!r}")
    notebooks_raw = _require(raw, "notebooks", dict, where)
    global_params = _mapping(raw.get("global_params"), where, "global_params", "parameter → value")
    synthme = raw.get("synthme")
    if synthme is not None:
        synthme = _mapping(synthme, where, "synthme", "settings (out, seed, datasets)")
        for dataset, options in _mapping(synthme.get("datasets"), where, "synthme.datasets",
                                         "dataset → options").items():
            _mapping(options, where, f"synthme.datasets.{dataset}", "options")
    default_timeout = _timeout(raw.get("timeout"), where, "timeout")
    notebooks: dict[str, dict[str, dict[str, Any]]] = {}
    timeouts: dict[str, float | None] = {}
    for nb, entry in notebooks_raw.items():
        key = f"notebooks.{nb}"
        if not isinstance(nb, str) or nb.startswith(("/", "~")) or ".." in Path(nb).parts:
            raise ConfigError(f"{where}: notebook {nb!r} must be a path under notebooks/ without '..'")
        entry = _mapping(entry, where, key, "settings (parameter_groups, timeout)")
        problems += _unknown(entry, NOTEBOOK_KEYS, where, f"{key}.")
        source = root / "notebooks" / f"{nb}.ipynb"
        if not source.is_file():
            raise ConfigError(f"{where}: notebook {nb!r} has no source notebooks/{nb}.ipynb (under {root})")
        groups = _mapping(entry.get("parameter_groups"), where, f"{key}.parameter_groups",
                          "group → parameters") or {"default": {}}
        for group in groups:
            if not NAME_PATTERN.fullmatch(str(group)):
                raise ConfigError(f"{where}: {key}.parameter_groups: group {group!r} must be a plain file name "
                                  "(letters, digits, '.', '_', '-')")
        notebooks[nb] = {str(g): dict(_mapping(v, where, f"{key}.parameter_groups.{g}", "parameter → value"))
                         for g, v in groups.items()}
        timeouts[nb] = _timeout(entry.get("timeout"), where, f"{key}.timeout") or default_timeout
        known = notebook_parameters(source)
        if known is None:
            problems.append(f"{where}: notebooks/{nb}.ipynb has no cell tagged 'parameters'")
            continue
        problems += [f"{p} (not in the parameters cell of notebooks/{nb}.ipynb)"
                     for p in _unknown(global_params, known, where, "global_params.")]
        for group, params in notebooks[nb].items():
            problems += [f"{p} (not in the parameters cell of notebooks/{nb}.ipynb)"
                         for p in _unknown(params, known, where, f"{key}.parameter_groups.{group}.")]
    if problems:
        raise ConfigError("\n".join(problems))
    return Plan(
        name=name,
        kind=kind,
        description=str(raw.get("description", "")).strip(),
        path=path,
        global_params=dict(global_params),
        notebooks=notebooks,
        synthme=synthme,
        kernel_name=str(raw.get("kernel_name", "python3")),
        root=root,
        timeouts=timeouts,
    )


# --------------------------------------------------------------------------------------------- synth


def synthesize(plan: Plan, force: bool = False) -> list[Any]:
    """Generate the plan's SynthME datasets into ``synthme.out/<dataset>`` (an unchanged set is reused)."""
    from mernb.data import synth

    spec = plan.synthme
    if not spec:
        print(f"[synth] plan {plan.name!r} needs no synthetic data")
        return []
    out = plan.root / spec.get("out", f"runs/{plan.name}/synthme")
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
    return digest(params, 16)


def _is_fresh(executed: Path, source: Path, digest: str) -> bool:
    """True when an executed copy ran to completion with the same parameters and code after the source changed."""
    if not executed.is_file() or executed.stat().st_mtime < source.stat().st_mtime:
        return False
    try:
        meta = json.loads(executed.read_text()).get("metadata", {})
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("mernb", {}).get("digest") == digest and meta.get("mernb", {}).get("status") == "ok"


def _hide_parameter_cells(nb_path: Path, digest: str, status: str, seconds: float, error: str | None = None,
                          dest: Path | None = None) -> None:
    """Tag papermill's injected cell and the defaults cell ``remove-cell``; record run metadata; write the
    result to ``dest`` (default: ``nb_path`` itself) atomically."""
    nb = json.loads(nb_path.read_text())
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    meta = {"digest": digest, "status": status, "seconds": round(seconds, 1)}
    if error:
        meta["error"] = error
    nb.setdefault("metadata", {})["mernb"] = meta
    write_text_atomic(dest or nb_path, json.dumps(nb, indent=1))  # unique temporary name: concurrent runs never collide


class RunControl:
    """Shared state of one ``mernb run``: the running kernels, and whether Ctrl-C cancelled the run.

    The first Ctrl-C cancels the queued notebooks and interrupts the running kernels; a second one
    kills them. Both are handled here, so no KeyboardInterrupt traceback reaches the user.
    """

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.presses = 0
        self._slots: set = set()
        self._lock = threading.Lock()

    def add(self, slot) -> None:
        with self._lock:
            self._slots.add(slot)

    def remove(self, slot) -> None:
        with self._lock:
            self._slots.discard(slot)

    def signal_all(self, signum: int) -> int:
        with self._lock:
            slots = list(self._slots)
        return sum(slot.signal(signum) for slot in slots)

    def on_sigint(self, signum: int = signal.SIGINT, frame: Any = None) -> None:
        self.presses += 1
        self.cancelled.set()
        if self.presses == 1:
            print("\n[run] Ctrl-C: cancelling queued notebooks, interrupting running kernels "
                  "(Ctrl-C again to kill them)", file=sys.stderr, flush=True)
            self.signal_all(signal.SIGINT)
        else:
            print("[run] Ctrl-C again: killing the running kernels", file=sys.stderr, flush=True)
            self.signal_all(signal.SIGKILL)


def execute(plan: Plan, notebook: str, group: str, force: bool = False, rerun: bool = False,
            control: RunControl | None = None, server: Any = None) -> tuple[str, float]:
    """Execute one notebook × group with papermill; returns (status, seconds).

    Status: ok | reused | failed | interrupted (Ctrl-C). An up-to-date executed copy is reused unless
    ``force`` (re-execute and retrain) or ``rerun`` (re-execute, reusing results: used for a page after
    other rows changed). The kernel starts in the project root (``server``: forked from it) and is shut
    down as soon as the notebook ends; a kernel that dies or exceeds the plan's timeout fails the page.
    """
    import logging

    import papermill
    from nbclient.exceptions import DeadKernelError

    # papermill's "Unable to parse line" warning for parameter lines it cannot type (comments, dict calls)
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)

    from mernb.kernels import KernelManager, KernelSlot, use_slot

    source = plan.source(notebook)
    target = plan.executed_path(notebook, group)
    params = plan.parameters(notebook, group, force=force)
    # new code or changed data (a corrected label, new frames) → pages re-executed
    digest = _params_digest({**params, "_code": _code_version(), "_inputs": _inputs_version(plan, params)})
    if not (force or rerun) and _is_fresh(target, source, digest):
        return "reused", 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    (plan.root / params["results_dir"]).mkdir(parents=True, exist_ok=True)
    control = control or RunControl()
    slot = KernelSlot(cwd=plan.root, env={ROOT_ENV: str(plan.root), "MERNB_PLAN": plan.name}, server=server)
    timeout = plan.timeouts.get(notebook)
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        slot.signal(signal.SIGINT)
        killer = threading.Timer(KILL_GRACE_S, slot.signal, args=(signal.SIGKILL,))
        killer.daemon = True
        killer.start()

    # papermill writes as it goes: into a file of this execution only, moved into place at the end, so two
    # runs of the same plan never read or write each other's half-written notebook.
    running = target.with_name(f".{target.stem}.{os.getpid()}-{threading.get_ident()}.running.ipynb")
    timer = threading.Timer(timeout, on_timeout) if timeout else None
    start = time.perf_counter()
    error = None
    control.add(slot)
    try:
        with use_slot(slot):
            if timer is not None:
                timer.daemon = True
                timer.start()
            papermill.execute_notebook(
                str(source), str(running), parameters=params, kernel_name=plan.kernel_name,
                progress_bar=False, log_output=False, report_mode=False,
                # CRITICAL: no per-kernel transport warnings, no "KeyboardInterrupt caught in kernel" at shutdown
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                kernel_manager_class=KernelManager, shutdown_kernel="immediate",
            )
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except DeadKernelError:
        error = "kernel died"
    except Exception as exc:  # noqa: BLE001 - a failed page, reported; the other pages go on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        control.remove(slot)
        if timer is not None:
            timer.cancel()
    seconds = time.perf_counter() - start
    if timed_out.is_set():
        error = f"timeout after {timeout:g}s (plan's timeout)"
    status = "ok" if error is None else ("interrupted" if control.cancelled.is_set() else "failed")
    if status == "failed":
        detail = error if error == "kernel died" or error.startswith("timeout") else f"error: {error}"
        print(f"[run] {notebook}:{group}: failed ({detail})", file=sys.stderr, flush=True)
    if running.is_file():
        _hide_parameter_cells(running, digest, status, seconds, error, dest=target)
        running.unlink()
    return status, seconds


STATUSES = ("ok", "reused", "failed", "interrupted", "cancelled")


def run_plan(plan: Plan, only: str | None = None, force: bool = False, jobs: int = 1,
             control: RunControl | None = None) -> dict[tuple[str, str], tuple[str, float]]:
    """Execute the plan's notebooks × groups (filtered by ``only``); returns {(notebook, group): (status, s)}.

    Each notebook's groups run in plan order with its page group last (re-executed when another row
    ran, so the page tabulates every row). ``jobs`` > 1 runs that many notebooks at once (each in its
    own kernel; shared result rows are locked by ``train_or_load``, so none is trained twice).
    Called from the main thread, Ctrl-C is handled by ``control`` (see :class:`RunControl`):
    queued notebooks are ``cancelled``, running ones ``interrupted``.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tqdm import tqdm

    from mernb.kernels import fork_server

    selected = plan.executions(only)
    if not selected:
        raise ConfigError(f"--only {only!r} matches no notebook or notebook:group of plan {plan.name!r}")
    per_notebook: dict[str, list[str]] = {}
    for notebook, _ in selected:
        page = plan.page_group(notebook)
        per_notebook[notebook] = [g for nb, g in selected if nb == notebook and g != page] + [page]
    env = {ROOT_ENV: str(plan.root)}
    if jobs > 1:  # kernels share the cores: keep each kernel's BLAS/OpenMP pool small
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = os.environ.get(var, str(max(1, (os.cpu_count() or 1) // jobs)))
    control = control or RunControl()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, control.on_sigint) if in_main else None
    results: dict[tuple[str, str], tuple[str, float]] = {}
    start = time.perf_counter()
    saved_env = {var: os.environ.get(var) for var in env}
    os.environ.update(env)  # the same for every kernel (set once, before any starts)
    try:
        with fork_server(plan.root) as server:

            def run_notebook(notebook: str) -> dict[tuple[str, str], tuple[str, float]]:
                done: dict[tuple[str, str], tuple[str, float]] = {}
                for group in per_notebook[notebook]:
                    if control.cancelled.is_set():
                        done[(notebook, group)] = ("cancelled", 0.0)
                        continue
                    is_page = group == plan.page_group(notebook)
                    rows_changed = any(status == "ok" for status, _ in done.values())
                    done[(notebook, group)] = execute(
                        plan, notebook, group, force=force and (notebook, group) in selected,
                        rerun=is_page and rows_changed, control=control, server=server)
                    status, seconds = done[(notebook, group)]
                    tqdm.write(f"[run] {notebook}:{group}: {status} ({seconds:.1f}s)")
                return done

            with tqdm(total=len(per_notebook), desc=f"plan {plan.name}", unit="nb") as bar, \
                    ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                pending = {pool.submit(run_notebook, nb) for nb in per_notebook}
                while pending:  # short waits: the main thread stays responsive to Ctrl-C
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    if control.cancelled.is_set() and control.presses == 1:
                        control.signal_all(signal.SIGINT)  # a kernel between cells ignores one interrupt
                    for future in finished:
                        results.update(future.result())
                        bar.update(1)
    finally:
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if in_main:
            signal.signal(signal.SIGINT, previous)
    outcomes = {(nb, g): results.get((nb, g), ("cancelled", 0.0)) for nb, groups in per_notebook.items()
                for g in groups}
    summary = {s: sum(1 for v in outcomes.values() if v[0] == s) for s in STATUSES}
    counts = ", ".join(f"{summary[s]} {'executed' if s == 'ok' else s}" for s in STATUSES
                       if summary[s] or s in ("ok", "reused", "failed"))
    tail = (f"rerun `mernb run {plan.path}` to continue (finished pages and folds are reused)"
            if control.cancelled.is_set() else f"executed notebooks in {plan.run_dir}/executed")
    head = "interrupted" if control.cancelled.is_set() else "plan"
    print(f"[run] {head} {plan.name}: {counts} in {time.perf_counter() - start:.0f}s (jobs={jobs}); {tail}",
          flush=True)
    return outcomes


def main_run(args) -> int:
    control = RunControl()
    outcomes = run_plan(load_plan(args.plan), only=args.only, force=args.force, jobs=args.jobs, control=control)
    if control.cancelled.is_set():
        return 130
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


def _tree_stat(folder: Path, depth: int | None = None) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of the files under ``folder`` (``depth``: folder levels to descend)."""
    out = []
    base = len(folder.parts)
    for here, dirs, files in os.walk(folder):
        level = len(Path(here).parts) - base
        dirs.sort()
        if depth is not None and level >= depth:
            dirs[:] = []
        for name in sorted(files) + ([] if depth is None else [d + "/" for d in dirs]):
            path = Path(here) / name.rstrip("/")
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return out


def _inputs_version(plan: Plan, params: dict[str, Any]) -> str:
    """A digest of the data a notebook reads, so a changed annotation file or frame re-executes its page.

    SynthME (``data_root``): every file's name, size and modification time. Real data (the user config):
    the config file itself, each configured annotation file, and the dataset folders two levels deep
    (subject and clip folders: frames added or removed change their modification times).
    """
    from mernb.config import config_path, load_config

    data_root = params.get("data_root")
    if data_root:
        folder = Path(data_root) if Path(data_root).is_absolute() else plan.root / data_root
        return _params_digest({"synthme": _tree_stat(folder)}) if folder.is_dir() else "absent"
    path = config_path()
    entries: dict[str, Any] = {"config": path.read_text() if path else None}
    for name, entry in load_config().datasets.items():
        for key in ("annotation", "root"):
            value = (entry or {}).get(key)
            if value and Path(value).expanduser().exists():
                target = Path(value).expanduser()
                entries[f"{name}.{key}"] = _tree_stat(target, depth=2) if target.is_dir() else target.stat().st_mtime_ns
    return _params_digest(entries)


def _code_version() -> str:
    """The commit of the code (plus a dirty mark when mernb/ has uncommitted changes), so pages are re-executed
    when mernb changes."""
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "mernb", cwd=REPO_ROOT)
    return _git_commit() + ("+dirty" if dirty else "")


def _git_commit() -> str:
    return git("rev-parse", "--short", "HEAD", cwd=REPO_ROOT) or "unknown"


def stage_book(plan: Plan) -> Path:
    """Fill runs/book/ with the plan's pages, cleaned for readers, plus the status page and build info.

    Executed pages are copied with code collapsed, developer output cleaned (:func:`_clean_page`) and a
    run admonition; a failed page becomes a failure note naming the error and the command to rerun it;
    a missing one a placeholder naming the command. Also writes ``plan.md`` (the landing page's note),
    ``status.md`` (the dashboard, tables as CSV under ``tables/``) and ``build.json`` (plan and kind, read
    by the book's Sphinx extension for the smoke note and banner).
    """
    from mernb.report.dashboard import Artifact, status_page

    stage = REPO_ROOT / BOOK_STAGE
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "notebooks").mkdir(parents=True)
    plan_file = _rel(plan.path)
    commit = _git_commit()
    missing, artifacts = [], []
    for notebook in toc_notebooks():
        dest = stage / "notebooks" / f"{notebook}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = plan.executed_path(notebook, plan.page_group(notebook)) if notebook in plan.notebooks else None
        rerun = f"mernb run {plan_file} --only '{notebook}'"
        if source is None or not source.is_file():
            missing.append(notebook)
            why = (f"is not part of plan `{plan.name}`" if notebook not in plan.notebooks
                   else f"has not been executed yet: run `{rerun}`")
            dest.with_suffix(".md").write_text(f"# {notebook}\n\n```{{note}}\nThis page {why}.\n```\n")
            artifacts.append(Artifact(notebook, notebook, "absent" if notebook not in plan.notebooks else "missing"))
            continue
        nb = json.loads(source.read_text())
        meta = nb.get("metadata", {})
        title = _page_title(nb) or notebook
        seconds = sum(json.loads(p.read_text()).get("metadata", {}).get("mernb", {}).get("seconds", 0.0)
                      for p in (plan.executed_path(notebook, g) for g in plan.notebooks[notebook]) if p.is_file())
        seed = meta.get("papermill", {}).get("parameters", {}).get("seed")
        if meta.get("mernb", {}).get("status") == "failed":
            error = _page_error(nb)
            dest.with_suffix(".md").write_text(
                f"# {title}\n\n```{{admonition}} This page failed to run\n:class: error mernb-failed\n\n"
                f"`{notebook}` stopped with "
                f"`{error}` in plan `{plan.name}`, so it shows no results. Rerun it with `{rerun}`; the "
                f"executed notebook with the full traceback is `{_rel(source)}`.\n```\n")
            artifacts.append(Artifact(notebook, title, "failed", seconds or None, _str(seed), commit, error))
            continue
        tables = _clean_page(nb, plan, notebook, stage)
        dest.write_text(json.dumps(nb, indent=1))
        artifacts.append(_artifact(notebook, title, plan, seconds, _str(seed), commit, tables, stage))
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = [a.notebook for a in artifacts if a.status == "failed"]
    (stage / "build.json").write_text(json.dumps({"plan": plan.name, "kind": plan.kind, "commit": commit,
                                                  "built": built, "failed": failed}, indent=1))
    (stage / "status.md").write_text(status_page(artifacts, plan=plan.name, plan_file=plan_file, kind=plan.kind,
                                                 commit=commit, built=built, quoted=_quoted_only()))
    kind_text = {
        "synthetic": "**Every number in this build is a smoke result on SynthME synthetic data with tiny models on "
                     "the CPU. It exercises the full pipeline; it is not a reproduction of the papers.** The papers' "
                     "numbers are shown beside ours for layout only.",
        "reproduction": "**This build holds reproductions on the real licensed datasets with the papers' settings** "
                        "(see each page's Deviations section for what differs from the paper).",
    }[plan.kind]
    lines = [
        "```{admonition} Which numbers are these?", ":class: important", "",
        f"Run plan `{plan.name}` (`{plan_file}`), kind **{plan.kind}**. {kind_text}", "",
        f"Built {built} from commit `{commit}`. The {{doc}}`status page </runs/book/status>` lists every "
        "artifact with its status, run time and the command that reproduces it.",
    ]
    if plan.description:
        lines += ["", plan.description]
    if missing:
        lines += ["", f"Pages not executed in this plan: {', '.join(f'`{m}`' for m in missing)}."]
    if failed:
        lines += ["", f"**Pages that failed** (they show a failure note): {', '.join(f'`{m}`' for m in failed)}."]
    lines.append("```")
    (stage / "plan.md").write_text("\n".join(lines) + "\n")
    return stage


def _rel(path: Path) -> str:
    """``path`` relative to the project root when inside it (never an absolute build path on a page)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return Path(path).name


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _page_title(nb: dict) -> str | None:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


def _page_error(nb: dict) -> str:
    """``"ename: evalue"`` of the first error output (terminal codes removed), or "an error"."""
    from mernb.report.page import sanitize_text

    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                text = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip().rstrip(":")
                return sanitize_text(text, REPO_ROOT).replace("`", "'")[:300]
    return "an error (see the executed notebook)"


_RUN_INFO_LINE = r"^(?:plan='[^\n]*|device in use: [^\n]*)$\n?"  # what run_info() prints
_KEEP_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell", "remove-output"}


def _models(value: Any) -> list[str]:
    """Every ``model`` named in a notebook's parameters (nested dicts included), in order."""
    found: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("model"), str):
            found.append(value["model"])
        for item in value.values():
            found += _models(item)
    return list(dict.fromkeys(found))


def _clean_page(nb: dict, plan: Plan, notebook: str, stage: Path) -> dict[str, str]:
    """Make an executed notebook a reader's page, in place; returns {glue key: CSV path} of its tables.

    Code is collapsed (``hide-input``), stderr dropped, printed text freed of build paths, terminal codes,
    reprs and the run-info lines (a *run* admonition under the title replaces them when the notebook does
    not show one), printed logs collapsed (``hide-output``), and glued tables' CSV written to ``tables/``.
    """
    import re

    from mernb.report.page import display_names, run_admonition_text, sanitize_text

    tables: dict[str, str] = {}
    device = when = commit = None
    has_run_note = False
    papermill_meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):  # no build paths in the staged copy
        if papermill_meta.get(key):
            papermill_meta[key] = _rel(Path(papermill_meta[key]))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if not _KEEP_TAGS & set(tags):
            tags.append("hide-input")
        outputs = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                if out.get("name") == "stderr":
                    continue
                text = "".join(out.get("text", ""))
                info = re.search(r"device in use: (.*?); mernb .*?commit (\w+); (.*)$", text, re.M)
                if info:
                    device, commit, when = info.group(1), info.group(2)[:12], info.group(3).strip()
                text = sanitize_text(re.sub(_RUN_INFO_LINE, "", text, flags=re.M), REPO_ROOT)
                if text.strip():
                    out["text"] = text
                    outputs.append(out)
                    if "hide-output" not in tags and "remove-output" not in tags:
                        tags.append("hide-output")
                continue
            if kind == "error":
                continue
            data = out.get("data", {})
            if plan.kind == "synthetic" and "".join(data.get("text/markdown", "")).startswith("**Smoke run"):
                continue  # the smoke note at the top of every page says it
            for mime, value in list(data.items()):
                if mime.startswith(("text/", "application/papermill.record/text/")):
                    text = "".join(value) if isinstance(value, list) else str(value)
                    if "mernb-run" in text:
                        has_run_note = True
                    text = sanitize_text(text, REPO_ROOT)
                    data[mime] = display_names(text) if mime == "text/markdown" else text
            csv = out.get("metadata", {}).pop("mernb", {}).get("csv")
            key = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if csv and key:
                path = stage / "tables" / notebook / f"{key}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(csv)
                tables[key] = str(path.relative_to(stage))
            outputs.append(out)
        cell["outputs"] = outputs
    if not has_run_note:
        params = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
        group = params.get("group", plan.page_group(notebook))
        settings = {k: params[k] for k in ("dataset", "protocol", "datasets", "max_subjects") if k in params}
        seconds = nb.get("metadata", {}).get("mernb", {}).get("seconds")
        note = run_admonition_text(plan=plan.name, group=group, notebook=notebook,
                                   model=", ".join(f"`{m}`" for m in _models(params)) or None,
                                   seeds=params.get("seed"), device=device, commit=commit, when=when,
                                   seconds=seconds, settings=settings or None, plan_file=_rel(plan.path))
        cells = nb.get("cells", [])
        at = next((i + 1 for i, c in enumerate(cells) if c.get("cell_type") == "markdown"), 0)
        cells.insert(at, {"cell_type": "markdown", "id": "mernb-run-note", "metadata": {}, "source": note})
    return tables


def _artifact(notebook: str, title: str, plan: Plan, seconds: float, seed: str | None, commit: str,
              tables: dict[str, str], stage: Path) -> Any:
    from mernb.report.dashboard import MAIN_ROWS, Artifact, headline, learning_check
    from mernb.report.page import display_names

    found = [(key, headline((stage / path).read_text(), limit=1)) for key, path in tables.items()]
    found = [(key, rows) for key, rows in found if rows]
    rows = []
    for key, measured in found[:3]:  # the measured row of each table (one per dataset), at most three
        tag = display_names(key.split("_")[-2] if key.endswith("_table") else key.split("_")[-1])
        rows += [(f"{tag}: {row}" if len(found) > 1 else row, m, p, o) for row, m, p, o in measured]
    learning = []
    if notebook in MAIN_ROWS:
        for key, path in tables.items():
            tag = display_names(key.split("_")[-2] if key.endswith("_table") else notebook.rsplit("_", 1)[-1])
            check = learning_check((stage / path).read_text(), MAIN_ROWS[notebook], tag)
            learning += [check] if check else []
    return Artifact(notebook, title, plan.kind, seconds or None, seed, commit, None, tables, rows, learning)


def _quoted_only() -> list[tuple[str, str]]:
    """(paper, table) pairs of the paper numbers for papers that have no notebook in the book yet."""
    from mernb.report.paper import paper_numbers

    with_pages = {nb.split("/")[0] for nb in toc_notebooks()}
    numbers = paper_numbers()
    pairs = numbers[["paper", "table"]].drop_duplicates().itertuples(index=False)
    return [(p, t) for p, t in pairs if p not in with_pages]


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
    shutil.copy2(REPO_ROOT / BOOK_STAGE / "build.json", html.parent / "mernb-build.json")  # for the HTML checks
    print(f"[book] done: {html}")
    return html


def main_book(args) -> int:
    build_book(load_plan(args.plan))
    return 0
