"""Datasets: readers of the real releases, class protocols, clip preparation and SynthME."""

from mernb.data.records import Sample

__all__ = ["Sample"]
