"""A run that outlives --timeout-per-run, or a worker over --memory-per-worker, is an error entry and the sweep goes on."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from forensics.cli.main import app
from forensics.cli.sweep import parse_memory
from forensics.errors import ForensicsError

from conftest import SAMPLE_RUNS

runner = CliRunner()
# A log whose first lines are a real training log and which then runs on for a tebibyte (a sparse file:
# nothing is stored). Reading it to the end streams 1 TiB of zeros: minutes at memory speed, on any
# machine, while the sample runs beside it take about a second each.
HUGE_LOG_BYTES = 1 << 40


def _endless_run(run_dir):
    run_dir.mkdir(parents=True)
    with open(run_dir / "train.log", "w") as log:
        log.write("".join(f"step {step} loss {2.3 * math.exp(-step / 100) + 0.1:.4f} lr 1.0e-01\n"
                          for step in range(300)))
        try:
            log.truncate(HUGE_LOG_BYTES)
        except OSError as error:
            pytest.skip(f"this file system has no sparse files ({error})")
    if (run_dir / "train.log").stat().st_blocks * 512 > 1 << 30:
        pytest.skip("this file system stored the sparse file's hole")


def _runs(out):
    return {run["path"]: run for run in json.loads((out / "index.json").read_text())["runs"]}


def test_a_run_past_its_time_limit_is_stopped_and_the_others_finish(tmp_path):
    root = tmp_path / "runs"
    _endless_run(root / "endless")
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root / "healthy_onecycle")
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", root / "nan_divergence")
    result = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "-j", "2",
                                 "--timeout-per-run", "4", "--fail-on", "error"])
    assert result.exit_code == 1, result.output
    runs = _runs(tmp_path / "out")
    assert runs["endless"]["status"] == "error"
    assert "longer than --timeout-per-run 4 s" in runs["endless"]["headline"]
    assert runs["healthy_onecycle"]["status"] == "healthy" and runs["nan_divergence"]["status"] == "failed"
    assert "ERROR" in result.stderr and "3 run(s)" in result.stderr
    # an error entry is not cached: the next sweep tries the run again
    cache = json.loads((tmp_path / "out" / ".forensics-sweep-cache.json").read_text())
    assert set(cache["runs"]) == {"healthy_onecycle", "nan_divergence"}


def test_a_worker_over_its_memory_cap_gives_error_entries_and_an_index(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root / "healthy_onecycle")
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", root / "nan_divergence")
    # 64 MiB of address space is far below what the analysis maps once torch is imported: every run fails.
    result = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "-j", "2",
                                 "--memory-per-worker", "64MiB", "--timeout-per-run", "120", "-q"])
    assert result.exit_code == 0, result.output
    runs = _runs(tmp_path / "out")
    assert set(runs) == {"healthy_onecycle", "nan_divergence"}
    assert {run["status"] for run in runs.values()} == {"error"}
    assert all(run["reports"] == {} and run["headline"] for run in runs.values())


def test_memory_sizes_parse_and_nonsense_is_a_clear_error():
    assert parse_memory("8GiB") == 8 * 1024**3 and parse_memory("512MB") == 512 * 1024**2
    assert parse_memory("2g") == 2 * 1024**3 and parse_memory(str(1024**3)) == 1024**3
    for bad in ("lots", "12 parsecs", "1MB"):
        try:
            parse_memory(bad)
        except ForensicsError as error:
            assert "--memory-per-worker" in str(error)
        else:
            raise AssertionError(bad)
