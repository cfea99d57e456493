"""JSON renderer: the machine-readable contract, `forensics.report/1`."""

from __future__ import annotations

import json

from forensics.report.model import Report


def render_json(report: Report) -> str:
    """The report as a JSON document (NaN and inf never appear: they are null or named strings)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
