"""The one record every dataset reader produces and every later stage consumes.

Used by the readers, protocols, clips, SynthME, the LOSO runner and every notebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Label the LOSO runner gives held-out samples while a model is fitted (datasets map it to index -1).
HIDDEN_LABEL = "<hidden>"


def make_sample_id(dataset: str, subject: str, clip: str, onset: int | None) -> str:
    """``dataset/subject/clip/onset``: unique even when several MEs share one video (CAS(ME)^3)."""
    return f"{dataset}/{subject}/{clip}/{'na' if onset is None else onset}"


@dataclass(frozen=True)
class Sample:
    """One expression clip as annotated in a release.

    Frame numbers are the release's own (absolute, as in the file names). ``apex`` is None when the
    annotation has no usable apex (``/``, -1, 0 or outside [onset, offset]); ``apex_frame`` then falls
    back to the middle frame, and ``meta['apex_fallback']`` says why. ``label`` is the release's
    emotion in lower case (``others`` for SAMM's ``Other``); protocols map it to their classes.
    ``frame_paths``/``frame_numbers`` list the frames found on disk from onset to offset (empty when a
    reader ran on an annotation file alone).
    """

    dataset: str
    subject: str
    clip: str
    onset: int | None
    apex: int | None
    offset: int | None
    label: str
    aus: tuple[str, ...] = ()
    fps: float = 0.0
    frame_paths: tuple[Path, ...] = ()
    frame_numbers: tuple[int, ...] = ()
    sample_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.sample_id:
            object.__setattr__(self, "sample_id", make_sample_id(self.dataset, self.subject, self.clip, self.onset))

    @property
    def subject_key(self) -> str:
        """Subject id unique across datasets (``casme2/sub01``): the LOSO grouping key in composites."""
        return f"{self.dataset}/{self.subject}"

    @property
    def apex_frame(self) -> int | None:
        """Annotated apex, or the middle of [onset, offset] when the apex is missing."""
        if self.apex is not None:
            return self.apex
        if self.onset is not None and self.offset is not None:
            return (self.onset + self.offset) // 2
        return None

    @property
    def n_frames(self) -> int | None:
        """Annotated length onset..offset inclusive (None when either end is unknown)."""
        if self.onset is None or self.offset is None:
            return None
        return self.offset - self.onset + 1
