"""Read one stdout/stderr log into a `SourceRead`: series per tag (and rank), events, coverage.

The file is streamed (`lines.LineStream`) a block at a time; runs of lines that keep one learned
layout are read in one go (`fast`), every other physical line is split at carriage returns (tqdm
redraws), cleaned of colours and rank prefixes, tried against the format registry and scanned
for events. A line's leading timestamp (`timestamps`) sets the file's clock; every value takes the
clock's time, so a metric line without a timestamp of its own inherits the last one printed, but
never across a start-up banner (a new process's lines are not timed by the old one's). Values go into compact arrays, so memory grows with the values found, never with
the file's size. Nothing here raises on content: oddities become input problems or coverage.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.clean import split_rank, strip_ansi
from forensics.ingest.logs.events import EventScanner, FoundEvent, capped
from forensics.ingest.logs.fast import BlockReader
from forensics.ingest.logs.formats import parse_line
from forensics.ingest.logs.lines import LineStream
from forensics.ingest.logs.steps import StepAxis
from forensics.ingest.logs.timestamps import LineClock, describe
from forensics.ingest.limits import MAX_VALUES_PER_FILE, values_cap_message
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import RunEvent, SourceRead, TaggedSeries

SAMPLES_KEPT = 5
SAMPLE_TEXT = 200
_LOOKS_LIKE_METRIC = re.compile(r"loss|\blr\b|learning.rate|acc|grad|norm|ppl|perplexity|reward|\bwer\b|bleu|"
                                r"\bf1\b|\bmap\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_METRIC_HINTS = ("loss", "lr", "learning", "acc", "grad", "norm", "ppl", "perplex", "reward", "wer", "bleu", "f1",
                 "map")


@dataclass
class _Rows:
    """Where and when values were logged: step, line number and wall time per value, in compact arrays.

    The tags a line logs together share one `_Rows` for as long as they are always logged together
    (a Megatron line's ten values keep one copy of its step, line and time, not ten: a quarter of
    the memory and of the page faults). `owners` counts the tags that share it.
    """

    owners: int
    steps: array = field(default_factory=lambda: array("q"))
    records: array = field(default_factory=lambda: array("q"))
    wall_times: array = field(default_factory=lambda: array("d"))
    bases: Counter = field(default_factory=Counter)

    def split(self, owners: int) -> _Rows:
        """A copy for `owners` of the owners, who are about to be logged without the others."""
        self.owners -= owners
        return _Rows(owners, array("q", self.steps), array("q", self.records), array("d", self.wall_times),
                     Counter(self.bases))

    def columns(self) -> tuple[np.ndarray, ...]:
        """(steps, records, wall_times) as numpy views, once the read is over: views, not copies, so a
        10M-value log is not held twice (and the tags that share the rows share the views)."""
        return (np.frombuffer(self.steps, dtype="int64"), np.frombuffer(self.records, dtype="int64"),
                np.frombuffer(self.wall_times, dtype="float64"))


@dataclass
class _Values:
    """One tag's values from one rank, in file order (the per-line path appends one value at a
    time, `fast.apply_run` a run's worth with `frombytes`), and the rows they were logged at."""

    rows: _Rows
    values: array = field(default_factory=lambda: array("d"))


