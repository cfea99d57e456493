"""Stream a text file's physical lines with bounded memory, whatever is in it.

Memory stays bounded by the line-length limit: a line longer than `max_line_bytes` (default
`MAX_LINE_BYTES`, changed with the environment variable `FORENSICS_MAX_LINE_BYTES`) is skipped and
reported with the file, its line number, its size and the limit. Text is decoded as UTF-8 with
`errors="backslashreplace"`, so undecodable bytes stay visible instead of stopping the read; the
first such line is reported once. A file that is binary (NUL bytes or mostly control bytes in its
first 8 KB) is not read as text at all.

Two ways to read: iterating gives (line number, text) one line at a time; `blocks` gives whole
lines a few MB at a time for the log reader's batch path (`fast`), which reads the lines in them
with `decode` and `report_oversized` so both ways give the same lines, numbers and problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forensics.ingest.limits import MAX_LINE_BYTES as LINE_CAP
from forensics.ingest.problems import InputProblem

MAX_LINE_BYTES = LINE_CAP.default
MAX_LINE_ENV = LINE_CAP.env
SNIFF_BYTES = 8192
BLOCK_BYTES = 1024 * 1024
# Share of control bytes (other than tab, newline, carriage return, escape, form feed) above
# which the start of a file is not text.
BINARY_CONTROL_SHARE = 0.10
_TEXT_CONTROLS = {9, 10, 12, 13, 27, 8}


def max_line_bytes() -> int:
    """The line-length limit in bytes: $FORENSICS_MAX_LINE_BYTES when set to a positive integer."""
    return LINE_CAP.value()


@dataclass
class LineStream:
    """Physical lines of one file, plus what could not be read; iterate once."""

    path: Path
    display_path: str
    limit: int = field(default_factory=max_line_bytes)
    problems: list[InputProblem] = field(default_factory=list)
    lines_read: int = 0
    bytes_read: int = 0  # by `blocks`: how far through the file it is (for the progress bar)
    oversized_lines: int = 0
    undecodable_lines: int = 0

    def sniff_binary(self, code: str = "binary_log", named_like: str = "a text log") -> InputProblem | None:
        """A `binary_log` (or `code`) problem when the file's first 8 KB are not text, else None."""
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
        except OSError as error:
            return InputProblem("file_unreadable", self.display_path,
                                f"{self.display_path}: cannot be read ({error.strerror or error})", severity="error")
        if not head:
            return None
        controls = sum(1 for byte in head if byte < 32 and byte not in _TEXT_CONTROLS)
        if b"\x00" in head or controls / len(head) > BINARY_CONTROL_SHARE:
            why = "NUL bytes" if b"\x00" in head else f"{controls} control bytes"
            return InputProblem(code, self.display_path,
                                f"{self.display_path}: named like {named_like} but holds binary data ({why} in its "
                                f"first {len(head):,} bytes); not read", locator="byte 0")
        return None

    def _open(self):
        """The file opened for binary reading, or None after noting why it cannot be read."""
        try:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as error:
            self.problems.append(InputProblem("file_unreadable", self.display_path,
                                              f"{self.display_path}: cannot be read ({error.strerror or error})",
                                              severity="error"))
            return None

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(1-based line number, decoded text without the line ending) for every line within the limit."""
        handle = self._open()
        if handle is None:
            return
        try:
            yield from self._lines(handle)
        finally:
            handle.close()

    def _lines(self, handle) -> Iterator[tuple[int, str]]:
        limit = self.limit
        number = 0
        while True:
            raw = handle.readline(limit + 1)
            if not raw:
                break
            number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                self._skip_oversized(handle, number, len(raw))
                continue
            self.lines_read = number
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="backslashreplace")
                self._note_undecodable(number)
            yield number, text.rstrip("\r\n")
        self.lines_read = number

    def blocks(self, block_bytes: int | None = None) -> Iterator[tuple[bytearray, int]]:
        """The file as blocks of whole lines (the last may lack its newline), about `block_bytes`
        (default `BLOCK_BYTES`, read at each call so tests can shrink it) each, as (buffer, end):
        the block is `buffer[:end]`.

        One buffer is reused for every block (no fresh memory to fault in, no copy per block), so the
        caller reads the lines of each block, in order, and adds them to `lines_read` before asking
        for the next. A line that outgrows the limit before its newline arrives is skipped and
        reported here, without being held: memory stays bounded by block and limit.
        """
        block_bytes = block_bytes or BLOCK_BYTES
        handle = self._open()
        if handle is None:
            return
        try:
            # Room for a carried partial line (at most the limit, or what follows a skipped line) and a read.
            buffer = bytearray(max(self.limit, block_bytes) + block_bytes)
            filled = 0  # the carry: the start of a line the previous block did not finish
            while True:
                with memoryview(buffer)[filled:filled + block_bytes] as room:
                    got = handle.readinto(room)
                if not got:
                    break
                self.bytes_read += got
                filled += got
                cut = buffer.rfind(b"\n", 0, filled) + 1
                if cut:
                    yield buffer, cut
                    buffer[:filled - cut] = buffer[cut:filled]
                    filled -= cut
                if filled > self.limit:  # no newline within the limit: an oversized line
                    rest = self._skip_rest(handle, filled, block_bytes)
                    buffer[:len(rest)] = rest
                    filled = len(rest)
            if filled:
                yield buffer, filled
        finally:
            handle.close()

    def _skip_rest(self, handle, size: int, block_bytes: int) -> bytes:
        """Skip an oversized line of which `size` bytes are read; what follows its newline."""
        while True:
            chunk = handle.read(block_bytes)
            self.bytes_read += len(chunk)
            if not chunk:
                rest = b""
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                size += newline + 1
                rest = chunk[newline + 1:]
                break
            size += len(chunk)
        self.lines_read += 1
        self.report_oversized(self.lines_read, size)
        return rest

    def decode(self, number: int, raw: bytes) -> str:
        """One line's bytes as text without its line ending, as iterating gives it."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="backslashreplace")
            self._note_undecodable(number)
        return text.rstrip("\r\n")

    def _skip_oversized(self, handle, number: int, size: int) -> None:
        """Read past the rest of an over-long line, in bounded pieces, and report it."""
        raw = b""
        while not raw.endswith(b"\n"):
            raw = handle.readline(self.limit + 1)
            if not raw:
                break
            size += len(raw)
        self.report_oversized(number, size)

    def report_oversized(self, number: int, size: int) -> None:
        """Count and report line `number`, `size` bytes with its newline, as skipped for its length."""
        self.oversized_lines += 1
        self.problems.append(InputProblem(
            "log_line_too_long", self.display_path,
            f"{self.display_path}: line {number} is {size:,} bytes, over the {self.limit:,}-byte line limit; "
            f"skipped (raise the limit with {MAX_LINE_ENV})", locator=f"line {number}"))

    def _note_undecodable(self, number: int) -> None:
        self.undecodable_lines += 1
        if self.undecodable_lines == 1:
            self.problems.append(InputProblem(
                "log_not_utf8", self.display_path,
                f"{self.display_path}: not valid UTF-8 from line {number} on; undecodable bytes are shown as "
                r"\xNN escapes", locator=f"line {number}"))
