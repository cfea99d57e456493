"""TFRecord framing: walk the frames of a file in chunks and verify every CRC in bulk.

A TFRecord file is a sequence of frames::

    uint64 LE  payload length
    uint32 LE  masked CRC32C of the 8 length bytes
    bytes      payload
    uint32 LE  masked CRC32C of the payload

`iter_verified_frames` reads the file in chunks (partial frames carried over), so memory stays at
one chunk however large the file is, and hands back only frames whose two CRCs both check out.
A frame with a valid length CRC but a bad payload CRC is skipped alone (its length still says
where the next frame starts). Whatever stops the walk (a cut-off last frame, a bad length CRC,
an OS error) becomes an `InputProblem`; everything before it is kept.
"""

from __future__ import annotations

import os
import pathlib
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c
import numpy as np

from forensics.ingest.frame_crc import (  # noqa: F401 - mask_crc, _CRC_CELLS: part of this API
    _CRC_CELLS, HEADER_BYTES, bad_frames, mask_crc, unaligned_view)
from forensics.ingest.problems import InputProblem

# Small chunks keep the per-chunk numpy work in cache: 2 MB read 4M events in 1.8 s here,
# 32 MB in 2.5 s. Frames larger than a chunk grow the buffer as needed.
CHUNK_BYTES = 2 << 20
FRAME_OVERHEAD = HEADER_BYTES + 4  # header + payload CRC
# Frame walking: Python frames walked before looking for a pattern of lengths; longest period.
_WALK_FRAMES = 32
_MAX_WALK_FRAMES = 4096
_MAX_PERIOD = 16
# Records skipped for a bad payload CRC that get a problem of their own; the rest share one.
_CORRUPT_LISTED = 20


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload as a TFRecord record (used by tests and the benchmark)."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", mask_crc(crc32c.crc32c(header)))
        + payload
        + struct.pack("<I", mask_crc(crc32c.crc32c(payload)))
    )


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


