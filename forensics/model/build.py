"""Build the run model: discover the files, run each kind's reader, gather metrics and segments."""

from __future__ import annotations

import traceback
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from forensics import progress
from forensics.errors import ForensicsError
from forensics.ingest.discovery import FoundFile, discover
from forensics.ingest.problems import InputProblem
from forensics.ingest.registry import NOT_READ, READERS
from forensics.ingest.source import SourceRead, TaggedSeries
from forensics.model.aliases import canonical_metric
from forensics.model.log_clock import align_log_clocks
from forensics.model.run import Run, Source, empty_series
from forensics.model.segments import assign_segments


def build_run(root: Path, name: str | None = None, follow_external_links: bool = False) -> Run:
    """Read everything under `root` into a `Run`. Raises ForensicsError only for an unusable root."""
    root = _check_root(root)
    found = discover(root, follow_external_links)
    run = Run(name=name or root.name, path=str(root))
    series_parts: dict[str, list[pd.DataFrame]] = defaultdict(list)

    readable_kinds = list(READERS)
    to_read = [f for f in found.files if f.kind in READERS]
    progress.run_started(sum(f.size_bytes for f in to_read), len(to_read))
    for found_file in sorted(found.files, key=lambda f: (_kind_order(f.kind, readable_kinds), f.display_path)):
        reader = READERS.get(found_file.kind)
        if reader is None:
            run.sources.append(Source(found_file.display_path, found_file.kind, "not_read", 0, found_file.size_bytes,
                                      NOT_READ.get(found_file.kind, "no reader for this kind of file")))
            continue
        progress.file_started(found_file.display_path, found_file.size_bytes)
        read = _guarded(found_file, reader)
        run.sources.append(_source(read))
        for series in read.series:
            metric = canonical_metric(series.tag, series.context)
            series_parts[metric.name].append(_frame(read.path, series, metric.group))
        run.events.extend(read.events)
        if read.checkpoint is not None:
            run.checkpoints.append(read.checkpoint)
        if read.config is not None:
            run.configs[read.path] = read.config

    progress.stage("building the run model")
    if found.problems:
        run.sources.append(Source(".", "directory", "partial", 0, 0, "problems met while walking the run directory",
                                  tuple(found.problems)))
    run.metrics = {metric: _concat(parts) for metric, parts in series_parts.items()}
    run.checkpoints.sort(key=lambda c: (c.global_step if c.global_step is not None else -1,
                                        c.epoch if c.epoch is not None else -1, c.path))
    run.sources = align_log_clocks(run.metrics, run.sources)
    run.segments = assign_segments(run.metrics, run.sources, run.events)
    return run


def _check_root(root: Path) -> Path:
    if not root.exists():
        raise ForensicsError(f"{root}: no such directory")
    if not root.is_dir():
        raise ForensicsError(f"{root}: not a directory; give the run directory that holds the logs and checkpoints")
    return root.resolve()


def _kind_order(kind: str, readable_kinds: list[str]) -> int:
    return readable_kinds.index(kind) if kind in readable_kinds else len(readable_kinds)


def _guarded(found: FoundFile, reader) -> SourceRead:
    """Run a reader; a reader bug becomes an input problem on that file, never a crash."""
    try:
        return reader(found)
    except Exception as error:  # noqa: BLE001 - one bad reader must not cost the whole analysis
        where = traceback.extract_tb(error.__traceback__)[-1]
        problem = InputProblem(
            code="reader_error", path=found.display_path, severity="error",
            message=f"{found.display_path}: internal error while reading ({type(error).__name__}: {error}) "
                    f"at {PurePosixPath(where.filename).name}:{where.lineno}; please report it")
        return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                          detail="reader failed", problems=[problem])


def _source(read: SourceRead) -> Source:
    return Source(read.path, read.kind, read.status, read.records, read.size_bytes, read.detail, tuple(read.problems),
                  read.host, read.pid, read.first_wall_time, read.last_wall_time, read.coverage)


def _frame(source: str, series: TaggedSeries, group: int) -> pd.DataFrame:
    count = len(series.steps)
    return pd.DataFrame({
        "step": series.steps.astype("int64", copy=False),
        "value": series.values.astype("float64", copy=False),
        "wall_time": series.wall_times.astype("float64", copy=False),
        "source": pd.Categorical.from_codes(np.zeros(count, dtype="int8"), categories=[source]),
        "tag": pd.Categorical.from_codes(np.zeros(count, dtype="int8"), categories=[series.tag]),
        "group": np.full(count, group, dtype="int64"),
        "record": series.records.astype("int64", copy=False),
        "segment": np.zeros(count, dtype="int64"),
    })


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return empty_series()
    frame = pd.concat(parts, ignore_index=True)
    for column in ("source", "tag"):
        # concat of categoricals with different categories falls back to object; keep it compact
        frame[column] = frame[column].astype("category")
    return frame
