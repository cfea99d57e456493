"""TensorBoard event files: every scalar, in file order, with what could not be read as problems.

Scalars come in two encodings: `summary.value[].simple_value` (torch SummaryWriter, tensorboardX)
and scalar-shaped numeric tensors (TF2 `tf.summary.scalar`, Keras). Histograms, images, audio,
text and graphs are skipped. Nothing is downsampled, sorted or deduplicated: repeated and
out-of-order steps stay exactly as the writer left them.

Speed: almost every record of a scalar-heavy file has the byte layout torch's SummaryWriter
writes for `add_scalar`. Those records are decoded for a whole chunk at once with numpy
(`_decode_template`); every other record (file_version, tensors, metadata, several values per
event, histograms...) goes through `event_pb2.Event.FromString`. Both paths give identical
results; tests check it by turning the fast path off (`_USE_FAST_PATH`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from tensorboard.compat.proto import event_pb2, types_pb2

from forensics import progress
from forensics.ingest.limits import MAX_VALUES_PER_FILE, values_cap_message
from forensics.ingest.problems import InputProblem
from forensics.ingest.tfrecord import (
    FRAME_OVERHEAD, HEADER_BYTES, FrameChunk, iter_verified_frames, unaligned_view)

# For tests only: False sends every record through the protobuf decoder.
_USE_FAST_PATH = True

_EVENT_NAME = re.compile(
    r"^events\.out\.tfevents\.(?P<time>\d+)\.(?P<host>.+)\.(?P<pid>\d+)\.(?P<uid>\d+)"
    r"(?:\.v2)?(?:\.[^\d].*|[^.\d].*)?$"  # optional writer suffix, never starting with .<digit>
)
_NUMERIC_DTYPES = frozenset({
    types_pb2.DT_HALF, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE,
    types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_INT64,
    types_pb2.DT_UINT8, types_pb2.DT_UINT16, types_pb2.DT_UINT32, types_pb2.DT_UINT64,
})
_UNDECODABLE_LISTED = 5
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)  # masks of the low n bytes  # byte offsets named in the problem message


@dataclass(frozen=True)
class ScalarSeries:
    """All values of one tag, in file order (never sorted, never deduplicated)."""

    tag: str
    steps: np.ndarray  # int64
    values: np.ndarray  # float64 (simple_value float32 widened; tensor scalars converted)
    wall_times: np.ndarray  # float64 seconds
    encoding: str  # "simple_value" or "tensor" (of the tag's first value)


@dataclass
class EventFile:
    """What one event file holds: its scalars, how much was read, and what could not be."""

    path: str
    host: str | None
    pid: int | None
    records: int = 0  # CRC-verified TFRecord records, including file_version and undecodable ones
    first_wall_time: float | None = None
    last_wall_time: float | None = None
    scalars: list[ScalarSeries] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    bytes_read: int = 0


@dataclass(frozen=True)
class EventFileName:
    """What an event file's name says about its writer: `events.out.tfevents.<time>.<host>.<pid>.<n>`.

    `created` is the writer's creation time in whole seconds; `writer` is the writer's ordinal within
    its process (tensorboard's and tensorboardX's per-process counter: 0 for a process's first writer),
    so a later file of the same host and pid with a higher ordinal was opened by the same process.
    """

    created: int
    host: str
    pid: int
    writer: int


def event_file_name(name: str) -> EventFileName | None:
    """The writer identity in an event file's base name, or None for a name of another shape."""
    match = _EVENT_NAME.match(name)
    if not match:
        return None
    return EventFileName(int(match["time"]), match["host"], int(match["pid"]), int(match["uid"]))


def parse_event_file_name(name: str) -> tuple[str | None, int | None]:
    """Host and pid from `events.out.tfevents.<time>.<host>.<pid>.<n>[.v2][suffix]`, else None."""
    identity = event_file_name(name)
    if identity is None:
        return None, None
    return identity.host, identity.pid


def read_event_file(path: pathlib.Path, display_path: str) -> EventFile:
    """Read every scalar from one event file; never raises for bad content or OS errors.

    Problems (`event_file_truncated`, `event_crc_mismatch`, `event_record_undecodable`,
    `file_unreadable`) are listed on the result, and everything readable before them is kept.
    """
    host, pid = parse_event_file_name(pathlib.Path(path).name)
    result = EventFile(path=display_path, host=host, pid=pid)
    collector = _ScalarCollector()
    cap = MAX_VALUES_PER_FILE.value()
    for chunk in iter_verified_frames(pathlib.Path(path), display_path, result.problems):
        if result.records + len(chunk.starts) > cap:  # keep whole records up to the cap, then stop
            keep = cap - result.records
            chunk = dataclasses.replace(chunk, starts=chunk.starts[:keep], lengths=chunk.lengths[:keep])
        if len(chunk.starts):
            collector.add_chunk(chunk)
            result.records += len(chunk.starts)
            frame_end = int(chunk.starts[-1] + chunk.lengths[-1]) + FRAME_OVERHEAD
            result.bytes_read = chunk.file_offset + frame_end
            progress.file_advanced(result.bytes_read)
        if result.records >= cap:
            result.problems.append(InputProblem("values_cap_reached", display_path, values_cap_message(
                display_path, f"record {result.records:,}, byte {result.bytes_read:,}", cap),
                locator=f"byte {result.bytes_read}"))
            break
    result.scalars = collector.series()
    result.first_wall_time = collector.first_wall_time
    result.last_wall_time = collector.last_wall_time
    if collector.undecodable:
        result.problems.append(_undecodable_problem(display_path, collector.undecodable))
    return result


_ENCODINGS = ("simple_value", "tensor")


class _Rows(NamedTuple):
    """Scalars decoded from one chunk, one row per value, in record order."""

    tag_ids: np.ndarray  # int64, keys of _ScalarCollector.tag_ids
    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    walls: np.ndarray  # float64
    encodings: np.ndarray  # int8 index into _ENCODINGS
    records: np.ndarray  # int64 record index within the chunk

    def take(self, order: np.ndarray) -> _Rows:
        return _Rows(*(column[order] for column in self))

    @staticmethod
    def concat(first: _Rows, second: _Rows) -> _Rows:
        return _Rows(*(np.concatenate(pair) for pair in zip(first, second)))


class _ScalarCollector:
    """Accumulates decoded scalars chunk by chunk, filed per tag, joined at the end."""

    def __init__(self) -> None:
        self.tag_ids: dict[str, int] = {}
        self.plugins: dict[str, str] = {}  # tag -> plugin_name from the first metadata seen
        self.pieces: dict[int, list[tuple[np.ndarray, ...]]] = {}  # tag id -> (step, value, wall)
        self.first_seen: dict[int, tuple[int, int, int]] = {}  # tag id -> (chunk, row, encoding)
        self.chunks = 0
        self.undecodable: list[int] = []  # file byte offsets of records protobuf rejected
        self.first_wall_time: float | None = None
        self.last_wall_time: float | None = None

    def tag_id(self, tag: str) -> int:
        return self.tag_ids.setdefault(tag, len(self.tag_ids))

    def add_chunk(self, chunk: FrameChunk) -> None:
        """Decode one chunk: the template layout in bulk, every other record with protobuf."""
        count = len(chunk.starts)
        matched, rows = (_decode_template(chunk, self) if _USE_FAST_PATH
                         else (np.zeros(count, bool), None))
        decoded, record_walls = matched.copy(), np.zeros(count)
        if rows is not None:
            record_walls[rows.records] = rows.walls
        slow: list[tuple[int, int, float, float, int, int]] = []
        for index in np.flatnonzero(~matched).tolist():
            wall_time = self._decode_slow(chunk, index, slow)
            if wall_time is not None:
                decoded[index], record_walls[index] = True, wall_time
        decoded_walls = record_walls[decoded]
        if len(decoded_walls):
            if self.first_wall_time is None:
                self.first_wall_time = float(decoded_walls[0])
            self.last_wall_time = float(decoded_walls[-1])
        if slow:
            dtypes = (np.int64, np.int64, np.float64, np.float64, np.int8, np.int64)
            columns = [np.array(column, dtype) for column, dtype in zip(zip(*slow), dtypes)]
            slow_rows = _Rows(*columns)
            if rows is None or not len(rows.records):
                rows = slow_rows
            else:  # interleave both paths back into record order
                rows = _Rows.concat(rows, slow_rows)
                rows = rows.take(np.argsort(rows.records, kind="stable"))
        if rows is not None and len(rows.records):
            self._keep(rows)
        self.chunks += 1

    def _keep(self, rows: _Rows) -> None:
        """File one chunk's scalars (in record order) under their tags."""
        tag_ids, steps, values, walls, encodings, _ = rows
        order = np.argsort(tag_ids.astype(np.uint16) if len(self.tag_ids) < 1 << 16 else tag_ids,
                           kind="stable")
        sorted_ids = tag_ids[order]
        bounds = np.r_[np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]), len(order)]
        for first, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            picked, tag_id = order[first:end], int(sorted_ids[first])
            piece = (steps[picked], values[picked], walls[picked])
            self.pieces.setdefault(tag_id, []).append(piece)
            self.first_seen.setdefault(
                tag_id, (self.chunks, int(picked[0]), int(encodings[picked[0]])))

    def _decode_slow(self, chunk: FrameChunk, index: int, rows: list) -> float | None:
        """Decode one record with protobuf; returns its wall time, or None if undecodable."""
        try:
            event = event_pb2.Event.FromString(chunk.payload(index))
        except Exception:  # protobuf raises DecodeError, but also others on odd input
            self.undecodable.append(chunk.file_offset + int(chunk.starts[index]))
            return None
        for value in event.summary.value:
            if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                self.plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number, encoding = float(value.simple_value), 0
            elif kind == "tensor" and self.plugins.get(value.tag, "scalars") == "scalars":
                # TF2 writes metadata only on a tag's first event, hence the per-tag memory.
                number, encoding = tensor_scalar(value.tensor), 1
                if number is None:
                    continue
            else:
                continue
            rows.append((self.tag_id(value.tag), event.step, number, event.wall_time, encoding,
                         index))
        return event.wall_time

    def series(self) -> list[ScalarSeries]:
        """One series per tag, in order of the tag's first appearance in the file."""
        names = {tag_id: tag for tag, tag_id in self.tag_ids.items()}
        found = []
        for tag_id in sorted(self.pieces, key=self.first_seen.__getitem__):
            pieces = self.pieces.pop(tag_id)
            columns = [parts[0] if len(parts) == 1 else np.concatenate(parts)
                       for parts in zip(*pieces)]
            encoding = _ENCODINGS[self.first_seen[tag_id][2]]
            found.append(ScalarSeries(names[tag_id], *columns, encoding))
        return found


