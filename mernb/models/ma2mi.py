"""MA2MI (Li, Niu, Zhao 2024): MIACNet, its position loss L_pos, and the pre-training model (VAE + DiT).

* :class:`MIACNet` — the micro-action network of paper §3.1 (Fig. 2) as a classifier: a **facial action
  encoder** (FAE, ResNet-18 via timm) on the frame difference I_{t+k} - I_t (eq. 1, computed in float32), a
  **facial position encoder** (FPE, ResNet-18) on I_t, their feature maps combined into the action vector c,
  and a zero-initialised FC head (§3.2.2). ``forward(onset, apex) -> logits``; frames in [0, 1].
* :func:`loss_distinct`, :func:`loss_consistency`, :func:`loss_equivariance` — the three parts of L_pos
  (eqs. 2-6) on FPE feature maps (B, C, h, w).
* :class:`MA2MIPretrainer` — MIACNet's two encoders + a projection of c + a DiT (:mod:`mernb.models.dit`)
  and, for ``variant="latent"``, a frozen ``diffusers.AutoencoderKL`` (scale 0.18215). ``variant`` selects
  Table 1's pre-training: ``"latent"`` (MA2MI: DiT predicts the VAE latent of I_{t+k} from that of I_t,
  L1, eqs. 7-10), ``"pixel"`` (MA2MI†: the same in pixel space), ``"maer"`` (macro-expression recognition,
  cross-entropy on c). ``forward(it, itk, ...)`` returns a dict of losses.

Named configs: ``ma2mi_miacnet_r18`` / ``ma2mi_pretrain_dit_b2`` (paper: 224x224 frames, ResNet-18s,
DiT-B/2 on the 28x28x4 latent, 196 tokens) and ``ma2mi_miacnet_test`` / ``ma2mi_pretrain_test`` (tiny
ResNet [1,1,1,1] with 8-64 channels, 64x64 frames, a 2-block DiT of width 32 and a tiny random VAE).

Deviations and readings (the paper's equations lost their symbols; the prose is what we follow):

* **Combination of position and action (c).** Not stated. We follow MMNet (same authors, methods.md §3): the
  position features are injected as a position embedding into the action features, ``F = A + P`` on the
  (C, h, w) maps of the two ResNet-18s (same input size, so same grid), and c = flatten(F) (C·h·w values;
  MMNet's head is likewise ``Linear(512·196, classes)`` on flattened tokens). Without an FPE, c = flatten(A).
* **Which losses train which encoder.** The conclusion says the two branches "are trained independently
  with different losses in the pre-training stage": with ``fpe="independent"`` (default) P is detached before
  the combination during pre-training, so the FPE learns from L_pos only and the FAE from the
  reconstruction (or MAER's cross-entropy) only. Table 4: ``fpe="none"`` (no FPE), ``fpe="joint"`` (FPE
  without separate training: no L_pos, gradients from the reconstruction), ``fpe="independent"``.
  In fine-tuning every tuned encoder gets the classification gradient.
* **L_dis (eq. 2)**: mean cosine similarity between the C-dim features of every pair of distinct positions
  i != j of the h·w grid (minimised). **L_con (eqs. 3-4)**: two faces' maps P, P'; j(i) is the position of P'
  matched one-to-one to i by maximum total cosine similarity (Hungarian assignment, scipy); the loss is
  mean_i (1 - cos(P_i, P'_j(i))). The pairs are the batch's samples with the next sample (roll by one).
  **L_eq (eq. 5)**: mean over positions of the 2-norm (over channels) of FPE(T(x)) - T(FPE(x)), T a random
  rotation (±``eq_rotation`` degrees) plus translation (±``eq_shift`` of the side) applied with
  ``grid_sample`` (zero padding) to the image and the same normalised transform to the feature map.
  **L_pos = L_dis + L_con + L_eq** (eq. 6; weights ``pos_weights``, default 1, 1, 1).
* **DiT**: deterministic conditional prediction of the next latent (L1, eq. 9), no diffusion noise or
  timestep; the DiT output is the predicted latent itself (not a residual on z_t). c is projected to the
  hidden size by a Linear in place of DiT's class embedding (19.3M parameters for the 512·7·7 c of 224² frames).
  With adaLN-Zero the DiT ignores c at init, so the encoders get no reconstruction gradient on the first step.
* **MA2MI† (pixel)**: the DiT runs on the normalised frame (3 channels, [-1, 1]) with a patch 8 times the
  latent patch, so it sees the same number of tokens as the latent DiT; the L1 loss is on pixels.
* **MAER**: a linear classifier on c over the macro set's labels, cross-entropy; the FPE still learns by L_pos.
* **Frames**: 224x224 (the size is missing from the extracted text; DFEW's released face clips are 224²).
  Encoders see ImageNet-normalised frames (the difference of two normalised frames for the FAE); the VAE and
  the pixel DiT see frames mapped to [-1, 1]. The ResNet-18s start from ``backbone_weights`` (a local timm
  ResNet-18 checkpoint, e.g. ImageNet) or random init (the paper does not say).

Used by ``notebooks/ma2mi/*`` through :mod:`mernb.experiments.ma2mi`, and by ``mernb model info``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mernb.errors import ConfigError
from mernb.models.backbones import create_backbone, read_state_dict, resolve_weights
from mernb.models.dit import DiT
from mernb.models.registry import register_model

__all__ = [
    "MIACNet", "MA2MIPretrainer", "FPE_MODES", "VARIANTS", "TUNE_OPTIONS", "VAE_SCALE",
    "frame_difference", "loss_distinct", "loss_consistency", "loss_equivariance", "position_loss",
    "random_affine", "warp", "load_vae", "tiny_vae", "vae_digest", "encoder_kwargs",
]

FPE_MODES = ("independent", "joint", "none")
VARIANTS = ("latent", "pixel", "maer")
TUNE_OPTIONS = ("both", "fpe", "fae")
VAE_SCALE = 0.18215
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# tiny ResNet for the *_test configs (timm ResNet kwargs): BasicBlock [1, 1, 1, 1], 8-64 channels, deep stem 4-4-8
_TINY_RESNET = dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=4, stem_type="deep")


# ---------------------------------------------------------------------------------------------- inputs


def frame_difference(it: torch.Tensor, itk: torch.Tensor) -> torch.Tensor:
    """I_{t+k} - I_t (eq. 1) in float32, whatever the autocast dtype (differences are ~1/255)."""
    return itk.float() - it.float()


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() - mean) / std


def _difference_input(it: torch.Tensor, itk: torch.Tensor) -> torch.Tensor:
    std = torch.tensor(IMAGENET_STD, device=it.device, dtype=torch.float32).view(1, 3, 1, 1)
    return frame_difference(it, itk) / std  # == normalised(itk) - normalised(it)


# ---------------------------------------------------------------------------------------------- L_pos


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, N, N) cosine similarities between the positions of maps a and b, each (B, C, h, w)."""
    a = F.normalize(a.flatten(2).transpose(1, 2).float(), dim=-1)
    b = F.normalize(b.flatten(2).transpose(1, 2).float(), dim=-1)
    return a @ b.transpose(1, 2)


