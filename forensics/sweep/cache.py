"""The incremental cache of a sweep: in OUT (never in a run), one key per run, its entry reused when unchanged.

A run's key is a hash of the tool version, the options that change a report (formats, the stated
schedule, link following, the report's file name) and, for every file of the run, its path, size,
modification time and a hash of its last 4 KB. A run still being written changes size and mtime with
every record, so the next sweep re-analyses it; a rewrite in place that kept both is caught by the tail.
An entry is reused only when its reports are still in OUT.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from forensics.ingest import discovery
from forensics.render.output import write_report
from forensics.storage import TAIL_BYTES, is_url, local_path, remote_fingerprint
from forensics.sweep.model import SweepEntry, SweepTask

CACHE_FILE = ".forensics-sweep-cache.json"
CACHE_SCHEMA = "forensics.sweep-cache/1"


def run_fingerprint(source: str, follow_links: bool) -> list:
    """(relative path, size, mtime, tail hash) of every file of the run at `source` (a folder or URL)."""
    local = local_path(source)
    if local is None and is_url(source):
        return [list(row) for row in remote_fingerprint(source)]
    return [list(row) for row in _local_fingerprint(Path(local or source), follow_links)]


def _local_fingerprint(run_dir: Path, follow_links: bool) -> list[tuple[str, int, int, str]]:
    root = run_dir.resolve()
    rows, entered = [], set()
    stack = [run_dir]
    while stack:
        directory = stack.pop()
        try:
            identity = directory.stat()
            if (identity.st_dev, identity.st_ino) in entered:
                continue
            entered.add((identity.st_dev, identity.st_ino))
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() and not follow_links and not discovery._inside(path, root):
                continue  # not read by the analysis either
            try:
                if entry.is_dir():
                    stack.append(path)
                elif entry.is_file():
                    info = path.stat()
                    rows.append((path.relative_to(run_dir).as_posix(), info.st_size, info.st_mtime_ns,
                                 _tail_hash(path, info.st_size)))
            except (OSError, ValueError):
                rows.append((path.name, -1, 0, "unreadable"))
    return sorted(rows)


def _tail_hash(path: Path, size: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        return hashlib.sha256(handle.read(TAIL_BYTES)).hexdigest()


def run_key(task: SweepTask, source: str, tool_version: str) -> str:
    """The cache key of one run: its files, the tool version and the options that shape its reports."""
    options = {"formats": list(task.formats), "schedule": repr(task.schedule), "follow_links": task.follow_links,
               "file_stem": task.file_stem}
    text = json.dumps({"tool": tool_version, "options": options, "files": run_fingerprint(source, task.follow_links)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class SweepCache:
    """The cache file in OUT: run path -> (key, entry). Unreadable or foreign content is an empty cache."""

    def __init__(self, out_dir: Path):
        self.file = Path(out_dir) / CACHE_FILE
        self.previous: dict[str, dict] = {}
        self.current: dict[str, dict] = {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if data.get("schema") == CACHE_SCHEMA and isinstance(data.get("runs"), dict):
                self.previous = data["runs"]
        except (OSError, ValueError, AttributeError):
            pass

    def reusable(self, path: str, key: str, out_dir: Path) -> SweepEntry | None:
        """The cached entry of `path`, marked reused, when its key matches and its reports are still in OUT."""
        cached = self.previous.get(path)
        if not cached or cached.get("key") != key:
            return None
        try:
            entry = SweepEntry.from_dict(cached["entry"])
        except (KeyError, TypeError, ValueError):
            return None
        if not all((Path(out_dir) / name).is_file() for name in entry.reports.values()):
            return None
        return SweepEntry.from_dict({**entry.to_dict(), "reused": True})

    def remember(self, path: str, key: str | None, entry: SweepEntry) -> None:
        """Keep `entry` for the next sweep (a run that could not be analysed is tried again next time)."""
        if key is not None and entry.status != "error":
            self.current[path] = {"key": key, "entry": {**entry.to_dict(), "reused": False}}

    def save(self, guard: Path) -> None:
        """Write the cache of this sweep (only the runs it saw) into OUT."""
        text = json.dumps({"schema": CACHE_SCHEMA, "runs": self.current}, indent=1, sort_keys=True) + "\n"
        write_report(text, self.file, guard)
