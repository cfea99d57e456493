"""The library entry point behind `forensics analyze`: run dir in, report out."""

from __future__ import annotations

from pathlib import Path

from forensics.checks.runner import run_checks
from forensics.model.build import build_run
from forensics.report.build import build_report
from forensics.report.model import Report


def analyze(run_dir: Path, command: str = "") -> Report:
    """Read `run_dir`, run every check, and return the report (nothing is written anywhere).

    Raises `ForensicsError` when `run_dir` cannot be analysed at all (missing, not a directory).
    """
    run = build_run(Path(run_dir))
    return build_report(run, run_checks(run), command or f"forensics analyze {run_dir}")
