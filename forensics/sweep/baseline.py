"""The diff of a sweep against a previous one (`--baseline PREV_OUT`): what is new, resolved, persisting.

Findings are matched per run by code, then by step range: two findings of the same code are the same
problem when their step ranges overlap (a run still training moves a finding's end, not its identity).
A run that could not be analysed counts as a finding of code `analysis_error` (severity error), so a
run that newly fails to analyse is a regression too. The findings of a run that appeared are new; a run
that disappeared is listed in `runs_removed`, and its findings are not counted as resolved.
"""

from __future__ import annotations

import json
from pathlib import Path

from forensics.errors import ForensicsError
from forensics.sweep.model import SCHEMA, FindingKey, SweepEntry

ANALYSIS_ERROR = "analysis_error"


def load_baseline(location: str | Path) -> dict:
    """The index document of a previous sweep: its output folder or its `index.json`."""
    path = Path(location)
    index = path / "index.json" if path.is_dir() else path
    try:
        document = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ForensicsError(f"{index}: no such file (--baseline takes a sweep's output folder or its "
                             "index.json)") from error
    except (OSError, ValueError) as error:
        raise ForensicsError(f"{index}: not a readable sweep index ({error})") from error
    if not isinstance(document, dict) or document.get("schema") != SCHEMA or not isinstance(document.get("runs"), list):
        raise ForensicsError(f"{index}: not a {SCHEMA} sweep index")
    document["_file"] = str(index)
    return document


def _keys(entry: SweepEntry) -> list[FindingKey]:
    if entry.status == "error":
        return [FindingKey(ANALYSIS_ERROR, "error", None, None)]
    return list(entry.findings)


def _baseline_keys(run: dict) -> list[FindingKey]:
    if run.get("status") == "error":
        return [FindingKey(ANALYSIS_ERROR, "error", None, None)]
    if "findings" in run:
        return [FindingKey.from_dict(item) for item in run["findings"]]
    # An index from before step ranges were recorded: codes only, severity unknown.
    return [FindingKey(code, "unknown", None, None) for code in run.get("finding_codes", [])]


def _overlap(a: FindingKey, b: FindingKey) -> bool:
    if a.step is None or b.step is None:
        return a.step is None and b.step is None  # a finding without a step matches only another one
    a_end = a.end_step if a.end_step is not None else a.step
    b_end = b.end_step if b.end_step is not None else b.step
    return a.step <= b_end and b.step <= a_end


def _item(path: str, key: FindingKey, **extra) -> dict:
    return {"path": path, **key.to_dict(), **extra}


def diff_against(document: dict, entries: list[SweepEntry]) -> dict:
    """The `baseline` object of the index: new, resolved and persisting findings, runs added and removed."""
    before = {run["path"]: run for run in document["runs"] if isinstance(run, dict) and "path" in run}
    now = {entry.path: entry for entry in entries}
    new, resolved, persisting = [], [], []
    for path, entry in sorted(now.items()):
        current = _keys(entry)
        if path not in before:
            new.extend(_item(path, key) for key in current)
            continue
        previous = _baseline_keys(before[path])
        unmatched = list(previous)
        for key in current:
            match = next((old for old in unmatched if old.code == key.code and _overlap(old, key)), None)
            if match is None:
                new.append(_item(path, key))
            else:
                unmatched.remove(match)
                persisting.append(_item(path, key, baseline_step=match.step, baseline_end_step=match.end_step))
        resolved.extend(_item(path, key) for key in unmatched)
    return {"index": document.get("_file", ""), "generated_at": document.get("generated_at"),
            "new": new, "resolved": resolved, "persisting": persisting,
            "runs_added": sorted(set(now) - set(before)), "runs_removed": sorted(set(before) - set(now))}


def new_matches(baseline: dict | None, severities: tuple[str, ...]) -> list[dict]:
    """The new findings of one of `severities` (what `--fail-on new-error` gates on)."""
    if not baseline:
        return []
    return [item for item in baseline["new"] if item["severity"] in severities]
