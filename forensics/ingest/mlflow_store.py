"""MLflow file store: `mlruns/<experiment>/<run>/metrics/<key>` and `.../params/<name>`.

A metric file has one line per logged value, `timestamp value step` (timestamp in milliseconds;
files from old MLflow versions have no step, and the line position is used). The key is the
path below `metrics/` (keys with `/` are folders). Parameters are one file per name holding the
value; the folder is read as one config.
"""

from __future__ import annotations

from array import array

import numpy as np

from forensics.ingest.configs import config_from_values
from forensics.ingest.discovery import FoundFile
from forensics.ingest.limits import MAX_VALUES_PER_FILE, values_cap_message
from forensics.ingest.logs.formats.base import to_float, to_step
from forensics.ingest.logs.lines import LineStream
from forensics.ingest.problems import InputProblem
from forensics.ingest.safe_parse import scalar_from_text
from forensics.ingest.source import SourceRead, TaggedSeries

MAX_PARAM_BYTES = 64 * 1024


def read_mlflow_metric(found: FoundFile) -> SourceRead:
    """One metric's history as a series (wall times from the millisecond timestamps)."""
    key = _metric_key(found.display_path)
    stream = LineStream(found.path, found.display_path)
    binary = stream.sniff_binary("binary_metric_file", "an MLflow metric file")
    if binary is not None:
        return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                          detail=binary.message.split(": ", 1)[-1], problems=[binary])
    cap = MAX_VALUES_PER_FILE.value()
    steps, values, times, lines = array("q"), array("d"), array("d"), array("q")
    bad = 0
    position_used = False
    for number, text in stream:
        fields = text.split()
        if not fields:
            continue
        try:
            timestamp, value = float(fields[0]), to_float(fields[1])
            step = int(fields[2]) if len(fields) > 2 else None
        except (ValueError, IndexError):
            bad += 1
            continue
        if step is not None and to_step(step) is None:  # no int64 holds it
            bad += 1
            continue
        if step is None:
            step, position_used = len(steps), True
        steps.append(step)
        values.append(value)
        times.append(timestamp / 1000.0)
        lines.append(number)
        if len(steps) >= cap:
            stream.problems.append(InputProblem("values_cap_reached", found.display_path, values_cap_message(
                found.display_path, f"line {number}", cap), locator=f"line {number}"))
            break
    problems = list(stream.problems)
    if bad:
        problems.append(InputProblem("mlflow_metric_bad_lines", found.display_path,
                                     f"{found.display_path}: {bad} line(s) are not `timestamp value step`; skipped"))
    basis = "position in file (old MLflow lines have no step)" if position_used else "logged"
    series = [TaggedSeries(key, np.frombuffer(steps, dtype="int64").copy(), np.frombuffer(values, dtype="float64").copy(),
                           np.frombuffer(times, dtype="float64").copy(), np.frombuffer(lines, dtype="int64").copy(),
                           step_basis=basis)] if len(steps) else []
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=len(steps),
                      detail=f"MLflow metric {key!r}: {len(steps):,} values", problems=problems, series=series,
                      coverage={"lines": stream.lines_read, "values": len(steps), "bad_lines": bad,
                                "step_basis": {key: basis}})


def read_mlflow_params(found: FoundFile) -> SourceRead:
    """All of a run's parameters as one config."""
    params = {}
    for member in sorted(found.path.iterdir()):
        if member.is_file() and member.stat().st_size <= MAX_PARAM_BYTES:
            params[member.name] = scalar_from_text(member.read_text(encoding="utf-8", errors="backslashreplace").strip())
    return config_from_values(found, params, "MLflow params")


def _metric_key(display_path: str) -> str:
    parts = display_path.split("/")
    return "/".join(parts[parts.index("metrics") + 1:]) if "metrics" in parts else parts[-1]

