"""Metric tables: CSV/TSV (Lightning CSVLogger `metrics.csv`, yolov5 `results.csv`, timm `summary.csv`)
and JSON-lines metric files (`metrics.jsonl`, W&B `wandb-history.jsonl`).

Every numeric column except the step/epoch columns becomes a series under its (whitespace-stripped)
header. Empty cells are skipped, so Lightning's sparse rows (LR rows and loss rows logged
separately at the same step) each give only the values they hold. The step is the `step`-like
column; without one, the `epoch` column (yolov5 and timm tables are per epoch), else the row's
position; the basis says which. Records are file line numbers (the header is line 1). Files are
streamed row by row; a field over the line-length limit stops the read with a message.
A `key,value` CSV (test-tube `meta_tags.csv`) is a config, not a table.
"""

from __future__ import annotations

import csv
import json
from array import array

import numpy as np

from forensics.ingest.configs import read_config
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.formats.json_lines import parse_record
from forensics.ingest.limits import MAX_VALUES_PER_FILE, values_cap_message
from forensics.ingest.logs.lines import LineStream, max_line_bytes
from forensics.ingest.logs.formats.base import to_float, to_step
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import SourceRead, TaggedSeries

STEP_COLUMNS = ("step", "global_step", "trainer/global_step", "_step", "iteration", "iter", "it", "num_updates")
EPOCH_COLUMNS = ("epoch",)
LOGGED = "logged"
EPOCH_BASIS = "epoch column (the table has no step column)"
ROW_BASIS = "row position (the table has no step or epoch column)"