def tensor_scalar(tensor) -> float | None:
    """The value of a scalar-shaped numeric TensorProto as float, or None if it is not one.

    Matches `tensorboard.util.tensor_util.make_ndarray(tensor).item()` for these dtypes.
    """
    if tensor.tensor_shape.dim or tensor.dtype not in _NUMERIC_DTYPES:
        return None
    from tensorboard.util import tensor_util  # slow import, only needed for tensor scalars

    try:
        array = tensor_util.make_ndarray(tensor)
    except Exception:  # malformed content: not a value we can report
        return None
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def _decode_template(chunk: FrameChunk, collector: _ScalarCollector):
    """Decode, for a whole chunk at once, the records laid out as SummaryWriter's add_scalar.

    Layout: 0x09 <f64 wall_time> [0x10 <varint step>] 0x2a <t+9> 0x0a <t+7> 0x0a <t> <tag: t bytes>
    0x15 <f32 value> (the step field is omitted when the step is 0). Returns a mask of matched
    records and their (tag id, step, value, wall time, encoding) arrays; protobuf does the rest.
    """
    data, starts, lengths = chunk.data, chunk.starts + HEADER_BYTES, chunk.lengths
    ends = starts + lengths
    words = unaligned_view(data, "<u8")
    ok = lengths >= 20  # the layout with an empty tag; also keeps the reads below in the frame
    first_start = np.where(ok, starts, 0)
    ok &= data[first_start] == 0x09
    field_after_wall = data[first_start + 9]
    has_step = ok & (field_after_wall == 0x10)
    ok &= has_step | (field_after_wall == 0x2A)
    # Step varint: up to 8 bytes here (steps < 2**56); longer ones go to protobuf.
    word = words[np.where(has_step, starts + 10, 0)]
    last_byte_bit = ~word & np.uint64(0x8080808080808080)
    last_byte_bit &= ~last_byte_bit + np.uint64(1)  # lowest set bit marks the varint's last byte
    ok &= ~has_step | (last_byte_bit != 0)
    kept = word & (last_byte_bit + last_byte_bit - np.uint64(1))
    steps = kept & np.uint64(0x7F)
    for shift in range(1, 8):
        steps |= (kept >> np.uint64(shift)) & np.uint64(0x7F << (7 * shift))
    steps = np.where(has_step, steps, 0).view(np.int64)
    varint_bytes = (np.log2(np.maximum(last_byte_bit, 1)).astype(np.int64) + 1) // 8
    summary = np.where(ok, starts + 9 + np.where(has_step, 1 + varint_bytes, 0), 0)
    # Bytes 0-5 of the summary field, checked in one 48-bit comparison.
    head = words[summary]
    tag_len = ((head >> np.uint64(40)) & np.uint64(0xFF)).astype(np.int64)
    expected = (0x0A000A002A + ((tag_len + 9) << 8) + ((tag_len + 7) << 24) + (tag_len << 40))
    ok &= ((head & np.uint64(0xFFFFFFFFFFFF)) == expected.astype(np.uint64)) & (tag_len < 119)
    ok &= summary + 11 + tag_len == ends
    value_at = np.where(ok, ends - 5, 0)
    ok &= data[value_at] == 0x15
    rows = np.flatnonzero(ok)
    tag_codes, tag_bytes = _factorize_tags(data, summary[rows] + 6, tag_len[rows])
    ids = np.empty(len(tag_bytes), np.int64)
    for code, raw in enumerate(tag_bytes):
        try:
            ids[code] = collector.tag_id(raw.decode("utf-8"))
        except UnicodeDecodeError:  # protobuf rejects these records; let it say so
            ids[code] = -1
    tag_ids = ids[tag_codes]
    if (tag_ids < 0).any():
        ok[rows[tag_ids < 0]] = False
        rows, tag_ids = rows[tag_ids >= 0], tag_ids[tag_ids >= 0]
    values = unaligned_view(data, "<f4")[value_at[rows] + 1].astype(np.float64)
    walls = unaligned_view(data, "<f8")[starts[rows] + 1]
    return ok, _Rows(tag_ids, steps[rows], values, walls, np.zeros(len(rows), np.int8), rows)


