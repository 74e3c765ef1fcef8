"""Smoke pre-training: tiny timm backbones trained on SynthME's macro-expression set (DFEW-like).

The paper plan starts MPT and HLoRA-MER from real pretrained weights (ImageNet-21k ViT, DINOv2) read from
local files. The smoke plan has no such files, and a frozen *random* tiny ViT gives the micro-expression
rows nothing to build on (they predict the majority class). ``mernb pretrain-smoke PLAN`` therefore trains
each tiny backbone named in the plan's ``pretrain:`` section on SynthME's macro-expression clips (the
``dfew`` set ``mernb synth`` renders: other subjects, 5-20x larger facial motions, 7 emotions) and writes
its timm ``state_dict`` to a local checkpoint file. The smoke rows name that file as ``weights:``, so they
load it through exactly the path real checkpoints take (:func:`mernb.models.backbones.create_backbone`:
local file, strict). No micro-expression clip is seen here: nothing is tuned on any held-out subject.

Tasks (each backbone on the input its models feed it):

* ``dynamic_image`` (MPT / ViT baselines): the clip's dynamic image (rank pooling of ``num_frames``
  uniformly sampled aligned frames, :func:`mernb.models.vit.dynamic_image_input`) -> the clip's emotion.
* ``frames`` (HLoRA-MER): each of the ``num_frames`` frames through the backbone; each frame's class token
  minus the first frame's, max-pooled over time (no apex needed: DFEW has none; the subject's identity
  cancels, as in HLoRA's frame-difference attention) -> the clip's emotion.

Only the DFEW train split (``set_1``) is used. AdamW, cosine decay, random horizontal flips, optional grey
copies (SAMM is grey), one CPU thread
by default; the same seed gives the same checkpoint. A checkpoint is retrained only when its settings or
its data change (a JSON sidecar beside it records both). Used by ``make book`` (before ``mernb run``) and
``tests/test_smoke_pretrain.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from mernb.errors import ConfigError
from mernb.io import digest, save_torch_atomic, write_json_atomic

__all__ = ["PretrainSpec", "pretrain_backbone", "pretrain_from_plan", "backbone_of", "make_inputs", "main"]

Task = Literal["dynamic_image", "frames"]
SPEC_VERSION = 2


@dataclass(frozen=True)
class PretrainSpec:
    """One backbone to pre-train: the registered model ``config`` whose ``.backbone`` it is, the checkpoint
    file ``out``, the task (``dynamic_image`` or ``frames``) and a fixed schedule."""

    config: str
    out: str
    task: Task
    image_size: int
    num_frames: int = 8
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    flip: bool = True
    grayscale: float = 0.0

    @classmethod
    def from_mapping(cls, config: str, raw: Mapping[str, Any], where: str) -> PretrainSpec:
        known = set(cls.__dataclass_fields__) - {"config"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{where}: unknown settings {sorted(unknown)} (expected {', '.join(sorted(known))})")
        for key in ("out", "task", "image_size"):
            if key not in raw:
                raise ConfigError(f"{where}: missing '{key}'")
        if raw["task"] not in ("dynamic_image", "frames"):
            raise ConfigError(f"{where}: task must be 'dynamic_image' or 'frames', got {raw['task']!r}")
        spec = cls(config=config, **{k: v for k, v in raw.items()})
        return cls(**{**asdict(spec), "lr": float(spec.lr), "weight_decay": float(spec.weight_decay)})


def backbone_of(config: str, image_size: int) -> nn.Module:
    """The plain timm backbone (random init, no classifier) of a registered model config, as that config
    builds it (``vit_test`` -> its tiny ViT, ``hlora_test`` -> its tiny DINOv2-style ViT, without LoRA)."""
    from mernb.models import create_model
    from mernb.models.hlora import HLoRAMER

    probe = create_model(config, weights=None, img_size=image_size, num_classes=2)
    if isinstance(probe, HLoRAMER):  # LoRA wraps q/v in place; the "full" variant keeps the plain layout
        probe = create_model(config, weights=None, img_size=image_size, num_classes=2, finetune="full")
    backbone = getattr(probe, "backbone", None)
    if backbone is None:
        raise ConfigError(f"model config {config!r} has no timm backbone to pre-train")
    return backbone


class _Classifier(nn.Module):
    """Backbone + linear head; ``frames`` input (B, T, 3, S, S): each frame's class token minus the first
    frame's, max over time (HLoRA's IFFA also works on frame-feature differences and max-pools over time)."""

    def __init__(self, backbone: nn.Module, num_classes: int, task: Task) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "frames":
            b, t = x.shape[:2]
            feats = self.backbone(x.flatten(0, 1)).view(b, t, -1)
            feats = (feats[:, 1:] - feats[:, :1]).amax(1)  # change from the first frame, max over time
        else:
            feats = self.backbone(x)
        return self.head(feats)


def make_inputs(clips: Sequence[np.ndarray], task: Task, image_size: int, mean: Sequence[float],
                std: Sequence[float]) -> torch.Tensor:
    """Model inputs of uint8 clips (T, S, S, 3): dynamic images (N, 3, S, S) or normalised frames (N, T, 3, S, S)."""
    from mernb.models.vit import dynamic_image_input

    if task == "dynamic_image":
        return torch.stack([dynamic_image_input(c, mean=mean, std=std, img_size=image_size) for c in clips]).float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    for clip in clips:
        frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0
        if frames.shape[-1] != image_size:
            frames = F.interpolate(frames, size=(image_size, image_size), mode="bilinear", align_corners=False,
                                   antialias=True)
        out.append((frames - m) / s)
    return torch.stack(out)


def gray_clips(clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The clips in grey (channel mean, three equal channels): SAMM's frames are grey, DFEW's are colour."""
    return [np.repeat(np.asarray(c, np.float32).mean(-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
            for c in clips]


def pretrain_backbone(spec: PretrainSpec, inputs: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                      seed: int = 0, log: bool = False, gray_inputs: torch.Tensor | None = None,
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train ``spec.config``'s backbone + a linear head on ``inputs``/``labels`` (a fixed schedule; CPU).

    ``gray_inputs`` (same shape): the grey version of each input, used instead with probability
    ``spec.grayscale`` at every step.

    Returns the backbone's ``state_dict`` (timm keys, no head: what :func:`create_backbone` loads) and a
    summary (train accuracy of the last epoch, loss, seconds). Deterministic for a given ``seed``.
    """
    from mernb.train.runtime import set_seed

    if len(inputs) != len(labels) or len(inputs) == 0:
        raise ConfigError(f"pre-training needs as many labels as inputs (got {len(inputs)} and {len(labels)})")
    set_seed(seed)
    model = _Classifier(backbone_of(spec.config, spec.image_size), num_classes, spec.task)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = math.ceil(len(inputs) / spec.batch_size)
    total = max(1, spec.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    loss_value, correct = float("nan"), 0
    for epoch in range(spec.epochs):
        order = torch.randperm(len(inputs), generator=gen)
        correct, seen, loss_sum = 0, 0, 0.0
        for i in range(0, len(order), spec.batch_size):
            idx = order[i : i + spec.batch_size]
            x, y = inputs[idx], labels[idx]
            if gray_inputs is not None and spec.grayscale > 0:
                gray = torch.rand(len(idx), generator=gen) < spec.grayscale
                x = torch.where(gray.view(-1, *([1] * (x.dim() - 1))), gray_inputs[idx], x)
            if spec.flip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        loss_value = loss_sum / seen
        if log and (epoch + 1) % max(1, spec.epochs // 5) == 0:
            print(f"[pretrain] {spec.config}: epoch {epoch + 1}/{spec.epochs} loss {loss_value:.3f} "
                  f"train acc {correct / seen:.3f}", flush=True)
    state = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    summary = dict(train_acc=round(correct / len(inputs), 4), loss=round(loss_value, 4),
                   seconds=round(time.perf_counter() - start, 2), n=len(inputs), steps=total)
    return state, summary


def _plan_section(plan_path: str | Path) -> tuple[dict[str, Any], Any]:
    from mernb.plan import load_plan

    plan = load_plan(plan_path)
    raw = yaml.safe_load(Path(plan.path).read_text()) or {}
    return dict(raw.get("pretrain") or {}), plan


def pretrain_from_plan(plan_path: str | Path, *, force: bool = False, threads: int | None = 1,
                       log: bool = True) -> dict[str, dict[str, Any]]:
    """Pre-train every backbone of the plan's ``pretrain:`` section; returns ``{config: sidecar record}``.

    ``pretrain: {dataset: dfew, seed: 0, backbones: {<model config>: {out, task, image_size, ...}}}``; the
    dataset is the SynthME set ``mernb synth PLAN`` wrote under ``global_params.data_root``. A checkpoint
    whose sidecar (``<out>.json``) records the same settings and data digest is kept (``force``: retrain).
    """
    from mernb.data.cache import ClipCache
    from mernb.data.clips import prepare_all
    from mernb.data.sources import load_samples
    from mernb.plan import REPO_ROOT

    section, plan = _plan_section(plan_path)
    where = f"{plan.path}: pretrain"
    if not section:
        if log:
            print(f"[pretrain] plan {plan.name!r} has no 'pretrain' section: nothing to do")
        return {}
    unknown = set(section) - {"dataset", "seed", "backbones"}
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)} (expected dataset, seed, backbones)")
    dataset = str(section.get("dataset", "dfew"))
    seed = int(section.get("seed", 0))
    backbones = section.get("backbones") or {}
    if not isinstance(backbones, dict) or not backbones:
        raise ConfigError(f"{where}.backbones must map model configs to settings")
    specs = [PretrainSpec.from_mapping(str(k), v or {}, f"{where}.backbones.{k}") for k, v in backbones.items()]
    params = plan.global_params
    data_root = params.get("data_root")
    if not data_root:
        raise ConfigError(f"{plan.path}: smoke pre-training needs global_params.data_root (a SynthME plan)")
    data_root = REPO_ROOT / data_root
    cache_dir = REPO_ROOT / params.get("cache_dir", f"runs/{plan.name}/cache")
    if threads:
        torch.set_num_threads(int(threads))

    samples, _ = load_samples(dataset, data_root)
    samples = [s for s in samples if s.label]
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise ConfigError(f"{where}: SynthME {dataset!r} has fewer than two labelled classes")
    # clips are aligned once (face detection is the cost), with the most frames and the largest image size
    # asked for; each task takes evenly spaced frames and resizes them to its own size
    size = max(spec.image_size for spec in specs)
    frames = max(spec.num_frames for spec in specs)
    start = time.perf_counter()
    report = prepare_all(samples, cache=ClipCache(cache_dir / "clips"), keep=True, progress=False,
                         num_frames=frames, size=size, align=True, fallback="center_crop", mode="uniform")
    kept = [s for s in samples if s.sample_id in report.clips]
    all_clips = [report.clips[s.sample_id] for s in kept]
    prep = time.perf_counter() - start
    records: dict[str, dict[str, Any]] = {}
    for spec in specs:
        out = REPO_ROOT / spec.out if not Path(spec.out).is_absolute() else Path(spec.out)
        sidecar = out.with_name(out.name + ".json")
        pick = np.linspace(0, frames - 1, spec.num_frames).round().astype(int)
        clips = [c[pick] for c in all_clips]
        data_digest = digest([[s.sample_id, s.label, hashlib.sha1(np.ascontiguousarray(c).tobytes()).hexdigest()]
                              for s, c in zip(kept, clips, strict=True)])
        identity = dict(version=SPEC_VERSION, spec=asdict(spec), seed=seed, dataset=dataset, classes=classes,
                        prepared=[frames, size], data=data_digest)
        key = digest(identity)
        if out.is_file() and sidecar.is_file() and not force:
            try:
                saved = json.loads(sidecar.read_text())
            except (OSError, json.JSONDecodeError):
                saved = {}
            if saved.get("key") == key:
                if log:
                    print(f"[pretrain] {spec.config}: up to date ({out})")
                records[spec.config] = saved
                continue
        backbone = backbone_of(spec.config, spec.image_size)
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean, std = tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
        inputs = make_inputs(clips, spec.task, spec.image_size, mean, std)
        gray = make_inputs(gray_clips(clips), spec.task, spec.image_size, mean, std) if spec.grayscale else None
        labels = torch.tensor([classes.index(s.label) for s in kept])
        state, summary = pretrain_backbone(spec, inputs, labels, len(classes), seed=seed, log=log, gray_inputs=gray)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_torch_atomic(out, state)
        record = dict(key=key, **identity, n_clips=len(kept), dropped=len(samples) - len(kept),
                      prepare_seconds=round(prep, 2), **summary)
        write_json_atomic(sidecar, record)
        records[spec.config] = record
        if log:
            print(f"[pretrain] {spec.config}: {len(kept)} {dataset} clips, {len(classes)} classes, "
                  f"{spec.epochs} epochs: train acc {summary['train_acc']:.3f} in {summary['seconds']:.1f}s "
                  f"(+{prep:.1f}s data) -> {out}")
    return records


def main(args) -> int:
    """``mernb pretrain-smoke PLAN [--force]``."""
    pretrain_from_plan(args.plan, force=args.force)
    return 0


def majority_reference(doc: Mapping[str, Any]) -> dict[str, float]:
    """UF1/Acc of this row's results document (``runs/<plan>/results/<paper>/shared/*.json``) next to two
    majority-class predictors on the same pooled LOSO predictions:

    * ``majority_fold``: each fold predicts the majority class of its *training* subjects (all other folds;
      ties go to the class listed first), the honest reference;
    * ``majority_pool``: every clip gets the majority class of the whole pool.

    Used by ``docs/smoke_numbers.md`` (the smoke UF1 goal) and its tests.
    """
    from mernb.experiments.baselines import majority_on_folds
    from mernb.train.metrics import compute_metrics

    result = doc["result"]
    classes = list(result["classes"])
    preds = result["predictions"]
    y_true = np.array([p["y_true"] for p in preds])
    folds = np.array([p["fold"] for p in preds])
    counts = np.bincount(y_true, minlength=len(classes))
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in dict.fromkeys(folds.tolist())]
    ours = result["metrics"]
    fold_m = majority_on_folds(y_true, splits, classes)  # the reference rows' own rule
    pool_m = compute_metrics(y_true, np.full_like(y_true, int(np.argmax(counts))), classes)
    return dict(n=int(len(y_true)), uf1=float(ours["uf1"]), acc=float(ours["acc"]),
                majority_fold_uf1=fold_m["uf1"], majority_fold_acc=fold_m["acc"],
                majority_pool_uf1=pool_m["uf1"], majority_pool_acc=pool_m["acc"])
