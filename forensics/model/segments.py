"""Find where a run restarted or rewound, and cut it into segments.

Every resume diagnosis rests on this. Three kinds of evidence start a new segment:

- a new process lifetime: each event file is written by one process, so event files whose
  wall-time spans do not overlap belong to different lifetimes (files that overlap are several
  writers of one process, e.g. Keras' train/ and validation/);
- a rewind: the step of a tag goes backwards inside one file (a loop that reset its counter);
- a wall-time gap far longer than the usual logging interval (a job suspended and continued);
- a log line showing a restart (a banner printed again, "Resuming from ..."), when the only wall
  times are the logs' own (`log_restarts`): placed at the first timed row after the line, or, when
  no row after it is timed, by line and step order.

Text logs' times are on their own (zone-less) clock; `log_clock` has aligned them with the event
files' or dropped them before this runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from forensics.ingest.source import RunEvent
from forensics.model.log_clock import LOG_KIND
from forensics.model.log_restarts import LogRestart, log_restarts, place_by_line
from forensics.model.run import Segment, Source

# A gap starts a segment only when it is both long in absolute terms and huge relative to the
# usual interval: slow evaluation passes must not look like restarts.
GAP_MIN_SECONDS = 1800.0
GAP_MIN_RATIO = 50.0
# Boundaries closer than this are one event (several tags rewinding at the same moment).
SAME_EVENT_SECONDS = 60.0


@dataclass(frozen=True)
class _Boundary:
    wall_time: float
    kind: str
    reason: str
    sources: tuple[str, ...] = ()
    rewound_from_step: int | None = None


def assign_segments(metrics: dict[str, pd.DataFrame], sources: list[Source],
                    events: Sequence[RunEvent] = ()) -> list[Segment]:
    """Detect segments, write each row's segment index into `metrics` in place, return them.

    `events` are the run's log events: in a run without wall times, a log's restart banner or
    resume line is the only evidence of a restart (`log_restarts`).
    """
    boundaries = _lifetime_boundaries(sources) + _rewind_boundaries(metrics) + _gap_boundaries(metrics)
    restarts = log_restarts(metrics, list(events)) if _only_logs_timed(metrics, sources) else []
    restart_times = [_first_time_after(metrics, restart) for restart in restarts]
    by_line = bool(restarts) and any(np.isnan(wall_time) for wall_time in restart_times)
    if restarts and not by_line:  # a timed log: its restarts take their place among its gaps and rewinds
        boundaries += [_Boundary(wall_time, "restart", restart.reason, (restart.source,))
                       for restart, wall_time in zip(restarts, restart_times)]
    boundaries = _merge_close(sorted(boundaries, key=lambda boundary: boundary.wall_time))
    starts = np.array([boundary.wall_time for boundary in boundaries[1:]], dtype="float64")
    for frame in metrics.values():
        frame["segment"] = _segment_of(frame, starts)
    folders = _version_folders(metrics)
    if len(boundaries) == 1 and len(folders) > 1:
        boundaries = _split_by_folder(metrics, folders)
    elif by_line:
        # Some restart has no timed row after it: place every row by line and step order, as in a log
        # without timestamps (the restart lines are stronger evidence than the log's silences).
        for frame in metrics.values():
            frame["segment"] = 0
        place_by_line(metrics, restarts)
        boundaries = boundaries[:1] + [_Boundary(np.nan, "restart", restart.reason, (restart.source,))
                                       for restart in restarts]
    else:
        _place_untimed_rows(metrics, len(boundaries))
    segments = [_describe(index, boundary, metrics) for index, boundary in enumerate(boundaries)]
    return _note_step_rewinds(segments)


def _only_logs_timed(metrics: dict[str, pd.DataFrame], sources: list[Source]) -> bool:
    """True when no wall time comes from anything but text logs (or there are none at all): then a log's
    restart lines are evidence the wall times cannot contradict."""
    logs = {source.path for source in sources if source.kind == LOG_KIND}
    for frame in metrics.values():
        timed = frame.loc[frame["wall_time"].notna().to_numpy(), "source"]
        if len(timed) and not set(map(str, timed.unique())) <= logs:
            return False
    return True


def _first_time_after(metrics: dict[str, pd.DataFrame], restart: LogRestart) -> float:
    """The earliest wall time of the restart's log rows after its line; NaN when none is timed."""
    times = [frame.loc[((frame["source"] == restart.source) & (frame["record"] > restart.line)).to_numpy(),
                       "wall_time"].min() for frame in metrics.values() if len(frame)]
    times = [float(time) for time in times if not np.isnan(time)]
    return min(times) if times else np.nan