@dataclass
class _LogReading:
    """The state of one file's read."""

    path: str
    lines: int = 0
    blank: int = 0
    recognised: int = 0
    event_lines: int = 0
    values_read: int = 0
    formats: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)
    unrecognised_metric_like: int = 0
    series: dict[tuple[str, int | None], _Values] = field(default_factory=dict)
    axes: dict[int | None, StepAxis] = field(default_factory=dict)
    events: list[RunEvent] = field(default_factory=list)
    scanner: EventScanner = field(default_factory=EventScanner)
    unparsable: int = 0
    first_unparsable: int | None = None
    values_cap: int = field(default_factory=MAX_VALUES_PER_FILE.value)
    clock: LineClock = field(default_factory=LineClock)
    json_times: int = 0
    # (format name, clean text, Parsed) of the last line when it was one plain segment: what
    # `fast.BlockReader` learns layouts from.
    last_parse: tuple | None = None

    def ready_for_runs(self) -> bool:
        """Whether a run of metric lines can be added at once: no traceback open, first line seen."""
        return self.scanner.at_rest()

    def values_of(self, tag: str, rank: int | None) -> _Values:
        """The values of one tag and rank (which `rows_for` created at its first value)."""
        return self.series[(tag, rank)]

    def rows_for(self, tags, rank: int | None) -> list[_Rows]:
        """The row stores to add one row to when a line logs `tags` (distinct names) for `rank`.

        Usually one, shared by exactly these tags. A tag logged for the first time gets new rows; tags
        logged without the others they shared rows with get a copy of them (at most once per tag
        and partner, so the copying stays bounded). The series keep their first-value order.
        """
        members = [self.series.get((tag, rank)) for tag in tags]
        first = members[0]
        if first is not None and first.rows.owners == len(members) and all(
                member is not None and member.rows is first.rows for member in members):
            return [first.rows]
        shared: dict[int, tuple[_Rows, list[_Values]]] = {}
        for member in members:
            if member is not None:
                shared.setdefault(id(member.rows), (member.rows, []))[1].append(member)
        result = []
        for rows, inside in shared.values():
            if len(inside) < rows.owners:
                rows = rows.split(len(inside))
                for member in inside:
                    member.rows = rows
            result.append(rows)
        new_tags = [tag for tag, member in zip(tags, members) if member is None]
        if new_tags:
            rows = _Rows(len(new_tags))
            result.append(rows)
            for tag in new_tags:
                self.series[(tag, rank)] = _Values(rows)
        return result

    def feed(self, number: int, text: str) -> None:
        """One physical line (possibly holding several `\\r`-separated redraws).

        A line whose numbers no step axis can hold (a step of 1e400, a 30-digit counter) or whose JSON
        nests too deeply for the parser is counted as unparsable and reported once, never raised.
        """
        self.lines += 1
        self.last_parse = None
        if not text.strip():
            self.blank += 1
            return
        try:
            self._feed(number, text)
        except (ValueError, OverflowError, RecursionError):
            self.unparsable += 1
            if self.first_unparsable is None:
                self.first_unparsable = number

    def _feed(self, number: int, text: str) -> None:
        recognised = had_event = False
        for segment in text.split("\r") if "\r" in text else (text,):
            rank, clean = split_rank(strip_ansi(segment))
            if not clean.strip():
                continue
            axis = self.axes.get(rank) or self.axes.setdefault(rank, StepAxis())
            stamped = self.clock.see(clean)
            result = parse_line(clean)
            is_metric_line = False
            if result is not None:
                line_format, parsed = result
                if rank is None and "\r" not in text:
                    self.last_parse = (line_format.name, clean, parsed)
                if parsed.wall_time is not None:
                    self.clock.set(parsed.wall_time)
                    stamped = True
                    self.json_times += 1
                recognised = True
                self.formats[line_format.name] += 1
                # Any line a metric format reads (a bare progress bar too) is no start-up banner: a
                # bar redrawn at 0/N every epoch is not a process starting again.
                is_metric_line = True
                step, basis = axis.resolve(parsed)
                if parsed.values:
                    self._add(parsed.values, rank, step, number, basis)
                for kind, data in parsed.events:
                    had_event = True
                    self._event(FoundEvent(kind, number, capped(clean), data), rank, step)
            found_events = self.scanner.scan(number, clean, is_metric_line)
            if not stamped and (self.scanner.last_line_was_banner
                                or any(found.kind == "restart" for found in found_events)):
                self.clock.forget()  # a new process: its lines are not timed by the old one's clock
            if any(found.kind == "restart" for found in found_events):
                axis.new_process()
            for found in found_events:
                had_event = True
                self._event(found, rank, axis.last_step)
            had_event = had_event or self.scanner.last_line_was_banner
        if recognised:
            self.recognised += 1
        elif had_event:
            self.event_lines += 1
        else:
            self._unrecognised(number, text)

    def finish(self) -> None:
        """Close what the end of the file leaves open (a traceback cut short)."""
        for found in self.scanner.finish():
            self._event(found, None, None)

    def _add(self, values: dict[str, float], rank: int | None, step: int, number: int, basis: str) -> None:
        now = self.clock.now()
        wall_time = math.nan if now is None else now
        for rows in self.rows_for(values, rank):
            rows.steps.append(step)
            rows.records.append(number)
            rows.wall_times.append(wall_time)
            rows.bases[basis] += 1
        for tag, value in values.items():
            self.series[(tag, rank)].values.append(value)
        self.values_read += len(values)

    def _event(self, found: FoundEvent, rank: int | None, step: int | None) -> None:
        data = dict(found.data)
        if rank is not None:
            data["rank"] = rank
        self.events.append(RunEvent(found.kind, self.path, found.line, step, self.clock.now(), found.text, data))

    def _unrecognised(self, number: int, text: str) -> None:
        lowered = text.lower()
        if not any(hint in lowered for hint in _METRIC_HINTS):
            return
        if _DIGIT.search(text) and _LOOKS_LIKE_METRIC.search(text):
            self.unrecognised_metric_like += 1
            if len(self.samples) < SAMPLES_KEPT:
                self.samples.append({"line": number, "text": capped(strip_ansi(text))[:SAMPLE_TEXT]})

    def tagged_series(self) -> list[TaggedSeries]:
        """The series, tagged per rank (`rank1/loss`, context `rank1`) when several ranks interleave."""
        ranks = {rank for _, rank in self.series}
        several_ranks = len(ranks) > 1
        result, columns = [], {}
        for (tag, rank), values in self.series.items():
            shown_tag = f"rank{rank}/{tag}" if several_ranks and rank is not None else tag
            context = f"rank{rank}" if several_ranks and rank is not None else ""
            steps, records, wall_times = columns.get(id(values.rows)) or columns.setdefault(
                id(values.rows), values.rows.columns())
            result.append(TaggedSeries(shown_tag, steps, np.frombuffer(values.values, dtype="float64"), wall_times,
                                       records, context, _basis_text(values.rows.bases)))
        return result

    def coverage(self, stream: LineStream, series: list[TaggedSeries]) -> dict:
        """Lines seen, recognised and ignored, per-format counts, samples of unrecognised metric-like lines.

        `event_lines` counts lines that are not metric lines but gave an event or are start-up banners.
        """
        timed = {"wall_times": describe(self.clock, self.json_times),
                 "timed_lines": self.clock.timed_lines + self.json_times} if self.clock.timed_lines or self.json_times else {}
        return {
            "lines": self.lines, "blank": self.blank, "recognised": self.recognised, "event_lines": self.event_lines,
            "ignored": self.lines - self.blank - self.recognised - self.event_lines,
            "formats": dict(self.formats.most_common()),
            "unrecognised_metric_like": self.unrecognised_metric_like,
            "unrecognised_samples": list(self.samples),
            "oversized_lines": stream.oversized_lines, "undecodable_lines": stream.undecodable_lines,
            "step_basis": {item.tag: item.step_basis for item in series},
            **timed,
        }


