"""Coverage-guided fuzzing of the log-format registry and the streaming log reader with atheris
(on demand, not in CI).

    pip install atheris
    python benchmarks/fuzz_log_registry.py -atheris_runs=500000 -max_len=4096 /tmp/fuzz-corpus-logs

Each input is fed twice: line by line to `parse_line` (every format in the registry, in order) and
as a whole file to `read_log` (carriage-return redraws, ANSI colours, rank prefixes, events, step
axis). Contract: nothing raises; a parse gives finite-or-NaN floats under string tags and an int64
step or None; every problem of the file read names the file. Seeds: the documented real lines of
every format and the sample runs' logs. See docs/fuzzing.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["forensics"]):  # instrument our code, not torch
    from forensics.ingest.discovery import FoundFile
    from forensics.ingest.logs.formats import FORMAT_MODULES, parse_line
    from forensics.ingest.logs.formats.base import docstring_examples
    from forensics.ingest.logs.reader import read_log

REPO = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.mkdtemp(prefix="fuzz-logs-"))
TARGET = WORK / "train.log"
INT64 = range(-(2**63), 2**63)


def check(data: bytes) -> None:
    """One input: every line through the registry, then the whole input as a log file."""
    for line in data.decode("utf-8", errors="backslashreplace").splitlines():
        try:
            result = parse_line(line)
        except RecursionError:
            continue  # absurd JSON nesting: the reader catches it per line and reports it
        if result is not None:
            _, parsed = result
            assert all(isinstance(tag, str) and isinstance(value, float) for tag, value in parsed.values.items())
            assert parsed.step is None or parsed.step in INT64, parsed.step
    TARGET.write_bytes(data)
    read = read_log(FoundFile(TARGET, "fuzz.log", "log", len(data), 0.0))
    for problem in read.problems:
        assert problem.path == "fuzz.log" and "fuzz.log" in problem.message, problem


def seed_corpus(directory: Path) -> None:
    """Documented real lines of every format, and the sample runs' logs (first 4 kB)."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in FORMAT_MODULES:
        for index, line in enumerate(docstring_examples(module.__doc__ or "")):
            (directory / f"{module.__name__.rsplit('.', 1)[-1]}-{index}").write_text(line + "\n")
    for index, path in enumerate(sorted((REPO / "sample_runs").rglob("*.log"))):
        (directory / f"sample-{index}").write_bytes(path.read_bytes()[:4096])


if __name__ == "__main__":
    given = [argument for argument in sys.argv[1:] if not argument.startswith("-")]
    if not given:  # no corpus folder: a temporary one
        sys.argv.append(str(WORK / "corpus"))
    folder = Path(given[0] if given else WORK / "corpus")
    if not folder.is_file():  # a folder: (re)seed it; a file: replay that one input
        seed_corpus(folder)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