_VERSION_FOLDER = re.compile(r"(?:^|/)(version_(\d+))/")


def _version_folders(metrics: dict[str, pd.DataFrame]) -> list[str]:
    """Lightning `version_N/` folders holding untimed sources, in N order: each is one `fit()` call."""
    found = {}
    for frame in metrics.values():
        for source in frame["source"].cat.categories:
            match = _VERSION_FOLDER.search(str(source))
            if match:
                found[match.group(1)] = int(match.group(2))
    return sorted(found, key=found.get)


def _split_by_folder(metrics: dict[str, pd.DataFrame], folders: list[str]) -> list[_Boundary]:
    """Without wall times, several `version_N/` folders are several process lifetimes: one segment each."""
    index = {folder: position for position, folder in enumerate(folders)}
    for frame in metrics.values():
        codes = {source: index.get(_folder(str(source)), 0) for source in frame["source"].cat.categories}
        frame["segment"] = frame["source"].map(codes).astype("int64").to_numpy()
    return [_Boundary(-np.inf, "start" if position == 0 else "restart",
                      f"Lightning {folder}/ (a separate fit, no wall times to order it otherwise)")
            for position, folder in enumerate(folders)]


def _folder(source: str) -> str | None:
    match = _VERSION_FOLDER.search(source)
    return match.group(1) if match else None


def _note_step_rewinds(segments: list[Segment]) -> list[Segment]:
    """A restart whose first step is below where the previous segment ended rewound the step."""
    noted = segments[:1]
    for segment in segments[1:]:
        previous_end = noted[-1].end_step
        if (segment.rewound_from_step is None and segment.start_step is not None
                and previous_end is not None and segment.start_step < previous_end):
            segment = replace(segment, rewound_from_step=previous_end)
        noted.append(segment)
    return noted


def _lifetime_boundaries(sources: list[Source]) -> list[_Boundary]:
    """One boundary per process lifetime (group of event files with overlapping wall times)."""
    timed = sorted((source for source in sources if source.first_wall_time is not None),
                   key=lambda source: source.first_wall_time)
    boundaries: list[_Boundary] = []
    lifetime_end = -np.inf
    group: list[Source] = []
    for source in timed:
        if source.first_wall_time > lifetime_end and group:
            boundaries.append(_lifetime(group, first=not boundaries))
            group = []
        group.append(source)
        lifetime_end = max(lifetime_end, source.last_wall_time or source.first_wall_time)
    if group:
        boundaries.append(_lifetime(group, first=not boundaries))
    if not boundaries:
        boundaries.append(_Boundary(-np.inf, "start", "start of the run"))
    return boundaries


def _lifetime(group: list[Source], first: bool) -> _Boundary:
    names = tuple(source.path for source in group)
    pids = sorted({str(source.pid) for source in group if source.pid is not None})
    process = f" (pid {', '.join(pids)})" if pids else ""
    if first:
        return _Boundary(-np.inf, "start", f"first process{process} starts writing {', '.join(names)}", names)
    return _Boundary(group[0].first_wall_time, "restart",
                     f"new process{process} starts writing {', '.join(names)}", names)


def _rewind_boundaries(metrics: dict[str, pd.DataFrame]) -> list[_Boundary]:
    """A boundary wherever a tag's step goes backwards within one source."""
    boundaries = []
    for frame in metrics.values():
        if frame.empty or frame["wall_time"].isna().all():
            continue
        for (source, tag), rows in frame.groupby(["source", "tag"], observed=True, sort=False):
            steps = rows["step"].to_numpy()
            for position in np.flatnonzero(steps[1:] < steps[:-1]) + 1:
                wall_time = float(rows["wall_time"].iloc[position])
                if np.isnan(wall_time):
                    continue
                boundaries.append(_Boundary(
                    wall_time, "rewind",
                    f"{tag} in {source} goes back from step {int(steps[position - 1])} to {int(steps[position])}",
                    (str(source),), int(steps[position - 1])))
    return boundaries


def _gap_boundaries(metrics: dict[str, pd.DataFrame]) -> list[_Boundary]:
    """A boundary at every unusually long silence in the wall-time record."""
    times = [frame["wall_time"].to_numpy() for frame in metrics.values() if len(frame)]
    if not times:
        return []
    wall_times = np.unique(np.concatenate(times))
    wall_times = wall_times[np.isfinite(wall_times)]
    if len(wall_times) < 3:
        return []
    intervals = np.diff(wall_times)
    usual = float(np.median(intervals[intervals > 0])) if np.any(intervals > 0) else 0.0
    threshold = max(GAP_MIN_SECONDS, GAP_MIN_RATIO * usual)
    return [_Boundary(float(wall_times[index + 1]), "gap",
                      f"nothing logged for {intervals[index]:.0f} s (usual interval {usual:.1f} s)")
            for index in np.flatnonzero(intervals > threshold)]


