"""Progress of a long analysis: ingest says what it is reading, a listener (the CLI's bar) shows it.

Readers and the model builder call the functions below (`run_started`, `file_started`,
`file_advanced`, `stage`) without knowing whether anyone listens: with no listener installed
(library use, sweeps, tests) each call is one context-variable lookup. The listener is per
context (`contextvars`), so analyses running side by side in threads never share one.
`TerminalProgress` is the listener `forensics analyze` installs on a terminal: a tqdm bar on
stderr that appears only once an analysis has taken more than a couple of seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol, TextIO


class Listener(Protocol):
    """What a progress display is told. Sizes and positions are in bytes."""

    def run_started(self, total_bytes: int, files: int) -> None: ...

    def file_started(self, display_path: str, size_bytes: int) -> None: ...

    def file_advanced(self, done_bytes: int) -> None: ...

    def stage(self, name: str) -> None: ...

    def close(self) -> None: ...


_listener: ContextVar[Listener | None] = ContextVar("forensics_progress", default=None)


def run_started(total_bytes: int, files: int) -> None:
    """Reading starts: `files` files of `total_bytes` bytes in all are to be read."""
    listener = _listener.get()
    if listener is not None:
        listener.run_started(total_bytes, files)


def file_started(display_path: str, size_bytes: int) -> None:
    """One file starts being read (the previous one, if any, is done)."""
    listener = _listener.get()
    if listener is not None:
        listener.file_started(display_path, size_bytes)


def file_advanced(done_bytes: int) -> None:
    """The current file has been read up to byte `done_bytes`. Call it per chunk, not per record."""
    listener = _listener.get()
    if listener is not None:
        listener.file_advanced(done_bytes)


def stage(name: str) -> None:
    """Reading is over and the analysis is at `name` (`checks`, `report`...)."""
    listener = _listener.get()
    if listener is not None:
        listener.stage(name)


@contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Send this context's progress to `listener` while the block runs; close it at the end."""
    token = _listener.set(listener)
    try:
        yield listener
    finally:
        _listener.reset(token)
        listener.close()


def terminal_progress(enabled: bool = True, stream: TextIO | None = None) -> AbstractContextManager:
    """A progress bar on `stream` (stderr) for the block, if `enabled` and `stream` is a terminal."""
    stream = stream or sys.stderr
    if not enabled or not stream.isatty():
        return nullcontext()
    return listening(TerminalProgress(stream))


class TerminalProgress:
    """A tqdm bar on a terminal: which file (n of m), how far through all bytes, then the stage.

    tqdm's `delay` keeps it hidden for the first `delay_seconds`, so a quick analysis prints
    nothing but its summary; the bar is removed when it closes (`leave=False`).
    """

    def __init__(self, stream: TextIO | None = None, delay_seconds: float = 2.0,
                 redraw_seconds: float = 0.2) -> None:
        self._stream = stream or sys.stderr
        self._delay, self._redraw = delay_seconds, redraw_seconds
        self._bar = None  # made when the total is known: tqdm's reset() would draw it at once
        self._files, self._file_index = 0, 0
        self._finished_bytes, self._current_size = 0, 0

    def run_started(self, total_bytes: int, files: int) -> None:
        from tqdm import tqdm  # only the CLI on a terminal pays for it

        self.close()
        self._bar = tqdm(total=max(total_bytes, 1), unit="B", unit_scale=True, unit_divisor=1024,
                         delay=self._delay, mininterval=self._redraw, miniters=1, leave=False,
                         file=self._stream, dynamic_ncols=True,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
        self._files, self._file_index = files, 0
        self._finished_bytes, self._current_size = 0, 0

    def file_started(self, display_path: str, size_bytes: int) -> None:
        self._finished_bytes += self._current_size
        self._current_size, self._file_index = size_bytes, self._file_index + 1
        self._describe(f"reading {self._file_index}/{self._files} {_shorten(display_path)}")
        self._move_to(self._finished_bytes)

    def file_advanced(self, done_bytes: int) -> None:
        self._move_to(self._finished_bytes + min(done_bytes, self._current_size))

    def stage(self, name: str) -> None:
        self._finished_bytes += self._current_size
        self._current_size = 0
        self._describe(name)
        if self._bar is not None:
            self._move_to(self._bar.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _describe(self, text: str) -> None:
        if self._bar is None:
            return
        self._bar.set_description_str(text, refresh=False)
        if self._bar._time() >= self._bar.start_t + self._delay:  # shown already: show the new text
            self._bar.refresh()

    def _move_to(self, position: int) -> None:
        if self._bar is not None and position != self._bar.n:
            self._bar.update(position - self._bar.n)


def _shorten(display_path: str, width: int = 48) -> str:
    return display_path if len(display_path) <= width else "..." + display_path[-(width - 3):]
