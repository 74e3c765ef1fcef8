"""HLoRA-MER recipe: 8-frame clips → cached frozen-prefix tokens → LoRA blocks + HFM, trained per LOSO fold.

Pipeline (paper §4.1.3; choices in :mod:`mernb.models.hlora`):

1. ``prepare_protocol_data(..., num_frames=8)``: 8 frames sampled uniformly over onset..offset, face
   aligned (one similarity transform per clip), resized to the model's input side, cached.
2. Every frame is scaled to [0, 1] and normalised with the backbone's mean/std.
3. **Speed by design**: every block below the LoRA blocks is frozen, so its output is the same in every
   epoch and fold. :class:`~mernb.models.feature_cache.PrefixCache` computes those tokens once per clip
   and per horizontal flip (in memory and under ``<cache_dir>/hlora_prefix``, so other notebooks reuse
   them), and training runs only the last N_l blocks + HFM (``model(tokens=...)``).
4. Augmentation: a random horizontal flip per clip in training (p = 0.5), by picking the flipped
   clip's cached tokens. Evaluation uses the unflipped clip.
5. ``finetune="full"`` (Table 8) trains the whole backbone, so nothing can be cached: the frames go
   through the full model (flipped on the fly).

Results sharing: a row is a :class:`~mernb.experiments.common.SharedRow` (the mechanism the three papers
share): its key covers the experiment config, dataset, protocol, classes, seed, split and everything the
model sees of each sample; its results document is ``runs/<plan>/results/hlora/shared/hlora-<dataset>-<key>.json``
(folds and per-fold trainable checkpoints beside it). So the default SAMM 5-class row trained for Table 3 is
loaded, not retrained, by Tables 8 and 9 and Fig. 3 (N_l = 2), and Figs. 4-6 reload its fold checkpoints.

Step budget: ``steps`` (the authors' 600 optimiser steps per fold) is counted on each fold's own training
set (``TorchExperiment.steps``), so a holdout split or a fold with a large held-out subject gets its steps.

Prefix-token cache key: the prepared clip's content digest, the frame count, size, normalisation and the
storage dtype (a float16 file is never served to a float32 run, a corrected clip never reuses old tokens).

Figures: :meth:`HLoRARecipe.fold_model` rebuilds a fold's trained model from its checkpoint (LoRA + HFM
only; the frozen backbone comes from the weights file, or from the seed for the random ``hlora_test``);
:meth:`HLoRARecipe.attention` gives the IFFA map (Fig. 5), :meth:`HLoRARecipe.patch_features` the
final-norm patch tokens for the PCA of Fig. 4; per-sample predictions (Fig. 6) are in every results doc.

MEVIEW in the smoke plan: SynthME has no MEVIEW layout, so :func:`write_synthetic_meview` writes a tiny
MEVIEW-format CSV + frame folders from SynthME CASME II frames, which the real MEVIEW reader then reads.

Used by ``notebooks/hlora/*.ipynb``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mernb.data.clips import normalize, to_tensor
from mernb.data.protocols import protocol as get_protocol
from mernb.data.records import Sample
from mernb.errors import MernbError
from mernb.experiments.common import (
    ProtocolData,
    SharedRow,
    metrics_over_seeds,
    prepare_protocol_data,
    seed_list,
)
from mernb.models import create_model
from mernb.models.feature_cache import PrefixCache
from mernb.paths import project_path
from mernb.train.device_data import DeviceView, flip_where
from mernb.train.experiment import TorchExperiment
from mernb.train.loop import OptimConfig
from mernb.train.loso import Fold, holdout_fold, label_index
from mernb.train.runtime import pick_device, set_seed

__all__ = [
    "NUM_FRAMES", "HLoRARecipe", "hlora_recipe", "run_row", "prepare_holdout_data", "write_synthetic_meview",
    "failure_cases", "TokenDataset", "FrameDataset",
]

NUM_FRAMES = 8  # t = 8 (paper §4.1.3)
_DTYPES = {None: None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------- datasets


class TokenDataset(Dataset):
    """``({"tokens": (t, N, D)}, label index, sample index)`` from cached prefix tokens.

    ``get(sample_id, flip)`` returns the cached tokens; in training (``flip=True``) each item picks the
    flipped clip's tokens with probability 0.5, drawn from ``generator`` (set per fold by the experiment).
    """

    def __init__(self, get: Callable[[str, bool], torch.Tensor], samples: Sequence[Sample],
                 classes: Sequence[str], flip: bool = False) -> None:
        self.get = get
        self.samples = list(samples)
        self.labels = [label_index(s, classes) for s in self.samples]
        self.flip = flip
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        flip = self.flip and bool(torch.rand((), generator=self.generator) < 0.5)
        return {"tokens": self.get(self.samples[index].sample_id, flip).float()}, self.labels[index], index

    def device_view(self) -> DeviceView:
        """Every clip's tokens stacked (and, for training with flips, the flipped clips' tokens beside them)."""
        ids = [s.sample_id for s in self.samples]
        inputs = {"tokens": torch.stack([self.get(sid, False).float() for sid in ids])}
        labels = torch.as_tensor(self.labels, dtype=torch.long)
        if not self.flip:
            return DeviceView(inputs, labels)
        inputs["flipped"] = torch.stack([self.get(sid, True).float() for sid in ids])

        def pick(x: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
            idx = mask.nonzero(as_tuple=True)[0]
            tokens = x["tokens"]
            if idx.numel():
                tokens[idx] = x["flipped"].index_select(0, idx)
            return {"tokens": tokens}

        return DeviceView(inputs, labels, pick, pack=lambda x: {"tokens": x["tokens"]})


class FrameDataset(Dataset):
    """``({"x": (t, 3, H, W)}, label index, sample index)`` of normalised frames (full fine-tuning).

    ``frames(sample_id)`` normalises a clip on demand (nothing is held in float32 up front)."""

    def __init__(self, frames: Callable[[str], torch.Tensor], samples: Sequence[Sample], classes: Sequence[str],
                 flip: bool = False) -> None:
        self.frames = frames
        self.samples = list(samples)
        self.labels = [label_index(s, classes) for s in self.samples]
        self.flip = flip
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        x = self.frames(self.samples[index].sample_id)
        if self.flip and bool(torch.rand((), generator=self.generator) < 0.5):
            x = x.flip(-1)
        return {"x": x}, self.labels[index], index

    def device_view(self) -> DeviceView:
        """Every clip's normalised frames stacked; flips along the width (training)."""
        x = torch.stack([self.frames(s.sample_id) for s in self.samples])

        def flip(inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"x": flip_where(inputs["x"], mask)}

        return DeviceView({"x": x}, torch.as_tensor(self.labels, dtype=torch.long), flip if self.flip else None)


