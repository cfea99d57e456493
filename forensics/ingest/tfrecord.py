"""TFRecord framing: walk the frames of a file in chunks and verify every CRC in bulk.

A TFRecord file is a sequence of frames::

    uint64 LE  payload length
    uint32 LE  masked CRC32C of the 8 length bytes
    bytes      payload
    uint32 LE  masked CRC32C of the payload

`iter_verified_frames` reads the file in chunks (partial frames carried over), so memory stays at
one chunk however large the file is, and hands back only frames whose two CRCs both check out.
Whatever stops the walk (a cut-off last frame, a CRC mismatch, an OS error) becomes an
`InputProblem`; everything before it is kept.
"""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c
import numpy as np

from forensics.ingest.problems import InputProblem

CHUNK_BYTES = 32 << 20
HEADER_BYTES = 12  # length + length CRC
FRAME_OVERHEAD = 16  # header + payload CRC
_MASK_DELTA = 0xA282EAD8
# Records are XOR-folded into this many cells per payload length; see `_first_bad_payload`.
_CRC_CELLS = 64


def mask_crc(crc: int) -> int:
    """Apply TFRecord's CRC mask (rotate right 15, add a constant) to a raw CRC32C."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crcs(masked: np.ndarray) -> np.ndarray:
    """Undo `mask_crc` for a whole uint32 array at once."""
    rotated = masked.astype(np.uint32) - np.uint32(_MASK_DELTA)  # wraps mod 2**32
    return (rotated << np.uint32(15)) | (rotated >> np.uint32(17))


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload as a TFRecord record (used by tests and the benchmark)."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", mask_crc(crc32c.crc32c(header)))
        + payload
        + struct.pack("<I", mask_crc(crc32c.crc32c(payload)))
    )


def unaligned_view(data: np.ndarray, dtype: str) -> np.ndarray:
    """View `data` (uint8) so that element i is the little-endian `dtype` value starting at byte i.

    Gathering from this view with an index array reads values at arbitrary byte offsets without
    building one index per byte.
    """
    width = np.dtype(dtype).itemsize
    count = max(len(data) - width + 1, 0)
    return np.ndarray(shape=(count,), dtype=dtype, buffer=data, strides=(1,))


@dataclass
class FrameChunk:
    """CRC-verified frames found in one chunk of the file.

    `data` is only valid until the next chunk is requested: copy out what you keep.
    """

    data: np.ndarray  # uint8 view of the chunk
    file_offset: int  # file byte offset of data[0]
    starts: np.ndarray  # int64 frame starts, relative to data
    lengths: np.ndarray  # int64 payload lengths
    first_record: int  # ordinal of the first frame in the file

    def payload(self, index: int) -> bytes:
        """The payload bytes of frame `index` in this chunk."""
        start = int(self.starts[index]) + HEADER_BYTES
        return self.data[start : start + int(self.lengths[index])].tobytes()


def walk_frames(data: bytes | bytearray | memoryview, end: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Follow the length fields from byte 0 while whole frames fit before `end`.

    Returns frame starts, payload lengths and the position where the walk stopped. Lengths are
    not trusted yet: the caller verifies the length CRCs before using anything past a frame.
    """
    # The walk is inherently sequential (each length says where the next frame starts); this
    # loop is the one per-frame Python cost, about 0.2 us per frame.
    unpack = struct.Struct("<Q").unpack_from
    starts: list[int] = []
    append = starts.append
    pos = 0
    while pos + FRAME_OVERHEAD <= end:
        (length,) = unpack(data, pos)
        following = pos + FRAME_OVERHEAD + length
        if following > end:
            break
        append(pos)
        pos = following
    starts_array = np.array(starts, dtype=np.int64)
    if len(starts_array):
        lengths = unaligned_view(np.frombuffer(data, np.uint8, end), "<u8")[starts_array]
    else:
        lengths = np.zeros(0, np.uint64)
    return starts_array, lengths.astype(np.int64), pos


