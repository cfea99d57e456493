"""`forensics analyze` never writes inside the run directory it analyses."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from forensics.cli.main import app

from conftest import SAMPLE_RUNS


def _fingerprint(root: Path) -> dict[str, tuple]:
    """Every path under root with its content hash, size, mtime and mode."""
    prints = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            prints[str(path.relative_to(root))] = (digest, info.st_size, info.st_mtime_ns, info.st_mode)
    return prints


def test_analyze_leaves_the_run_dir_byte_for_byte_unchanged(tmp_path, monkeypatch):
    for name in ("resume_scheduler_reset", "nan_divergence"):
        run = tmp_path / name
        shutil.copytree(SAMPLE_RUNS / name, run)
        before = _fingerprint(run)
        monkeypatch.chdir(tmp_path)
        for output_format in ("html", "json", "md"):
            result = CliRunner().invoke(app, ["analyze", str(run), "-f", output_format, "-q"])
            assert result.exit_code == 0, result.output
        assert _fingerprint(run) == before
        assert not list(run.rglob("__pycache__"))
