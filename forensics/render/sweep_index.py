"""The sweep index (`index.json`, `index.html`, `index.md`), rendered from a `SweepResult` only."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from forensics.formatting import split_headline
from forensics.render.environment import html_environment, markdown_environment

if TYPE_CHECKING:
    from forensics.sweep import SweepEntry, SweepResult

# Worst first, so the table reads as a triage list without any script.
# `limited` (no findings, but checks that matter lacked an input) sorts above `healthy`.
STATUS_ORDER = {"error": 0, "failed": 1, "suspect": 2, "inconclusive": 3, "limited": 4, "healthy": 5}
# The report a row links to: the HTML page when there is one.
LINK_PREFERENCE = ("html", "md", "json")


def index_rows(result: SweepResult) -> list[dict]:
    """One row per run, worst verdict first, then by path: what the HTML and Markdown tables show."""
    rows = []
    for entry in sorted(result.entries, key=lambda e: (STATUS_ORDER.get(e.status, 9), e.path)):
        link = next((entry.reports[name] for name in LINK_PREFERENCE if name in entry.reports), None)
        rows.append({"entry": entry, "top": _top(entry), "href": quote(link) if link else None, "link": link})
    return rows


def _top(entry: SweepEntry) -> str:
    if entry.status == "error":
        return entry.headline
    if entry.top_finding:
        return f"{entry.finding_codes[0]}: {entry.top_finding}"
    # What a limited run lacks has its own column; the headline's first sentence is enough here.
    return split_headline(entry.headline)[0] if entry.not_checked else entry.headline


def render_index_json(result: SweepResult) -> str:
    """The `forensics.sweep/1` document."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def baseline_view(result: SweepResult) -> dict | None:
    """The baseline diff as the pages show it at the top: counts, then new, resolved and persisting items."""
    diff = result.baseline
    if diff is None:
        return None
    return {"index": diff.get("index", ""), "generated_at": diff.get("generated_at"),
            "new": [_diff_row(item) for item in diff["new"]], "resolved": [_diff_row(item) for item in diff["resolved"]],
            "persisting": len(diff["persisting"]), "runs_added": diff["runs_added"],
            "runs_removed": diff["runs_removed"]}


def _diff_row(item: dict) -> dict:
    step = "" if item["step"] is None else f"{item['step']:,}"
    if item["end_step"] is not None and item["end_step"] != item["step"]:
        step += f"–{item['end_step']:,}"
    return {"path": item["path"], "code": item["code"], "severity": item["severity"], "steps": step or "-"}


def _context(result: SweepResult) -> dict:
    return {"result": result, "rows": index_rows(result), "totals": result.totals(), "baseline": baseline_view(result)}


def render_index_html(result: SweepResult) -> str:
    """A plain HTML table with no script: every run, its verdict, top finding, counts and report link."""
    return html_environment().get_template("sweep_index.html.j2").render(**_context(result))


def render_index_md(result: SweepResult) -> str:
    """The same table in Markdown, for a ticket or a chat message."""
    return markdown_environment().get_template("sweep_index.md.j2").render(**_context(result))


INDEX_RENDERERS = {"json": render_index_json, "html": render_index_html, "md": render_index_md}
