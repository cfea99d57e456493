"""`forensics sweep ROOT -o OUT_DIR`: every run under ROOT analysed, one report each, and an index."""

from __future__ import annotations

from pathlib import Path

import typer

from forensics.cli.analyze import EXIT_FINDINGS, FailOn, Interval, invoked_command
from forensics.cli.summary import print_sweep_summary
from forensics.errors import ForensicsError
from forensics.schedule import schedule_options
from forensics.sweep import sweep as sweep_runs


def sweep(
    root: Path = typer.Argument(..., help="A folder of runs (any depth); a folder that is itself a run is one run."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the reports and index.{json,html,md} "
                                "(created if missing; never inside ROOT)."),
    formats: str = typer.Option("html,json", "--format", "-f", help="Per-run report formats, comma-separated: "
                                "html,json,md."),
    fail_on: FailOn = typer.Option(FailOn.never, "--fail-on", help="Exit 1 when any run has a finding of this "
                                   "severity (or worse), or could not be analysed."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs analysed at once, each in its own process."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No terminal summary."),
    schedule: str = typer.Option(None, "--schedule", help="The intended LR schedule of every run, written like "
                                 "its torch constructor (see `forensics analyze --help`)."),
    base_lr: float = typer.Option(None, "--base-lr", min=0.0, help="Base LR of the --schedule."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", min=1,
                                        help="Optimizer steps per epoch, to place an epoch-interval schedule."),
    interval: Interval = typer.Option(None, "--interval", help="What one scheduler step is meant to be."),
    follow_links: bool = typer.Option(False, "--follow-links",
                                      help="Also walk and read symbolic links that lead outside ROOT."),
) -> None:
    """Analyse every run under ROOT into OUT_DIR. Exit 0 when the sweep ran, whatever it found."""
    command = invoked_command()
    chosen = tuple(name.strip() for name in formats.split(",") if name.strip())
    if not chosen:
        raise ForensicsError("--format: give at least one of html,json,md")
    options = schedule_options(schedule, base_lr, steps_per_epoch, interval.value if interval else None)
    result = sweep_runs(root, output, formats=chosen, jobs=jobs, schedule=options, follow_links=follow_links,
                        command=command)
    if not quiet:
        print_sweep_summary(result)
    severities = fail_on.severities
    if result.matches_fail_on(severities):
        raise typer.Exit(EXIT_FINDINGS)
