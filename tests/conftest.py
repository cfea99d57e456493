"""Shared fixtures: the committed sample runs and other people's real runs (when present)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tensorboard_files import tensor_run, torch_run  # noqa: F401  (event-file fixtures shared by the reader tests)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RUNS = REPO / "sample_runs"


def real_runs_root() -> Path:
    """../shared/real_runs beside the repo, or $FORENSICS_REAL_RUNS."""
    return Path(os.environ.get("FORENSICS_REAL_RUNS", REPO.parent / "shared" / "real_runs"))


@pytest.fixture
def sample_run():
    """Path of a committed sample run by name; fails loudly if the committed run is missing."""
    def locate(name: str) -> Path:
        path = SAMPLE_RUNS / name
        assert path.is_dir(), f"sample run {name} missing; regenerate with: python sample_runs/generate.py"
        return path
    return locate


@pytest.fixture
def real_run():
    """Path of a run in ../shared/real_runs; skips the test when that folder is absent."""
    def locate(name: str) -> Path:
        path = real_runs_root() / name
        if not path.is_dir():
            pytest.skip(f"real run {name} not present at {path}")
        return path
    return locate


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """The labelled corpus (sample_runs/corpus.py), generated once per test session."""
    sys.path.insert(0, str(SAMPLE_RUNS))
    from corpus import generate_corpus

    out_dir = tmp_path_factory.mktemp("corpus")
    started = time.perf_counter()
    generate_corpus(out_dir)
    print(f"\ncorpus generated in {time.perf_counter() - started:.1f}s")
    return out_dir


@pytest.fixture(scope="session")
def corpus_truth(corpus_dir) -> dict:
    """CORPUS.json's cases: ground truth per case."""
    return json.loads((corpus_dir / "CORPUS.json").read_text())["cases"]
