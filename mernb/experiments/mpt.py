"""The MPT recipe: clips -> {dynamic image, motion sequence} -> MPT / ViT baselines -> shared LOSO rows.

Used by every notebook in ``notebooks/mpt/`` (Tables I-XI, Figs. 4-9).

* **Settings.** A notebook gets ``mpt`` (the default MPT configuration: model config, weights key,
  image size, frames, epochs, batch, lr, alpha, band, reduction, K, ...) and ``baselines`` (the ViT
  rows: ``scratch`` / ``full`` / ``partial``) from the plan. A table row is those settings plus a few
  overrides (:func:`row_spec`), e.g. ``{"prompt": "none"}`` or ``{"kind": "vit", **baselines["full"]}``.
* **Shared rows.** A row is a :class:`~mernb.experiments.common.SharedRow` (the mechanism the three papers
  share): ``<results root>/mpt/shared/<kind>-<dataset>-<key>.json`` where the key covers the fully resolved
  row (every model option, training setting), the dataset, protocol, seed and everything the model sees of
  each sample (labels, frames). Every notebook looks rows up there, so the MPT default row trained for Table
  VI is the same file Tables III, V, VII-XI and Figs. 4-9 read (train-or-load, fold-level resume).
* **Inputs.** ``prepare_input`` of a probe model per clip; the magnified motion is computed once per
  clip and settings and kept in memory for the notebook (``_INPUTS``) and on disk under
  ``<cache_dir>/mpt_inputs`` (float16, so a cache hit and a fresh computation give the same tensors).
* **Extras per fold** (not part of the hash): held-out class-token features (``<row>/features``) for
  t-SNE; optional trainable-weight checkpoints (``<row>/checkpoints``) for Grad-CAM
  (:meth:`MPTRow.fold_model` trains one fold again when no checkpoint is there: the same model, since
  randomness is per fold and independent of the folds run before).

Deviations/choices (see also :mod:`mernb.models.mpt`):

* The frame rate given to the band-pass is that of the T frames actually sampled: (T - 1) x video fps /
  (last sampled frame number - first), from the frame numbers found on disk (so rounding and missing
  frames are accounted for). The 0.4-4 Hz band needs at least ~8 Hz: a clip too long for the filter at T
  frames is dropped from that row and listed with its reason (``extra.dropped`` of the results), instead
  of aborting the row.
* Augmentation: random horizontal flip of the image and of the motion sequence together (training only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mernb.data.cache import ClipCache
from mernb.data.clips import sampling_positions
from mernb.data.records import Sample
from mernb.errors import ConfigError, MernbError
from mernb.experiments.common import (
    ProtocolData,
    SharedRow,
    keep_first_subjects,
    metrics_over_seeds,
    prepare_protocol_data,
    reference_metrics,
    seed_list,
)
from mernb.io import digest
from mernb.paths import project_path
from mernb.train.device_data import DeviceView, flip_where
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig, SchedulerConfig
from mernb.train.loso import Fold, label_index
from mernb.train.runtime import pick_device

__all__ = [
    "MPT_DEFAULTS",
    "TRAIN_KEYS",
    "row_spec",
    "sampled_fps",
    "sampled_frame_numbers",
    "load_data",
    "MPTRow",
    "run_rows",
    "ours_metrics",
    "per_class_accuracy",
    "GradCAMView",
    "gradcam_maps",
]

#: The paper's MPT options (Section IV-A); plan settings override them.
MPT_DEFAULTS: dict[str, Any] = dict(
    prompt="motion", adapter="group", finetune="frozen", num_prompts=5, reduction=8, dynamic_image="rankpool",
    alpha=20.0, low=0.4, high=4.0, motion_source="motion",
)
#: Training/input settings (not model options).
TRAIN_KEYS = ("image_size", "num_frames", "epochs", "batch_size", "lr", "weight_decay", "flip", "schedule",
              "warmup_epochs", "amp")
#: Training defaults where the paper is silent (stated in the Deviations): "initial learning rate 3e-4" read
#: as a cosine decay from it, no warm-up; bf16 autocast on CUDA (the fusion of near-equal activations runs
#: in fp32 inside the models). Every one is a plan setting; the ViT baselines may set their own.
_TRAIN_DEFAULTS = dict(weight_decay=0.0, flip=True, schedule="cosine", warmup_epochs=0, amp=True)
_MOTION_KEYS = ("alpha", "low", "high", "motion_source")
INPUT_VERSION = 1

_INPUTS: dict[str, dict[str, torch.Tensor]] = {}


# ------------------------------------------------------------------ row settings


def row_spec(settings: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A fully resolved row: ``settings`` (the plan's ``mpt`` dict) + ``overrides``, canonical form.

    ``kind`` is ``"mpt"`` (default) or ``"vit"`` (dynamic-image ViT baseline; then only ``model`` and its
    keyword arguments from the overrides are model options). Options that cannot matter are dropped
    (no motion settings without motion prompts, no K without prompts, no reduction without adapters),
    so equal models get equal hashes whichever table asks for them.
    """
    merged = {**_TRAIN_DEFAULTS, **dict(settings), **overrides}
    kind = merged.pop("kind", "mpt")
    missing = [k for k in ("model", "image_size", "num_frames", "epochs", "batch_size", "lr") if k not in merged]
    if missing:
        raise ConfigError(f"MPT row settings lack {missing}; the plan's `mpt` settings must name them")
    train = {k: merged.pop(k) for k in TRAIN_KEYS}
    train = {k: (float(v) if k in ("lr", "weight_decay") else v) for k, v in train.items()}
    train["warmup_epochs"], train["amp"] = int(train["warmup_epochs"]), bool(train["amp"])
    if train["schedule"] not in ("none", "cosine", "step"):
        raise ConfigError(f"schedule must be none, cosine or step, got {train['schedule']!r}")
    model = merged.pop("model")
    if kind == "vit":
        options = {k: v for k, v in overrides.items() if k not in (*TRAIN_KEYS, "kind", "model")}
        if options.get("dynamic_image") == "rankpool":  # the default, spelled out: the same model
            options.pop("dynamic_image")
    elif kind == "mpt":
        options = {**MPT_DEFAULTS, **merged}
        if options["prompt"] != "motion":
            for key in _MOTION_KEYS:
                options.pop(key, None)
        if options["prompt"] == "none":
            options.pop("num_prompts")
        if options["adapter"] == "none":
            options.pop("reduction")
        for key in ("alpha", "low", "high"):
            if key in options:
                options[key] = float(options[key])
        for key in ("num_prompts", "reduction"):
            if key in options:
                options[key] = int(options[key])
    else:
        raise ConfigError(f"row kind must be 'mpt' or 'vit', got {kind!r}")
    return {"kind": kind, "model": model, "options": dict(sorted(options.items())), **train}