def _factorize_tags(data: np.ndarray, tag_start: np.ndarray,
                    tag_len: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Code each tag occurrence by its bytes: (codes, distinct tag bytes in order of first use)."""
    if not len(tag_start):
        return np.zeros(0, np.int64), []
    # Key = 64-bit hash of (length, tag words); a collision is caught by comparing every
    # occurrence with its code's first occurrence below.
    words = unaligned_view(data, "<u8")
    key = tag_len.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    columns = []
    last_word = len(words) - 1
    for column in range(int(tag_len.max() + 7) // 8):
        present = np.minimum(np.maximum(tag_len - 8 * column, 0), 8)
        # Rows whose tag has ended read any in-bounds word; the mask zeroes it.
        word = words[np.minimum(tag_start + 8 * column, last_word)] & _LOW_BYTES[present]
        columns.append(word)
        key = (key ^ word) * np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(31)
    codes, uniques = pd.factorize(key)
    first_use = np.zeros(len(uniques), np.int64)
    first_use[codes[::-1]] = np.arange(len(codes))[::-1]
    same = tag_len == tag_len[first_use][codes]
    for word in columns:
        same &= word == word[first_use][codes]
    if not same.all():
        return _factorize_slowly(data, tag_start, tag_len)
    tag_bytes = [data[tag_start[r] : tag_start[r] + tag_len[r]].tobytes() for r in first_use]
    return codes.astype(np.int64), tag_bytes


def _factorize_slowly(data, tag_start, tag_len) -> tuple[np.ndarray, list[bytes]]:
    # Only reached on a 64-bit hash collision between distinct tags.
    raw = [data[s : s + n].tobytes() for s, n in zip(tag_start.tolist(), tag_len.tolist())]
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object))
    return codes.astype(np.int64), list(uniques)


def _undecodable_problem(display_path: str, offsets: list[int]) -> InputProblem:
    listed = ", ".join(str(offset) for offset in offsets[:_UNDECODABLE_LISTED])
    extra = len(offsets) - _UNDECODABLE_LISTED
    more = f" and {extra} more" if extra > 0 else ""
    return InputProblem(
        "event_record_undecodable", display_path,
        f"Event file {display_path}: {len(offsets)} record(s) passed their CRC check but are not "
        f"valid Event protos (at byte {listed}{more}); they were skipped and the rest of the file "
        "was read.",
        locator=f"byte {offsets[0]}",
    )
