"""``mernb run PLAN --check``: everything that can fail before the GPU hours, and what they will cost.

For every notebook × group of a plan, without training:

1. **Data**: each dataset it reads is configured (SynthME under ``data_root`` or the user config) and its
   annotation file parses; the samples and classes each protocol selects are counted; a spread sample of
   clips (``frame_sample`` per protocol, first and last included) has its first, middle and last frame
   file decoded.
2. **Models**: each model of its rows is built at its real size with its weights file loaded strictly
   (a missing file or a checkpoint that does not fit is a problem), and one forward + backward step runs
   on one real batch (two clips prepared as the recipe prepares them) on the available device: CUDA when
   present, else the CPU for steps under ``cpu_step_flops``, else the ``meta`` device (shapes only).
3. **Cost**: the FLOPs of one training step per sample as executed (torch's FLOP formulas on the meta device:
   backward of frozen parts counted only where it runs; HLoRA's cached path plus its one-off prefix pass)
   × training samples × epochs × folds × seeds; hours at ``utilisation`` of a GPU's dense bf16 peak (the
   present one or ``--gpu NAME``). Rows shared between notebooks are costed once, where first met.

Rows come from the plan's parameters over the notebook's defaults: ``mpt`` settings and the notebook's
``ROWS`` table (MPT), ``model``/``model_kwargs`` with ``rows`` or ``n_lora_blocks`` (HLoRA). Every
problem is collected and listed; the command exits 1 when there is any. Used by ``mernb run --check``.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mernb.errors import MernbError

HLORA_FRAMES = 8  # mernb.experiments.hlora.NUM_FRAMES (not imported: it pulls in the whole recipe)


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class RowNeed:
    """One training row: a model config on a protocol with a fixed schedule (what a LOSO row trains)."""

    family: str  # mpt | hlora
    name: str
    model: str
    kwargs: dict[str, Any]
    dataset: str
    protocol: str
    batch_size: int
    epochs: int | None
    steps: int | None
    image_size: int
    num_frames: int
    spec: dict[str, Any] = field(default_factory=dict)  # MPT: the resolved row (for the real-batch inputs)
    holdout: bool = False

    @property
    def key(self) -> str:
        return json.dumps([self.family, self.model, self.kwargs, self.dataset, self.protocol, self.batch_size,
                           self.epochs, self.steps, self.image_size, self.num_frames, self.holdout],
                          sort_keys=True, default=str)

    @property
    def model_key(self) -> str:
        return json.dumps([self.model, self.kwargs], sort_keys=True, default=str)


@dataclass
class NotebookNeeds:
    notebook: str
    group: str
    data: list[tuple[str, str | None]]  # (dataset, protocol); protocol None: annotation only
    rows: list[RowNeed]
    seeds: int = 1
    optional_data: bool = False  # data/statistics lists datasets you do not hold instead of failing


# ------------------------------------------------------------------------------------------ parameters


def notebook_source(notebook: str) -> dict[str, Any]:
    from mernb.plan import REPO_ROOT

    return json.loads((REPO_ROOT / "notebooks" / f"{notebook}.ipynb").read_text())


def notebook_defaults(nb: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the notebook's ``parameters`` cell (plain assignments of literals)."""
    namespace: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            exec(compile("".join(cell["source"]), "<parameters>", "exec"), {}, namespace)  # noqa: S102
    return namespace


