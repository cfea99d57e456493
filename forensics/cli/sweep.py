"""`forensics sweep ROOT -o OUT_DIR`: every run under ROOT analysed, one report each, and an index."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from forensics.cli.analyze import EXIT_FINDINGS, Interval, invoked_command
from forensics.cli.summary import print_sweep_summary
from forensics.errors import ForensicsError
from forensics.schedule import schedule_options
from forensics.sweep import DEFAULT_TIMEOUT_SECONDS, SweepOptions, SweepResult
from forensics.sweep import sweep as sweep_runs
from forensics.sweep.junit import write_junit
from forensics.sweep.progress import SweepProgress

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4, "tb": 1024**4, "tib": 1024**4}


class SweepFailOn(str, Enum):
    error = "error"
    warning = "warning"
    new_error = "new-error"
    new_warning = "new-warning"
    never = "never"


class Executor(str, Enum):
    processes = "processes"
    dask = "dask"


def parse_memory(text: str | None) -> int | None:
    """`8GiB`, `512MB`, `2g` or a byte count as bytes (binary units); None for None."""
    if text is None:
        return None
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number):]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ForensicsError(f"--memory-per-worker: {text!r} is not a size (write it like 8GiB, 512MB or "
                             "a byte count)") from None
    if value < 64 * 1024**2:
        raise ForensicsError(f"--memory-per-worker: {text} is below 64 MiB, too little to import the analysis")
    return int(value)


def sweep(
    root: str = typer.Argument(..., help="A folder of runs (any depth) or an fsspec URL of one (s3://, gs://, "
                               "file://, memory://); a folder that is itself a run is one run."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the reports, index.{json,html,md} and the "
                                "cache (created if missing; never inside ROOT)."),
    formats: str = typer.Option("html,json", "--format", "-f", help="Per-run report formats, comma-separated: "
                                "html,json,md."),
    fail_on: SweepFailOn = typer.Option(SweepFailOn.never, "--fail-on", help="Exit 1 when any run has a finding "
                                        "of this severity (or worse), or could not be analysed; new-error and "
                                        "new-warning count only what is new against --baseline."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs analysed at once (processes, or Dask workers "
                             "of the LocalCluster)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no terminal summary."),
    schedule: str = typer.Option(None, "--schedule", help="The intended LR schedule of every run, written like "
                                 "its torch constructor (see `forensics analyze --help`)."),
    base_lr: float = typer.Option(None, "--base-lr", min=0.0, help="Base LR of the --schedule."),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", min=1,
                                        help="Optimizer steps per epoch, to place an epoch-interval schedule."),
    interval: Interval = typer.Option(None, "--interval", help="What one scheduler step is meant to be."),
    follow_links: bool = typer.Option(False, "--follow-links",
                                      help="Also walk and read symbolic links that lead outside ROOT."),
    baseline: Path = typer.Option(None, "--baseline", help="A previous sweep's output folder (or its index.json): "
                                  "show new, resolved and persisting findings against it."),
    junit: Path = typer.Option(None, "--junit", help="Also write JUnit XML here: one testcase per run, failed "
                               "when the run meets --fail-on."),
    timeout_per_run: float = typer.Option(DEFAULT_TIMEOUT_SECONDS, "--timeout-per-run", min=0.0,
                                          help="Seconds one run may take before it is stopped and listed as an "
                                          "error (0: no limit)."),
    memory_per_worker: str = typer.Option(None, "--memory-per-worker", help="Memory cap of each worker, like "
                                          "8GiB (default: the machine's memory divided by --jobs); a run over it "
                                          "is an error entry."),
    executor: Executor = typer.Option(Executor.processes, "--executor", help="Where the analyses run: local "
                                      "processes, or Dask distributed."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://host:8786); without "
                                  "it --executor dask starts a LocalCluster of --jobs workers."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Analyse every run again, even those unchanged since "
                                  "the last sweep into the same OUT_DIR."),
) -> None:
    """Analyse every run under ROOT into OUT_DIR. Exit 0 when the sweep ran, whatever it found."""
    command = invoked_command()
    chosen = tuple(name.strip() for name in formats.split(",") if name.strip())
    if not chosen:
        raise ForensicsError("--format: give at least one of html,json,md")
    if fail_on.value.startswith("new-") and baseline is None:
        raise ForensicsError(f"--fail-on {fail_on.value}: give --baseline PREV_OUT, the sweep to compare with")
    if scheduler and executor is not Executor.dask:
        raise ForensicsError("--scheduler: only with --executor dask")
    schedule_given = schedule_options(schedule, base_lr, steps_per_epoch, interval.value if interval else None)
    options = SweepOptions(jobs=jobs, executor=executor.value, scheduler=scheduler,
                           timeout_per_run=timeout_per_run or None, memory_per_worker=parse_memory(memory_per_worker),
                           use_cache=not no_cache)
    progress: list[SweepProgress] = []
    result = sweep_runs(root, output, formats=chosen, schedule=schedule_given, follow_links=follow_links,
                        command=command, options=options, baseline=baseline,
                        on_start=None if quiet else lambda total: progress.append(SweepProgress(total)),
                        on_entry=None if quiet else lambda entry: progress[0].update(entry))
    for bar in progress:
        bar.close()
    if junit is not None:
        write_junit(result, junit, lambda entry: result.entry_fails(entry, fail_on.value), result.guard)
    if not quiet:
        print_sweep_summary(result)
        _print_extras(result, junit)
    if result.fails(fail_on.value):
        raise typer.Exit(EXIT_FINDINGS)


def _print_extras(result: SweepResult, junit: Path | None) -> None:
    """What the shared summary does not show: reused runs, folders not taken, the baseline diff."""
    echo = lambda text, **style: typer.secho(text, err=True, **style)  # noqa: E731
    if result.reused:
        echo(f"{result.reused} of {len(result.entries)} run(s) unchanged since the last sweep: reports reused")
    if result.skipped:
        echo(f"{len(result.skipped)} folder(s) not taken as runs (listed in the index):", fg="yellow")
        for folder in result.skipped[:5]:
            echo(f"  {folder.path}: {folder.reason}", fg="yellow")
    if result.baseline is not None:
        diff = result.baseline
        echo(f"against the baseline: {len(diff['new'])} new, {len(diff['resolved'])} resolved, "
             f"{len(diff['persisting'])} persisting finding(s); {len(diff['runs_added'])} run(s) added, "
             f"{len(diff['runs_removed'])} removed", bold=True)
        for item in diff["new"][:5]:
            echo(f"  new {item['severity']} {item['code']} in {item['path']}", fg="red")
    if junit is not None:
        echo(f"junit: {junit}")
