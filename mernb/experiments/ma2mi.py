"""MA2MI recipe: pre-train MIACNet on macro-expression frame pairs, then fine-tune it per fold on onset/apex.

Pipeline (paper §3.2, §4.3; model choices and deviations in :mod:`mernb.models.ma2mi`):

1. **Macro clips** (:func:`prepare_macro_data`): every frame of each DFEW / FERV39K / AFEW clip, resized
   (no face alignment: the releases' clips are face crops) to the model's side, cached as uint8 clips.
2. **Pre-training** (:func:`pretrain_run`): each epoch draws one pair (I_t, I_{t+k}) per clip, t uniform and k
   uniform in ``k_range`` (inclusive); for the latent variant the frozen VAE's posterior of every frame is
   computed once (:class:`~mernb.models.latent_cache.LatentCache`, keyed by frame content and VAE weights)
   and latents are sampled from it. AdamW, lr 4e-4, batch 32, lr · gamma^epoch. The run is keyed by a hash
   of everything that defines it (``runs/<plan>/results/ma2mi/shared/pretrain/<key>``): one run per (macro
   dataset, interval, variant, model, schedule) is shared by every table and fold that uses it, and a killed
   run resumes from its last epoch checkpoint (:func:`mernb.train.pretrain.pretrain`).
3. **Fine-tuning** (:func:`ma2mi_recipe`): onset and apex frames (aligned faces) take the places of I_t and
   I_{t+k}; MIACNet's encoders start from the pre-training checkpoint (or random for "w/o"); c feeds a
   zero-initialised FC. AdamW lr 4e-4, weight decay 0.1, batch 16, 80 epochs (paper plan); the same random
   crop (zero padding ``crop_pad`` px), horizontal flip (p 0.5) and rotation (± ``rotation`` degrees) on both
   frames. Table 2's options: ``tune`` (both / fpe / fae) and ``keep_reconstruction`` (the DiT's L1 loss on
   onset -> apex added to the cross-entropy); Table 4's: ``fpe``. No epoch is selected on held-out data.
4. **Rows** (:func:`run_row`): LOSO (CASME II, SAMM) or subject-independent 5-fold (MMEW), train-or-load by a
   hash of the experiment, data and split under ``.../ma2mi/shared/<key>.json``, so tables reuse each
   other's rows; each fold's fine-tuned weights are saved for Fig. 6 (:meth:`MA2MIRecipe.fold_model`).

Deviations of the recipe: pre-training draws one pair per clip per epoch and uses no augmentation (the paper
states none for pre-training); the default interval k in [1, 4] and gamma 0.96 are our choices (the text lost
the numbers); pre-training weight decay 0.1 (stated only for fine-tuning). Used by ``notebooks/ma2mi/*``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mernb.data.cache import ClipCache
from mernb.data.clips import prepare_all
from mernb.data.records import Sample
from mernb.data.sources import load_samples
from mernb.errors import MernbError
from mernb.experiments.common import (
    ProtocolData,
    SharedRow,
    keep_first_subjects,
    metrics_over_seeds,
    prepare_protocol_data,
    row_metrics,
    seed_list,
    shared_dir,
)
from mernb.io import digest
from mernb.models import create_model
from mernb.models.latent_cache import LatentCache
from mernb.models.ma2mi import MA2MIPretrainer, MIACNet, sample_latent
from mernb.paths import project_path
from mernb.report.results import train_or_load
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig
from mernb.train.loso import Fold, kfold_subject_folds, label_index, loso_folds
from mernb.train.pretrain import pretrain
from mernb.train.runtime import pick_device, set_seed

__all__ = [
    "MacroData", "prepare_macro_data", "PairDataset", "pretrain_run", "PretrainRun", "OnsetApexDataset",
    "MA2MIRecipe", "ma2mi_recipe", "run_row", "load_data", "train_row",
    "ensure_synthetic_macro", "draw_pairs", "augment_pair", "PROTOCOLS", "targets", "macro_sets",
    "row_metrics", "PairView", "gradcam_maps", "reconstruction_examples",
]

DEFAULT_K = (1, 4)


# ---------------------------------------------------------------------------------------------- macro data


@dataclass
class MacroData:
    """Macro-expression clips for pre-training: samples, uint8 frames (T, S, S, 3) per clip, label names."""

    dataset: str
    samples: list[Sample]
    clips: Sequence[np.ndarray] = field(repr=False)
    classes: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lengths:
            self.lengths = [len(c) for c in self.clips]

    @property
    def n_frames(self) -> int:
        return sum(self.lengths)

    def summary(self) -> str:
        return (f"{self.dataset}: {len(self.clips)} clips, {self.n_frames} frames, labels {self.classes}"
                + (f", {len(self.dropped)} dropped" if self.dropped else ""))


class CachedClips(Sequence):
    """Macro clips read from the clip cache on access (real DFEW/FERV39K do not fit in memory at 224²):
    ``len(clips[i])`` is known without reading; ``clips[i]`` is the (T, S, S, 3) uint8 clip."""

    def __init__(self, samples: Sequence[Sample], cache: ClipCache, size: int, lengths: Sequence[int]) -> None:
        self.samples, self.cache, self.size = list(samples), cache, size
        self.lengths = list(lengths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        from mernb.data.clips import prepare_clip

        return prepare_clip(self.samples[i], mode="all", align=False, size=self.size, cache=self.cache)


def prepare_macro_data(dataset: str, *, data_root: str | Path | None, cache_dir: str | Path, size: int,
                       max_clips: int | None = None, min_frames: int = 2, n_workers: int = 1,
                       in_memory: bool = True) -> MacroData:
    """Every frame of each clip of a macro set, resized to ``size`` (cached). Clips shorter than
    ``min_frames`` or unreadable are dropped (listed in ``dropped``); ``max_clips`` keeps the first ones.
    ``in_memory=False`` keeps only the clip cache's files and reads a clip when a pair needs it (paper plan)."""
    samples, _ = load_samples(dataset, data_root)
    samples = sorted(samples, key=lambda s: s.sample_id)[:max_clips]
    cache = ClipCache(project_path(cache_dir) / "clips")
    report = prepare_all(samples, cache=cache, n_workers=n_workers, keep=in_memory, progress=False, mode="all",
                         align=False, size=size)
    failed = dict(report.failures)
    dropped = list(report.failures)
    kept, clips, lengths = [], [], []
    for s in samples:
        if s.sample_id in failed:
            continue
        n = len(report.clips[s.sample_id]) if in_memory else len(s.frame_paths)
        if n < min_frames:
            dropped.append((s.sample_id, f"{n} frames < {min_frames}"))
            continue
        kept.append(s)
        lengths.append(n)
        if in_memory:
            clips.append(report.clips[s.sample_id])
    if not kept:
        raise MernbError(f"no usable clip in {dataset}")
    classes = sorted({s.label for s in kept if s.label})
    store = clips if in_memory else CachedClips(kept, cache, size, lengths)
    return MacroData(dataset, kept, store, classes, sorted(dropped), lengths)


