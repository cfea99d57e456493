"""What every reader returns: one `SourceRead` per file, in the same shape whatever the format.

The model builder only ever sees this type, so a new format is one reader function plus one line in
`forensics.ingest.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from forensics.ingest.problems import InputProblem

if TYPE_CHECKING:  # only a type here: reading a log or an event file does not import torch (4 s)
    from forensics.ingest.checkpoint import Checkpoint


@dataclass(frozen=True)
class TaggedSeries:
    """All values one source logged under one name, in the order they were logged.

    `records` locates each value in the source: the TFRecord ordinal of the tag in an event file,
    the 1-based line number in a text log, the row number in a table. `context` is extra naming
    context (the event file's folder, a log's rank) used when mapping the tag to a metric.
    """

    tag: str
    steps: np.ndarray        # int64
    values: np.ndarray       # float64, NaN/inf kept
    wall_times: np.ndarray   # float64, NaN where the source has no time
    records: np.ndarray      # int64
    context: str = ""
    step_basis: str = "logged"  # how the step axis was obtained when the source had none


@dataclass(frozen=True)
class RunEvent:
    """A moment in a source that is evidence by itself: a warning, an error, a restart banner...

    `text` is the source line (already capped in length), kept so a report can quote it after the
    run directory is gone.
    """

    kind: str                  # e.g. "scheduler_order_warning", "onecycle_overrun", "traceback", "resume"
    source: str
    line: int | None
    step: int | None
    wall_time: float | None
    text: str
    data: dict = field(default_factory=dict)


@dataclass
class SourceRead:
    """One source after reading: what came out of it and what could not be read."""

    path: str
    kind: str
    size_bytes: int
    readable: bool                     # False when nothing at all could be taken from it
    records: int                       # values or records taken from it
    detail: str                        # one line for the sources table
    problems: list[InputProblem] = field(default_factory=list)
    series: list[TaggedSeries] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    config: dict | None = None         # parsed config or metadata: stated intent
    checkpoint: Checkpoint | None = None
    # Process identity, for event files (one file = one writer in one process lifetime).
    host: str | None = None
    pid: int | None = None
    first_wall_time: float | None = None
    last_wall_time: float | None = None
    coverage: dict | None = None       # text sources: lines seen / recognised / ignored, samples

    @property
    def status(self) -> str:
        """`read`, `partial` (read with problems) or `failed`."""
        if not self.readable:
            return "failed"
        return "partial" if self.problems else "read"
