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
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from forensics.ingest.source import RunEvent
from forensics.ingest.tensorboard import event_file_name
from forensics.model.aliases import is_bookkeeping
from forensics.model.log_clock import LOG_KIND
from forensics.model.log_restarts import LogRestart, log_restarts, place_by_line, place_untimed_rows, untimed_rewinds
from forensics.model.run import SEGMENT_DTYPE, Segment, Source

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
    lifetime: bool = False            # the start of a process lifetime (its event files are `sources`)
    silence_from: float | None = None  # gaps: the last wall time before the silence


def assign_segments(metrics: dict[str, pd.DataFrame], sources: list[Source],
                    events: Sequence[RunEvent] = ()) -> list[Segment]:
    """Detect segments, write each row's segment index into `metrics` in place, return them.

    `events` are the run's log events: in a run without wall times, a log's restart banner or
    resume line is the only evidence of a restart (`log_restarts`). Every segment returned holds
    rows: a boundary that would leave a stretch without any logged value is folded into its
    neighbour, so every process lifetime is a segment with a real step range.
    """
    row_times = _row_times(metrics)
    lifetimes = _lifetime_boundaries(sources, _tags_by_source(metrics))
    within = _rewind_boundaries(metrics) + _gap_boundaries(row_times, lifetimes)
    restarts = log_restarts(metrics, list(events)) if _only_logs_timed(metrics, sources) else []
    restart_times = [_first_time_after(metrics, restart) for restart in restarts]
    by_line = bool(restarts) and any(np.isnan(wall_time) for wall_time in restart_times)
    if restarts and not by_line:  # a timed log: its restarts take their place among its gaps and rewinds
        within += [_Boundary(wall_time, "restart", restart.reason, (restart.source,))
                   for restart, wall_time in zip(restarts, restart_times)]
    boundaries = _merge_close(lifetimes, within, row_times)
    starts = np.array([boundary.wall_time for boundary in boundaries[1:]], dtype="float64")
    owners = _lifetime_segments(boundaries)
    for frame in metrics.values():
        frame["segment"] = _segment_of(frame, starts, owners)
    folders = _version_folders(metrics)
    split = len(boundaries) == 1 and len(folders) > 1
    if split:
        boundaries = _split_by_folder(metrics, folders)
    elif not restarts and len(boundaries) == 1 and not row_times.size:
        restarts = untimed_rewinds(metrics)  # no clock at all: a counter going back is the only sign
        by_line = bool(restarts)
    if by_line:
        # Some restart has no timed row after it: place every row by line and step order, as in a log
        # without timestamps (the restart lines are stronger evidence than the log's silences).
        for frame in metrics.values():
            frame["segment"] = np.zeros(len(frame), dtype=SEGMENT_DTYPE)
        place_by_line(metrics, restarts)
        boundaries = boundaries[:1] + [_Boundary(np.nan, restart.kind, restart.reason, (restart.source,),
                                                 restart.rewound_from_step) for restart in restarts]
    elif not split:
        place_untimed_rows(metrics, len(boundaries))
    boundaries = _drop_empty(metrics, boundaries)
    segments = [_describe(index, boundary, metrics) for index, boundary in enumerate(boundaries)]
    return _note_step_rewinds(segments)


def _row_times(metrics: dict[str, pd.DataFrame]) -> np.ndarray:
    """Every finite wall time of any row, sorted."""
    times = [wall_times[np.isfinite(wall_times)] for wall_times in
             (frame["wall_time"].to_numpy() for frame in metrics.values() if len(frame))]
    return np.unique(np.concatenate(times)) if times else np.zeros(0)


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
        frame["segment"] = frame["source"].map(codes).astype(SEGMENT_DTYPE).to_numpy()
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


def _tags_by_source(metrics: dict[str, pd.DataFrame]) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for frame in metrics.values():
        for source, tag, _ in _source_tag_rows(frame):
            tags.setdefault(source, set()).add(tag)
    return tags


