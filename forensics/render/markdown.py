"""Markdown renderer: short enough to paste into a ticket."""

from __future__ import annotations

from forensics.render.environment import markdown_environment
from forensics.report.model import Report
from forensics.report.verdict import gaps


def render_markdown(report: Report) -> str:
    """The report as GitHub/Jira-friendly Markdown."""
    return markdown_environment().get_template("report.md.j2").render(
        report=report, gaps=gaps(report.verdict.unchecked),
        unchecked_codes=[item.code for item in report.verdict.unchecked])