def sampled_frame_numbers(sample: Sample, num_frames: int) -> np.ndarray:
    """Frame numbers of the ``num_frames`` frames clip preparation samples over the frames found on disk
    (fractional where it interpolates between neighbours)."""
    numbers = np.asarray(sample.frame_numbers, dtype=np.float64)
    if numbers.size == 0:
        raise MernbError(f"{sample.sample_id}: no frame numbers (were its frames found?)")
    positions = sampling_positions(len(numbers), num_frames)
    return np.interp(positions, np.arange(len(numbers)), numbers)


def sampled_fps(sample: Sample, num_frames: int) -> float:
    """Frame rate of the ``num_frames`` frames actually sampled: (T - 1) x video fps / their frame-number span."""
    if not sample.fps:
        raise MernbError(f"{sample.sample_id}: no frame rate; the band-pass of the motion sequence needs one")
    numbers = sampled_frame_numbers(sample, num_frames)
    span = float(numbers[-1] - numbers[0])
    if span <= 0:
        raise MernbError(f"{sample.sample_id}: the sampled frames span no time (one frame on disk?)")
    return (num_frames - 1) * float(sample.fps) / span


def load_data(dataset: str, protocol: str, settings: Mapping[str, Any], *, data_root, cache_dir,
              align_fallback: str = "error", max_subjects: int | None = None) -> ProtocolData:
    """``prepare_protocol_data`` with the row settings' frames and image size (uniform sampling, aligned).

    ``max_subjects`` keeps the first N subjects (natural order; smoke runs only, the paper plan keeps all).
    """
    data = prepare_protocol_data(dataset, protocol, data_root=data_root, cache_dir=cache_dir,
                                 num_frames=int(settings["num_frames"]), size=int(settings["image_size"]),
                                 align=True, align_fallback=align_fallback)
    return keep_first_subjects(data, max_subjects)


