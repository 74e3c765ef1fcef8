"""Local pretrained weights: loaded strictly (only the classifier may differ), or a clear error."""

from __future__ import annotations

import pytest
import torch

from mernb.errors import ConfigError
from mernb.models.backbones import create_backbone

TINY = dict(depth=2, embed_dim=32, num_heads=2, img_size=32, patch_size=16)


def _save(tmp_path, name="w.pth", wrap=None, **overrides):
    torch.manual_seed(0)
    source = create_backbone("vit_tiny_patch16_224", num_classes=4, **{**TINY, **overrides})
    state = source.state_dict()
    torch.save({wrap: state} if wrap else state, tmp_path / name)
    return source, tmp_path / name


def test_exact_checkpoint_loads_and_reproduces_outputs(tmp_path):
    source, path = _save(tmp_path)
    loaded = create_backbone("vit_tiny_patch16_224", weights=path, num_classes=4, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), source.eval()(x))


def test_wrapped_checkpoint_and_other_head_size(tmp_path):
    source, path = _save(tmp_path, wrap="model")
    features = create_backbone("vit_tiny_patch16_224", weights=path, num_classes=0, **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(features(x), source.eval().forward_head(source.forward_features(x), pre_logits=True))
    other = create_backbone("vit_tiny_patch16_224", weights=path, num_classes=7, **TINY)
    assert other.head.out_features == 7


def test_checkpoint_of_a_shallower_model_is_rejected(tmp_path):
    _, path = _save(tmp_path, depth=1)
    with pytest.raises(ConfigError, match=r"missing \['blocks\.1"):
        create_backbone("vit_tiny_patch16_224", weights=path, num_classes=0, **TINY)


def test_missing_file_and_unconfigured_key_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("vit_tiny_patch16_224", weights=tmp_path / "absent.pth", **TINY)
    monkeypatch.setenv("MERNB_CONFIG", str(tmp_path / "cfg.yaml"))
    (tmp_path / "cfg.yaml").write_text("weights: {}\n")
    with pytest.raises(ConfigError, match=r"weights\.vit_base_patch16_224\.augreg_in21k"):
        create_backbone("vit_tiny_patch16_224", weights="vit_base_patch16_224.augreg_in21k", **TINY)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        create_backbone("vit_tiny_patch16_224", weights=tmp_path / "junk.pth", **TINY)
