"""Find the runs under a sweep root, local or an fsspec URL, and every folder that was not taken, with why.

`forensics.ingest.discovery.find_runs` decides what a run is; this module adds what a nightly gate
needs on top: the folders it looked at and did not take (nor hold a run below), each with a reason, so
nothing is dropped without a word. A remote root is listed once (`fs.find`) and mirrored as a skeleton
of empty files, with only the first 64 KB of the text logs that run discovery sniffs, so the same rules
decide on it; each run found is then read where it lies by the worker that analyses it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forensics.errors import ForensicsError
from forensics.ingest import discovery
from forensics.ingest.problems import InputProblem
from forensics.storage import PROCESS_LOCAL_PROTOCOLS, local_path, open_fs
from forensics.sweep.model import SkippedFolder

NAMES_SHOWN = 3
# A skipped folder's reason counts at most this many files below it (a huge non-run tree stays cheap).
REASON_FILE_CAP = 5000


@dataclass
class WalkedRoot:
    """The runs under a root: where a worker reads each, its path relative to the root, and what was left."""

    root: str                       # as shown in the index: the resolved local folder or the URL
    guard: Path                     # the local folder no output may go into (the root, or its local stand-in)
    locations: list[str] = field(default_factory=list)   # local folders or URLs, one per run
    paths: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)     # where each run really lies (what the cache stats)
    problems: list[InputProblem] = field(default_factory=list)
    skipped: list[SkippedFolder] = field(default_factory=list)


@contextmanager
def walk_root(root: str | Path, follow_links: bool = False) -> Iterator[WalkedRoot]:
    """The runs and skipped folders under `root` (a folder or an fsspec URL).

    A missing or unlistable root is a `ForensicsError` naming it. A remote root's runs are handed out
    as URLs, read by the workers where they lie; a process-local one (`memory://`) is fetched here once
    with `fs.get`, since no worker process can see it.
    """
    local = local_path(root)
    if local is not None:
        yield _walk_local(local, follow_links)
        return
    fs, _ = open_fs(str(root))
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    fetch = protocol in PROCESS_LOCAL_PROTOCOLS
    with (_fetched(str(root)) if fetch else _skeleton(str(root))) as stand_in:
        walked = _walk_local(stand_in, follow_links=False)
        # As the user spelled the root (a chained URL keeps its chain), plus each run's relative path.
        urls = [str(root).rstrip("/") + ("" if path == "." else f"/{path}") for path in walked.paths]
        walked.root, walked.guard, walked.sources = str(root), stand_in, urls
        if not fetch:
            walked.locations = urls
        yield walked


def _walk_local(root: Path, follow_links: bool) -> WalkedRoot:
    if not root.is_dir():
        raise ForensicsError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    found = discovery.find_runs(root, follow_external_links=follow_links)
    paths = [_relative(run, found.root) for run in found.runs]
    walked = WalkedRoot(root=str(found.root), guard=found.root, locations=[str(run) for run in found.runs],
                        paths=paths, sources=[str(run) for run in found.runs], problems=list(found.problems))
    walked.skipped = skipped_folders(found.root, found.runs, follow_links)
    return walked


def _relative(run_dir: Path, root: Path) -> str:
    try:
        return run_dir.relative_to(root).as_posix() or "."
    except ValueError:
        return run_dir.as_posix()


def skipped_folders(root: Path, runs: list[Path], follow_links: bool) -> list[SkippedFolder]:
    """Every top-most folder under `root` that is not a run and holds none below it, with the reason."""
    run_set = set(runs)
    containers = {parent for run in runs for parent in run.parents if parent == root or root in parent.parents}
    entered: set[tuple[int, int]] = set()
    skipped: list[SkippedFolder] = []
    for folder in (*runs, *containers, root):
        try:
            folder_stat = folder.stat()
            entered.add((folder_stat.st_dev, folder_stat.st_ino))
        except OSError:
            continue
    if root not in run_set:
        _walk_containers(root, root, run_set, containers, entered, follow_links, skipped)
    return skipped


def _walk_containers(directory: Path, root: Path, runs: set[Path], containers: set[Path],
                     entered: set[tuple[int, int]], follow_links: bool, skipped: list[SkippedFolder]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return  # already a walk problem of find_runs
    for entry in entries:
        path = Path(entry.path)
        try:
            entry_stat = path.stat()
        except OSError:
            continue  # a broken link: a walk problem
        if not stat.S_ISDIR(entry_stat.st_mode) or path in runs:
            continue
        if entry.is_symlink() and not follow_links and not discovery._inside(path, root):
            continue  # a link out of the root: a walk problem
        if path in containers:
            _walk_containers(path, root, runs, containers, entered, follow_links, skipped)
            continue
        if (entry_stat.st_dev, entry_stat.st_ino) in entered:
            continue  # a link back into the walked tree: find_runs reported the loop
        reason, files = skip_reason(path)
        skipped.append(SkippedFolder(_relative(path, root), reason, files))


def skip_reason(folder: Path) -> tuple[str, int]:
    """Why `folder` is not a run, from the names (and sniffed logs) of the files below it; and their count."""
    logs, configs, others = [], [], []
    seen: set[tuple[int, int]] = set()
    for path in _files_below(folder, seen):
        kind = discovery.classify(path.name)
        shown = path.relative_to(folder).as_posix()
        (logs if kind == discovery.LOG else configs if kind == discovery.CONFIG else others).append(shown)
    total = len(logs) + len(configs) + len(others)
    if not total:
        return "empty folder: no files below it", 0
    parts = []
    if logs:
        parts.append(f"{_names(logs)}: named like a log, but no log format reads a repeated metric from its "
                     "first lines")
    if configs:
        parts.append(f"{_names(configs)}: config file(s) only; configs alone do not make a run")
    if others:
        parts.append(f"{_names(others)}: no event file, checkpoint, log, trainer_state.json or metric table")
    return "; ".join(parts), total


def _files_below(folder: Path, seen: set[tuple[int, int]]) -> Iterator[Path]:
    count = 0
    stack = [folder]
    while stack and count < REASON_FILE_CAP:
        directory = stack.pop()
        try:
            identity = directory.stat()
            if (identity.st_dev, identity.st_ino) in seen:
                continue
            seen.add((identity.st_dev, identity.st_ino))
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    count += 1
                    yield Path(entry.path)
            except OSError:
                continue


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


@contextmanager
def _fetched(url: str):
    """The whole root fetched into a temporary folder with fsspec's recursive `get`."""
    from forensics.storage import local_run

    with local_run(url) as folder:
        yield folder


