"""`forensics analyze RUN_DIR`: read a run, diagnose it, write the report."""

from __future__ import annotations

import shlex
import sys
from enum import Enum

import typer

from forensics.cli.summary import print_summary
from forensics.progress import terminal_progress
from forensics.render import EXTENSIONS, RENDERERS
from forensics.render.output import STDOUT, default_output_path, write_report
from forensics.schedule import schedule_options
from forensics.storage import analyze_location, write_guard

EXIT_FINDINGS = 1


class Format(str, Enum):
    html = "html"
    json = "json"
    md = "md"


class Interval(str, Enum):
    step = "step"
    epoch = "epoch"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"

    @property
    def severities(self) -> tuple[str, ...]:
        """Finding severities that make the command exit 1."""
        return {"error": ("error",), "warning": ("error", "warning"), "never": ()}[self.value]


def invoked_command() -> str:
    """The command line as typed, for the report's provenance."""
    return "forensics " + " ".join(shlex.quote(argument) for argument in sys.argv[1:])


def analyze(
    run_dir: str = typer.Argument(..., help="The run directory: event files, logs, checkpoints, configs; or an "
                                 "fsspec URL of one (s3://, gs://, file://, memory://)."),
    output_format: Format = typer.Option(Format.html, "--format", "-f", help="Report format."),
    output: str = typer.Option(None, "--output", "-o",
                               help="Report path; '-' for stdout. Default: ./forensics-<run>.<ext> (never inside RUN_DIR)."),
    fail_on: FailOn = typer.Option(FailOn.never, "--fail-on",
                                   help="Exit 1 when a finding of this severity (or worse) is present."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any input could not be read completely."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No terminal summary."),
    schedule: str = typer.Option(None, "--schedule", help="The intended LR schedule, written like its torch "
                                 "constructor: \"OneCycleLR(max_lr=3e-3, total_steps=58285)\" (or an HF name: "
                                 "\"cosine(warmup_steps=500, total_steps=5000)\"). Overrides checkpoints and configs."),
    base_lr: float = typer.Option(None, "--base-lr", min=0.0, help="Base LR of the --schedule (the optimizer's lr)."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", min=1,
                                        help="Optimizer steps per epoch, to place an epoch-interval schedule."),
    interval: Interval = typer.Option(None, "--interval",
                                      help="What one scheduler step is meant to be: an optimizer step or an epoch."),
    follow_links: bool = typer.Option(False, "--follow-links",
                                      help="Also read files behind symbolic links that lead outside RUN_DIR."),
) -> None:
    """Analyse RUN_DIR and write a post-mortem report. Exit 0 when analysis ran, whatever it found."""
    command = invoked_command()
    options = schedule_options(schedule, base_lr, steps_per_epoch, interval.value if interval else None)
    with terminal_progress(enabled=not quiet):  # a bar on stderr, only on a terminal, after 2 s
        report = analyze_location(run_dir, command=command, schedule=options, follow_links=follow_links)
        text = RENDERERS[output_format.value](report)
    destination = output or default_output_path(report.run_name, EXTENSIONS[output_format.value])
    where = write_report(text, destination, write_guard(run_dir))
    if not quiet:
        print_summary(report, where if str(destination) != STDOUT else None)
    severities = fail_on.severities
    if any(finding.severity in severities for finding in report.findings):
        raise typer.Exit(EXIT_FINDINGS)
    if strict and report.input_problems:
        raise typer.Exit(EXIT_FINDINGS)
