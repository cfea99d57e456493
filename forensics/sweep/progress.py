"""The sweep's progress on stderr: a tqdm bar on a terminal, one plain line per run otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

from forensics.sweep.model import SweepEntry


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class SweepProgress:
    """Runs done, failed and in error, the rate and the time left; `update` once per finished run."""

    def __init__(self, total: int, stream=None, force_plain: bool = False):
        self.total, self.done, self.failed, self.errors, self.reused = total, 0, 0, 0, 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.bar = None
        if not force_plain and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", file=self.stream, dynamic_ncols=True, desc="sweep")

    def update(self, entry: SweepEntry) -> None:
        """Count one finished (or reused) run."""
        self.done += 1
        self.failed += entry.status == "failed"
        self.errors += entry.status == "error"
        self.reused += entry.reused
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, errors=self.errors, reused=self.reused, refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        note = " (reused)" if entry.reused else ""
        self.stream.write(f"[{self.done}/{self.total}] {entry.path}: {entry.status.upper()}{note} · "
                          f"{self.failed} failed, {self.errors} error(s) · {rate:.1f} runs/s · ETA {eta}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
