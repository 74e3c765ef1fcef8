"""Value tests of mernb.models found by mutation testing (issue 11): resize convention, error texts, tables."""

from __future__ import annotations

import pytest
import torch

from mernb.errors import ConfigError
from mernb.models.info import format_table
from mernb.models.ma2mi import loss_distinct
from mernb.models.vit import dynamic_image_input


def test_dynamic_image_upsampling_is_half_pixel_bilinear():
    """A one-frame clip is its own dynamic image; a [0, 1] row resized 2 -> 4 with half-pixel centres
    (align_corners=False) is [0, 1/4, 3/4, 1] (corner-aligned sampling would give [0, 1/3, 2/3, 1])."""
    clip = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 2, 2).clone()
    out = dynamic_image_input(clip, mean=(0, 0, 0), std=(1, 1, 1), img_size=4)
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out, torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(3, 4, 4))


def test_loss_distinct_names_the_loss_in_its_error():
    with pytest.raises(ConfigError, match="^L_dis needs a feature map with at least 2 positions$"):
        loss_distinct(torch.ones(2, 4, 1, 1))


def test_format_table_header_and_rows():
    info = {"config": "c", "model_class": "M", "input": None, "total_params": 1500, "trainable_params": 500,
            "macs": None, "modules": [{"name": "head", "params": 1500, "trainable": 500, "macs": None}]}
    lines = format_table(info).splitlines()
    assert lines[0] == "c (M)"
    assert lines[1].split() == ["module", "params", "trainable", "MACs"]
    assert lines[-1] == "trainable 500 of 1,500 parameters"


def test_gat_layer_output_is_the_attention_mean_with_elu_only_when_concatenating():
    """W = 1 and a = 0: every neighbour gets the same attention, so the output is the mean of the inputs,
    -2 for inputs -1 and -3; concat adds ELU: exp(-2) - 1. The authors' IFFA output layer does not concatenate."""
    import math

    from mernb.models.hlora import GATIFFA, GATLayer

    h = torch.tensor([[[-1.0], [-3.0]]])
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    for concat, expected in ((False, -2.0), (True, math.exp(-2.0) - 1.0)):
        layer = GATLayer(1, 1, concat=concat).eval()
        with torch.no_grad():
            layer.W.fill_(1.0)
            layer.a.zero_()
        assert torch.allclose(layer(h, mask), torch.full((1, 2, 1), expected))
    iffa = GATIFFA(16, 4)
    assert all(head.concat for head in iffa.heads) and iffa.out_layer.concat is False



def test_backbone_weights_load_into_a_model_whose_module_has_no_checkpoint_filter(tmp_path):
    from torch import nn

    from mernb.models.backbones import load_backbone_weights

    source, target = nn.Linear(2, 3), nn.Linear(2, 3)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    load_backbone_weights(target, tmp_path / "w.pth")
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)


def test_miacnet_config_records_its_arguments():
    from mernb.models.registry import create_model

    model = create_model("ma2mi_miacnet_test", num_classes=3, tune="fpe")
    assert model.config == dict(num_classes=3, backbone="resnet18", img_size=64, fpe="independent", tune="fpe",
                                tiny=True, keep_reconstruction=False)


def test_mpt_motion_input_of_a_still_clip_is_zero():
    """The default motion prompt reads the band-passed motion (motion_sequence), which is zero for a clip
    that does not move; the magnified video (motion_source='magnified') would be the frames themselves."""
    import numpy as np

    from mernb.models.registry import create_model

    model = create_model("mpt_test", img_size=64)
    clip = np.broadcast_to(np.random.default_rng(0).integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8),
                           (8, 64, 64, 3)).copy()
    motion = model.prepare_input(clip, fps=50.0)["motion"]
    assert motion.shape == (8, 3, 64, 64) and motion.abs().max() < 1e-4


def test_dit_refuses_a_side_that_is_not_a_multiple_of_the_patch():
    from mernb.models.dit import DiT

    with pytest.raises(ValueError, match="DiT input side 5 is not a multiple of the patch size 2"):
        DiT(input_size=5, patch_size=2, hidden_size=8, depth=1, num_heads=2)


def test_equivariance_loss_warps_image_and_map_with_the_same_mode():
    """With the identity encoder, E(T(x)) = T(E(x)) whatever the sampling mode, so L_eq is 0 for a
    shift of a fraction of a pixel under nearest sampling too (mixing modes would not cancel)."""
    from mernb.models.ma2mi import loss_equivariance

    x = torch.arange(64.0).view(1, 1, 8, 8)
    theta = torch.tensor([[[1.0, 0.0, 0.3 / 4], [0.0, 1.0, 0.0]]])  # 0.3 px to the side
    assert loss_equivariance(torch.nn.Identity(), x, theta, mode="nearest").item() == 0.0


def test_model_info_gives_parameters_of_the_root_zero_macs():
    from torch import nn

    from mernb.models.info import model_info

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.lin = nn.Linear(2, 3)

        def forward(self, x):
            return self.lin(x) * self.scale

    info = model_info(Root(), torch.zeros(1, 2), device="cpu")
    rows = {r["name"]: r for r in info["modules"]}
    assert rows["lin"]["params"] == 9 and rows["lin"]["macs"] == 6
    assert rows["(own)"]["params"] == 3 and rows["(own)"]["macs"] == 0


def test_ma2mi_pretrainer_config_records_the_backbone():
    from mernb.models.registry import create_model

    assert create_model("ma2mi_pretrain_test", backbone="resnet18").config["backbone"] == "resnet18"
