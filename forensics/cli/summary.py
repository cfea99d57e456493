"""The short terminal summary printed after `analyze` (to stderr, so stdout can carry the report)."""

from __future__ import annotations

import typer

from forensics.formatting import fmt_step, split_headline
from forensics.report.model import Report
from forensics.report.verdict import gaps
from forensics.sweep import SweepResult

_COLOURS = {"error": "red", "warning": "yellow", "info": "blue", "failed": "red", "suspect": "yellow",
            "healthy": "green", "limited": "cyan", "inconclusive": "white"}
SHOWN_FINDINGS = 8
# A text log whose recognised share of non-blank lines is below this gets a line in the summary.
LOW_RECOGNITION = 0.5


def print_summary(report: Report, written_to: str | None) -> None:
    """Verdict, findings, unreadable inputs and the report's location, in a dozen lines."""
    echo = lambda text="", **style: typer.secho(text, err=True, **style)  # noqa: E731
    echo(f"{report.run_name}: ", nl=False, bold=True)
    echo(report.verdict.status.upper(), fg=_COLOURS[report.verdict.status], bold=True, nl=False)
    counts = report.verdict.counts
    if report.findings:  # the headline is the top finding, listed just below
        echo(f"  {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    else:  # the missing inputs are listed below, so only the first sentence here
        echo(f"  {split_headline(report.verdict.headline)[0]}")
    for finding in report.findings[:SHOWN_FINDINGS]:
        echo(f"  {finding.severity:<7}", fg=_COLOURS[finding.severity], nl=False)
        echo(f" {finding.code:<20} step {fmt_step(finding.step):>9}  {split_headline(finding.message)[0]}")
    if len(report.findings) > SHOWN_FINDINGS:
        echo(f"  ... {len(report.findings) - SHOWN_FINDINGS} more in the report")
    listed = gaps(report.verdict.unchecked)
    for gap in (gap for gap in listed if gap.limits_verdict):
        echo(f"  {'missing':<7}", fg="cyan", nl=False)
        echo(f" {gap.label}: {gap.enable}")
        echo(f"          not checked: {', '.join(gap.codes)}", dim=True)
    optional = [f"{gap.label} ({', '.join(gap.codes)})" for gap in listed if not gap.limits_verdict]
    if optional:
        echo(f"  optional, not logged: {'; '.join(optional)}", dim=True)
    unchecked = {item.code for item in report.verdict.unchecked}
    moot = [outcome.code for outcome in report.checks if outcome.status != "ran" and outcome.code not in unchecked]
    if moot:
        echo(f"  did not apply to this run: {', '.join(moot)}", dim=True)
    if report.input_problems:
        echo(f"  {len(report.input_problems)} input problem(s):", fg="yellow")
        for problem in report.input_problems[:5]:
            echo(f"    {problem.message}")
    for line in low_recognition_lines(report):
        echo(f"  {line}", fg="yellow")
    read = sum(1 for source in report.sources if source.status in ("read", "partial"))
    echo(f"  {read} of {len(report.sources)} sources read", dim=True)
    if written_to:
        echo(f"  report: {written_to}")


def low_recognition_lines(report: Report) -> list[str]:
    """One line per text log that was mostly not understood, or that has unrecognised metric-like lines."""
    lines = []
    for source in report.sources:
        coverage = source.coverage or {}
        if "recognised" not in coverage:
            continue
        text_lines = coverage["lines"] - coverage.get("blank", 0)
        understood = coverage["recognised"] + coverage.get("event_lines", 0)
        metric_like = coverage.get("unrecognised_metric_like", 0)
        if text_lines and (understood / text_lines < LOW_RECOGNITION or metric_like):
            line = f"{source.path}: {coverage['recognised']:,} of {text_lines:,} lines recognised"
            if metric_like:
                first = coverage["unrecognised_samples"][0] if coverage.get("unrecognised_samples") else None
                line += f"; {metric_like:,} unrecognised line(s) look like metrics"
                line += f" (line {first['line']}: {first['text'][:60]!r})" if first else ""
            lines.append(line)
    return lines


def print_sweep_summary(result: SweepResult) -> None:
    """One line per run (verdict, top finding's first sentence), then the totals and the index's location."""
    echo = lambda text="", **style: typer.secho(text, err=True, **style)  # noqa: E731
    width = min(48, max((len(entry.path) for entry in result.entries), default=0))
    for entry in result.entries:
        echo(f"{entry.path:<{width}}  ", nl=False)
        echo(f"{entry.status.upper():<12}", fg=_COLOURS.get(entry.status, "red"), bold=True, nl=False)
        top = f"{entry.finding_codes[0]}: {entry.top_finding}" if entry.top_finding else entry.headline
        if entry.not_checked and not entry.top_finding:  # the gap, not the headline's long list of codes
            top = f"not checked: {entry.not_checked}"
        echo(f" {top}")
    totals = ", ".join(f"{count} {status}" for status, count in result.totals().items() if count)
    echo(f"{len(result.entries)} run(s): {totals}", bold=True)
    for problem in result.walk_problems[:5]:
        echo(f"  {problem.message}", fg="yellow")
    echo(f"index: {result.index_files.get('html', result.out_dir)}")