def draw_pairs(lengths: Sequence[int], k_range: tuple[int, int], rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """One (clip, t, t + k) per clip: k uniform in ``k_range`` (clipped to the clip), t uniform."""
    lo, hi = int(k_range[0]), int(k_range[1])
    if not 1 <= lo <= hi:
        raise MernbError(f"k_range must be 1 <= lo <= hi, got {k_range}")
    pairs = []
    for c, n in enumerate(lengths):
        k = int(rng.integers(min(lo, n - 1), min(hi, n - 1) + 1))
        t = int(rng.integers(0, n - k))
        pairs.append((c, t, t + k))
    return pairs


class PairDataset(Dataset):
    """``{"it", "itk"[, "zt", "ztk"][, "label"]}`` items of one epoch's frame pairs (frames in [0, 1])."""

    def __init__(self, macro: MacroData, pairs: list[tuple[int, int, int]],
                 moments: list[torch.Tensor] | None = None, labels: bool = False) -> None:
        self.macro, self.pairs, self.moments, self.labels = macro, pairs, moments, labels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c, t, tk = self.pairs[i]
        clip = self.macro.clips[c]
        item = {"it": torch.from_numpy(clip[t]).permute(2, 0, 1).float() / 255.0,
                "itk": torch.from_numpy(clip[tk]).permute(2, 0, 1).float() / 255.0}
        if self.moments is not None:
            m = self.moments[c]
            z = sample_latent(torch.stack([m[t], m[tk]]))
            item |= {"zt": z[0], "ztk": z[1]}
        if self.labels:
            item["label"] = torch.tensor(self.macro.classes.index(self.macro.samples[c].label))
        return item


@dataclass
class PretrainRun:
    """A finished (or loaded) pre-training run: its key, checkpoint, history and throughput."""

    key: str
    checkpoint: Path
    doc: dict[str, Any]
    model_name: str
    model_kwargs: dict[str, Any]

    @property
    def history(self) -> list[dict[str, float]]:
        return self.doc["result"]["history"]

    def model(self, device: str | None = None) -> MA2MIPretrainer:
        """The pre-trained model (eval mode), e.g. for Fig. 6's reconstructions."""
        model = create_model(self.model_name, **self.model_kwargs)
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
        return model.to(pick_device(device)).eval()


def pretrain_run(
    macro: MacroData,
    *,
    results_dir: str | Path,
    model: str = "ma2mi_pretrain_test",
    variant: str = "latent",
    k_range: tuple[int, int] = DEFAULT_K,
    epochs: int = 80,
    batch_size: int = 32,
    lr: float = 4e-4,
    weight_decay: float = 0.1,
    lr_gamma: float = 0.96,
    seed: int = 0,
    device: str | None = None,
    amp: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    force: bool = False,
    plan: str | None = None,
    notebook: str | None = None,
    **model_kwargs: Any,
) -> PretrainRun:
    """Train-or-load one pre-training run (shared by key); returns its checkpoint (``fpe.*``, ``fae.*``, ...).

    ``num_workers``: DataLoader workers reading the pairs (useful with lazily read clips; not part of the key).
    """
    device = None if device in (None, "auto") else device
    kwargs = {"variant": variant, **model_kwargs}
    set_seed(seed)
    net = create_model(model, **kwargs)
    side = macro.clips[0].shape[1]
    if net.config["img_size"] != side:
        raise MernbError(f"macro clips are {side}px, {model} takes {net.config['img_size']}px")
    vae_id = None
    if variant == "latent":
        from mernb.models.ma2mi import vae_digest

        vae_id = vae_digest(net.vae)
    frames_id = digest([[s.sample_id, n] for s, n in zip(macro.samples, macro.lengths, strict=True)])
    config = {"model": model, "model_config": net.config, "macro": macro.dataset, "frames": frames_id,
              "k_range": list(k_range), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "weight_decay": weight_decay, "lr_gamma": lr_gamma, "seed": seed, "vae": vae_id, "amp": amp}
    key = digest(config)
    path = shared_dir(results_dir) / "pretrain" / f"{key}.json"
    run_dir = path.with_suffix("")

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        moments = None
        if variant == "latent":
            cache = LatentCache(net.vae, project_path(cache_dir) / "ma2mi_latents" if cache_dir else None,
                                device=pick_device(device))
            moments = [cache.moments(list(clip)) for clip in macro.clips]
        encode_s = time.perf_counter() - start

        def make_dataset(epoch: int) -> Dataset:
            rng = np.random.default_rng([seed, epoch])
            return PairDataset(macro, draw_pairs(macro.lengths, k_range, rng), moments,
                               labels=variant == "maer")

        history = pretrain(net, make_dataset, out_dir=run_dir, epochs=epochs, batch_size=batch_size,
                           optimizer=OptimConfig(name="adamw", lr=lr, weight_decay=weight_decay), lr_gamma=lr_gamma,
                           seed=seed, config=config, device=device, amp=amp, num_workers=num_workers)
        times = [h["seconds"] for h in history]
        return {"history": history, "checkpoint": str(run_dir / "final.pt"), "latent_encode_s": encode_s,
                "pairs_per_s": sum(h["items"] for h in history) / max(1e-9, sum(times))}

    if variant == "maer" and not macro.classes:
        raise MernbError(f"MAER pre-training needs labelled {macro.dataset} clips (give the annotation file)")
    doc = train_or_load(path, compute, force=force, config=config, plan=plan, notebook=notebook, seeds=[seed],
                        extra={"pretrain_key": key})
    return PretrainRun(key, Path(doc["result"]["checkpoint"]), doc, model, kwargs)


# ---------------------------------------------------------------------------------------------- fine-tuning


def augment_pair(x: torch.Tensor, crop_pad: int, rotation: float, flip: bool) -> torch.Tensor:
    """The same random crop (zero padding), flip and rotation on a stacked pair (2, 3, S, S)."""
    s = x.shape[-1]
    if crop_pad > 0:
        padded = F.pad(x, (crop_pad,) * 4)
        i, j = (int(v) for v in torch.randint(0, 2 * crop_pad + 1, (2,)))
        x = padded[..., i:i + s, j:j + s]
    if flip and bool(torch.rand(()) < 0.5):
        x = x.flip(-1)
    if rotation > 0:
        from torchvision.transforms.v2.functional import rotate

        angle = float(torch.empty(()).uniform_(-rotation, rotation))
        x = rotate(x, angle)
    return x


class OnsetApexDataset(Dataset):
    """``({"onset", "apex"}, label index, sample index)``; frames in [0, 1], augmented in training."""

    def __init__(self, frames: dict[str, torch.Tensor], samples: Sequence[Sample], classes: Sequence[str],
                 augment: dict[str, Any] | None = None) -> None:
        self.frames, self.samples, self.augment = frames, list(samples), augment
        self.labels = [label_index(s, classes) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        x = self.frames[self.samples[i].sample_id]
        if self.augment:
            x = augment_pair(x, **self.augment)
        return {"onset": x[0], "apex": x[1]}, self.labels[i], i


@dataclass
class MA2MIRecipe:
    """A fine-tuning experiment on one protocol's onset/apex frames (``experiment`` is what the folds train)."""

    data: ProtocolData
    experiment: TorchExperiment
    frames: dict[str, torch.Tensor] = field(repr=False)
    pretrained: PretrainRun | None = None
    split: str = "loso"
    device: str | None = None
    row: SharedRow | None = field(default=None, repr=False)

    def build_model(self) -> MIACNet:
        return self.experiment.model_fn(self.experiment.num_classes)

    def fold_model(self, doc: dict[str, Any], fold: str) -> MIACNet:
        """A fold's fine-tuned MIACNet (its trainable weights, loaded strictly; retrained when the checkpoint
        is gone), eval mode. ``doc`` is the document :func:`run_row` returned for this recipe."""
        if self.row is None or self.row.doc is None or Path(doc["path"]) != self.row.path:
            raise MernbError("fold_model needs the document this recipe's row returned (train_row(...))")
        return self.row.fold_model(fold).to(pick_device(self.device)).eval()

    def pair(self, sample_id: str) -> torch.Tensor:
        """The (2, 3, S, S) onset/apex frames of a sample in [0, 1]."""
        return self.frames[sample_id]


def ma2mi_recipe(
    data: ProtocolData,
    *,
    pretrained: PretrainRun | None = None,
    model: str = "ma2mi_miacnet_test",
    epochs: int = 80,
    batch_size: int = 16,
    lr: float = 4e-4,
    weight_decay: float = 0.1,
    tune: str = "both",
    fpe: str = "independent",
    keep_reconstruction: bool = False,
    rec_weight: float = 1.0,
    crop_pad: int = 8,
    rotation: float = 3.0,
    flip: bool = True,
    split: str = "loso",
    seed: int = 0,
    device: str | None = None,
    amp: bool = True,
    progress: bool = False,
    backbone_weights: str | None = None,
) -> MA2MIRecipe:
    """A MIACNet fine-tuning recipe on ``data`` (clips prepared with ``mode="onset_apex"``).

    ``pretrained``: a :class:`PretrainRun` (its ``fpe``/``fae`` are loaded strictly; its ``fpe`` mode must
    match) or None (Table 1's "w/o"). ``split``: ``"loso"`` or ``"kfold5"`` (MMEW).
    """
    device = None if device in (None, "auto") else device
    if pretrained is not None and pretrained.model_kwargs.get("fpe", "independent") != fpe:
        raise MernbError(f"fpe={fpe!r} but the pre-training run used fpe={pretrained.model_kwargs.get('fpe')!r}")
    if keep_reconstruction and (pretrained is None or pretrained.model_kwargs.get("variant") == "maer"):
        raise MernbError("keep_reconstruction needs a reconstruction pre-training run (latent or pixel)")
    num_classes = len(data.classes)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "tune": tune, "fpe": fpe}
    if backbone_weights and pretrained is None:
        kwargs["backbone_weights"] = backbone_weights
    holder: dict[str, Any] = {}
    set_seed(seed)
    recon = pretrained.model("cpu") if keep_reconstruction else None
    if recon is not None:
        recon.train()
    template = create_model(model, recon=recon, **kwargs)
    if pretrained is not None:
        template.load_pretrained(pretrained.checkpoint)
    size = template.config["img_size"]
    shapes = {clip.shape for clip in data.clips.values()}
    if shapes != {(2, size, size, 3)}:
        raise MernbError(f"clips must be (2, {size}, {size}, 3) onset/apex frames; got {sorted(shapes)}: "
                         f"prepare them with mode='onset_apex', size={size}")
    frames = {sid: torch.from_numpy(c).permute(0, 3, 1, 2).float() / 255.0 for sid, c in data.clips.items()}

    def model_fn(_: int) -> MIACNet:
        holder["model"] = copy.deepcopy(template)
        return holder["model"]

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), labels)
        aux = holder["model"].aux_loss if keep_reconstruction else None
        return loss + rec_weight * aux if aux is not None else loss

    augment = {"crop_pad": crop_pad, "rotation": rotation, "flip": flip}

    def dataset_fn(samples: list[Sample], train: bool) -> Dataset:
        return OnsetApexDataset(frames, samples, data.classes, augment if train else None)

    details = {"model": model, "model_config": template.config, "img_size": size, "frames": "onset, apex (aligned)",
               "augment": augment, "pretrain_key": pretrained.key if pretrained else None,
               "keep_reconstruction": keep_reconstruction, "rec_weight": rec_weight if keep_reconstruction else None,
               "backbone_weights": kwargs.get("backbone_weights")}
    experiment = TorchExperiment(
        name=f"ma2mi/{model}", model_fn=model_fn, dataset_fn=dataset_fn, num_classes=num_classes, epochs=epochs,
        batch_size=batch_size, optimizer=OptimConfig(name="adamw", lr=lr, weight_decay=weight_decay),
        loss_fn=loss_fn, details=details, device=device, amp=amp, progress=progress,
    )
    return MA2MIRecipe(data, experiment, frames, pretrained, split, device)


