"""HTML renderer: one self-contained page, readable without JavaScript, that makes no network request."""

from __future__ import annotations

from forensics.render.environment import html_environment
from forensics.render.views import page_view
from forensics.report.model import Report


def render_html(report: Report) -> str:
    """The report as a standalone HTML document (styles, scripts and chart data inlined)."""
    return html_environment().get_template("report.html.j2").render(report=report, page=page_view(report))