class _Columns:
    """Values per column in compact arrays."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[array, array, array, array]] = {}
        self.count = 0
        self.cap = MAX_VALUES_PER_FILE.value()

    @property
    def full(self) -> bool:
        """The per-file values cap is reached."""
        return self.count >= self.cap

    def add(self, column: str, step: int, value: float, line: int, basis: int) -> None:
        steps, values, lines, bases = self.data.setdefault(column, (array("q"), array("d"), array("q"), array("b")))
        self.count += 1
        steps.append(step)
        values.append(value)
        lines.append(line)
        bases.append(basis)

    def series(self, basis_names: list[str]) -> list[TaggedSeries]:
        result = []
        for column, (steps, values, lines, bases) in self.data.items():
            used = sorted(set(bases))
            basis = basis_names[used[0]] if len(used) == 1 else "mixed: " + "; ".join(basis_names[i] for i in used)
            result.append(TaggedSeries(column, np.frombuffer(steps, dtype="int64").copy(),
                                       np.frombuffer(values, dtype="float64").copy(), np.full(len(values), np.nan),
                                       np.frombuffer(lines, dtype="int64").copy(), step_basis=basis))
        return result


def read_metric_table(found: FoundFile) -> SourceRead:
    """A CSV/TSV or JSON-lines metric file."""
    binary = LineStream(found.path, found.display_path).sniff_binary("binary_table", "a metrics table")
    if binary is not None:
        return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                          detail=binary.message.split(": ", 1)[-1], problems=[binary])
    if found.path.suffix.lower() == ".jsonl":
        return _read_jsonl(found)
    return _read_csv(found)


def _read_csv(found: FoundFile) -> SourceRead:
    problems: list[InputProblem] = []
    columns = _Columns()
    basis_names = [LOGGED, EPOCH_BASIS, ROW_BASIS]
    csv.field_size_limit(max_line_bytes())
    rows = 0
    header: list[str] = []
    try:
        with open(found.path, encoding="utf-8", errors="backslashreplace", newline="") as handle:
            delimiter = "\t" if found.path.suffix.lower() == ".tsv" else ","
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            if [name.lower() for name in header] == ["key", "value"]:
                return read_config(found)
            step_index = _first_index(header, STEP_COLUMNS)
            epoch_index = _first_index(header, EPOCH_COLUMNS)
            for row in reader:
                rows += 1
                _add_row(columns, header, row, reader.line_num, rows - 1, step_index, epoch_index)
                if columns.full:
                    problems.append(_capped(found, f"line {reader.line_num}", columns.cap))
                    break
    except csv.Error as error:
        problems.append(InputProblem("table_unreadable_row", found.display_path,
                                     f"{found.display_path}: row {rows + 2} cannot be read ({error}); the rows "
                                     "before it are kept", locator=f"line {rows + 2}"))
    except OSError as error:
        problems.append(InputProblem("file_unreadable", found.display_path,
                                     f"{found.display_path}: cannot be read ({error.strerror or error})", severity="error"))
    series = columns.series(basis_names)
    read_columns = {item.tag for item in series}
    skipped = [name for name in header if name not in read_columns and name.lower() not in STEP_COLUMNS + EPOCH_COLUMNS]
    return _result(found, series, problems, rows, "rows", {"columns_not_numeric": skipped})


def _add_row(columns: _Columns, header: list[str], row: list[str], line: int, position: int,
             step_index: int | None, epoch_index: int | None) -> None:
    step, basis = None, 0
    if step_index is not None and step_index < len(row) and row[step_index].strip():
        step = _int(row[step_index])
    if step is None and epoch_index is not None and epoch_index < len(row) and row[epoch_index].strip():
        step, basis = _int(row[epoch_index]), 1
    if step is None:
        step, basis = position, 2
    for index, cell in enumerate(row):
        if index in (step_index, epoch_index) or index >= len(header) or not cell.strip():
            continue
        try:
            value = to_float(cell)
        except ValueError:
            continue
        columns.add(header[index], step, value, line, basis)


def _read_jsonl(found: FoundFile) -> SourceRead:
    stream = LineStream(found.path, found.display_path)
    columns = _Columns()
    basis_names = [LOGGED, EPOCH_BASIS, ROW_BASIS]
    records = unparsed = 0
    for number, text in stream:
        if not text.strip():
            continue
        records += 1
        try:
            parsed = parse_record(json.loads(text))
        except (ValueError, RecursionError):  # RecursionError: absurdly nested brackets
            parsed = None
        if parsed is None:
            unparsed += 1
            continue
        if parsed.step is not None:
            step, basis = parsed.step, 0
        elif parsed.epoch is not None and parsed.epoch == parsed.epoch:
            step, basis = int(parsed.epoch), 1
        else:
            step, basis = records - 1, 2
        for tag, value in parsed.values.items():
            columns.add(tag, step, value, number, basis)
        if columns.full:
            stream.problems.append(_capped(found, f"line {number}", columns.cap))
            break
    problems = list(stream.problems)
    if unparsed:
        problems.append(InputProblem("jsonl_lines_unparsed", found.display_path,
                                     f"{found.display_path}: {unparsed} of {records} lines are not JSON objects with "
                                     "numbers; skipped", severity="info"))
    return _result(found, columns.series(basis_names), problems, records, "records", {"records_unparsed": unparsed})


def _result(found: FoundFile, series: list[TaggedSeries], problems: list[InputProblem], rows: int, unit: str,
            extra: dict) -> SourceRead:
    values = sum(len(item.steps) for item in series)
    bases = sorted({item.step_basis for item in series} - {LOGGED})
    detail = f"{rows:,} {unit}, {values:,} values in {len(series)} columns"
    if bases:
        detail += "; steps: " + " / ".join(bases)
    coverage = {unit: rows, "columns_read": [item.tag for item in series], **extra,
                "step_basis": {item.tag: item.step_basis for item in series}}
    return SourceRead(found.display_path, found.kind, found.size_bytes,
                      readable=not any(problem.severity == "error" for problem in problems), records=values,
                      detail=detail, problems=problems, series=series, coverage=coverage)


def _capped(found: FoundFile, where: str, cap: int) -> InputProblem:
    return InputProblem("values_cap_reached", found.display_path, values_cap_message(found.display_path, where, cap),
                        locator=where)


def _first_index(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [name.lower() for name in header]
    return next((lowered.index(name) for name in names if name in lowered), None)


def _int(text: str) -> int | None:
    try:
        return to_step(float(text))
    except ValueError:
        return None
