"""mernb.models._precision: autocast off inside fp32 regions, float32 arguments, autocast back outside."""

from __future__ import annotations

import torch
from torch import nn

from mernb.models._precision import fp32_forward, fp32_region, to_fp32


def test_fp32_region_turns_autocast_off_and_back_on():
    lin = nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16
        with fp32_region():
            assert not torch.is_autocast_enabled("cpu")
            assert lin(x).dtype == torch.float32
            torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)
        assert lin(x).dtype == torch.bfloat16  # restored


def test_to_fp32_and_decorator():
    nested = {"a": torch.ones(2, dtype=torch.bfloat16), "b": [torch.ones(1, dtype=torch.float16), 3],
              "c": (torch.ones(1, dtype=torch.int64),), "d": torch.ones(1, dtype=torch.float64)}
    out = to_fp32(nested)
    assert out["a"].dtype == out["b"][0].dtype == torch.float32 and out["b"][1] == 3
    assert out["c"][0].dtype == torch.int64 and out["d"].dtype == torch.float64  # ints and doubles untouched

    class Diff(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(16, 16)

        @fp32_forward
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.proj(a) - self.proj(b)

    torch.manual_seed(0)
    diff = Diff()
    a = torch.randn(3, 16)
    b = a + 1e-3 * torch.randn(3, 16)  # a difference of near-equal activations
    with torch.no_grad():
        exact = diff.proj(a) - diff.proj(b)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = diff(a, b=b)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, exact)