def read_log(found: FoundFile, *, batched: bool = True) -> SourceRead:
    """A stdout/stderr log: every recognised metric line as series values, events, and coverage.

    `batched=False` reads every line through the per-line path (tests compare the two).
    """
    stream = LineStream(found.path, found.display_path)
    binary = stream.sniff_binary()
    if binary is not None:
        return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                          detail=binary.message.split(": ", 1)[-1], problems=[binary])
    reading = _LogReading(found.display_path)
    problems = stream.problems  # the stream appends to it while it is read
    stopped_at = BlockReader(reading, stream).read() if batched else _read_line_by_line(reading, stream)
    if stopped_at is not None:
        problems.append(InputProblem("values_cap_reached", found.display_path, values_cap_message(
            found.display_path, f"line {stopped_at}", reading.values_cap), locator=f"line {stopped_at}"))
    reading.finish()
    if reading.unparsable:
        problems.append(InputProblem(
            "log_lines_unparsable", found.display_path,
            f"{found.display_path}: {reading.unparsable:,} line(s) could not be parsed (a step no integer axis can "
            f"hold, or JSON nested too deeply); first at line {reading.first_unparsable}; skipped", locator=f"line {reading.first_unparsable}", severity="warning"))
    series = reading.tagged_series()
    coverage = reading.coverage(stream, series)
    return SourceRead(found.display_path, found.kind, found.size_bytes,
                      readable=not any(p.severity == "error" for p in problems), records=reading.values_read,
                      detail=_detail(reading, series), problems=list(problems), series=series,
                      events=reading.events, coverage=coverage)


def _read_line_by_line(reading: _LogReading, stream: LineStream) -> int | None:
    """Every line through `feed`; the line number at which the values cap stopped the read, or None."""
    for number, text in stream:
        reading.feed(number, text)
        if reading.values_read >= reading.values_cap:
            return number
    return None


def _basis_text(bases: Counter) -> str:
    if len(bases) == 1:
        return next(iter(bases))
    return "mixed: " + "; ".join(f"{basis} ({count:,} values)" for basis, count in bases.most_common())


def _detail(reading: _LogReading, series: list[TaggedSeries]) -> str:
    text_lines = reading.lines - reading.blank
    formats = ", ".join(reading.formats) or "no known format"
    detail = (f"{reading.recognised:,} of {text_lines:,} lines recognised ({formats}); "
              f"{reading.values_read:,} values in {len(series)} series; {len(reading.events)} event(s)")
    reconstructed = sorted({item.step_basis for item in series} - {"logged"})
    if reconstructed:
        detail += "; steps: " + " / ".join(reconstructed)
    if reading.clock.timed_lines or reading.json_times:
        detail += "; " + describe(reading.clock, reading.json_times)
    return detail
