"""Runs and sweep roots given as fsspec URLs (`s3://`, `gs://`, `file://`, `memory://`, chained URLs).

The readers work on local paths (they stream, seek and stat), so a run on object storage is fetched
with fsspec's own recursive `fs.get` into a temporary folder outside the run, analysed there, and the
folder removed; the report names the URL, not the temporary copy. A local path or a `file://` URL is
read where it lies, without any copy. `s3fs`/`gcsfs` are optional extras (`pip install forensics[s3]`);
a missing one is a one-line error naming the URL and the extra.

Nothing here writes to the storage a run lies on.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from forensics.errors import ForensicsError

# `proto://...` or a chain `simplecache::proto://...`; a Windows drive (`C:\`) is not a URL.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*(::[A-Za-z][A-Za-z0-9+.\-]*)*://|^[A-Za-z][A-Za-z0-9+.\-]*::")
# Filesystems whose contents live inside one process: a worker process cannot read them, so the
# sweep fetches such runs in the parent before handing them out.
PROCESS_LOCAL_PROTOCOLS = {"memory"}
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
# How much of each file's end the fingerprint of a remote run reads.
TAIL_BYTES = 4096


def is_url(location: str | Path) -> bool:
    """`location` is an fsspec URL rather than a local path."""
    return isinstance(location, str) and bool(_URL.match(location))


def open_fs(url: str):
    """(filesystem, path inside it) for `url`; a missing protocol or extra is a `ForensicsError`."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        protocol = url.split("://", 1)[0].split("::")[-1]
        extra = EXTRAS.get(protocol)
        hint = f" (pip install 'forensics[{extra}]')" if extra else ""
        raise ForensicsError(f"{url}: the {protocol}:// filesystem is not installed{hint}: {error}") from error
    except (ValueError, OSError) as error:
        raise ForensicsError(f"{url}: not a usable fsspec URL ({error})") from error


def local_path(location: str | Path) -> Path | None:
    """The local folder behind `location` when it is a path or a plain `file://` URL, else None."""
    if not is_url(location):
        return Path(location)
    from fsspec.implementations.local import LocalFileSystem

    fs, path = open_fs(str(location))
    return Path(path) if isinstance(fs, LocalFileSystem) else None


def base_name(location: str | Path) -> str:
    """The last part of a path or URL: the run's name."""
    if not is_url(location):
        return Path(location).name
    return PurePosixPath(open_fs(str(location))[1].rstrip("/")).name or "run"


@contextmanager
def local_run(location: str | Path) -> Iterator[Path]:
    """A local folder holding the run at `location`, for the path-based readers.

    A local path or `file://` URL is the folder itself. Anything else is fetched with `fs.get(...,
    recursive=True)` into a temporary folder (named like the run, so the report keeps its name) that
    is removed afterwards. A URL that is not a folder is a `ForensicsError` naming it.
    """
    local = local_path(location)
    if local is not None:
        yield local
        return
    url = str(location)
    fs, path = open_fs(url)
    path = path.rstrip("/")
    try:
        is_folder = fs.isdir(path)
    except OSError as error:
        raise ForensicsError(f"{url}: cannot be read ({error})") from error
    if not is_folder:
        raise ForensicsError(f"{url}: no such folder" if not fs.exists(path) else f"{url}: not a folder")
    staging = Path(tempfile.mkdtemp(prefix="forensics-fetch-"))
    target = staging / (PurePosixPath(path).name or "run")
    try:
        try:
            fs.get(path + "/", str(target) + "/", recursive=True)
        except OSError as error:
            raise ForensicsError(f"{url}: cannot be fetched ({error})") from error
        target.mkdir(exist_ok=True)  # an empty remote folder
        yield target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_guard(location: str | Path) -> Path:
    """The folder no report may be written into: the run's local folder, or for a remote run the
    folder its temporary copy would be made in (reports never go to the temporary copy either)."""
    local = local_path(location)
    return local if local is not None else Path(tempfile.gettempdir()) / "forensics-fetch-remote-run"


def analyze_location(location: str | Path, **options):
    """`forensics.analyze.analyze` on a path or URL; the report names `location` as the run's path."""
    from forensics.analyze import analyze

    with local_run(location) as run_dir:
        report = analyze(run_dir, **options)
    return named_after(report, location)


def named_after(report, location: str | Path):
    """`report` with `location` as its run's path when that is a remote URL (not the temporary copy)."""
    if not is_url(location) or local_path(location) is not None:
        return report
    return dataclasses.replace(report, provenance=dataclasses.replace(report.provenance, run_path=str(location)))


def remote_fingerprint(url: str) -> list[tuple[str, int, str, str]]:
    """(relative path, size, modification stamp, sha256 of the last 4 KB) of every file of a remote run.

    The stamp is whatever the filesystem reports (`mtime`, `LastModified`, `updated`, `created`, an
    ETag), as text; a store that reports none leaves the size and the tail hash to tell a change.
    """
    import hashlib

    fs, path = open_fs(url)
    path = path.rstrip("/")
    rows = []
    for name, info in sorted(fs.find(path, detail=True).items()):
        if info.get("type") != "file":
            continue
        size = int(info.get("size") or 0)
        stamp = next((str(info[key]) for key in ("mtime", "LastModified", "updated", "created", "ETag", "etag")
                      if info.get(key) is not None), "")
        tail = fs.cat_file(name, start=max(0, size - TAIL_BYTES), end=size) if size else b""
        rows.append((name[len(path):].lstrip("/"), size, stamp, hashlib.sha256(tail).hexdigest()))
    return rows
