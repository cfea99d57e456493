"""The log reader tells the progress bar how far through a big log it is, once per block."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensics import progress
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs import fast, lines
from forensics.ingest.logs.reader import read_log


class _Recorder:
    """A progress listener that only records what it is told."""

    def __init__(self) -> None:
        self.advanced: list[int] = []

    def run_started(self, total_bytes: int, files: int) -> None:
        pass

    def file_started(self, display_path: str, size_bytes: int) -> None:
        pass

    def file_advanced(self, done_bytes: int) -> None:
        self.advanced.append(done_bytes)

    def stage(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


def _write_log(path: Path) -> None:
    with open(path, "w") as handle:
        for step in range(1, 3001):
            handle.write(f"{{'loss': {1 / step!r}, 'learning_rate': {step * 1e-7!r}, 'epoch': {step / 1000}}}\n")
            if step % 250 == 0:
                handle.write("some other line, not a metric\n")
        handle.write("step 3001 loss 0.1")  # no newline at the end


@pytest.mark.parametrize("compiled", [True, False], ids=["with_scan", "pure_python"])
def test_progress_advances_once_per_block_up_to_the_file_size(tmp_path, monkeypatch, compiled):
    if not compiled:
        monkeypatch.setattr(fast, "scan", None)
    monkeypatch.setattr(lines, "BLOCK_BYTES", 8192)
    path = tmp_path / "train.log"
    _write_log(path)
    size = path.stat().st_size
    with progress.listening(_Recorder()) as recorder:
        read = read_log(FoundFile(path, path.name, "log", size, 0.0))
    assert read.coverage["lines"] == 3013
    assert len(recorder.advanced) >= size // 8192  # per block, not once at the end
    assert recorder.advanced == sorted(set(recorder.advanced))  # strictly increasing
    assert recorder.advanced[-1] == size


def test_reading_without_a_listener_reports_nothing_and_works(tmp_path):
    path = tmp_path / "train.log"
    _write_log(path)
    read = read_log(FoundFile(path, path.name, "log", path.stat().st_size, 0.0))
    assert read.records == 2 * 3000 + 1
