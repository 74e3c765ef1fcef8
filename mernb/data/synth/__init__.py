"""SynthME: synthetic micro-expression clips in the real releases' layouts (the embedded default data).

``generate(dataset, out_dir, ...)`` renders frames and the annotation file of CASME II, SAMM, SMIC-HS,
CAS(ME)^3 Part A, MMEW or a DFEW-, FERV39K- or AFEW-like macro set, readable by :mod:`mernb.data.readers` unchanged;
``preview_figure`` shows onset, apex and their amplified difference.
"""

from mernb.data.synth.core import DATASETS, SynthInfo, default_fixtures_dir, generate
from mernb.data.synth.preview import preview_figure

__all__ = ["DATASETS", "SynthInfo", "default_fixtures_dir", "generate", "preview_figure"]
