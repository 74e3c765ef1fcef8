"""mernb: reproducible notebooks for micro-expression recognition (MPT, HLoRA-MER, MA2MI).

The package is the thin, hand-written layer the notebooks call:
data (readers, protocols, clips, SynthME) → motion → models → train (LOSO) → report.
"""

import os as _os

# Never reach a model hub at run time: weights come from local files named in the user config.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