# ---------------------------------------------------------------------------------------------- recipe


@dataclass
class HLoRARecipe:
    """An HLoRA-MER experiment on one protocol's clips, with its prefix-token cache and model builder.

    ``experiment`` is the :class:`TorchExperiment` the LOSO runner trains; ``tokens``/``fold_model``/
    ``attention``/``patch_features`` serve the figures.
    """

    data: ProtocolData
    model: str
    model_kwargs: dict[str, Any]
    image_size: int
    seed: int
    experiment: TorchExperiment
    frames: Callable[[str], torch.Tensor] = field(repr=False)
    cache: PrefixCache | None = field(repr=False, default=None)
    signature: str | None = None
    key_suffix: str = ""
    device: str | None = None
    ensure_tokens: Callable[[], None] = field(repr=False, default=lambda: None)
    row: SharedRow | None = field(repr=False, default=None)

    # --- models ---------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """A fresh (untrained) model exactly as every fold gets it."""
        return self.experiment.model_fn(self.experiment.num_classes)

    def fold_model(self, doc: dict[str, Any], fold: str) -> torch.nn.Module:
        """The trained model of ``fold`` of the row ``doc`` came from (its checkpoint: LoRA + HFM; retrained
        when the checkpoint is gone), in eval mode."""
        if self.row is None or self.row.doc is None or Path(doc["path"]) != self.row.path:
            raise MernbError("fold_model needs the document this recipe's row returned (train_row(...))")
        return self.row.fold_model(fold).to(pick_device(self.device)).eval()

    # --- tokens and features ----------------------------------------------------------------------
    def cache_key(self, sample_id: str) -> str:
        """Prefix-cache key of a clip: its content digest plus the input and storage settings."""
        return f"{self.data.input_digests()[sample_id]}|{self.key_suffix}"

    def tokens(self, sample_ids: Sequence[str], flip: bool = False) -> torch.Tensor:
        """Cached prefix tokens (B, t, N, D) (float32, CPU) of clips, unflipped or flipped."""
        if self.cache is None or self.signature is None:
            raise MernbError("this recipe trains the full backbone (finetune='full'): there are no prefix tokens")
        self.ensure_tokens()
        out = [self.cache.get(self.signature, self.cache_key(s), flip) for s in sample_ids]
        if any(t is None for t in out):
            raise MernbError("prefix tokens missing from the cache")
        return torch.stack([t.float() for t in out])

    def _inputs(self, model: torch.nn.Module, sample_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        if self.cache is not None and getattr(model, "prefix_frozen", False):
            return {"tokens": self.tokens(sample_ids).to(device)}
        return {"x": torch.stack([self.frames(s) for s in sample_ids]).to(device)}

    @torch.no_grad()
    def attention(self, model: torch.nn.Module, sample_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """IFFA attention maps (B, t, t) (channel mean of a_ij; rows i attend over columns j) and the
        softmax scores (B, K) of the unflipped clips (Fig. 5)."""
        logits, attn = model(**self._inputs(model, sample_ids), return_attention=True)
        if attn is None:
            raise MernbError("this model has no IFFA (hfm='stfa' or 'none'): no attention map")
        return attn.float().cpu().numpy(), torch.softmax(logits.float(), 1).cpu().numpy()

    @torch.no_grad()
    def patch_features(self, model: torch.nn.Module, sample_ids: Sequence[str], frame: int) -> np.ndarray:
        """Final-norm patch tokens of one frame of each clip, (B, h, w, d) (Fig. 4's PCA input)."""
        bb = model.backbone
        if self.cache is not None and model.prefix_frozen:
            tokens = model.tokens_from_prefix(self.tokens(sample_ids)[:, frame].to(next(model.parameters()).device))
        else:
            x = torch.stack([self.frames(s)[frame] for s in sample_ids]).to(next(model.parameters()).device)
            tokens = bb.forward_features(x)
        patches = tokens[:, getattr(bb, "num_prefix_tokens", 1):]
        side = int(round(math.sqrt(patches.shape[1])))
        if side * side != patches.shape[1]:
            raise MernbError(f"cannot lay {patches.shape[1]} patch tokens on a square grid")
        return patches.reshape(len(sample_ids), side, side, -1).float().cpu().numpy()

    def image(self, sample_id: str, frame: int) -> np.ndarray:
        """The aligned frame as uint8 (S, S, 3) (for figure rows)."""
        return self.data.clips[sample_id][frame]


def hlora_recipe(
    data: ProtocolData,
    *,
    model: str = "hlora_test",
    image_size: int = 56,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 36,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    flip: bool = True,
    seed: int = 0,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    cache_dtype: str | None = None,
    amp: bool = True,
    progress: bool = False,
    **model_kwargs: Any,
) -> HLoRARecipe:
    """An HLoRA-MER recipe on ``data`` (clips prepared with ``num_frames=8`` at ``image_size``).

    ``model``: a registered config (``hlora_vitg14`` paper, ``hlora_test`` tiny CPU); ``model_kwargs``
    are its overrides (``hfm``, ``neighbours``, ``finetune``, ``n_lora_blocks``, ``lora_rank``...).
    Give ``epochs`` or ``steps`` (optimiser steps per fold, counted on each fold's own training set).
    Adam with a fixed ``lr``; ``flip``: random horizontal flips in training.
    ``cache_dir``: the prefix tokens are also stored under ``<cache_dir>/hlora_prefix``; ``cache_dtype``
    (``"float16"``) halves their memory (paper plan).
    """
    if (epochs is None) == (steps is None):
        raise MernbError("give exactly one of epochs or steps")
    if cache_dtype not in _DTYPES:
        raise MernbError(f"cache_dtype must be one of {sorted(k for k in _DTYPES if k)} or None, got {cache_dtype!r}")
    device = None if device in (None, "auto") else device
    num_classes = len(data.classes)
    kwargs = dict(num_classes=num_classes, img_size=image_size, num_frames=NUM_FRAMES, **model_kwargs)

    def model_fn(_: int) -> torch.nn.Module:
        return create_model(model, **kwargs)

    set_seed(seed)  # the state every fold starts from (run_folds seeds before each fit_predict)
    template = model_fn(num_classes)  # pristine: every fold trains a deep copy (same init, no rebuild cost)
    mean, std = template.data_config["mean"], template.data_config["std"]
    shapes = {clip.shape for clip in data.clips.values()}
    if shapes != {(NUM_FRAMES, image_size, image_size, 3)}:
        raise MernbError(f"clips must be ({NUM_FRAMES}, {image_size}, {image_size}, 3); got {sorted(shapes)}: "
                         f"prepare them with num_frames={NUM_FRAMES}, size={image_size}")
    def frames(sample_id: str) -> torch.Tensor:
        """A clip normalised on demand (never all clips in float32 at once)."""
        return normalize(to_tensor(data.clips[sample_id]), (mean, std))

    key_suffix = (f"t{NUM_FRAMES}|s{image_size}|mean{tuple(round(m, 4) for m in mean)}|"
                  f"std{tuple(round(s, 4) for s in std)}|{cache_dtype or 'float32'}")
    digests = data.input_digests()

    cache = signature = None
    if template.prefix_frozen:
        cache = PrefixCache(project_path(cache_dir) / "hlora_prefix" if cache_dir else None, dtype=_DTYPES[cache_dtype],
                            chunk=64)
        signature = template.prefix_signature()
    filled = [cache is None]

    def ensure_tokens() -> None:
        """Compute (or read from disk) every clip's prefix tokens, unflipped and flipped, once."""
        if filled[0]:
            return
        run_on = pick_device(device)
        template.to(run_on).eval()
        ids = sorted(data.clips)
        for flipped in (False, True) if flip else (False,):
            for start in range(0, len(ids), 16):
                part = ids[start:start + 16]
                cache.tokens(template, [f"{digests[sid]}|{key_suffix}" for sid in part],
                             lambda idx, part=part: torch.stack([frames(part[i]) for i in idx]), [flipped] * len(part))
        template.to("cpu")
        filled[0] = True

    def copy_model(_: int) -> torch.nn.Module:
        return copy.deepcopy(template)

    def get(sample_id: str, flipped: bool) -> torch.Tensor:
        tokens = cache.get(signature, f"{digests[sample_id]}|{key_suffix}", flipped)
        if tokens is None:
            raise MernbError(f"no cached prefix tokens for {sample_id} (flip={flipped})")
        return tokens

    def dataset_fn(samples: list[Sample], train: bool) -> Dataset:
        if cache is not None:
            ensure_tokens()
            return TokenDataset(get, samples, data.classes, flip=flip and train)
        return FrameDataset(frames, samples, data.classes, flip=flip and train)

    # the resolved model config (defaults filled in), so {} and {"hfm": "full"} are the same row
    model_config = json.loads(json.dumps(template.config, sort_keys=True, default=str))
    details = {"model": model, "image_size": image_size, "num_frames": NUM_FRAMES, "frame_sampling": "uniform",
               "align": "similarity (dlib, one transform per clip)", "normalise": [list(mean), list(std)],
               "flip": flip, "input": "cached prefix tokens" if cache is not None else "frames",
               "cache_dtype": cache_dtype if cache is not None else None, "model_config": model_config}
    experiment = TorchExperiment(
        name=f"hlora/{model}", model_fn=copy_model, dataset_fn=dataset_fn, num_classes=num_classes,
        epochs=None if epochs is None else int(epochs), steps=None if steps is None else int(steps),
        batch_size=batch_size, optimizer=OptimConfig(name="adam", lr=lr, weight_decay=weight_decay),
        details=details, device=device, amp=amp, progress=progress,
    )
    return HLoRARecipe(data, model, dict(model_kwargs), image_size, seed, experiment, frames, cache, signature,
                       key_suffix, device, ensure_tokens)


# ---------------------------------------------------------------------------------------------- rows


def run_row(
    results_dir: str | Path,
    recipe: HLoRARecipe,
    *,
    seed: int = 0,
    force: bool = False,
    plan: str | None = None,
    notebook: str | None = None,
    holdout: tuple[list[Sample], Fold] | None = None,
) -> dict[str, Any]:
    """Train-or-load one row as a :class:`~mernb.experiments.common.SharedRow` (LOSO, or one
    ``holdout_fold`` split); every trained fold keeps its trainable weights for the figures. Returns the
    results document with ``path`` (its file) and ``origin`` ("loaded" or "computed")."""
    data = recipe.data
    if holdout is None:
        row = SharedRow(f"hlora-{data.dataset}", recipe.experiment, data, results_dir, seed=seed)
    else:
        samples, fold = holdout
        row = SharedRow(f"hlora-{data.dataset}".replace(">", ""), recipe.experiment, data, results_dir, seed=seed,
                        split=f"holdout:{fold.name}", samples=list(samples), folds=[fold])
    recipe.row = row
    return row.run(force=force, plan=plan, notebook=notebook)


# ---------------------------------------------------------------------------------------------- data


def prepare_holdout_data(protocol: str, **kwargs: Any) -> tuple[ProtocolData, tuple[list[Sample], Fold]]:
    """Holdout-database data (Table 7): both datasets' clips under ``protocol`` and the single split.

    ``kwargs`` go to :func:`prepare_protocol_data` (data_root, cache_dir, size, ...).
    """
    proto = get_protocol(protocol)
    if proto.train_dataset is None or proto.test_dataset is None:
        raise MernbError(f"{protocol} is not a holdout protocol")
    train = prepare_protocol_data(proto.train_dataset, protocol, num_frames=NUM_FRAMES, **kwargs)
    test = prepare_protocol_data(proto.test_dataset, protocol, num_frames=NUM_FRAMES, **kwargs)
    samples, fold = holdout_fold(train.samples, test.samples)
    data = ProtocolData(f"{proto.train_dataset}->{proto.test_dataset}", protocol, list(proto.classes), samples,
                        {**train.clips, **test.clips}, None, train.problems + test.problems,
                        train.dropped + test.dropped)
    return data, (samples, fold)


MEVIEW_LABELS = {"happiness": "positive", "surprise": "surprise", "disgust": "negative", "repression": "negative",
                 "fear": "negative", "sadness": "negative", "others": "others"}


def write_synthetic_meview(data_root: str | Path, source: str = "casme2") -> Path:
    """Smoke-plan stand-in for MEVIEW: ``<data_root>/meview`` in the MEVIEW reader's format, from SynthME.

    SynthME has no MEVIEW layout. This copies the frames of each SynthME ``source`` sample into
    ``meview/MEVIEW/<clip>/<N>.jpg`` and writes ``meview/MEVIEW/meview.csv`` (subject, clip, onset, apex,
    offset, emotion; CASME II emotions mapped to positive/surprise/negative/others) plus the SynthME
    marker, so ``load_samples("meview", data_root)`` reads it with the real reader. Idempotent.
    """
    from mernb.data.sources import SYNTH_MARKER, load_samples

    out = project_path(data_root) / "meview"
    marker = out / SYNTH_MARKER
    root = out / "MEVIEW"
    params = {"dataset": "meview", "source": source, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params and root.is_dir():
        return out
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    samples, _ = load_samples(source, data_root)
    rows = ["subject,clip,onset,apex,offset,emotion"]
    for i, s in enumerate(samples):
        clip = f"{s.subject}_{i:03d}"
        folder = root / clip
        folder.mkdir()
        for number, path in zip(s.frame_numbers, s.frame_paths, strict=True):
            shutil.copyfile(path, folder / f"{number}{Path(path).suffix}")
        apex = s.apex if s.apex is not None else ""
        rows.append(f"p{s.subject},{clip},{s.onset},{apex},{s.offset},{MEVIEW_LABELS.get(s.label, 'others')}")
    annotation = root / "meview.csv"
    annotation.write_text("\n".join(rows) + "\n")
    info = {"root": root.name, "annotation": f"{root.name}/{annotation.name}", "dataset": "meview",  # relative
            "n_samples": len(samples), "note": f"MEVIEW-format copy of SynthME {source} (smoke plan only)"}
    marker.write_text(json.dumps({"params": params, "info": info}, indent=1))
    return out


def failure_cases(doc: dict[str, Any], samples: Sequence[Sample], classes: Sequence[str],
                  n: int = 1) -> list[tuple[Sample, str, str, float]]:
    """Up to ``n`` misclassified samples of a row, most confident mistakes first:
    ``(sample, ground truth, prediction, predicted probability)`` (Fig. 6)."""
    by_id = {s.sample_id: s for s in samples}
    wrong = []
    for p in doc["result"]["predictions"]:
        if p["y_true"] != p["y_pred"] and p["sample_id"] in by_id:
            conf = float(p["scores"][p["y_pred"]]) if p.get("scores") else float("nan")
            wrong.append((by_id[p["sample_id"]], classes[p["y_true"]], classes[p["y_pred"]], conf))
    wrong.sort(key=lambda w: -w[3] if not math.isnan(w[3]) else 0.0)
    return wrong[:n]


# ---------------------------------------------------------------------------------------------- notebook helpers


def load_data(dataset: str, protocol: str, *, data_root: str | Path | None, cache_dir: str | Path, image_size: int,
            align_fallback: str = "error") -> ProtocolData:
    """A protocol's 8-frame clips at ``image_size`` (uniform sampling, aligned, cached): the HLoRA input."""
    return prepare_protocol_data(dataset, protocol, data_root=data_root, cache_dir=cache_dir, num_frames=NUM_FRAMES,
                                 size=image_size, align=True, align_fallback=align_fallback)


def train_row(
    data: ProtocolData,
    settings: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    results_dir: str | Path,
    force: bool = False,
    plan: str | None = None,
    notebook: str | None = None,
    holdout: tuple[list[Sample], Fold] | None = None,
) -> tuple[HLoRARecipe, dict[str, Any]]:
    """Recipe from the notebook's ``settings`` (plan parameters) + a row's ``overrides``, then train-or-load.

    ``seeds`` in the settings (paper plan: three) trains one row per seed; the returned recipe and document
    are the first seed's (figures), with ``doc["over_seeds"]`` holding mean ± std (read by ``row_metrics``)."""
    merged = {**settings, **(overrides or {})}
    seeds = seed_list(int(merged.pop("seed", 0)), merged.pop("seeds", None))
    runs = []
    for seed in seeds:
        recipe = hlora_recipe(data, seed=seed, **merged)
        runs.append((recipe, run_row(results_dir, recipe, seed=seed, force=force, plan=plan, notebook=notebook,
                                     holdout=holdout)))
    recipe, doc = runs[0]
    if len(runs) > 1:
        doc = {**doc, "over_seeds": metrics_over_seeds([d for _, d in runs])}
    return recipe, doc


def trainable_backbone_params(settings: dict[str, Any], num_classes: int, **overrides: Any) -> dict[str, int]:
    """Parameter groups (lora, backbone, hfm, head, frozen) of the model a row trains (Table 8's #Params:
    the paper counts the adapted backbone: LoRA or the full backbone, without the HFM head)."""
    from mernb.models.hlora import HLoRAMER

    merged = {**settings, **overrides}
    model_kwargs = {k: v for k, v in merged.items() if k not in _RECIPE_KEYS}
    with torch.device("meta"):  # counts only: no memory, no weights file read
        model = create_model(merged["model"], num_classes=num_classes, img_size=merged["image_size"],
                             num_frames=NUM_FRAMES, **{**model_kwargs, "weights": None})
    if not isinstance(model, HLoRAMER):
        raise MernbError(f"{merged['model']} is not an HLoRA-MER config")
    return model.parameter_groups()


_RECIPE_KEYS = frozenset({"model", "image_size", "epochs", "steps", "batch_size", "lr", "weight_decay", "flip", "seed", "seeds",
                          "device", "cache_dir", "cache_dtype", "amp", "progress"})