def notebook_rows(nb: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The notebook's ``ROWS = {...}`` table evaluated with ``params`` (None when it has none)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ROWS" for t in node.targets):
                value = eval(compile(ast.Expression(node.value), "<ROWS>", "eval"), {}, dict(params))  # noqa: S307
                return {str(k): dict(v) for k, v in value.items()}
    return None


def _data_pairs(params: Mapping[str, Any]) -> tuple[list[tuple[str, str | None]], bool]:
    from mernb.data.protocols import protocol as get_protocol

    if isinstance(params.get("directions"), Mapping):  # holdout protocols (HLoRA Table 7)
        pairs = []
        for name in params["directions"].values():
            proto = get_protocol(name)
            pairs += [(proto.train_dataset, name), (proto.test_dataset, name)]
        return pairs, False
    if isinstance(params.get("protocols"), Mapping):
        return list(params["protocols"].items()), False
    if isinstance(params.get("datasets"), Mapping):
        return list(params["datasets"].items()), False
    if isinstance(params.get("datasets"), list | tuple):
        return [(d, None) for d in params["datasets"]], True
    if params.get("dataset") and params.get("protocol"):
        return [(params["dataset"], params["protocol"])], False
    return [], False


def needs(notebook: str, params: Mapping[str, Any], nb: Mapping[str, Any] | None = None) -> NotebookNeeds:
    """What one notebook × group reads and trains, from its defaults overridden by the plan's ``params``."""
    nb = nb if nb is not None else notebook_source(notebook)
    merged = {**notebook_defaults(nb), **params}
    data, optional = _data_pairs(merged)
    group = str(merged.get("group", "default"))
    rows: list[RowNeed] = []
    seeds = len(merged["seeds"]) if isinstance(merged.get("seeds"), list | tuple) else 1
    if isinstance(merged.get("mpt"), Mapping):
        from mernb.experiments.mpt import row_spec

        table = notebook_rows(nb, merged) or {"MPT": {}}
        for dataset, proto in data:
            for name, overrides in table.items():
                spec = row_spec(merged["mpt"], **overrides)
                kwargs = dict(spec["options"])
                kwargs["img_size"] = int(spec["image_size"])
                if spec["kind"] == "mpt":
                    kwargs["num_frames"] = int(spec["num_frames"])
                rows.append(RowNeed("mpt", name, spec["model"], kwargs, dataset, proto, int(spec["batch_size"]),
                                    int(spec["epochs"]), None, int(spec["image_size"]), int(spec["num_frames"]),
                                    spec=spec))
    elif "model_kwargs" in merged and isinstance(merged.get("model"), str):
        if isinstance(merged.get("rows"), Mapping):
            table = {str(k): dict(v or {}) for k, v in merged["rows"].items()}
        elif isinstance(merged.get("n_lora_blocks"), list | tuple):
            table = {f"N_l={n}": {"n_lora_blocks": int(n)} for n in merged["n_lora_blocks"]}
        else:
            table = {"HLoRA-MER": {}}
        holdout = isinstance(merged.get("directions"), Mapping)
        pairs = list(dict.fromkeys(proto for _, proto in data)) if holdout else None
        targets = [(f"{proto}", proto) for proto in pairs] if holdout else data
        for dataset, proto in targets:
            for name, overrides in table.items():
                kwargs = {**dict(merged.get("model_kwargs") or {}), **overrides}
                kwargs.update(img_size=int(merged["image_size"]), num_frames=HLORA_FRAMES)
                rows.append(RowNeed("hlora", name, merged["model"], kwargs, dataset, proto, int(merged["batch_size"]),
                                    merged.get("epochs"), merged.get("steps"), int(merged["image_size"]),
                                    HLORA_FRAMES, holdout=holdout))
    return NotebookNeeds(notebook, group, data, rows, seeds, optional)


# ----------------------------------------------------------------------------------------------- data


@dataclass
class DataFacts:
    dataset: str
    protocol: str | None
    samples: int = 0
    subjects: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    selected: list[Any] = field(default_factory=list, repr=False)
    error: str | None = None
    n_train: int | None = None  # holdout splits: the training dataset's samples (the rest are tested)


def check_data(dataset: str, protocol: str | None, data_root: str | None, *, frame_sample: int = 6,
               problems: list[Problem], where: str, optional: bool = False) -> list[DataFacts]:
    """Annotation parse, protocol counts and a decoded sample of frames; problems appended to ``problems``."""
    from mernb.data.clips import load_frame
    from mernb.data.protocols import protocol as get_protocol
    from mernb.data.protocols import protocols_for
    from mernb.data.sources import load_samples

    try:
        samples, reader_problems = load_samples(dataset, data_root)
    except MernbError as exc:
        if not optional:
            problems.append(Problem(where, f"dataset {dataset}: {exc}"))
        return [DataFacts(dataset, protocol, error=str(exc))]
    protos = [get_protocol(protocol)] if protocol else protocols_for(dataset)
    out = []
    for proto in protos:
        selected = [s for s in proto.select(samples) if s.dataset == dataset]
        facts = DataFacts(dataset, proto.name, len(selected), len({s.subject_key for s in selected}),
                          {c: sum(s.label == c for s in selected) for c in proto.classes}, selected)
        if not selected:
            problems.append(Problem(where, f"{dataset}/{proto.name}: the protocol selects no sample"))
        no_frames = [s.sample_id for s in selected if not s.frame_paths]
        if no_frames:
            problems.append(Problem(where, f"{dataset}/{proto.name}: {len(no_frames)} of {len(selected)} samples "
                                           f"have no frame files (e.g. {no_frames[0]})"))
        picks = sorted({round(i * (len(selected) - 1) / max(1, frame_sample - 1)) for i in range(frame_sample)}
                       ) if selected else []
        for i in picks:
            sample = selected[i]
            paths = sample.frame_paths
            for path in dict.fromkeys([paths[0], paths[len(paths) // 2], paths[-1]] if paths else []):
                try:
                    load_frame(path)
                except MernbError as exc:
                    problems.append(Problem(where, f"{dataset}: {sample.sample_id}: {exc}"))
        out.append(facts)
    if reader_problems:
        kinds: dict[str, int] = {}
        for p in reader_problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        out[0].counts = dict(out[0].counts)
        out[0].error = "reader notes: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return out


# --------------------------------------------------------------------------------------------- models


@dataclass
class ModelFacts:
    model: str
    kwargs: dict[str, Any]
    row: str = ""  # the first row that uses it
    params: int = 0
    trainable: int = 0
    train_flops_per_sample: float | None = None  # one training step per sample as executed
    infer_flops_per_sample: float | None = None
    prefix_flops_per_sample: float | None = None  # HLoRA cached path: the frozen prefix, once per clip
    step_device: str | None = None
    step_seconds: float | None = None


def _flops(fn: Callable[[], Any]) -> float:
    from mernb.bench import count_flops

    return float(count_flops(fn))


def _train_step(model: Any, batch: Any, labels: Any) -> None:
    import torch

    logits = model(tokens=batch["tokens"]) if isinstance(batch, dict) and set(batch) == {"tokens"} else model(batch)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()


def count_costs(row: RowNeed, num_classes: int) -> ModelFacts:
    """FLOPs of one training step and one inference pass per sample, on the meta device (no memory)."""
    import torch

    from mernb.models import create_model

    kwargs = {**row.kwargs, "weights": None, "num_classes": num_classes}
    with torch.device("meta"):
        model = create_model(row.model, **kwargs)
    facts = ModelFacts(row.model, row.kwargs, params=sum(p.numel() for p in model.parameters()),
                       trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
    x = model.example_input(batch=1, device="meta")
    labels = torch.zeros(1, dtype=torch.long, device="meta")
    if row.family == "hlora" and getattr(model, "prefix_frozen", False):
        facts.prefix_flops_per_sample = _flops(lambda: model.prefix_features(x))
        with torch.no_grad():
            x = {"tokens": model.prefix_features(x)}
    model.train()
    facts.train_flops_per_sample = _flops(lambda: _train_step(model, x, labels))
    model.eval()
    with torch.no_grad():
        facts.infer_flops_per_sample = _flops(
            lambda: model(tokens=x["tokens"]) if isinstance(x, dict) and set(x) == {"tokens"} else model(x))
    return facts


def real_batch(row: RowNeed, model: Any, data: DataFacts, classes: list[str], n: int = 2) -> Any:
    """``n`` clips of ``data`` prepared as the row's recipe prepares them, as one model input batch."""
    import torch

    from mernb.data.clips import normalize, prepare_clip, to_tensor
    from mernb.experiments.common import ProtocolData

    samples = data.selected[:: max(1, len(data.selected) // n)][:n]
    clips = {s.sample_id: prepare_clip(s, num_frames=row.num_frames, size=row.image_size, align=True,
                                       fallback="center_crop") for s in samples}
    if row.family == "mpt":
        from mernb.experiments.mpt import MPTDataset, batch_inputs, prepare_inputs

        pdata = ProtocolData(row.dataset, row.protocol, classes, samples, clips)
        inputs = prepare_inputs(row.spec, pdata, cache_dir=None, probe=model)
        motion = row.spec["kind"] == "mpt" and row.spec["options"].get("prompt") == "motion"
        dataset = MPTDataset(inputs, samples, classes, motion=motion)
        return batch_inputs([dataset[i][0] for i in range(len(samples))])
    mean, std = model.data_config["mean"], model.data_config["std"]
    return torch.stack([normalize(to_tensor(clips[s.sample_id]), (mean, std)) for s in samples])


def check_model(row: RowNeed, data: DataFacts | None, *, step: str, cpu_step_flops: float,
                problems: list[Problem], where: str) -> ModelFacts | None:
    """Count costs, build with weights (strict), one forward+backward on a real batch on the chosen device."""
    import torch

    from mernb.data.protocols import protocol as get_protocol
    from mernb.models import create_model

    classes = list(get_protocol(row.protocol).classes)
    label = f"{row.model} ({row.name})"
    try:
        facts = count_costs(row, len(classes))
    except Exception as exc:  # noqa: BLE001 - every failure is a finding, listed with the others
        problems.append(Problem(where, f"{label}: cannot be built at its real size: {type(exc).__name__}: {exc}"))
        return None
    facts.row = row.name
    try:
        model = create_model(row.model, **{**row.kwargs, "num_classes": len(classes)})
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem(where, f"{label}: weights: {exc}"))
        return facts
    if step == "auto":
        flops = (facts.train_flops_per_sample or 0) * 2
        step = "cuda" if torch.cuda.is_available() else ("cpu" if flops <= cpu_step_flops else "meta")
    if step == "none" or data is None or not data.selected:
        return facts
    try:
        start = time.perf_counter()
        batch = real_batch(row, model, data, classes)
        if step == "meta":  # shapes only: the real batch's shapes through the real-size model
            with torch.device("meta"):
                model = create_model(row.model, **{**row.kwargs, "weights": None, "num_classes": len(classes)})
            batch = {k: torch.empty_like(v, device="meta") for k, v in batch.items()} if isinstance(batch, dict) \
                else torch.empty_like(batch, device="meta")
        device = torch.device(step)
        model = model.to(device).train()
        batch = {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)
        labels = torch.zeros(len(next(iter(batch.values())) if isinstance(batch, dict) else batch), dtype=torch.long,
                             device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _train_step(model, batch, labels)
        if device.type != "meta":
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            if missing:
                problems.append(Problem(where, f"{label}: no gradient reaches {missing[:3]} ({len(missing)})"))
        facts.step_device, facts.step_seconds = step, time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem(where, f"{label}: one training step on a real batch failed on {step}: "
                                       f"{type(exc).__name__}: {exc}"))
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return facts


# ----------------------------------------------------------------------------------------------- cost


def epochs_of(row: RowNeed, n_train: int) -> int:
    """The row's epochs, or its ``steps`` turned into epochs on a fold's ``n_train`` training samples (as
    ``TorchExperiment.epochs_for`` does for every fold)."""
    if row.epochs is not None:
        return int(row.epochs)
    per_epoch = max(1, math.ceil(n_train / max(1, row.batch_size)))
    return max(1, math.ceil(int(row.steps or 0) / per_epoch))


def row_flops(row: RowNeed, facts: ModelFacts, data: DataFacts, seeds: int) -> tuple[float, int, int]:
    """(FLOPs, folds, epochs) of one row: every fold trains on the others' samples for the fixed schedule."""
    n, folds = data.samples, (1 if row.holdout else data.subjects)
    if row.holdout:  # one split: train on the first dataset, test on the second
        n_train_total, n_test = int(data.n_train or 0), n - int(data.n_train or 0)
    else:  # LOSO: every sample is tested once and trained on in the other folds - 1 folds
        n_train_total, n_test = n * (folds - 1), n
    epochs = epochs_of(row, round(n_train_total / folds))  # steps -> epochs on a (mean) fold's training set
    train = (facts.train_flops_per_sample or 0) * n_train_total * epochs
    infer = (facts.infer_flops_per_sample or 0) * n_test
    prefix = (facts.prefix_flops_per_sample or 0) * n * 2  # unflipped and flipped, once per clip
    return (train + infer) * seeds + prefix, folds, epochs


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    data: dict[tuple[str, str | None], DataFacts] = field(default_factory=dict)
    models: dict[str, ModelFacts] = field(default_factory=dict)
    cost: list[dict[str, Any]] = field(default_factory=list)
    gpu: str | None = None
    peak_flops: float | None = None
    utilisation: float = 0.35

    @property
    def total_flops(self) -> float:
        return sum(row["flops"] for row in self.cost)

    def hours(self, flops: float) -> float | None:
        return flops / (self.peak_flops * self.utilisation) / 3600 if self.peak_flops else None


def check_plan(plan: Any, *, only: str | None = None, gpu: str | None = None, utilisation: float = 0.35,
               step: str = "auto", cpu_step_flops: float = 2e11, frame_sample: int = 6,
               log: Callable[[str], None] = print) -> Report:
    """Run every check of the module docstring over ``plan`` (a :class:`mernb.plan.Plan`); never trains."""
    import torch

    from mernb.bench import bf16_peak

    report = Report(utilisation=utilisation)
    report.gpu = gpu or (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    report.peak_flops = bf16_peak(report.gpu)
    if report.gpu and report.peak_flops is None:
        report.problems.append(Problem("--gpu", f"no bf16 peak known for {report.gpu!r}; hours are not estimated"))
    seen_rows: set[str] = set()
    for notebook, group in plan.executions(only):
        where = f"{notebook}:{group}"
        params = plan.parameters(notebook, group)
        try:
            need = needs(notebook, params)
        except Exception as exc:  # noqa: BLE001
            report.problems.append(Problem(where, f"cannot read its settings: {type(exc).__name__}: {exc}"))
            continue
        data_root = params.get("data_root")
        for dataset, proto in need.data:
            if (dataset, proto) not in report.data:
                for facts in check_data(dataset, proto, data_root, frame_sample=frame_sample, problems=report.problems,
                                        where=where, optional=need.optional_data):
                    report.data[(dataset, facts.protocol)] = facts
                if proto is not None and (dataset, proto) not in report.data:
                    report.data[(dataset, proto)] = DataFacts(dataset, proto, error="not readable")
        flops_new = flops_all = 0.0
        n_new = 0
        detail = []
        for row in need.rows:
            facts_data = _row_data(row, report.data)
            if row.model_key not in report.models:
                log(f"[check] {where}: model {row.model} {json.dumps(row.kwargs, default=str)[:80]}")
                facts = check_model(row, facts_data, step=step, cpu_step_flops=cpu_step_flops,
                                    problems=report.problems, where=where)
                if facts is None:
                    continue
                report.models[row.model_key] = facts
            facts = report.models[row.model_key]
            if facts_data is None or not facts_data.samples:
                continue
            flops, folds, epochs = row_flops(row, facts, facts_data, need.seeds)
            flops_all += flops
            if row.key not in seen_rows:
                seen_rows.add(row.key)
                flops_new += flops
                n_new += 1
            detail.append((folds, epochs, facts_data.samples))
        report.cost.append(dict(notebook=notebook, group=group, rows=len(need.rows), new_rows=n_new,
                                folds=sorted({d[0] for d in detail}), epochs=sorted({d[1] for d in detail}),
                                samples=sorted({d[2] for d in detail}), flops=flops_new, flops_alone=flops_all))
    return report


def _row_data(row: RowNeed, data: Mapping[tuple[str, str | None], DataFacts]) -> DataFacts | None:
    if not row.holdout:
        return data.get((row.dataset, row.protocol))
    from mernb.data.protocols import protocol as get_protocol

    proto = get_protocol(row.protocol)
    parts = [data.get((proto.train_dataset, row.protocol)), data.get((proto.test_dataset, row.protocol))]
    if any(p is None or not p.samples for p in parts):
        return None
    return DataFacts(f"{proto.train_dataset}->{proto.test_dataset}", row.protocol, parts[0].samples + parts[1].samples,
                     parts[0].subjects + parts[1].subjects, {}, parts[0].selected + parts[1].selected,
                     n_train=parts[0].samples)


# --------------------------------------------------------------------------------------------- output


def _fmt_flops(flops: float) -> str:
    if flops <= 0:
        return "-"
    exp = min(int(math.log10(flops) // 3), 6)
    return f"{flops / 10 ** (3 * exp):.2f} {['', 'k', 'M', 'G', 'T', 'P', 'E'][exp]}FLOP"


def format_report(report: Report) -> str:
    """Data counts, models, the cost table per notebook and the total, then every problem."""
    lines = ["Data (samples / subjects per protocol; classes):"]
    for (dataset, proto), facts in sorted(report.data.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if facts.samples:
            counts = ", ".join(f"{c} {n}" for c, n in facts.counts.items())
            lines.append(f"  {dataset:<8} {proto or '-':<20} {facts.samples:>5} / {facts.subjects:<3} {counts}"
                         + (f"  [{facts.error}]" if facts.error else ""))
        elif facts.error:
            lines.append(f"  {dataset:<8} {proto or '-':<20} not read: {facts.error.splitlines()[0][:100]}")
    lines.append("Models (real size; one step on a real batch):")
    for facts in report.models.values():
        step = f"step on {facts.step_device} {facts.step_seconds:.1f}s" if facts.step_device else "no step"
        lines.append(f"  {facts.model + ' (' + facts.row + ')':<44} {facts.params / 1e6:8.1f} M params, "
                     f"{facts.trainable / 1e6:8.2f} M trainable, "
                     f"train {_fmt_flops(facts.train_flops_per_sample or 0)}/sample, {step}")
    gpu = report.gpu or "no GPU given (use --gpu H100)"
    lines.append(f"Estimated cost (bf16 on {gpu} at {100 * report.utilisation:.0f} % of peak; "
                 "shared rows counted where first met):")
    header = f"  {'notebook':<34}{'rows':>6}{'new':>5}  {'folds':<10}{'epochs':<10}{'compute':>14}{'GPU h':>9}"
    lines += [header, "  " + "-" * (len(header) - 2)]
    for row in report.cost:
        hours = report.hours(row["flops"])
        lines.append(f"  {row['notebook']:<34}{row['rows']:>6}{row['new_rows']:>5}  "
                     f"{','.join(map(str, row['folds'])) or '-':<10}{','.join(map(str, row['epochs'])) or '-':<10}"
                     f"{_fmt_flops(row['flops']):>14}{(f'{hours:.2f}' if hours is not None else '-'):>9}")
    papers: dict[str, float] = {}
    for row in report.cost:
        papers[row["notebook"].split("/")[0]] = papers.get(row["notebook"].split("/")[0], 0.0) + row["flops"]
    for paper, flops in papers.items():
        hours = report.hours(flops)
        lines.append(f"  {'subtotal ' + paper:<55}{_fmt_flops(flops):>14}"
                     f"{(f'{hours:.1f}' if hours is not None else '-'):>9}")
    total_h = report.hours(report.total_flops)
    lines.append(f"  {'total':<55}{_fmt_flops(report.total_flops):>14}"
                 f"{(f'{total_h:.1f}' if total_h is not None else '-'):>9}")
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines += [f"  - {p}" for p in report.problems]
    else:
        lines.append("No problems found.")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``mernb run PLAN --check [--only PATTERN] [--gpu NAME] [--utilisation F]``: exit 1 on any problem."""
    from mernb.plan import load_plan

    report = check_plan(load_plan(args.plan), only=getattr(args, "only", None), gpu=getattr(args, "gpu", None),
                        utilisation=getattr(args, "utilisation", 0.35),
                        log=lambda line: print(line, file=sys.stderr))
    print(format_report(report))
    return 1 if report.problems else 0
