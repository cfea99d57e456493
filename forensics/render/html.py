"""HTML renderer: one self-contained page, readable without JavaScript."""

from __future__ import annotations

from forensics.render.environment import html_environment
from forensics.report.model import Report


def render_html(report: Report) -> str:
    """The report as a standalone HTML document."""
    return html_environment().get_template("report.html.j2").render(report=report)