def loss_distinct(p: torch.Tensor) -> torch.Tensor:
    """L_dis (eq. 2): mean cos(P_i, P_j) over ordered pairs of distinct positions i != j, averaged over the batch."""
    sim = _cosine_matrix(p, p)
    n = sim.shape[-1]
    if n < 2:
        raise ConfigError("L_dis needs a feature map with at least 2 positions")
    off = sim.sum(dim=(1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(dim=1)
    return (off / (n * (n - 1))).mean()


def match_positions(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(B, N) index j(i) of the position of q matched one-to-one to position i of p (eq. 4): the
    assignment maximising the total cosine similarity (Hungarian algorithm). No gradient."""
    from scipy.optimize import linear_sum_assignment

    sim = _cosine_matrix(p.detach(), q.detach()).cpu().numpy()
    out = np.empty(sim.shape[:2], dtype=np.int64)
    for b in range(sim.shape[0]):
        rows, cols = linear_sum_assignment(-sim[b])
        out[b, rows] = cols
    return torch.from_numpy(out).to(p.device)


def loss_consistency(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """L_con (eqs. 3-4): mean over positions i of 1 - cos(P_i, Q_j(i)), j the one-to-one matching of
    :func:`match_positions`, averaged over the batch."""
    sim = _cosine_matrix(p, q)
    j = match_positions(p, q)
    matched = sim.gather(2, j.unsqueeze(-1)).squeeze(-1)
    return (1.0 - matched).mean()


def random_affine(batch: int, rotation_deg: float, shift: float, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices: rotation uniform in ±rotation_deg, translation uniform in ±shift
    (fraction of the side; normalised coordinates span 2)."""
    u = torch.rand(batch, 3, generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(rotation_deg)
    cos, sin = torch.cos(angle), torch.sin(angle)
    tx, ty = u[:, 1] * shift * 2, u[:, 2] * shift * 2
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    return theta.to(device) if device is not None else theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """T(x): ``grid_sample`` of x (B, C, H, W) with the affine ``theta`` (zeros outside, align_corners=False)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def loss_equivariance(encoder: nn.Module, x: torch.Tensor, theta: torch.Tensor, p: torch.Tensor | None = None,
                      mode: str = "bilinear") -> torch.Tensor:
    """L_eq (eq. 5): mean over batch and positions of || E(T(x)) - T(E(x)) ||_2 (2-norm over channels).

    ``p`` = E(x) when already computed. The same normalised affine ``theta`` warps the image and the map.
    """
    p = encoder(x) if p is None else p
    p_of_t = encoder(warp(x, theta, mode))
    t_of_p = warp(p, theta, mode)
    return torch.linalg.vector_norm((p_of_t - t_of_p).float(), dim=1).mean()


def position_loss(encoder: nn.Module, x: torch.Tensor, p: torch.Tensor, *, weights: tuple[float, float, float],
                  rotation_deg: float, shift: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """L_pos = w_dis L_dis + w_con L_con + w_eq L_eq (eq. 6) for a batch x (normalised) with E(x) = p.

    L_con pairs each face with the next one of the batch (needs a batch of at least 2; else 0).
    """
    dis = loss_distinct(p)
    con = loss_consistency(p, p.roll(1, dims=0)) if p.shape[0] > 1 else p.new_zeros(())
    theta = random_affine(x.shape[0], rotation_deg, shift, generator, device=x.device)
    eq = loss_equivariance(encoder, x, theta, p=p)
    total = weights[0] * dis + weights[1] * con + weights[2] * eq
    return {"pos": total, "dis": dis.detach(), "con": con.detach(), "eq": eq.detach()}


# ---------------------------------------------------------------------------------------------- encoders


def _resnet(backbone: str, weights: str | Path | None, tiny: bool) -> nn.Module:
    """A timm ResNet returning its last feature map (no pooling, no classifier)."""
    if tiny:
        from timm.models.resnet import BasicBlock, ResNet

        model = ResNet(block=BasicBlock, num_classes=0, global_pool="", **_TINY_RESNET)
        if weights is not None:
            raise ConfigError("the tiny test ResNet takes no backbone weights")
        return model
    return create_backbone(backbone, weights=weights, num_classes=0, global_pool="")


class _MapEncoder(nn.Module):
    """A ResNet whose ``forward`` returns its (B, C, h, w) feature map."""

    def __init__(self, backbone: str, weights: str | Path | None, tiny: bool) -> None:
        super().__init__()
        self.net = _resnet(backbone, weights, tiny)
        self.num_features = int(self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def encoder_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The encoder settings shared by MIACNet and the pre-trainer (checkpoints move between them)."""
    return {k: config[k] for k in ("backbone", "img_size", "fpe", "tiny")}


class _Encoders(nn.Module):
    """Shared by MIACNet and MA2MIPretrainer: builds ``fpe``/``fae`` on ``owner`` and computes c."""

    @staticmethod
    def build(owner: nn.Module, backbone: str, fpe: str, tiny: bool, backbone_weights: str | Path | None,
              img_size: int) -> None:
        if fpe not in FPE_MODES:
            raise ConfigError(f"fpe must be one of {FPE_MODES}, got {fpe!r}")
        owner.fpe = _MapEncoder(backbone, backbone_weights, tiny) if fpe != "none" else None
        owner.fae = _MapEncoder(backbone, backbone_weights, tiny)
        stride = 32
        if img_size % stride:
            raise ConfigError(f"img_size must be a multiple of {stride}, got {img_size}")
        owner.grid = img_size // stride
        owner.c_dim = owner.fae.num_features * owner.grid * owner.grid


def _action(owner: nn.Module, it: torch.Tensor, itk: torch.Tensor, detach_position: bool
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(c, P, x_t normalised): c = flatten(FAE(I_{t+k} - I_t) + P), P = FPE(I_t) (detached if asked)."""
    xt = _imagenet(it)
    a = owner.fae(_difference_input(it, itk))
    p = owner.fpe(xt) if owner.fpe is not None else None
    fused = a if p is None else a + (p.detach() if detach_position else p)
    return fused.flatten(1), p, xt


# ---------------------------------------------------------------------------------------------- MIACNet


class MIACNet(nn.Module):
    """MIACNet classifier: ``forward(onset, apex) -> logits`` (frames (B, 3, S, S) in [0, 1]).

    ``tune`` (Table 2): ``"both"``, ``"fpe"`` (FAE frozen) or ``"fae"`` (FPE frozen); the head always trains.
    ``weights``: a pre-training checkpoint (file, or user-config key) holding ``fpe.*``/``fae.*``, loaded
    strictly. ``recon`` (optional, Table 2's "keep the reconstruction"): a :class:`MA2MIPretrainer` whose
    reconstruction loss on (onset -> apex) is stored in ``aux_loss`` during training forwards.
    """

    def __init__(self, num_classes: int = 5, *, backbone: str = "resnet18", img_size: int = 224, fpe: str = "independent",
                 tune: str = "both", tiny: bool = False, weights: str | Path | None = None,
                 backbone_weights: str | Path | None = None, recon: MA2MIPretrainer | None = None) -> None:
        super().__init__()
        if tune not in TUNE_OPTIONS:
            raise ConfigError(f"tune must be one of {TUNE_OPTIONS}, got {tune!r}")
        if tune == "fpe" and fpe == "none":
            raise ConfigError("tune='fpe' needs an FPE (fpe != 'none')")
        self.config = dict(num_classes=num_classes, backbone=backbone, img_size=img_size, fpe=fpe, tune=tune,
                           tiny=tiny, keep_reconstruction=recon is not None)
        _Encoders.build(self, backbone, fpe, tiny, backbone_weights, img_size)
        self.head = nn.Linear(self.c_dim, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.recon = recon
        self.aux_loss: torch.Tensor | None = None
        if weights is not None:
            self.load_pretrained(weights)
        if recon is not None:  # the encoders are MIACNet's own; the pre-trainer keeps its DiT (+ VAE)
            recon.fpe, recon.fae = None, None
        if tune == "fpe":
            self.fae.requires_grad_(False)
        if tune == "fae" and self.fpe is not None:
            self.fpe.requires_grad_(False)

    def load_pretrained(self, weights: str | Path) -> None:
        """Load ``fpe.*``/``fae.*`` from a pre-training checkpoint, strictly (every encoder key, no other)."""
        path = resolve_weights(weights)
        state = read_state_dict(path)
        state = {k: v for k, v in state.items() if k.startswith(("fpe.", "fae."))}
        own = {k for k in self.state_dict() if k.startswith(("fpe.", "fae."))}
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise ConfigError(f"pre-training checkpoint {path} does not fit this MIACNet: missing {missing[:6]} "
                              f"({len(missing)}), unexpected {unexpected[:6]} ({len(unexpected)})")
        self.load_state_dict(state, strict=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # one dict argument too (mernb model info, Grad-CAM)
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return super().__call__(**args[0])
        return super().__call__(*args, **kwargs)

    def features(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        """The action vector c (B, C·h·w)."""
        return _action(self, onset, apex, detach_position=False)[0]

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        c = self.features(onset, apex)
        if self.recon is not None and self.training:
            self.aux_loss = self.recon.reconstruction(c, onset, apex)
        return self.head(c)

    def example_input(self, batch: int = 1, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        s = self.config["img_size"]
        return {"onset": torch.rand(batch, 3, s, s, device=device), "apex": torch.rand(batch, 3, s, s, device=device)}

    def parameter_groups(self) -> dict[str, int]:
        """Parameters of FPE, FAE, head (and the kept reconstruction) and how many train."""
        groups = {"fpe": self.fpe, "fae": self.fae, "head": self.head, "recon": self.recon}
        out = {name: sum(p.numel() for p in m.parameters()) for name, m in groups.items() if m is not None}
        out["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return out


# ---------------------------------------------------------------------------------------------- VAE


def tiny_vae() -> nn.Module:
    """A tiny random ``AutoencoderKL`` (8x downsampling, 4 latent channels, 8 channels wide) for tests and
    the smoke plan: same interface and scale factor as the DiT VAE, no weights file needed."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):  # the same weights every time, global RNG untouched
        torch.manual_seed(0)
        return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                             layers_per_block=1, norm_num_groups=4, sample_size=64)


def load_vae(vae: str | Path | nn.Module) -> nn.Module:
    """The frozen VAE: a module as is, ``"tiny"`` for :func:`tiny_vae`, or a local diffusers folder
    (``config.json`` + weights, e.g. a copy of stabilityai/sd-vae-ft-ema) given as a path or a user-config
    weights key; ``"sd_vae_arch"`` is that architecture with random weights (parameter/MAC counts). Never downloads. Returned in eval mode with ``requires_grad=False``."""
    if isinstance(vae, nn.Module):
        model = vae
    elif str(vae) == "tiny":
        model = tiny_vae()
    elif str(vae) == "sd_vae_arch":
        from diffusers import AutoencoderKL

        model = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                              sample_size=256)
    else:
        from diffusers import AutoencoderKL

        from mernb.config import load_config

        path = Path(str(vae)).expanduser()
        if not path.exists():
            value = load_config().weights.get(str(vae))
            if not value:
                raise ConfigError(f"VAE {vae!r}: no such folder and no weights.{vae} in the user config "
                                  "(a local diffusers AutoencoderKL folder; mernb never downloads weights)")
            path = Path(value).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"VAE folder {path} has no config.json (expected a diffusers AutoencoderKL folder)")
        model = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    model.eval()
    model.requires_grad_(False)
    return model


def vae_digest(vae: nn.Module) -> str:
    """sha256 (20 hex) of the VAE's state dict (names, shapes, values): the latent cache's weights key."""
    h = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:20]


def vae_moments(vae: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Mean and log-variance (B, 2·4, s, s) of the VAE posterior of frames in [0, 1] (mapped to [-1, 1])."""
    with torch.no_grad():
        return vae.encode(frames.float() * 2 - 1).latent_dist.parameters.float()


def sample_latent(moments: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = (mean + std · eps) · 0.18215 from cached moments (diffusers' ``latent_dist.sample()`` then the DiT
    scale); eps from ``generator`` (or the global torch RNG)."""
    mean, logvar = moments.float().chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    eps = torch.randn(mean.shape, generator=generator, device=mean.device) if generator is not None \
        else torch.randn_like(mean)
    return (mean + std * eps) * VAE_SCALE


# ---------------------------------------------------------------------------------------------- pre-training


class MA2MIPretrainer(nn.Module):
    """MIACNet's encoders + c projection + DiT (+ frozen VAE) for pre-training (``variant`` in Table 1).

    ``forward(it, itk, zt=None, ztk=None, label=None) -> {"loss", "rec", "ce", "pos", "dis", "con", "eq"}``:
    frames in [0, 1]; ``zt``/``ztk`` are sampled latents (scaled by 0.18215) from the latent cache, encoded on
    the fly when absent; ``label`` (MAER) macro class indices. Children for ``mernb model info``: ``fpe``,
    ``fae``, ``cond`` (c -> hidden), ``dit``, ``head`` (MAER only), ``vae`` (frozen).
    """

    def __init__(self, *, variant: str = "latent", backbone: str = "resnet18", img_size: int = 224,
                 fpe: str = "independent", tiny: bool = False, dit_depth: int = 12, dit_hidden: int = 768,
                 dit_heads: int = 12, patch_size: int = 2, vae: str | Path | nn.Module | None = None,
                 num_macro_classes: int = 7, pos_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 eq_rotation: float = 15.0, eq_shift: float = 0.1, backbone_weights: str | Path | None = None,
                 weights: str | Path | None = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.config = dict(variant=variant, backbone=backbone, img_size=img_size, fpe=fpe, tiny=tiny,
                           dit_depth=dit_depth, dit_hidden=dit_hidden, dit_heads=dit_heads, patch_size=patch_size,
                           num_macro_classes=num_macro_classes, pos_weights=list(pos_weights),
                           eq_rotation=eq_rotation, eq_shift=eq_shift)
        self.pos_weights = tuple(float(w) for w in pos_weights)
        _Encoders.build(self, backbone, fpe, tiny, backbone_weights, img_size)
        self.cond = self.dit = self.head = self.vae = None
        if variant == "maer":
            self.head = nn.Linear(self.c_dim, num_macro_classes)
        else:
            self.cond = nn.Linear(self.c_dim, dit_hidden)
            if variant == "latent":
                if img_size % 8:
                    raise ConfigError("the latent variant needs img_size divisible by 8 (VAE downsampling)")
                self.dit = DiT(img_size // 8, patch_size, 4, dit_hidden, dit_depth, dit_heads)
                self.vae = load_vae(vae if vae is not None else ("tiny" if tiny else "sd_vae"))
            else:
                self.dit = DiT(img_size, patch_size * 8, 3, dit_hidden, dit_depth, dit_heads)
        if weights is not None:
            self.load_state_dict(read_state_dict(resolve_weights(weights)), strict=False)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen VAE (what a pre-training checkpoint holds)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("vae.")}

    def train(self, mode: bool = True) -> MA2MIPretrainer:
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        return self

    def reconstruction(self, c: torch.Tensor, it: torch.Tensor, itk: torch.Tensor,
                       zt: torch.Tensor | None = None, ztk: torch.Tensor | None = None) -> torch.Tensor:
        """L1 loss (eq. 9) of the DiT's prediction of I_{t+k} (latent or pixels) given I_t and c."""
        cond = self.cond(c)
        if self.config["variant"] == "latent":
            if zt is None or ztk is None:
                zt = sample_latent(vae_moments(self.vae, it))
                ztk = sample_latent(vae_moments(self.vae, itk))
            return F.l1_loss(self.dit(zt, cond).float(), ztk.float())
        src, target = it.float() * 2 - 1, itk.float() * 2 - 1
        return F.l1_loss(self.dit(src, cond).float(), target)

    @torch.no_grad()
    def predict_next(self, it: torch.Tensor, itk: torch.Tensor) -> torch.Tensor:
        """The reconstruction of I_{t+k} in [0, 1] (decoded through the VAE for the latent variant; Fig. 6):
        uses the posterior mean of z_t."""
        c, _, _ = _action(self, it, itk, detach_position=False)
        cond = self.cond(c)
        if self.config["variant"] == "latent":
            zt = vae_moments(self.vae, it).chunk(2, dim=1)[0] * VAE_SCALE
            out = self.vae.decode(self.dit(zt, cond) / VAE_SCALE).sample
        elif self.config["variant"] == "pixel":
            out = self.dit(it.float() * 2 - 1, cond)
        else:
            raise ConfigError("MAER pre-training reconstructs nothing")
        return ((out.float() + 1) / 2).clamp(0, 1)

    def forward(self, it: torch.Tensor, itk: torch.Tensor, zt: torch.Tensor | None = None,
                ztk: torch.Tensor | None = None, label: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mode = self.config["fpe"]
        c, p, xt = _action(self, it, itk, detach_position=mode == "independent")
        zero = c.new_zeros(())
        out = {"rec": zero, "ce": zero, "pos": zero, "dis": zero, "con": zero, "eq": zero}
        if self.head is not None:
            if label is None:
                raise ConfigError("MAER pre-training needs macro-expression labels")
            out["ce"] = F.cross_entropy(self.head(c).float(), label)
        else:
            out["rec"] = self.reconstruction(c, it, itk, zt, ztk)
        if mode == "independent" and p is not None:
            out.update(position_loss(self.fpe, xt, p, weights=self.pos_weights, rotation_deg=self.config["eq_rotation"],
                                     shift=self.config["eq_shift"], generator=generator))
        out["loss"] = out["rec"] + out["ce"] + out["pos"]
        return out

    def example_input(self, batch: int = 1, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        s = self.config["img_size"]
        x = {"it": torch.rand(batch, 3, s, s, device=device), "itk": torch.rand(batch, 3, s, s, device=device)}
        if self.config["variant"] == "latent":
            z = torch.rand(batch, 4, s // 8, s // 8, device=device)
            x |= {"zt": z, "ztk": z}
        if self.config["variant"] == "maer":
            x["label"] = torch.zeros(batch, dtype=torch.long, device=device)
        return x

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # dict inputs (mernb model info passes one argument)
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return super().__call__(**args[0])
        return super().__call__(*args, **kwargs)

    def parameter_groups(self) -> dict[str, int]:
        groups = {"fpe": self.fpe, "fae": self.fae, "cond": self.cond, "dit": self.dit, "head": self.head,
                  "vae (frozen)": self.vae}
        out = {name: sum(p.numel() for p in m.parameters()) for name, m in groups.items() if m is not None}
        out["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return out


# ---------------------------------------------------------------------------------------------- configs


@register_model
def ma2mi_miacnet_r18(num_classes: int = 5, **kwargs: Any) -> MIACNet:
    """MIACNet as in the paper: two ResNet-18s (timm ``resnet18``), 224x224 frames."""
    return MIACNet(num_classes, **{"backbone": "resnet18", "img_size": 224, **kwargs})


@register_model
def ma2mi_miacnet_test(num_classes: int = 5, **kwargs: Any) -> MIACNet:
    """Tiny MIACNet for CPU tests and the smoke plan: tiny ResNets, 64x64 frames."""
    return MIACNet(num_classes, **{"tiny": True, "img_size": 64, **kwargs})


@register_model
def ma2mi_pretrain_dit_b2(**kwargs: Any) -> MA2MIPretrainer:
    """Pre-training as in the paper: ResNet-18s + DiT-B/2 (depth 12, hidden 768, 12 heads) on the 28x28x4
    latent of 224x224 frames; the VAE comes from ``vae`` (default user-config key ``sd_vae``). ``weights=None``
    given explicitly (``mernb model info``) builds the sd-vae architecture with random weights instead."""
    if "weights" in kwargs and kwargs["weights"] is None and "vae" not in kwargs:
        kwargs["vae"] = "sd_vae_arch"  # counting only (mernb model info): the architecture, random weights
    return MA2MIPretrainer(**{"img_size": 224, "dit_depth": 12, "dit_hidden": 768, "dit_heads": 12, "patch_size": 2,
                              **kwargs})


@register_model
def ma2mi_pretrain_test(**kwargs: Any) -> MA2MIPretrainer:
    """Tiny pre-training model: tiny ResNets, 64x64 frames, 2-block DiT of width 32, tiny random VAE."""
    return MA2MIPretrainer(**{"tiny": True, "img_size": 64, "dit_depth": 2, "dit_hidden": 32, "dit_heads": 2,
                              "patch_size": 2, **kwargs})
