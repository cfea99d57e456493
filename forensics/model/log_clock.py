"""Put a text log's wall times on the event files' clock, or keep them out of it.

A log's timestamps are printed in the machine's local time with no zone (`timestamps.NO_ZONE`); an
event file's wall times are UTC epoch seconds. Mixed naively, a log from a UTC+2 machine sits two
hours after the event files and would read as a silence or a new process. So, in a run that has
timed rows from other sources, each timed log is either

- aligned: shifted by the constant offset between its times and theirs, estimated as the median
  difference over the steps both logged (the offsets must agree to within ALIGN_TOLERANCE_SECONDS);
- or, when no steps are shared or the offsets disagree, left out: its wall times are dropped and its
  rows are placed by step order as in a log without timestamps.

Either way the log's source detail says which. A log-only run keeps its times as printed: only
differences between them matter there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from forensics.model.run import Source

LOG_KIND = "log"
ALIGN_TOLERANCE_SECONDS = 120.0


def align_log_clocks(metrics: dict[str, pd.DataFrame], sources: list[Source]) -> list[Source]:
    """Align (or drop) the wall times of timed logs in `metrics` in place; the sources with notes added."""
    logs = {source.path for source in sources if source.kind == LOG_KIND}
    if not logs:
        return sources
    own_times = {path: _times_by_step(metrics, lambda source, path=path: source == path) for path in sorted(logs)}
    own_times = {path: own for path, own in own_times.items() if not own.empty}
    if not own_times:
        return sources  # no log prints times: nothing to align (and no need for the reference's medians)
    reference = _times_by_step(metrics, lambda source: source not in logs)
    if reference.empty:
        return sources  # a log-only run: the printed times are the only clock
    notes = {}
    for path, own in own_times.items():
        shared = pd.concat([reference.rename("reference"), own.rename("log")], axis=1, join="inner")
        offsets = (shared["reference"] - shared["log"]).to_numpy()
        offset = float(np.median(offsets)) if len(offsets) else np.nan
        if len(offsets) and float(np.median(np.abs(offsets - offset))) <= ALIGN_TOLERANCE_SECONDS:
            _shift(metrics, path, offset)
            notes[path] = (f"log clock shifted by {offset:+.0f} s ({offset / 3600:+.2f} h, the machine's time zone "
                           f"or clock offset) to match the timed event files, estimated from {len(offsets)} "
                           f"step(s) logged in both")
        else:
            _shift(metrics, path, np.nan)
            why = "no step logged in both" if not len(offsets) else "the offsets at shared steps disagree"
            notes[path] = (f"log wall times not used ({why}, so its local clock cannot be aligned with the "
                           f"event files' UTC times); its rows are placed by step order")
    return [replace(source, detail=f"{source.detail}; {notes[source.path]}") if source.path in notes else source
            for source in sources]


def _times_by_step(metrics: dict[str, pd.DataFrame], wanted) -> pd.Series:
    """Median wall time per step over the timed rows of the wanted sources."""
    parts = []
    for frame in metrics.values():
        if frame.empty:
            continue
        by_category = np.array([bool(wanted(str(source))) for source in frame["source"].cat.categories])
        chosen = by_category[frame["source"].cat.codes.to_numpy()]
        rows = frame.loc[chosen & frame["wall_time"].notna().to_numpy(), ["step", "wall_time"]]
        if len(rows):
            parts.append(rows)
    if not parts:
        return pd.Series(dtype="float64")
    return pd.concat(parts).groupby("step")["wall_time"].median()


def _shift(metrics: dict[str, pd.DataFrame], path: str, offset: float) -> None:
    for frame in metrics.values():
        mine = (frame["source"] == path).to_numpy()
        if mine.any():
            wall_times = frame["wall_time"].to_numpy().copy()
            wall_times[mine] = wall_times[mine] + offset
            frame["wall_time"] = wall_times