# ---------------------------------------------------------------------------------------------- rows


def _folds(samples: Sequence[Sample], split: str, seed: int) -> list[Fold]:
    if split == "loso":
        return loso_folds(samples)
    if split.startswith("kfold"):
        return kfold_subject_folds(samples, k=int(split[5:] or 5), seed=seed)
    raise MernbError(f"split must be 'loso' or 'kfold<k>', got {split!r}")


def run_row(results_dir: str | Path, recipe: MA2MIRecipe, *, seed: int = 0, force: bool = False,
            plan: str | None = None, notebook: str | None = None) -> dict[str, Any]:
    """Train-or-load one table row (all folds of ``recipe.split``) as a
    :class:`~mernb.experiments.common.SharedRow`; each fold keeps its fine-tuned weights (Fig. 6)."""
    data = recipe.data
    row = SharedRow(f"ma2mi-{data.dataset}", recipe.experiment, data, results_dir, seed=seed, split=recipe.split,
                    folds=_folds(data.samples, recipe.split, seed))
    recipe.row = row
    return row.run(force=force, plan=plan, notebook=notebook)


# ---------------------------------------------------------------------------------------------- notebook helpers


def ensure_synthetic_macro(dataset: str, data_root: str | Path, *, size: int = 64, max_subjects: int = 4,
                           max_samples_per_subject: int = 10, seed: int = 0) -> Path:
    """Smoke plan: the SynthME macro set ``dataset`` (dfew, ferv39k, afew) under ``<data_root>/<dataset>``,
    written by :func:`mernb.data.synth.generate` if missing; a SynthME set already there (``mernb synth``
    renders DFEW for the smoke pre-training) is used as it is. Returns its folder."""
    import fcntl

    from mernb.data.sources import SYNTH_MARKER
    from mernb.data.synth import generate

    out = project_path(data_root) / dataset
    if (out / SYNTH_MARKER).is_file():  # rendered already (e.g. by `mernb synth` for the smoke pre-training): reuse
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{dataset}.lock", "w") as lock:  # notebooks run in parallel (mernb run --jobs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            generate(dataset, out, seed=seed, size=size, max_subjects=max_subjects,
                     max_samples_per_subject=max_samples_per_subject, rows="generated")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out



