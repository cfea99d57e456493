"""Restarts that only a text log shows: a start-up banner printed again, or a "Resuming from ..." line.

A run whose metrics come only from text logs has no wall times, so `segments` cannot see process
lifetimes. But a restarted script that appends to the same log prints its banner again (event
`restart`) and usually says what it resumed from (event `resume`). Such a line starts a new
segment when training rows of one series are logged both before and after it in the same file: a
"Restoring states from ..." printed before a test pass after training, or a checkpoint loaded
before the first step, is not a restart of this run. Lines with no metric row between them are one
restart (the banner, then the resume line).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.ingest.source import RunEvent

RESTART_KINDS = ("restart", "resume")


@dataclass(frozen=True)
class LogRestart:
    """One restart seen in a log: the file, the first line that shows it, and why it counts."""

    source: str
    line: int
    reason: str
    kind: str = "restart"               # "rewind" when only a counter going back shows it
    rewound_from_step: int | None = None


def log_restarts(metrics: dict[str, pd.DataFrame], events: list[RunEvent]) -> list[LogRestart]:
    """The restarts of the one log that shows them (the one with the most metric rows, if several)."""
    found: dict[str, list[LogRestart]] = {}
    for source in dict.fromkeys(event.source for event in events if event.kind in RESTART_KINDS):
        lines = _lines_by_tag(metrics, source)
        if lines:
            restarts = _restarts_in(source, [e for e in events if e.source == source and e.kind in RESTART_KINDS], lines)
            if restarts:
                found[source] = restarts
    if not found:
        return []
    busiest = max(found, key=lambda source: sum(len(lines) for lines in _lines_by_tag(metrics, source).values()))
    return found[busiest]


def untimed_rewinds(metrics: dict[str, pd.DataFrame]) -> list[LogRestart]:
    """Rewinds of the busiest source in a run without wall times or restart lines: wherever a series'
    step goes back in file order. Rewinds of several series with no row of the source between them
    are one. `line` is the record before the first rewound row, so `place_by_line` starts the new
    segment at that row."""
    counts: dict[str, int] = {}
    for frame in metrics.values():
        for source, rows in frame.groupby("source", observed=True):
            counts[str(source)] = counts.get(str(source), 0) + len(rows)
    if not counts:
        return []
    source = max(counts, key=counts.get)
    found: dict[int, tuple[int, int, str]] = {}
    for frame in metrics.values():
        for tag, rows in frame[frame["source"] == source].groupby("tag", observed=True):
            rows = rows.sort_values("record", kind="stable")
            steps, records = rows["step"].to_numpy(), rows["record"].to_numpy()
            for position in np.flatnonzero(steps[1:] < steps[:-1]) + 1:
                line = int(records[position]) - 1
                if line not in found:
                    found[line] = (int(steps[position - 1]), int(steps[position]), str(tag))
    all_lines = np.sort(np.concatenate([np.sort(lines) for lines in _lines_by_tag(metrics, source).values()]))
    rewinds: list[LogRestart] = []
    for line in sorted(found):
        before, after, tag = found[line]
        if rewinds and not np.any((all_lines > rewinds[-1].line + 1) & (all_lines <= line)):
            continue  # the same moment seen in another series
        rewinds.append(LogRestart(source, line, f"{tag} in {source} goes back from step {before} to {after} "
                                  f"(record {line + 1})", "rewind", before))
    return rewinds


def place_by_line(metrics: dict[str, pd.DataFrame], restarts: list[LogRestart]) -> None:
    """Segment of every row: by line for the log that shows the restarts, by step order for the rest.

    Rows of other sources (a metrics table without times) walk forward through the segments like
    `segments._place_untimed_rows` does: a row moves on when its step leaves the current segment's
    step range or goes back.
    """
    source = restarts[0].source
    starts = np.array([restart.line for restart in restarts], dtype="int64")
    ranges: list[tuple[int, int] | None] = [None] * (len(restarts) + 1)
    for frame in metrics.values():
        mine = (frame["source"] == source).to_numpy()
        segment = frame["segment"].to_numpy().copy()
        # Values read from the restart line itself (a banner echoing its config) carry the previous
        # process's last step, so they stay with the previous segment.
        segment[mine] = np.searchsorted(starts, frame["record"].to_numpy()[mine], side="left")
        frame["segment"] = segment
        for index, steps in frame[mine].groupby("segment")["step"]:
            low, high = int(steps.min()), int(steps.max())
            old = ranges[index]
            ranges[index] = (low, high) if old is None else (min(old[0], low), max(old[1], high))
    for frame in metrics.values():
        _walk_other_rows(frame, source, ranges)


def _walk_other_rows(frame: pd.DataFrame, source: str, ranges: list[tuple[int, int] | None]) -> None:
    _walk_forward(frame, np.flatnonzero((frame["source"] != source).to_numpy()), ranges)


def place_untimed_rows(metrics: dict[str, pd.DataFrame], count: int) -> None:
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
        _walk_forward(frame, np.flatnonzero(frame["wall_time"].isna().to_numpy()), ranges)


def _walk_forward(frame: pd.DataFrame, positions: np.ndarray, ranges: list[tuple[int, int] | None]) -> None:
    """Move the rows at `positions` forward through the segments by step (see `place_untimed_rows`)."""
    if not len(positions):
        return
    segment = frame["segment"].to_numpy().copy()
    steps = frame["step"].to_numpy()
    keys = list(zip(frame["source"].cat.codes.to_numpy()[positions], frame["tag"].cat.codes.to_numpy()[positions]))
    state: dict[tuple, tuple[int, int | None]] = {}
    for position, key in zip(positions, keys):
        current, previous = state.get(key, (0, None))
        step = int(steps[position])
        if (previous is not None and step < previous) or not _holds(ranges[current], step):
            later = next((k for k in range(current + 1, len(ranges)) if _holds(ranges[k], step)), None)
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


def _lines_by_tag(metrics: dict[str, pd.DataFrame], source: str) -> dict[str, np.ndarray]:
    """Sorted line numbers of the source's metric rows, per tag."""
    lines = {}
    for frame in metrics.values():
        rows = frame[frame["source"] == source]
        for tag, tagged in rows.groupby("tag", observed=True):
            lines[str(tag)] = np.sort(tagged["record"].to_numpy())
    return lines


def _restarts_in(source: str, events: list[RunEvent], lines: dict[str, np.ndarray]) -> list[LogRestart]:
    restarts: list[LogRestart] = []
    all_lines = np.sort(np.concatenate(list(lines.values())))
    for event in sorted(events, key=lambda e: e.line or 0):
        if event.line is None:
            continue
        # Continued training: some series is logged both before and after the line.
        if not any(len(tag_lines) and tag_lines[0] < event.line < tag_lines[-1] for tag_lines in lines.values()):
            continue
        what = ("a start-up line printed again" if event.kind == "restart" else "a resume line")
        text = event.text if len(event.text) <= 120 else event.text[:119] + "…"
        if restarts and not np.any((all_lines > restarts[-1].line) & (all_lines < event.line)):
            previous = restarts[-1]
            restarts[-1] = LogRestart(source, previous.line, f"{previous.reason}; line {event.line}, {what}: {text}")
            continue
        restarts.append(LogRestart(source, event.line, f"{source} line {event.line}, {what}: {text}"))
    return restarts
