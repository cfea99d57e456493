"""The library entry point behind `forensics analyze`: run dir in, report out."""

from __future__ import annotations

from pathlib import Path

from forensics import progress
from forensics.checks.runner import run_checks
from forensics.model.build import build_run
from forensics.report.build import build_report
from forensics.report.model import Report
from forensics.schedule import ScheduleOptions, resolve_intended


def analyze(run_dir: Path, command: str = "", schedule: ScheduleOptions | None = None,
            follow_links: bool = False) -> Report:
    """Read `run_dir`, work out the intended LR schedule, run every check, and return the report.

    Nothing is written anywhere. Links leading outside `run_dir` are reported and not read unless
    `follow_links` is set. `schedule` carries what the user stated (`--schedule`, `--base-lr`,
    ...); without it the schedule comes from checkpoints, configs or a fit to the logged LR.
    Raises `ForensicsError` when `run_dir` cannot be analysed at all (missing, not a directory) or the
    stated schedule cannot be built.
    """
    run = build_run(Path(run_dir), follow_external_links=follow_links)
    progress.stage("working out the intended schedule")
    run.intended_schedule = resolve_intended(run, schedule)
    progress.stage("running the checks")
    findings = run_checks(run)
    progress.stage("building the report")
    return build_report(run, findings, command or f"forensics analyze {run_dir}")