def walk_frames(data: bytes | bytearray | memoryview,
                end: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Follow the length fields from byte 0 while whole frames fit before `end`.

    Returns frame starts, payload lengths and the position where the walk stopped. Lengths are
    not trusted yet: the caller verifies the length CRCs before using anything past a frame.

    The walk is sequential (each length says where the next frame starts), but the frames of a
    scalar event file come in a short repeating pattern of lengths. So once the last frames
    walked in Python repeat with a short period, the pattern is extended with numpy over the
    rest of the chunk (`_extend_pattern`): a predicted frame is kept only if it and every frame
    before it hold exactly their predicted length, which makes the result identical to walking
    frame by frame. The Python walk resumes at the first frame that breaks the pattern.
    """
    unpack = struct.Struct("<Q").unpack_from
    words = unaligned_view(np.frombuffer(data, np.uint8, end), "<u8")
    start_pieces: list[np.ndarray] = []
    length_pieces: list[np.ndarray] = []
    starts, lengths = array("q"), array("Q")  # frames walked in Python since the last guess
    history: list[int] = []  # lengths of the guessed frames just before `starts`
    pos, last_start = 0, end - FRAME_OVERHEAD
    budget = _WALK_FRAMES
    while True:
        walked = 0
        # About 0.15 us per frame: the one per-frame Python cost.
        while pos <= last_start and walked < budget:
            length = unpack(data, pos)[0]
            starts.append(pos)
            lengths.append(length)
            pos += length + FRAME_OVERHEAD
            walked += 1
        if pos > last_start:
            break
        # Every length here belongs to a frame that fits before `end`, so it fits in int64.
        recent = (history + lengths[-2 * _MAX_PERIOD:].tolist())[-2 * _MAX_PERIOD:]
        pattern = _find_period(recent)
        guessed_starts, guessed_lengths = (_extend_pattern(words, pattern, pos, end)
                                           if pattern else (None, None))
        if guessed_starts is None or len(guessed_starts) < 4 * len(pattern):
            budget = min(2 * budget, _MAX_WALK_FRAMES)  # guessing does not pay here: walk longer
        else:
            budget = _WALK_FRAMES
        if guessed_starts is not None and len(guessed_starts):
            start_pieces += [np.array(starts, np.int64), guessed_starts]
            length_pieces += [np.frombuffer(lengths, np.uint64).astype(np.int64), guessed_lengths]
            starts, lengths = array("q"), array("Q")
            history = guessed_lengths[-2 * _MAX_PERIOD:].tolist()
            pos = int(guessed_starts[-1] + guessed_lengths[-1]) + FRAME_OVERHEAD
    if pos > end:  # the last frame started does not fit (only the Python walk overshoots)
        pos = starts.pop()
        lengths.pop()
    start_pieces.append(np.array(starts, np.int64))
    length_pieces.append(np.frombuffer(lengths, np.uint64).astype(np.int64))
    if len(start_pieces) == 1:
        return start_pieces[0], length_pieces[0], pos
    return np.concatenate(start_pieces), np.concatenate(length_pieces), pos


def _find_period(recent: list[int]) -> list[int] | None:
    """The shortest period of `recent` (one period, ending with its last item), if any."""
    if len(recent) < 2 * _MAX_PERIOD:
        return None
    for period in range(1, _MAX_PERIOD + 1):
        if recent[period:] == recent[:-period]:
            return recent[-period:]
    return None


def _extend_pattern(words: np.ndarray, pattern: list[int], pos: int,
                    end: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames from `pos` on, predicted by repeating `pattern`, kept up to the first wrong guess.

    Kept frames fit whole before `end`, and each holds exactly its predicted length, so each
    kept start is where the sequential walk would have found a frame.
    """
    lengths = np.array(pattern, np.int64)
    sizes = lengths + FRAME_OVERHEAD
    period_bytes = int(sizes.sum())
    offsets = np.cumsum(sizes) - sizes
    repeats = (end - pos) // period_bytes + 1
    starts = (np.arange(pos, pos + repeats * period_bytes, period_bytes)[:, None]
              + offsets).ravel()
    lengths = np.tile(lengths, repeats)
    fit = int(np.count_nonzero(starts + lengths <= end - FRAME_OVERHEAD))  # frame ends increase
    starts, lengths = starts[:fit], lengths[:fit]
    wrong = words[starts] != lengths.view(np.uint64)
    first_wrong = int(wrong.argmax()) if fit and wrong.any() else fit
    return starts[:first_wrong], lengths[:first_wrong]


def iter_verified_frames(path: pathlib.Path, display_path: str, problems: list[InputProblem],
                         chunk_bytes: int | None = None) -> Iterator[FrameChunk]:
    """Yield chunks of CRC-verified frames from `path`, appending any problem to `problems`.

    Never raises for bad content or OS errors. A frame whose payload CRC fails but whose length
    CRC holds is skipped alone (`event_record_corrupt`, one problem per record up to
    `_CORRUPT_LISTED`, then one for the rest) and reading goes on. Reading stops at a cut-off last
    frame (`event_file_truncated`), at a bad length CRC (`event_crc_mismatch`, since framing can
    no longer be trusted) or on an OS error (`file_unreadable`), keeping every frame before it.
    """
    try:
        with open(path, "rb") as stream:
            corrupt = _CorruptRecords(display_path)
            try:
                yield from _read_chunks(stream, display_path, problems, chunk_bytes or CHUNK_BYTES,
                                        corrupt)
            finally:  # also when the consumer stops early: what was skipped is still reported
                problems[:0] = corrupt.problems()  # in file order, before any stop
    except OSError as error:
        problems.append(InputProblem(
            "file_unreadable", display_path,
            f"Could not read event file {display_path}: {error.strerror or error}.",
        ))


def _read_chunks(stream, display_path: str, problems: list[InputProblem], chunk_bytes: int,
                 corrupt: _CorruptRecords) -> Iterator[FrameChunk]:
    buffer = bytearray(max(chunk_bytes, 4 * FRAME_OVERHEAD))  # room for at least a header
    carried = 0  # bytes of an unfinished frame at the front of `buffer`
    file_offset = 0  # file offset of buffer[0]
    record = 0
    while True:
        got = stream.readinto(memoryview(buffer)[carried:])
        at_eof = got == 0
        end = carried + got
        data = np.frombuffer(buffer, np.uint8, end)
        starts, lengths, stop = walk_frames(buffer, end)
        bad_payloads, bad_length = bad_frames(data, starts, lengths, record)
        keep = len(starts) if bad_length is None else bad_length
        good = np.ones(keep, bool)
        for index in bad_payloads.tolist():
            good[index] = False
            payload_start = int(starts[index]) + HEADER_BYTES
            corrupt.add(file_offset + int(starts[index]),
                        bytes(buffer[payload_start : payload_start + int(lengths[index])]))
        if keep:
            kept_starts, kept_lengths = ((starts[:keep], lengths[:keep]) if good.all()
                                         else (starts[:keep][good], lengths[:keep][good]))
            if len(kept_starts):
                yield FrameChunk(data, file_offset, kept_starts, kept_lengths, record)
            record += keep
        if bad_length is not None:
            problems.append(_length_crc_problem(display_path,
                                                file_offset + int(starts[bad_length])))
            return
        frame_offset, remaining = file_offset + stop, end - stop
        if remaining == 0 and at_eof:
            return
        needed = None  # unknown until the whole header is there
        if remaining >= HEADER_BYTES:
            header = bytes(buffer[stop : stop + 8])
            if mask_crc(crc32c.crc32c(header)) != struct.unpack_from("<I", buffer, stop + 8)[0]:
                problems.append(_length_crc_problem(display_path, frame_offset))
                return
            needed = FRAME_OVERHEAD + struct.unpack("<Q", header)[0]
            # A verified length that runs past the end of the file will never be completed;
            # checking here also avoids growing the buffer to a length we cannot fill.
            on_disk = os.fstat(stream.fileno()).st_size - frame_offset
            if needed > on_disk:
                problems.append(_truncation_problem(display_path, frame_offset, on_disk, needed))
                return
        if at_eof:
            problems.append(_truncation_problem(display_path, frame_offset, remaining, needed))
            return
        # Carry the unfinished frame to the front; grow the buffer if one frame needs more.
        if needed is not None and needed > len(buffer):
            grown = bytearray(needed + chunk_bytes)
            grown[:remaining] = buffer[stop:end]
            buffer = grown
        else:
            buffer[:remaining] = buffer[stop:end]
        file_offset, carried = frame_offset, remaining


def _length_crc_problem(display_path: str, offset: int) -> InputProblem:
    return InputProblem(
        "event_crc_mismatch", display_path,
        f"Event file {display_path}: the length header CRC of the record at byte {offset} does not match, "
        "so the file is corrupt from there on. Records before it were kept; the rest of the file "
        "was not read because its framing can no longer be trusted.",
        locator=f"byte {offset}",
    )


class _CorruptRecords:
    """Records skipped for a bad payload CRC, turned into input problems at the end of the file."""

    def __init__(self, display_path: str) -> None:
        self.display_path = display_path
        self.listed: list[tuple[int, str]] = []  # (byte offset, what the damaged bytes still say)
        self.unlisted: list[int] = []

    def add(self, offset: int, payload: bytes) -> None:
        if len(self.listed) < _CORRUPT_LISTED:
            self.listed.append((offset, _damaged_record_hint(payload)))
        else:
            self.unlisted.append(offset)

    def problems(self) -> list[InputProblem]:
        path = self.display_path
        found = [InputProblem(
            "event_record_corrupt", path,
            f"Event file {path}: the payload CRC of the record at byte {offset} does not match"
            f"{hint}; that one record was skipped. Its length header checks out, so the framing is "
            "intact and the rest of the file was read.",
            locator=f"byte {offset}") for offset, hint in self.listed]
        if self.unlisted:
            first, count = self.unlisted[0], len(self.unlisted)
            found.append(InputProblem(
                "event_record_corrupt", path,
                f"Event file {path}: {count} more record(s) fail their payload CRC (the first at byte "
                f"{first}, the last at byte {self.unlisted[-1]}); each was skipped alone and the rest "
                "of the file was read.", locator=f"byte {first}"))
        return found


def _damaged_record_hint(payload: bytes) -> str:
    """`(tag 'x', step N as the damaged bytes read)` when protobuf still parses them, else ''."""
    from tensorboard.compat.proto import event_pb2  # only reached for damaged records

    try:
        event = event_pb2.Event.FromString(payload)
        tags = [value.tag for value in event.summary.value]
    except Exception:  # the damage may make it unparsable in any number of ways
        return ""
    if not tags:
        return ""
    tag = tags[0] if len(tags[0]) <= 100 else tags[0][:100] + "..."
    return f" (tag {tag!r}, step {event.step}, as the damaged bytes read)"


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
