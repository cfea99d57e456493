"""Reading a log a block at a time: runs of same-layout lines in one C call, the other lines one by one.

Profiled on a 1,000,000-line HF Trainer log, the per-line path spends its time in one Python call
chain per line (`_feed`, the format's `parse`, `to_float`); a bare loop over the same lines is 40
times faster. Here a file is read in blocks of whole lines (`LineStream.blocks`, bounded memory).
Within a block, lines that follow a learned `layouts.Layout` are matched and converted by
`_scan.scan` (C) in one call, and `apply_run` adds them to the reading with numpy: the same
values, steps, line numbers, wall times and counts the per-line path gives, because a layout only
matches lines that the per-line path is bound to read the same way (see `layouts`). Every other
line (the first line of the file, banners, timestamps, events, tracebacks, odd bytes) goes to
`_LogReading.feed` as before, and a line whose numbers need a decision the vectorised path does
not take (an event count above zero, a step no integer holds) is handed back to it too.

Without the compiled `_scan` module (no C compiler at install time) every line takes the per-line
path: the same result, slower.
"""

from __future__ import annotations

import re

import numpy as np

from forensics import progress
from forensics.ingest.logs.layouts import BUILDERS, EPOCH, STEP, Layout
from forensics.ingest.logs.lines import LineStream
from forensics.ingest.logs.steps import StepAxis

try:
    from forensics.ingest.logs._scan import scan
except ImportError:  # no compiler when installed: the per-line path reads everything
    scan = None

MAX_LAYOUTS = 8
MAX_LAYOUT_ATTEMPTS = 4096
_SHAPE = re.compile(r"[0-9]+")
_EXACT_INT = 2.0 ** 53


class BlockReader:
    """Feeds one file's lines to a `_LogReading`, whole runs at a time where a layout matches."""

    def __init__(self, reading, stream: LineStream):
        self.reading = reading
        self.stream = stream
        self.layouts: list[Layout] = []
        self._attempts = 0
        self._shapes_tried: set[str] = set()

    def read(self) -> int | None:
        """Read the file; the line number at which the values cap stopped the read, or None.

        Tells `progress` how far through the file it is once per block (a no-op without a listener).
        """
        reported = 0
        for buffer, end in self.stream.blocks():
            with memoryview(buffer)[:end] as block:  # what `scan` may read: this block, not the buffer
                stopped = self._block(buffer, block, end)
            if stopped is not None:
                return stopped
            if self.stream.bytes_read > reported:  # the last block may follow the last read
                reported = self.stream.bytes_read
                progress.file_advanced(reported)
        return None

    def _block(self, buffer: bytearray, block: memoryview, size: int) -> int | None:
        reading, stream, pos = self.reading, self.stream, 0
        while pos < size:
            if self.layouts and reading.ready_for_runs():
                pos, stopped = self._runs(block, pos)
                if stopped is not None:
                    return stopped
                if pos >= size:
                    break
            newline = buffer.find(b"\n", pos, size)
            end = size if newline < 0 else newline + 1
            raw, pos = buffer[pos:end], end
            number = stream.lines_read = stream.lines_read + 1
            if len(raw) - (newline >= 0) > stream.limit:
                stream.report_oversized(number, len(raw))
                continue
            reading.feed(number, stream.decode(number, raw))
            if reading.values_read >= reading.values_cap:
                return number
            if scan is not None and reading.last_parse is not None:
                self._learn(*reading.last_parse)
        return None

    def _runs(self, block: memoryview, pos: int) -> tuple[int, int | None]:
        """Consume runs of lines that match a layout from `pos`; (new pos, cap line or None)."""
        reading, stream = self.reading, self.stream
        while True:
            for index, layout in enumerate(self.layouts):
                count, end, values, ends = scan(block, pos, layout.literals, layout.kinds, 1 << 40, stream.limit)
                if count:
                    break
            else:
                return pos, None
            if index:
                self.layouts.insert(0, self.layouts.pop(index))  # the run's layout is tried first next time
            matrix = np.frombuffer(values, dtype=np.float64).reshape(count, len(layout.kinds))
            used = apply_run(reading, layout, matrix, stream.lines_read + 1)
            if not used:
                return pos, None
            pos = int(np.frombuffer(ends, dtype=np.int64)[used - 1])
            stream.lines_read += used
            if reading.values_read >= reading.values_cap:
                return pos, stream.lines_read
            if used < count or not reading.ready_for_runs():
                return pos, None

    def _learn(self, format_name: str, line: str, parsed) -> None:
        """A layout from a line the per-line path just read, unless its shape was tried before."""
        builder = BUILDERS.get(format_name)
        if builder is None or not parsed.values or self._attempts >= MAX_LAYOUT_ATTEMPTS:
            return
        shape = format_name + _SHAPE.sub("#", line)
        if shape in self._shapes_tried:
            return
        self._attempts += 1
        if len(self._shapes_tried) < MAX_LAYOUT_ATTEMPTS:
            self._shapes_tried.add(shape)
        layout = builder(line, parsed)
        if layout is not None and layout not in self.layouts:
            self.layouts.insert(0, layout)
            del self.layouts[MAX_LAYOUTS:]


def apply_run(reading, layout: Layout, matrix: np.ndarray, first_number: int) -> int:
    """Add the leading lines of a matched run to the reading as the per-line path would; how many.

    Stops before the first line the per-line path must read itself: an event slot above zero
    (Megatron's skipped or NaN iterations become events there), a step that is no exact integer,
    or a line `StepAxis.resolve_run` cannot place. Also stops at the values cap, like the per-line
    loop, after the line that reaches it.
    """
    count = len(matrix)
    handback = np.zeros(count, dtype=bool)
    for slot in layout.event_slots:
        handback |= matrix[:, slot] > 0
    roles = layout.roles
    steps = matrix[:, roles.index(STEP)] if STEP in roles else None
    if steps is not None:
        handback |= ~(np.abs(steps) < _EXACT_INT)
    if handback.any():
        count = int(np.argmax(handback))
    value_slots = layout.value_slots
    room = reading.values_cap - reading.values_read
    count = min(count, -(-room // len(value_slots)))
    if count <= 0:
        return 0
    axis = reading.axes.get(None) or reading.axes.setdefault(None, StepAxis())
    epochs = matrix[:count, roles.index(EPOCH)] if EPOCH in roles else None
    placed, bases = axis.resolve_run(count, None if steps is None else steps[:count], epochs)
    count = len(placed)
    if not count:
        return 0
    now = reading.clock.now()
    step_bytes = _as_bytes(placed)  # views: frombytes copies straight from numpy's memory
    record_bytes = _as_bytes(np.arange(first_number, first_number + count, dtype=np.int64))
    wall_bytes = _as_bytes(np.full(count, np.nan if now is None else now, dtype=np.float64))
    for rows in reading.rows_for(layout.value_tags, None):
        rows.steps.frombytes(step_bytes)
        rows.records.frombytes(record_bytes)
        rows.wall_times.frombytes(wall_bytes)
        for basis, lines in bases:
            rows.bases[basis] += lines
    by_tag = np.ascontiguousarray(matrix[:count, value_slots].T)  # one copy; each tag's values contiguous
    for tag, values in zip(layout.value_tags, by_tag):
        reading.series[(tag, None)].values.frombytes(_as_bytes(values))
    reading.values_read += count * len(value_slots)
    reading.lines += count
    reading.recognised += count
    reading.formats[layout.format_name] += count
    reading.scanner.last_line_was_banner = False
    return count


def _as_bytes(column: np.ndarray) -> memoryview:
    return memoryview(column).cast("B")