def _source_tag_rows(frame: pd.DataFrame) -> list[tuple[str, str, np.ndarray | slice]]:
    """(source, tag, positions of its rows in order) for every source and tag in the frame.

    The build writes each source's rows as one block, so the usual answer is a few slices found in one
    pass; rows interleaved some other way are grouped by a stable sort. A groupby would copy every group.
    """
    if frame.empty:
        return []
    sources, tags = frame["source"].cat, frame["tag"].cat
    pair = sources.codes.to_numpy().astype(np.int64) * (len(tags.categories) + 1) + tags.codes.to_numpy()
    starts = np.concatenate(([0], np.flatnonzero(pair[1:] != pair[:-1]) + 1))
    bounds = list(zip(starts.tolist(), starts[1:].tolist() + [len(pair)]))
    if len(np.unique(pair[starts])) == len(starts):  # every pair is one block
        return [(str(sources.categories[pair[start] // (len(tags.categories) + 1)]),
                 str(tags.categories[pair[start] % (len(tags.categories) + 1)]), slice(start, end))
                for start, end in bounds]
    order = np.argsort(pair, kind="stable")
    firsts = np.concatenate(([0], np.flatnonzero(np.diff(pair[order])) + 1))
    groups = sorted(zip(firsts.tolist(), firsts[1:].tolist() + [len(order)]), key=lambda group: order[group[0]])
    return [(str(sources.categories[pair[order[first]] // (len(tags.categories) + 1)]),
             str(tags.categories[pair[order[first]] % (len(tags.categories) + 1)]), order[first:end])
            for first, end in groups]  # in order of first appearance, as groupby(sort=False) gives them


def _lifetime_boundaries(sources: list[Source], tags: dict[str, set[str]] | None = None) -> list[_Boundary]:
    """One boundary per process lifetime: the event files one process wrote.

    Each event file is written by one writer of one process. A file belongs to the process of the
    files before it when their wall-time spans overlap (several writers at once, e.g. Keras' train/
    and validation/), or when its name shows the same host and pid with a later writer ordinal and it
    logs none of their tags (the same process opened another writer for other values, e.g.
    `add_hparams`' sub-folder; a writer logging the same tags again is a new fit). Anything else is a
    new process, even when it continues the step count.
    """
    timed = sorted((source for source in sources if source.first_wall_time is not None),
                   key=lambda source: source.first_wall_time)
    boundaries: list[_Boundary] = []
    lifetime_end = -np.inf
    group: list[Source] = []
    for source in timed:
        if group and source.first_wall_time > lifetime_end and not _same_process(group, source, tags or {}):
            boundaries.append(_lifetime(group, first=not boundaries))
            group = []
        group.append(source)
        lifetime_end = max(lifetime_end, source.last_wall_time or source.first_wall_time)
    if group:
        boundaries.append(_lifetime(group, first=not boundaries))
    if not boundaries:
        boundaries.append(_Boundary(-np.inf, "start", "start of the run"))
    return boundaries


def _same_process(group: list[Source], source: Source, tags: dict[str, set[str]]) -> bool:
    """The file's name says its writer was opened later by the process that wrote a file of `group`,
    for values of other tags."""
    identity = event_file_name(PurePosixPath(source.path).name)
    if identity is None:
        return False
    if any(tags.get(source.path, set()) & tags.get(member.path, set()) for member in group):
        return False
    for member in group:
        known = event_file_name(PurePosixPath(member.path).name)
        if (known is not None and (known.host, known.pid) == (identity.host, identity.pid)
                and known.writer < identity.writer):
            return True
    return False


def _lifetime(group: list[Source], first: bool) -> _Boundary:
    names = tuple(source.path for source in group)
    pids = sorted({str(source.pid) for source in group if source.pid is not None})
    process = f" (pid {', '.join(pids)})" if pids else ""
    if first:
        return _Boundary(-np.inf, "start", f"first process{process} starts writing {', '.join(names)}", names,
                         lifetime=True)
    return _Boundary(group[0].first_wall_time, "restart",
                     f"new process{process} starts writing {', '.join(names)}", names, lifetime=True)


def _rewind_boundaries(metrics: dict[str, pd.DataFrame]) -> list[_Boundary]:
    """A boundary wherever a tag's step goes backwards within one source."""
    boundaries = []
    for frame in metrics.values():
        if frame.empty or frame["wall_time"].isna().all():
            continue
        all_steps, all_wall_times = frame["step"].to_numpy(), frame["wall_time"].to_numpy()
        for source, tag, rows in _source_tag_rows(frame):
            steps, wall_times = all_steps[rows], all_wall_times[rows]
            for position in np.flatnonzero(steps[1:] < steps[:-1]) + 1:
                wall_time = float(wall_times[position])
                if np.isnan(wall_time):
                    continue
                boundaries.append(_Boundary(
                    wall_time, "rewind",
                    f"{tag} in {source} goes back from step {int(steps[position - 1])} to {int(steps[position])}",
                    (source,), int(steps[position - 1])))
    return boundaries


def _gap_boundaries(wall_times: np.ndarray, lifetimes: list[_Boundary]) -> list[_Boundary]:
    """A boundary at every unusually long silence in the wall-time record (`_row_times`), unless a new
    process started during it (the silence is the time between two lifetimes, already a boundary)."""
    if len(wall_times) < 3:
        return []
    intervals = np.diff(wall_times)
    usual = float(np.median(intervals[intervals > 0])) if np.any(intervals > 0) else 0.0
    threshold = max(GAP_MIN_SECONDS, GAP_MIN_RATIO * usual)
    starts = [boundary.wall_time for boundary in lifetimes[1:]]
    return [_Boundary(float(wall_times[index + 1]), "gap",
                      f"nothing logged for {intervals[index]:.0f} s (usual interval {usual:.1f} s)",
                      silence_from=float(wall_times[index]))
            for index in np.flatnonzero(intervals > threshold)
            if not any(wall_times[index] < start <= wall_times[index + 1] for start in starts)]


def _merge_close(lifetimes: list[_Boundary], within: list[_Boundary], row_times: np.ndarray) -> list[_Boundary]:
    """Process starts, plus the rewinds, gaps and log restarts that are separate moments.

    Two process starts are never merged (two processes are two segments, however quickly one followed
    the other). Any other boundary joins the boundary before it when it comes within SAME_EVENT_SECONDS
    of it or when no row was logged between the two (a process that spent minutes loading before its
    first value, several tags rewinding at once): a process start keeps its kind.
    """
    rank = {"start": 0, "restart": 1, "rewind": 2, "gap": 3}
    merged: list[_Boundary] = []
    for boundary in sorted(lifetimes + within, key=lambda b: (b.wall_time, not b.lifetime)):
        previous = merged[-1] if merged else None
        if previous is not None and not boundary.lifetime and (
                boundary.wall_time - previous.wall_time <= SAME_EVENT_SECONDS
                or not _rows_between(row_times, previous.wall_time, boundary.wall_time)):
            keep = previous if previous.lifetime or rank[previous.kind] <= rank[boundary.kind] else boundary
            rewound = previous.rewound_from_step if previous.rewound_from_step is not None else boundary.rewound_from_step
            reason = keep.reason if keep.reason == boundary.reason else f"{previous.reason}; {boundary.reason}"
            merged[-1] = replace(previous, kind=keep.kind, reason=reason, rewound_from_step=rewound,
                                 sources=tuple(dict.fromkeys(previous.sources + boundary.sources)))
        else:
            merged.append(boundary)
    if merged and merged[0].kind != "start":
        merged.insert(0, _Boundary(-np.inf, "start", "start of the run"))
    return merged


def _rows_between(row_times: np.ndarray, earlier: float, later: float) -> bool:
    """Some row was logged at or after `earlier` and before `later`."""
    if not np.isfinite(earlier):
        return bool(np.any(row_times < later))
    first = np.searchsorted(row_times, earlier, side="left")
    return first < len(row_times) and row_times[first] < later


def _lifetime_segments(boundaries: list[_Boundary]) -> dict[str, tuple[int, int]]:
    """For every event file, the first and last segment of the process that wrote it."""
    owners: dict[str, tuple[int, int]] = {}
    starts = [index for index, boundary in enumerate(boundaries) if boundary.lifetime] + [len(boundaries)]
    for first, following in zip(starts, starts[1:]):
        for path in boundaries[first].sources:
            owners.setdefault(path, (first, following - 1))
    return owners


def _drop_empty(metrics: dict[str, pd.DataFrame], boundaries: list[_Boundary]) -> list[_Boundary]:
    """Fold boundaries that got no rows into the next segment (a process that wrote only a
    file_version record, a rewind no row follows): a segment always has a step range."""
    if len(boundaries) == 1:
        return boundaries
    used = np.zeros(len(boundaries), bool)
    for frame in metrics.values():
        codes = frame["segment"].to_numpy()
        used |= np.bincount(codes[(codes >= 0) & (codes < len(boundaries))], minlength=len(boundaries)) > 0
    if used.all() or not used.any():
        return boundaries
    kept = [index for index in range(len(boundaries)) if used[index]]
    remap = np.searchsorted(np.array(kept), np.arange(len(boundaries)), side="left").clip(0, len(kept) - 1)
    for frame in metrics.values():
        frame["segment"] = remap.astype(SEGMENT_DTYPE)[frame["segment"].to_numpy()]
    result = [boundaries[index] for index in kept]
    if result[0].kind != "start":
        result[0] = replace(result[0], kind="start", wall_time=-np.inf)
    return result


def _segment_of(frame: pd.DataFrame, starts: np.ndarray, owners: dict[str, tuple[int, int]]) -> np.ndarray:
    """Segment index of each row from its wall time; rows without one start in segment 0 (see
    `log_restarts.place_untimed_rows`). An event file's rows stay within the segments of the process that wrote
    the file, whatever their wall times say (a file_version record stamped after the values, a clock
    passed to add_scalar)."""
    wall_times = frame["wall_time"].to_numpy()
    segment = np.searchsorted(starts, wall_times, side="right").astype(SEGMENT_DTYPE)
    untimed = np.isnan(wall_times)
    if untimed.any():
        segment[untimed] = 0
    if owners and len(frame):
        codes = frame["source"].cat.codes.to_numpy()
        for code, source in enumerate(frame["source"].cat.categories):
            span = owners.get(str(source))
            if span is not None:
                mine = (codes == code) & ~untimed
                segment[mine] = segment[mine].clip(*span)
    return segment


def _describe(index: int, boundary: _Boundary, metrics: dict[str, pd.DataFrame]) -> Segment:
    steps, walls = [], []
    for name, frame in metrics.items():
        if is_bookkeeping(name):
            continue
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