def load_data(dataset: str, protocol: str, *, data_root: str | Path | None, cache_dir: str | Path, image_size: int,
            align_fallback: str = "error") -> ProtocolData:
    """A protocol's onset/apex frames at ``image_size`` (aligned, cached): the fine-tuning input."""
    return prepare_protocol_data(dataset, protocol, data_root=data_root, cache_dir=cache_dir, mode="onset_apex",
                                 size=image_size, align=True, align_fallback=align_fallback)


def train_row(
    data: ProtocolData,
    settings: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    results_dir: str | Path,
    macro: dict[str, MacroData] | None = None,
    force: bool = False,
    plan: str | None = None,
    notebook: str | None = None,
) -> tuple[MA2MIRecipe, dict[str, Any]]:
    """A row from the notebook's ``settings`` + the row's ``overrides``: pre-train (shared) unless
    ``variant`` is ``"none"``, then fine-tune and train-or-load. ``macro`` maps macro dataset names to
    prepared :class:`MacroData` (``settings["macro_dataset"]`` picks one)."""
    s = {**settings, **(overrides or {})}
    seeds = seed_list(int(s.pop("seed", 0)), s.pop("seeds", None))
    if len(seeds) > 1:  # one row per seed (pre-training too); the first seed's recipe serves the figures
        runs = [train_row(data, {**s, "seed": seed}, results_dir=results_dir, macro=macro, force=force, plan=plan,
                          notebook=notebook) for seed in seeds]
        recipe, doc = runs[0]
        return recipe, {**doc, "over_seeds": metrics_over_seeds([d for _, d in runs])}
    seed = seeds[0]
    variant = s.get("variant", "latent")
    pretrained = None
    if variant != "none":
        if not macro or s["macro_dataset"] not in macro:
            raise MernbError(f"pre-training needs the prepared macro set {s.get('macro_dataset')!r}")
        extra = {k: s[k] for k in ("pos_weights", "eq_rotation", "eq_shift", "vae") if k in s}
        pretrained = pretrain_run(
            macro[s["macro_dataset"]], results_dir=results_dir, model=s["pretrain_model"], variant=variant,
            k_range=tuple(s.get("k_range", DEFAULT_K)), epochs=int(s["pretrain_epochs"]),
            batch_size=int(s.get("pretrain_batch_size", 32)), lr=float(s.get("pretrain_lr", 4e-4)),
            weight_decay=float(s.get("pretrain_weight_decay", 0.1)), lr_gamma=float(s.get("lr_gamma", 0.96)),
            seed=seed, device=s.get("device"), amp=bool(s.get("amp", True)), cache_dir=s.get("cache_dir"),
            num_workers=int(s.get("num_workers", 0)),
            plan=plan, notebook=notebook, fpe=s.get("fpe", "independent"), **extra)
    keys = ("model", "epochs", "batch_size", "lr", "weight_decay", "tune", "fpe", "keep_reconstruction", "rec_weight",
            "crop_pad", "rotation", "flip", "split", "device", "amp", "backbone_weights")
    recipe = ma2mi_recipe(data, pretrained=pretrained, seed=seed, **{k: s[k] for k in keys if k in s})
    doc = run_row(results_dir, recipe, seed=seed, force=force, plan=plan, notebook=notebook)
    return recipe, doc


