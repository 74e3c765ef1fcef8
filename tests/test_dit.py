"""The compact DiT of MA2MI: adaLN-Zero identity at init, sin-cos embedding, unpatchify, parameter count."""

import math

import torch

from mernb.models.dit import DiT, DiTBlock, sincos_2d


def test_adaln_zero_blocks_are_identity_and_output_is_zero_at_init():
    torch.manual_seed(0)
    dit = DiT(input_size=8, patch_size=2, in_chans=4, hidden_size=32, depth=3, num_heads=2)
    x, cond = torch.randn(3, 4, 8, 8), torch.randn(3, 32)
    h = dit.tokens(x)
    for block in dit.blocks:
        assert torch.equal(block(h, cond), h)  # gates are 0: both residual branches add exactly 0
    assert torch.equal(dit(x, cond), torch.zeros_like(x))


def test_block_is_not_identity_once_the_adaln_linear_is_nonzero():
    torch.manual_seed(0)
    block = DiTBlock(16, 2)
    h, cond = torch.randn(2, 5, 16), torch.randn(2, 16)
    torch.nn.init.normal_(block.adaLN_modulation[-1].weight)
    assert not torch.allclose(block(h, cond), h)


def test_sincos_embedding_hand_values():
    emb = sincos_2d(8, 3)  # dim 8: 2 frequencies (1 and 1/100) per axis, column half first
    assert emb.shape == (9, 8)
    row0_col1 = emb[1]
    expected = torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01), 0, 0, 1, 1], dtype=torch.float32)
    assert torch.allclose(row0_col1, expected, atol=1e-7)
    row2_col0 = emb[6]
    expected = torch.tensor([0, 0, 1, 1, math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)], dtype=torch.float32)
    assert torch.allclose(row2_col0, expected, atol=1e-7)


def test_unpatchify_inverts_patch_order():
    dit = DiT(input_size=8, patch_size=2, in_chans=3, hidden_size=16, depth=1, num_heads=2)
    x = torch.randn(2, 3, 8, 8)
    g, p = 4, 2
    tokens = x.reshape(2, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(2, g * g, p * p * 3)
    assert torch.equal(dit.unpatchify(tokens), x)


def test_dit_b2_parameter_count_by_formula():
    with torch.device("meta"):
        dit = DiT(input_size=28, patch_size=2, in_chans=4, hidden_size=768, depth=12, num_heads=12)
    d = 768
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + (d * 6 * d + 6 * d)
    final = (d * 2 * d + 2 * d) + (d * 2 * 2 * 4 + 2 * 2 * 4)
    embed = 4 * 2 * 2 * d + d
    assert sum(p.numel() for p in dit.parameters()) == 12 * block + final + embed
