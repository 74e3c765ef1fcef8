"""Value tests of mernb.experiments found by mutation testing (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from mernb.errors import MernbError
from mernb.experiments.ma2mi import draw_pairs


def test_draw_pairs_names_the_bad_interval():
    with pytest.raises(MernbError, match=r"k_range must be 1 <= lo <= hi, got \(3, 2\)"):
        draw_pairs([5], (3, 2), np.random.default_rng(0))
