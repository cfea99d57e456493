"""The one place that writes report files, and the rule that it never writes into the run dir."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from forensics.errors import ForensicsError

STDOUT = "-"


def safe_file_name(text: str) -> str:
    """`text` with everything but letters, digits, `-`, `_` and `.` replaced by `_` (never empty)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "run"


def default_output_path(run_name: str, extension: str) -> Path:
    """`./forensics-<run>.<ext>` in the current directory."""
    return Path.cwd() / f"forensics-{safe_file_name(run_name)}.{extension}"


def refuse_inside(target: str | Path, run_dir: Path, what: str = "the run directory") -> Path:
    """The resolved `target`; raises `ForensicsError` when it is `run_dir` or lies inside it.

    The run is evidence and must stay exactly as it was: no report, index or folder is ever put in it.
    """
    resolved = Path(target).expanduser().resolve()
    run_root = Path(run_dir).resolve()
    if resolved == run_root or run_root in resolved.parents:
        raise ForensicsError(f"{resolved}: refusing to write inside {what} {run_root}; "
                             "choose another path with -o")
    return resolved


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_report(text: str, destination: str | Path, run_dir: Path) -> str:
    """Write `text` to `destination` (or stdout for "-"); return a description of where it went.

    Refuses any path inside `run_dir`: the run is evidence and must stay exactly as it was.
    """
    if str(destination) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return "standard output"
    target = refuse_inside(destination, run_dir)
    if target.is_dir():
        raise ForensicsError(f"{target}: is a directory; give a file path with -o")
    if not target.parent.is_dir():
        raise ForensicsError(f"{target.parent}: no such directory for the report")
    # Write beside the target and rename, so a reader never sees half a report.
    handle, temporary = tempfile.mkstemp(prefix=".forensics-", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a report is meant to be shared
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ForensicsError(f"{target}: cannot write the report ({error.strerror or error})") from error
    return str(target)