def _merge_close(boundaries: list[_Boundary]) -> list[_Boundary]:
    """Keep one boundary per moment; a process start outranks a rewind or gap at the same time."""
    rank = {"start": 0, "restart": 1, "rewind": 2, "gap": 3}
    merged: list[_Boundary] = []
    for boundary in boundaries:
        if merged and boundary.wall_time - merged[-1].wall_time <= SAME_EVENT_SECONDS:
            previous = merged[-1]
            keep = previous if rank[previous.kind] <= rank[boundary.kind] else boundary
            rewound = previous.rewound_from_step if previous.rewound_from_step is not None else boundary.rewound_from_step
            reason = keep.reason if keep.reason == boundary.reason else f"{previous.reason}; {boundary.reason}"
            merged[-1] = _Boundary(previous.wall_time, keep.kind, reason,
                                   tuple(dict.fromkeys(previous.sources + boundary.sources)), rewound)
        else:
            merged.append(boundary)
    if merged and merged[0].kind != "start":
        merged.insert(0, _Boundary(-np.inf, "start", "start of the run"))
    return merged


def _segment_of(frame: pd.DataFrame, starts: np.ndarray) -> np.ndarray:
    """Segment index of each row from its wall time; rows without one start in segment 0 (see
    `_place_untimed_rows`)."""
    wall_times = frame["wall_time"].to_numpy()
    segment = np.searchsorted(starts, wall_times, side="right").astype("int64")
    untimed = np.isnan(wall_times)
    if untimed.any():
        segment[untimed] = 0
    return segment


def _place_untimed_rows(metrics: dict[str, pd.DataFrame], count: int) -> None:
    """Give rows without wall times (text logs, tables) the segment their step and order point to.

    Each (source, tag) is walked in file order with a pointer that only moves forward: a row stays
    in the current segment while its step lies in that segment's step range (taken from timed rows)
    and moves to the next segment holding its step when the step leaves the range or goes back (a
    log appended to by a restarted process).
    """
    if count <= 1:
        return
    ranges = _timed_step_ranges(metrics, count)
    for frame in metrics.values():
        untimed = np.flatnonzero(frame["wall_time"].isna().to_numpy())
        if not len(untimed):
            continue
        segment = frame["segment"].to_numpy().copy()
        steps = frame["step"].to_numpy()
        keys = list(zip(frame["source"].cat.codes.to_numpy()[untimed], frame["tag"].cat.codes.to_numpy()[untimed]))
        state: dict[tuple, tuple[int, int | None]] = {}
        for position, key in zip(untimed, keys):
            current, previous = state.get(key, (0, None))
            step = int(steps[position])
            if (previous is not None and step < previous) or not _holds(ranges[current], step):
                later = next((k for k in range(current + 1, count) if _holds(ranges[k], step)), None)
                current = later if later is not None else current
            segment[position] = current
            state[key] = (current, step)
        frame["segment"] = segment


def _timed_step_ranges(metrics: dict[str, pd.DataFrame], count: int) -> list[tuple[int, int] | None]:
    lows, highs = [None] * count, [None] * count
    for frame in metrics.values():
        timed = frame[frame["wall_time"].notna()]
        for index, steps in timed.groupby("segment")["step"]:
            if 0 <= index < count:
                low, high = int(steps.min()), int(steps.max())
                lows[index] = low if lows[index] is None else min(lows[index], low)
                highs[index] = high if highs[index] is None else max(highs[index], high)
    return [None if low is None else (low, high) for low, high in zip(lows, highs)]


def _holds(step_range: tuple[int, int] | None, step: int) -> bool:
    return step_range is not None and step_range[0] <= step <= step_range[1]


def _describe(index: int, boundary: _Boundary, metrics: dict[str, pd.DataFrame]) -> Segment:
    steps, walls = [], []
    for frame in metrics.values():
        rows = frame[frame["segment"] == index]
        if len(rows):
            steps += [int(rows["step"].min()), int(rows["step"].max())]
            finite = rows["wall_time"].dropna()
            if len(finite):
                walls += [float(finite.min()), float(finite.max())]
    return Segment(
        index=index, kind=boundary.kind, reason=boundary.reason,
        start_step=min(steps) if steps else None, end_step=max(steps) if steps else None,
        start_wall_time=min(walls) if walls else None, end_wall_time=max(walls) if walls else None,
        sources=boundary.sources, rewound_from_step=boundary.rewound_from_step)