# fine-tuning sets of the paper: protocol, split, metrics reported
PROTOCOLS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "casme2": ("casme2_5class", "loso", ("acc", "uf1")),
    "samm": ("samm_5class", "loso", ("acc", "uf1")),
    "mmew": ("mmew_6class", "kfold5", ("acc",)),
}


def targets(datasets: Sequence[str], *, data_root: str | Path | None, cache_dir: str | Path, image_size: int,
            align_fallback: str = "error", max_subjects: int | None = None) -> dict[str, ProtocolData]:
    """The fine-tuning sets' onset/apex data (protocols of :data:`PROTOCOLS`)."""
    return {name: keep_first_subjects(load_data(name, PROTOCOLS[name][0], data_root=data_root, cache_dir=cache_dir,
                                         image_size=image_size, align_fallback=align_fallback), max_subjects)
            for name in datasets}


def macro_sets(names: Sequence[str], *, data_root: str | Path | None, cache_dir: str | Path, size: int,
               max_clips: int | None = None, synth: dict[str, Any] | None = None,
               in_memory: bool = True) -> dict[str, MacroData]:
    """Prepared macro sets by name; with ``data_root`` (smoke plan) the SynthME macro sets are written
    first when missing (``synth``: :func:`ensure_synthetic_macro` options)."""
    out = {}
    for name in names:
        if data_root:
            ensure_synthetic_macro(name, data_root, **(synth or {}))
        out[name] = prepare_macro_data(name, data_root=data_root, cache_dir=cache_dir, size=size, max_clips=max_clips,
                                       in_memory=in_memory)
    return out