@contextmanager
def _skeleton(url: str):
    """A local stand-in for the remote root: every folder and file name, empty, except the heads of the
    `.txt`/`.out`/`.err` files that run discovery reads to tell a log from a README."""
    fs, base = open_fs(url)
    base = base.rstrip("/")
    try:
        if not fs.isdir(base):
            raise ForensicsError(f"{url}: no such folder" if not fs.exists(base) else f"{url}: not a folder")
        listing = fs.find(base, withdirs=True, detail=True)
    except OSError as error:
        raise ForensicsError(f"{url}: cannot be listed ({error})") from error
    staging = Path(tempfile.mkdtemp(prefix="forensics-skeleton-"))
    skeleton = staging / (PurePosixPath(base).name or "root")
    try:
        skeleton.mkdir()
        for name, info in listing.items():
            relative = name[len(base):].lstrip("/")
            if not relative:
                continue
            target = skeleton / relative
            if info.get("type") == "directory":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            head = b""
            if name.lower().endswith(discovery._SNIFFED_LOG_SUFFIXES):
                head = fs.cat_file(name, start=0, end=min(int(info.get("size") or 0), discovery.SNIFF_LOG_BYTES))
            target.write_bytes(head)
        yield skeleton
    finally:
        shutil.rmtree(staging, ignore_errors=True)
