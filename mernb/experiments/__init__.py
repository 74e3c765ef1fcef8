"""Experiment recipes the notebooks call: prepare a protocol's data, build an experiment, run a table row.

``common`` holds what every paper notebook shares (locate + read + protocol + cached clips, and the
train-or-load LOSO row); one module per method holds its recipe (``mpt``, with the dynamic-image ViT
baselines of MPT Table VI; ``hlora``); ``baselines`` holds the SynthME difference baseline.
"""