class PairView(torch.nn.Module):
    """Single-input view of MIACNet for pytorch_grad_cam: ``x`` is onset and apex stacked on channels (B, 6, S, S)."""

    def __init__(self, model: MIACNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x[:, :3], x[:, 3:])


def gradcam_maps(model: MIACNet, pairs: torch.Tensor, targets_: Sequence[int], branch: str = "fae") -> np.ndarray:
    """Grad-CAM (pytorch_grad_cam) maps (N, S, S) in [0, 1] of ``branch``'s last ResNet stage for the given
    classes; ``pairs`` (N, 2, 3, S, S) onset/apex in [0, 1] (Fig. 6)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    encoder = getattr(model, branch)
    if encoder is None:
        raise MernbError(f"this MIACNet has no {branch}")
    layer = encoder.net.layer4[-1]
    view = PairView(model).eval()
    x = pairs.flatten(1, 2).to(next(model.parameters()).device)
    with GradCAM(model=view, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets_])
    return np.asarray(maps, dtype=np.float32)


def reconstruction_examples(run: PretrainRun, macro: MacroData, n: int = 4, seed: int = 0,
                            device: str | None = None) -> dict[str, np.ndarray]:
    """``n`` macro pairs with the model's reconstruction of I_{t+k} (decoded through the VAE for the latent
    variant): uint8 arrays ``it``, ``itk``, ``pred`` (n, S, S, 3) and ``diff`` = |I_{t+k} - I_t| amplified
    (Fig. 6). The pairs use the run's ``k_range``."""
    k_range = tuple(run.doc["config"]["k_range"])
    rng = np.random.default_rng([seed, 999])
    pairs = draw_pairs(macro.lengths, k_range, rng)[:n]
    it = torch.stack([torch.from_numpy(macro.clips[c][t]) for c, t, _ in pairs]).permute(0, 3, 1, 2).float() / 255
    itk = torch.stack([torch.from_numpy(macro.clips[c][tk]) for c, _, tk in pairs]).permute(0, 3, 1, 2).float() / 255
    model = run.model(device)
    dev = next(model.parameters()).device
    pred = model.predict_next(it.to(dev), itk.to(dev)).cpu()

    def u8(x: torch.Tensor) -> np.ndarray:
        return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)

    diff = ((itk - it).abs() * 8).clamp(0, 1)
    return {"it": u8(it), "itk": u8(itk), "pred": u8(pred), "diff": u8(diff),
            "clips": np.array([macro.samples[c].clip for c, _, _ in pairs])}
