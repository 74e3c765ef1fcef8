"""Experiment recipes the notebooks call: prepare a protocol's data, build an experiment, run a table row.

``common`` holds what every paper notebook shares (locate + read + protocol + cached clips, and the
train-or-load LOSO row); one module per method family holds its recipe (``dynamic_image`` for the
rank-pooled ViT baselines of MPT Table VI).
"""
