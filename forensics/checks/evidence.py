"""Turn rows of the run model into evidence items a reader can look up in the original file."""

from __future__ import annotations

import pandas as pd

from forensics.checks.base import Evidence
from forensics.model.run import Run


def row_locator(run: Run, row: pd.Series) -> str:
    """Where a logged value sits in its source: an event tag and step, or a line number."""
    source = run.source(str(row["source"]))
    if source is not None and source.kind == "tensorboard":
        return f"event tag={row['tag']} step={int(row['step'])}"
    if source is not None and source.kind == "trainer_state":
        return f"log_history[{int(row['record'])}] ({row['tag']}, step {int(row['step'])})"
    return f"line {int(row['record'])} ({row['tag']}, step {int(row['step'])})"


def row_evidence(run: Run, row: pd.Series, expected=None, note: str | None = None) -> Evidence:
    """Evidence for one logged value."""
    return Evidence(source=str(row["source"]), locator=row_locator(run, row), observed=float(row["value"]),
                    expected=expected, note=note)
