"""Coverage-guided fuzzing of the TensorBoard event-file reader with atheris (on demand, not in CI).

    pip install atheris
    python benchmarks/fuzz_event_reader.py -atheris_runs=200000 -max_len=65536 /tmp/fuzz-corpus-events

Seeds: every event file of the sample runs (and of the corpus folder given, if any). The contract
checked on every input: `read_event_file` returns, never raises, and every problem names the file.
A crash is saved by libFuzzer as `crash-<sha1>`; replay it with
`python benchmarks/fuzz_event_reader.py crash-<sha1>`. See docs/fuzzing.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["forensics"]):  # instrument our code, not torch
    from forensics.ingest.tensorboard import read_event_file

REPO = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.mkdtemp(prefix="fuzz-events-"))
TARGET = WORK / "events.out.tfevents.1.host.1.0"


def check(data: bytes) -> None:
    """One input: write it as an event file, read it, check the contract."""
    TARGET.write_bytes(data)
    result = read_event_file(TARGET, "fuzz/events")
    for problem in result.problems:
        assert problem.path == "fuzz/events" and "fuzz/events" in problem.message, problem
    assert result.bytes_read <= len(data)
    assert sum(len(series.steps) for series in result.scalars) <= result.records


def seed_corpus(directory: Path) -> None:
    """Copy the sample runs' event files (cut to 64 kB) into the corpus folder as seeds."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted((REPO / "sample_runs").rglob("*tfevents*"))):
        (directory / f"seed-{index}").write_bytes(path.read_bytes()[:65536])


if __name__ == "__main__":
    given = [argument for argument in sys.argv[1:] if not argument.startswith("-")]
    if not given:  # no corpus folder: a temporary one
        sys.argv.append(str(WORK / "corpus"))
    folder = Path(given[0] if given else WORK / "corpus")
    if not folder.is_file():  # a folder: (re)seed it; a file: replay that one input
        seed_corpus(folder)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