# ------------------------------------------------------------------ inputs


def _digest(obj: Any, n: int = 16) -> str:
    return digest(obj, n)


def _model_kwargs(spec: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    kwargs = dict(spec["options"])
    kwargs.update(num_classes=num_classes, img_size=int(spec["image_size"]))
    if spec["kind"] == "mpt":
        kwargs["num_frames"] = int(spec["num_frames"])
    return kwargs


def build_model(spec: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A fresh model of a resolved row."""
    # timm is imported on first use: notebooks that only load results stay fast
    from mernb.models import create_model

    return create_model(spec["model"], **_model_kwargs(spec, num_classes))


def probe_model(spec: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A randomly initialised model of the row (no weights file) for its input settings; built under a forked
    RNG so it consumes none of the process's random numbers."""
    with torch.random.fork_rng(devices=[]):
        return build_model({**spec, "options": {**spec["options"], "weights": None}}, num_classes)


def clips_unfit_for_motion(spec: Mapping[str, Any], data: ProtocolData, probe: nn.Module | None = None
                           ) -> dict[str, str]:
    """``{sample_id: reason}`` for clips whose sampled frame rate cannot carry the row's band-pass."""
    if spec["kind"] != "mpt" or spec["options"].get("prompt") != "motion":
        return {}
    probe = probe if probe is not None else probe_model(spec, len(data.classes))
    out = {}
    for sample in data.samples:
        try:
            probe.magnify_params(sampled_fps(sample, int(spec["num_frames"])))
        except (ValueError, MernbError) as exc:
            out[sample.sample_id] = f"motion input impossible at {int(spec['num_frames'])} frames: {exc}"
    return out


def prepare_inputs(spec: Mapping[str, Any], data: ProtocolData, cache_dir: str | Path | None = None,
                   probe: nn.Module | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """``{sample_id: {"image": (3,S,S)[, "motion": (T,3,S,S)]}}`` for every clip of ``data``.

    Motion is rounded to float16 (the storage format of the disk cache under ``cache_dir/mpt_inputs``)
    and computed once per clip and magnification settings; the dynamic image is cheap and kept in memory.
    """
    from mernb.models.vit import dynamic_image_input

    if probe is None:
        probe = probe_model(spec, len(data.classes))
    norm = getattr(probe, "data_config", {})
    mean, std = norm.get("mean", (0.5, 0.5, 0.5)), norm.get("std", (0.5, 0.5, 0.5))
    method = getattr(probe, "dynamic_image", "rankpool")  # official zero-sum weights, or the appearance-keeping port
    motion_on = spec["kind"] == "mpt" and getattr(probe, "prompt_kind", "none") == "motion"
    disk = ClipCache(project_path(cache_dir) / "mpt_inputs") if (cache_dir is not None and motion_on) else None
    out: dict[str, dict[str, torch.Tensor]] = {}
    digests = data.input_digests()
    for sample in data.samples:
        clip = data.clips[sample.sample_id]
        clip_hash = digests[sample.sample_id]
        image_key = _digest(["image", clip_hash, mean, std, spec["image_size"], method, INPUT_VERSION])
        if image_key not in _INPUTS:
            _INPUTS[image_key] = {"image": dynamic_image_input(clip, mean=mean, std=std, img_size=int(spec["image_size"]),
                                                               method=method).float()}
        entry = dict(_INPUTS[image_key])
        if motion_on:
            fps = sampled_fps(sample, clip.shape[0])
            motion_key = _digest(["motion", clip_hash, spec["image_size"], probe.magnify_params(fps), INPUT_VERSION])
            if motion_key not in _INPUTS:
                stored = disk.load(motion_key) if disk is not None else None
                if stored is None:
                    stored = probe.prepare_input(clip, fps)["motion"].to(torch.float16).numpy()
                    if disk is not None:
                        disk.save(motion_key, stored)
                _INPUTS[motion_key] = {"motion": torch.from_numpy(np.asarray(stored, np.float16)).float()}
            entry["motion"] = _INPUTS[motion_key]["motion"]
        out[sample.sample_id] = entry
    return out


class MPTDataset(Dataset):
    """(inputs, class index, sample index); inputs = ({"image", "motion"},) for motion prompts, else the image.

    Training: random horizontal flip of image and motion together, drawn from ``generator``.
    """

    def __init__(self, inputs: Mapping[str, Mapping[str, torch.Tensor]], samples: Sequence[Sample],
                 classes: Sequence[str], *, flip: bool = False, motion: bool = True) -> None:
        self.samples = list(samples)
        self.inputs = [inputs[s.sample_id] for s in self.samples]
        self.labels = [label_index(s, classes) for s in self.samples]
        self.flip = flip
        self.motion = motion
        self.generator: torch.Generator | None = None  # set per fold by TorchExperiment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        entry = self.inputs[index]
        flip = self.flip and bool(torch.rand((), generator=self.generator) < 0.5)
        image = entry["image"].flip(-1) if flip else entry["image"]
        if not self.motion:
            return image, self.labels[index], index
        motion = entry["motion"].flip(-1) if flip else entry["motion"]
        return ({"image": image, "motion": motion},), self.labels[index], index

    def device_view(self) -> DeviceView:
        """The whole set as stacked tensors; flips image and motion together (training)."""
        labels = torch.as_tensor(self.labels, dtype=torch.long)
        if not self.motion:
            stacked = torch.stack([e["image"] for e in self.inputs])
            return DeviceView(stacked, labels, flip_where if self.flip else None)
        stacked = {k: torch.stack([e[k] for e in self.inputs]) for k in ("image", "motion")}

        def flip(x: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
            return {k: flip_where(v, mask) for k, v in x.items()}

        return DeviceView(stacked, labels, flip if self.flip else None, pack=lambda x: (x,))


def batch_inputs(items: Sequence[Any]) -> Any:
    """Collate dataset inputs (image tensors or ({image, motion},) tuples) into one model input."""
    if torch.is_tensor(items[0]):
        return torch.stack(list(items))
    return {k: torch.stack([it[0][k] for it in items]) for k in items[0][0]}


def features_of(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Class-token features (B, D) before the head, for MPT and the dynamic-image ViT."""
    if hasattr(model, "forward_head") and hasattr(model, "prompt_kind"):
        return model.forward_head(model.forward_features(inputs), pre_logits=True)
    return model.forward_features(inputs)


# ------------------------------------------------------------------ rows


@dataclass
class MPTRow:
    """One resolved row on one protocol: a :class:`~mernb.experiments.common.SharedRow` with MPT's inputs,
    held-out class-token features per fold and (``save_models``: True or fold names) fold checkpoints."""

    name: str
    spec: dict[str, Any]
    data: ProtocolData
    results_dir: str | Path
    cache_dir: str | Path | None = None
    seed: int = 0
    device: str | None = None
    save_models: bool | Sequence[str] = False
    _shared: SharedRow | None = field(default=None, repr=False)
    #: the same row with the other seeds of the plan (tables show mean ± std over all of them)
    other_seeds: list[MPTRow] = field(default_factory=list, repr=False)

    @property
    def shared(self) -> SharedRow:
        if self._shared is None:
            self._shared = self._build()
        return self._shared

    @property
    def doc(self) -> dict[str, Any] | None:
        return self._shared.doc if self._shared is not None else None

    @property
    def experiment(self) -> TorchExperiment:
        return self.shared.experiment

    @property
    def key(self) -> str:
        return self.shared.key

    @property
    def path(self) -> Path:
        return self.shared.path

    @property
    def folder(self) -> Path:
        return self.shared.folder

    def _build(self) -> SharedRow:
        spec = self.spec
        probe = probe_model(spec, len(self.data.classes)) if spec["kind"] == "mpt" else None
        unfit = clips_unfit_for_motion(spec, self.data, probe)
        data = self.data
        if unfit:  # this row's own copy: other rows of the notebook keep every clip
            data = dataclasses.replace(data, samples=list(data.samples), clips=dict(data.clips),
                                       dropped=list(data.dropped), _digests=data._digests)
            data.drop(unfit)
        inputs: dict[str, dict[str, torch.Tensor]] = {}  # filled on first use: loading a row needs no inputs
        motion = spec["kind"] == "mpt" and spec["options"].get("prompt") == "motion"

        def model_fn(num_classes: int) -> nn.Module:
            return build_model(spec, num_classes)

        def dataset_fn(samples: list[Sample], train: bool) -> Dataset:
            if not inputs:
                inputs.update(prepare_inputs(spec, data, self.cache_dir, probe))
            return MPTDataset(inputs, samples, data.classes, flip=bool(spec["flip"]) and train, motion=motion)

        def features_fn(model: nn.Module, samples: list[Sample]) -> np.ndarray:
            return self._features(model, dataset_fn(samples, False))

        experiment = TorchExperiment(
            name=f"mpt/{spec['kind']}/{spec['model']}",
            model_fn=model_fn,
            dataset_fn=dataset_fn,
            num_classes=len(data.classes),
            epochs=int(spec["epochs"]),
            batch_size=int(spec["batch_size"]),
            optimizer=OptimConfig(name="adam", lr=float(spec["lr"]), weight_decay=float(spec["weight_decay"])),
            scheduler=SchedulerConfig(name=spec["schedule"], warmup_epochs=int(spec["warmup_epochs"])),
            amp=bool(spec["amp"]),
            details={"row": spec, "input": "dynamic image of the uniform clip" + (
                " + magnified motion sequence" if motion else "")},
            device=None if self.device in (None, "auto") else self.device,
            progress=False,
        )
        return SharedRow(f"{spec['kind']}-{data.dataset}", experiment, data, self.results_dir, seed=self.seed,
                         checkpoints=self.save_models, features_fn=features_fn)

    def _features(self, model: nn.Module, dataset: Dataset) -> np.ndarray:
        device = next(model.parameters()).device
        model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(dataset), 64):
                items = [dataset[i][0] for i in range(start, min(start + 64, len(dataset)))]
                x = batch_inputs(items)
                x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
                out.append(features_of(model, x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def run(self, *, force: bool = False, plan: str | None = None, notebook: str | None = None) -> dict[str, Any]:
        """Train-or-load the LOSO run of this row (and of its other seeds); returns this seed's document."""
        for other in self.other_seeds:
            other.run(force=force, plan=plan, notebook=notebook)
        return self.shared.run(force=force, plan=plan, notebook=notebook)

    def metrics(self) -> dict[str, Any]:
        """Pooled metrics, as the mean over the row's seeds (with ``<metric>_std``) when it has several."""
        if self.doc is None:
            raise MernbError(f"row {self.name!r} has not run; call run() first")
        if not self.other_seeds:
            return dict(self.doc["result"]["metrics"])
        return metrics_over_seeds([self.doc, *(o.doc for o in self.other_seeds)])

    def folds(self) -> dict[str, Fold]:
        return {f.name: f for f in self.shared.folds}

    def fold_model(self, fold_name: str) -> nn.Module:
        """The trained model of one fold (eval mode): its checkpoint (trainable weights, loaded strictly),
        else trained again (the same model: randomness is per fold) and its checkpoint written."""
        return self.shared.fold_model(fold_name).to(pick_device(self.device)).eval()

    def features(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Held-out class-token features pooled over folds (N, D), true labels (N,), sample ids.
        (Which fold model gave each row: :meth:`feature_folds`.)"""
        if self.doc is None:
            raise MernbError(f"row {self.name!r} has not run; call run() first")
        feats, y, ids, _ = self.shared.features()
        return feats, y, ids

    def feature_folds(self) -> list[str]:
        """The fold whose model embedded each row of :meth:`features` (Fig. 9 colours or splits by it)."""
        return self.shared.features()[3]


def run_rows(rows: Mapping[str, Mapping[str, Any]], data: ProtocolData, settings: Mapping[str, Any], *,
             results_dir: str | Path, cache_dir: str | Path | None = None, seed: int = 0, force: bool = False,
             device: str | None = None, plan: str | None = None, notebook: str | None = None,
             only: Sequence[str] | None = None, save_models: bool | Sequence[str] = False,
             verbose: bool = True, seeds: Sequence[int] | None = None) -> dict[str, MPTRow]:
    """Train-or-load each row ``{name: overrides}`` of a table (``only``: names to run; others skipped).

    ``seeds`` (paper plan: three) trains every row once per seed; the returned row is the first seed's
    (figures use it) and :meth:`MPTRow.metrics` / :func:`ours_metrics` give the mean ± std over seeds."""
    seeds = seed_list(seed, seeds)
    out: dict[str, MPTRow] = {}
    for name, overrides in rows.items():
        if only is not None and name not in only:
            continue
        spec = row_spec(settings, **dict(overrides))
        row, *others = [MPTRow(name, spec, data, results_dir, cache_dir=cache_dir, seed=s, device=device,
                               save_models=save_models) for s in seeds]
        row.other_seeds = others
        doc = row.run(force=force, plan=plan, notebook=notebook)
        if verbose:
            m = row.metrics()
            print(f"{name:>24}: {doc['origin']:<8} acc {100 * m['acc']:6.2f}  uf1 {100 * m['uf1']:6.2f}  "
                  f"({row.path.name})")
        out[name] = row
    return out


def ours_metrics(rows: Mapping[str, MPTRow], extra: Mapping[str, Mapping[str, Any]] | None = None, *,
                 references: bool = True) -> dict:
    """``{row: metrics}`` (mean over seeds, with ``<metric>_std``) for :func:`mernb.report.tables.paper_vs_ours`,
    followed by the reference rows (majority class, chance, linear difference baseline) on the first row's
    folds (``references=False``: none)."""
    out = {name: row.metrics() for name, row in rows.items() if row.doc is not None}
    first = next((row for row in rows.values() if row.doc is not None), None)
    if references and first is not None:
        out.update(reference_metrics(first.shared.data, first.doc))
    for name, values in (extra or {}).items():
        out.setdefault(name, {}).update(values)
    return out


def per_class_accuracy(doc: Mapping[str, Any]) -> dict[str, float]:
    """Recall of each class (per-class accuracy) from the pooled confusion matrix; NaN for absent classes."""
    cm = np.asarray(doc["result"]["metrics"]["confusion"], dtype=float)
    classes = doc["result"]["classes"]
    totals = cm.sum(axis=1)
    return {c: (cm[i, i] / totals[i] if totals[i] else float("nan")) for i, c in enumerate(classes)}


# ------------------------------------------------------------------ Grad-CAM


class GradCAMView(nn.Module):
    """Image-only view of a model for pytorch_grad_cam: the motion input (if any) is held fixed."""

    def __init__(self, model: nn.Module, motion: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.motion = motion

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not image.requires_grad:
            image = image.requires_grad_(True)
        if self.motion is None:
            return self.model(image)
        motion = self.motion if self.motion.shape[0] == image.shape[0] else self.motion[:1].expand(
            image.shape[0], *self.motion.shape[1:])
        return self.model({"image": image, "motion": motion})


def _vit_reshape(skip: int, grid: tuple[int, int]):
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, skip:, :]
        return x.reshape(x.shape[0], grid[0], grid[1], x.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def gradcam_maps(model: nn.Module, inputs: Mapping[str, torch.Tensor], targets: Sequence[int]) -> np.ndarray:
    """Grad-CAM (pytorch_grad_cam) maps (N, S, S) in [0, 1] on the last block's ``norm1`` tokens.

    ``inputs``: one batch ``{"image"[, "motion"]}``; ``targets``: class index per sample. Prompt tokens
    and the class token are dropped before the patch tokens are laid back on the patch grid.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    backbone = model.backbone
    skip = int(getattr(backbone, "num_prefix_tokens", 1)) + int(getattr(model, "num_prompts", 0))
    grid = tuple(backbone.patch_embed.grid_size)
    model = model.eval()
    view = GradCAMView(model, inputs.get("motion"))
    layer = backbone.blocks[-1].norm1
    with GradCAM(model=view, target_layers=[layer], reshape_transform=_vit_reshape(skip, grid)) as cam:
        maps = cam(input_tensor=inputs["image"].clone(), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.asarray(maps, dtype=np.float32)


def model_cost(config: Mapping[str, Any], num_classes: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Counts of the model ``config`` names (``model`` plus its builder options) for MPT Table V:
    :func:`mernb.models.info.model_info`'s full report and ``{params_m, gflops, total_params_m}`` (tunable
    and total parameters in millions, multiply-accumulates in billions, as the paper's "GFLOPs")."""
    from mernb.models.info import model_info

    options = dict(config)
    info = model_info(options.pop("model"), num_classes=num_classes, **options)
    return info, {"params_m": info["trainable_params"] / 1e6, "gflops": info["macs"] / 1e9,
                  "total_params_m": info["total_params"] / 1e6}
