"""The run model: one training run as the checks see it.

Per canonical metric one DataFrame with a row per logged value, in the order the values were
logged (never sorted, never deduplicated: a rewound step is evidence). Columns:

- `step`: the step the logger attached to the value
- `value`: float64, NaN/inf kept
- `wall_time`: seconds since the epoch, NaN when the source has none
- `source`: display path of the file it came from (categorical)
- `tag`: the name it was logged under (categorical)
- `group`: param-group index (0 unless the tag names another)
- `record`: position in the source (TFRecord index, log line number) for evidence locators
- `segment`: index into `Run.segments`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from forensics.ingest.checkpoint import Checkpoint
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import RunEvent

if TYPE_CHECKING:
    from forensics.model.stated import StatedFacts
    from forensics.schedule.intended import IntendedSchedule

SERIES_COLUMNS = ("step", "value", "wall_time", "source", "tag", "group", "record", "segment")
# A 1M-step run holds some 16M rows: small integer columns keep its frames in memory at 38 bytes a row.
GROUP_DTYPE = "int16"     # param group index
SEGMENT_DTYPE = "int32"   # segment (process lifetime or rewind) index


@dataclass(frozen=True)
class Source:
    """One file (or checkpoint folder) found in the run and what became of it."""

    path: str
    kind: str
    status: str          # "read", "partial" (read with problems), "failed", "not_read"
    records: int         # values or records taken from it
    size_bytes: int
    detail: str          # one line: what was read, or why it was not
    problems: tuple[InputProblem, ...] = ()
    # Process identity for event files: one event file is one writer in one process lifetime.
    host: str | None = None
    pid: int | None = None
    first_wall_time: float | None = None
    last_wall_time: float | None = None
    coverage: dict | None = None  # text sources: lines seen / recognised / ignored, samples


@dataclass(frozen=True)
class Segment:
    """A stretch of training between two restarts or rewinds."""

    index: int
    kind: str                  # "start", "restart", "rewind", "gap"
    reason: str                # why a new segment begins here, in words
    start_step: int | None
    end_step: int | None
    start_wall_time: float | None
    end_wall_time: float | None
    sources: tuple[str, ...]
    rewound_from_step: int | None = None


@dataclass
class Run:
    """Everything read from one run directory."""

    name: str
    path: str
    sources: list[Source] = field(default_factory=list)
    metrics: dict[str, pd.DataFrame] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    # Parsed configs and metadata pickles (HF training_args.bin), by display path: stated intent.
    configs: dict[str, dict] = field(default_factory=dict)
    # Moments that are evidence by themselves (warnings, tracebacks, restart banners), in source order.
    events: list[RunEvent] = field(default_factory=list)
    # The schedule the run was meant to follow, set by analyze() (forensics.schedule.resolve_intended)
    # after the run is built; None when no source states one and none could be inferred.
    intended_schedule: IntendedSchedule | None = None
    # What the run's own files state (horizons, accumulation, warmup, scheduler...), each fact with its
    # file and key/line: forensics.model.stated. Collected on first use, once the run is built.
    stated_facts: StatedFacts | None = field(default=None, repr=False)

    @property
    def stated(self) -> StatedFacts:
        """The run's stated facts (`forensics.model.stated.collect`), collected once."""
        if self.stated_facts is None:
            from forensics.model.stated import collect  # stated reads the model; the model does not need it to load
            self.stated_facts = collect(self)
        return self.stated_facts

    @property
    def problems(self) -> list[InputProblem]:
        """Every input problem from every source, in source order."""
        return [problem for source in self.sources for problem in source.problems]

    def series(self, name: str, group: int | None = None) -> pd.DataFrame:
        """Rows of one canonical metric (optionally one param group); empty frame when absent."""
        frame = self.metrics.get(name)
        if frame is None:
            return empty_series()
        if group is not None:
            wanted = frame["group"].to_numpy() == group
            if not wanted.all():  # one param group is the usual case: no million-row copy for it
                frame = frame[wanted]
        return frame

    def source(self, path: str) -> Source | None:
        """The source with this display path."""
        return next((source for source in self.sources if source.path == path), None)

    @property
    def step_range(self) -> tuple[int, int] | None:
        """First and last step seen in any metric."""
        firsts = [int(frame["step"].min()) for frame in self.metrics.values() if len(frame)]
        lasts = [int(frame["step"].max()) for frame in self.metrics.values() if len(frame)]
        return (min(firsts), max(lasts)) if firsts else None


def empty_series() -> pd.DataFrame:
    """A metric frame with no rows and the standard columns and dtypes."""
    return pd.DataFrame({
        "step": pd.Series(dtype="int64"),
        "value": pd.Series(dtype="float64"),
        "wall_time": pd.Series(dtype="float64"),
        "source": pd.Series(dtype="category"),
        "tag": pd.Series(dtype="category"),
        "group": pd.Series(dtype=GROUP_DTYPE),
        "record": pd.Series(dtype="int64"),
        "segment": pd.Series(dtype=SEGMENT_DTYPE),
    })