def _xor_fold(words: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.bitwise_xor.reduceat(words, bounds) if len(words) else words


def _fold_rows(data: np.ndarray, starts: np.ndarray, length: int, bounds: np.ndarray) -> list[bytes]:
    """XOR together the `length`-byte strings at `starts`, one result per cell in `bounds`."""
    if length < 8:
        rows = data[starts[:, None] + np.arange(length)]
        return [row.tobytes() for row in np.bitwise_xor.reduceat(rows, bounds, axis=0)]
    words = unaligned_view(data, "<u8")
    full, rest = divmod(length, 8)
    columns = [_xor_fold(words[starts + 8 * j], bounds) for j in range(full)]
    if rest:
        # The last word overlaps the previous one; only its top `rest` bytes are new.
        columns.append(_xor_fold(words[starts + length - 8], bounds))
    folded = np.stack(columns, axis=1).view(np.uint8)
    if rest:
        folded = np.concatenate([folded[:, : 8 * full], folded[:, -rest:]], axis=1)
    return [row.tobytes() for row in folded]


def _bad_indices(data: np.ndarray, starts: np.ndarray, length: int, stored: np.ndarray,
                 cells: np.ndarray) -> np.ndarray:
    """Indices (into `starts`) of strings whose CRC32C differs from `stored`.

    CRC32C is affine over GF(2) for a fixed length L: crc(x) = lin(x) ^ crc(0^L). So for n strings
    of length L, XOR of their CRCs == crc(XOR of strings) ^ ((n + 1) % 2) * crc(0^L), and one real
    CRC call checks a whole cell. Corruption confined to one string is caught exactly as the CRC
    itself would catch it; independent random corruptions escape with probability ~2**-32, as
    with per-record CRCs. Only identical error patterns in two records of the same length cancel
    in the XOR; spreading records over `_CRC_CELLS` cells by a hash of their ordinal lets such a
    pair escape with probability 1/_CRC_CELLS. A failing cell is re-checked record by record.
    """
    order = np.argsort(cells, kind="stable")
    sorted_cells = cells[order]
    bounds = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    counts = np.diff(np.r_[bounds, len(order)])
    folded = _fold_rows(data, starts[order], length, bounds)
    expected = _xor_fold(stored[order], bounds)
    zero_crc = crc32c.crc32c(bytes(length))
    bad_cells = [
        cell for cell, (row, count, want) in enumerate(zip(folded, counts, expected))
        if crc32c.crc32c(row) ^ (zero_crc if count % 2 == 0 else 0) != int(want)
    ]
    if not bad_cells:
        return np.zeros(0, np.int64)
    suspects = np.concatenate([order[bounds[c] : bounds[c] + counts[c]] for c in bad_cells])
    view = data
    return np.array(
        sorted(i for i in suspects.tolist()
               if crc32c.crc32c(view[starts[i] : starts[i] + length]) != int(stored[i])),
        dtype=np.int64,
    )


def first_bad_frame(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                    first_record: int = 0) -> tuple[int, str] | None:
    """Index of the first frame whose length CRC or payload CRC is wrong, and which one failed."""
    if not len(starts):
        return None
    crc_words = unaligned_view(data, "<u4")
    ordinals = np.arange(first_record, first_record + len(starts), dtype=np.uint64)
    cells = ((ordinals * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(58)).astype(np.int64)
    bad_header = _bad_indices(data, starts, 8, unmask_crcs(crc_words[starts + 8]), cells)
    # A bad length makes every later frame position meaningless, so stop looking there.
    limit = int(bad_header[0]) if len(bad_header) else len(starts)
    payload_starts, payload_lengths = starts[:limit] + HEADER_BYTES, lengths[:limit]
    stored = unmask_crcs(crc_words[payload_starts + payload_lengths])
    first_payload = limit
    for length in np.unique(payload_lengths).tolist():
        members = np.flatnonzero(payload_lengths == length)
        bad = _bad_indices(data, payload_starts[members], length, stored[members],
                           cells[:limit][members] + length * _CRC_CELLS)
        if len(bad):
            first_payload = min(first_payload, int(members[bad[0]]))
    if first_payload < limit:
        return first_payload, "payload"
    if limit < len(starts):
        return limit, "length"
    return None


def iter_verified_frames(path: pathlib.Path, display_path: str, problems: list[InputProblem],
                         chunk_bytes: int = CHUNK_BYTES) -> Iterator[FrameChunk]:
    """Yield chunks of CRC-verified frames from `path`, appending any problem to `problems`.

    Never raises for bad content or OS errors: reading stops at a cut-off last frame
    (`event_file_truncated`), at the first CRC mismatch (`event_crc_mismatch`, since framing can
    no longer be trusted) or on an OS error (`file_unreadable`), keeping every frame before it.
    """
    try:
        with open(path, "rb") as stream:
            yield from _read_chunks(stream, os.fstat(stream.fileno()).st_size, display_path,
                                    problems, chunk_bytes)
    except OSError as error:
        problems.append(InputProblem(
            "file_unreadable", display_path,
            f"Could not read event file {display_path}: {error.strerror or error}.",
        ))


def _read_chunks(stream, file_size: int, display_path: str, problems: list[InputProblem],
                 chunk_bytes: int) -> Iterator[FrameChunk]:
    buffer = bytearray(chunk_bytes)
    carried = 0  # bytes of an unfinished frame at the start of `buffer`
    file_offset = 0  # file offset of buffer[0]
    record = 0
    at_eof = False
    while True:
        if not at_eof:
            got = stream.readinto(memoryview(buffer)[carried:])
            at_eof = got == 0 or carried + got < len(buffer)
            end = carried + got
        else:
            end = carried
        data = np.frombuffer(buffer, np.uint8, end)
        starts, lengths, stop = walk_frames(buffer, end)
        bad = first_bad_frame(data, starts, lengths, record)
        if bad is not None:
            index, which = bad
            if index:
                yield FrameChunk(data, file_offset, starts[:index], lengths[:index], record)
            problems.append(_crc_problem(display_path, file_offset + int(starts[index]), which))
            return
        if len(starts):
            yield FrameChunk(data, file_offset, starts, lengths, record)
            record += len(starts)
        remaining = end - stop
        if remaining >= HEADER_BYTES:
            header = bytes(buffer[stop : stop + 8])
            (stored,) = struct.unpack_from("<I", buffer, stop + 8)
            if mask_crc(crc32c.crc32c(header)) != stored:
                problems.append(_crc_problem(display_path, file_offset + stop, "length"))
                return
            needed = FRAME_OVERHEAD + struct.unpack("<Q", header)[0]
        else:
            needed = FRAME_OVERHEAD
        if at_eof or file_offset + stop + needed > file_size and remaining < needed and at_eof:
            if remaining:
                problems.append(_truncation_problem(display_path, file_offset + stop,
                                                    remaining, needed if remaining >= HEADER_BYTES else None))
            return
        if remaining >= HEADER_BYTES and file_offset + stop + needed > file_size:
            # The verified length says the frame runs past the end of the file: no more reads
            # will complete it, so do not grow the buffer to a length we cannot fill.
            present = file_size - (file_offset + stop)
            problems.append(_truncation_problem(display_path, file_offset + stop, present, needed))
            return
        # Carry the unfinished frame to the front; grow the buffer if one frame needs more.
        if needed > len(buffer):
            grown = bytearray(needed + chunk_bytes)
            grown[:remaining] = buffer[stop:end]
            buffer = grown
        else:
            buffer[:remaining] = buffer[stop:end]
        file_offset += stop
        carried = remaining


def _crc_problem(display_path: str, offset: int, which: str) -> InputProblem:
    part = "length header" if which == "length" else "payload"
    return InputProblem(
        "event_crc_mismatch", display_path,
        f"Event file {display_path}: the {part} CRC of the record at byte {offset} does not match, "
        "so the file is corrupt from there on. Records before it were kept; the rest of the file "
        "was not read because its framing can no longer be trusted.",
        locator=f"byte {offset}",
    )


def _truncation_problem(display_path: str, offset: int, present: int,
                        needed: int | None) -> InputProblem:
    if needed is None:
        shortfall = f"only {present} of the {HEADER_BYTES} header bytes are present"
    else:
        shortfall = f"{present} of its {needed} bytes are present ({needed - present} missing)"
    return InputProblem(
        "event_file_truncated", display_path,
        f"Event file {display_path} ends in the middle of a record at byte {offset}: {shortfall}. "
        "Every record before it was kept (the writer was probably killed mid-write).",
        locator=f"byte {offset}",
    )
