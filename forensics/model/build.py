"""Build the run model: discover the files, run each kind's reader, gather metrics and segments."""

from __future__ import annotations

import traceback
from collections import defaultdict
from dataclasses import dataclass
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
from forensics.model.run import GROUP_DTYPE, SEGMENT_DTYPE, Run, Source, empty_series
from forensics.model.segments import assign_segments


def build_run(root: Path, name: str | None = None, follow_external_links: bool = False) -> Run:
    """Read everything under `root` into a `Run`. Raises ForensicsError only for an unusable root."""
    root = _check_root(root)
    found = discover(root, follow_external_links)
    run = Run(name=name or root.name, path=str(root))
    series_parts: dict[str, list[_Part]] = defaultdict(list)

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
            series_parts[metric.name].append(_Part(read.path, series, metric.group))
        run.events.extend(read.events)
        if read.checkpoint is not None:
            run.checkpoints.append(read.checkpoint)
        if read.config is not None:
            run.configs[read.path] = read.config

    progress.stage("building the run model")
    if found.problems:
        run.sources.append(Source(".", "directory", "partial", 0, 0, "problems met while walking the run directory",
                                  tuple(found.problems)))
    # One metric at a time, letting go of its parts as it is built: peak memory is the values read
    # plus one metric's frame, not two copies of everything.
    run.metrics = {metric: _metric_frame(series_parts.pop(metric)) for metric in list(series_parts)}
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


@dataclass(frozen=True)
class _Part:
    """One source's series of a metric, waiting to be joined with the metric's other sources."""

    source: str
    series: TaggedSeries
    group: int


def _metric_frame(parts: list[_Part]) -> pd.DataFrame:
    """The metric's rows from every source, in reading order, with the standard columns.

    Built from the readers' arrays directly and without consolidating (copy=False): a pandas frame
    from per-part frames plus a concat held three copies of a million-row metric at once.
    """
    if not parts:
        return empty_series()
    lengths = np.array([len(part.series.steps) for part in parts], dtype=np.int64)
    # sorted, as pandas orders the categories of concatenated labels: ties between sources (which is
    # busiest, which comes first in a groupby) fall the same way whatever order the files were read in
    sources = sorted({part.source for part in parts})
    tags = sorted({part.series.tag for part in parts})
    return pd.DataFrame({
        "step": _joined([part.series.steps for part in parts], np.int64),
        "value": _joined([part.series.values for part in parts], np.float64),
        "wall_time": _joined([part.series.wall_times for part in parts], np.float64),
        "source": _labels([sources.index(part.source) for part in parts], lengths, sources),
        "tag": _labels([tags.index(part.series.tag) for part in parts], lengths, tags),
        "group": np.repeat(np.array([part.group for part in parts], dtype=GROUP_DTYPE), lengths),
        "record": _joined([part.series.records for part in parts], np.int64),
        "segment": np.zeros(int(lengths.sum()), dtype=SEGMENT_DTYPE),
    }, copy=False)


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0].astype(dtype, copy=False)
    return np.concatenate([array.astype(dtype, copy=False) for array in arrays])


def _labels(codes: list[int], lengths: np.ndarray, categories: list[str]) -> pd.Categorical:
    code_type = np.int8 if len(categories) < 128 else np.int32
    return pd.Categorical.from_codes(np.repeat(np.array(codes, dtype=code_type), lengths), categories=categories)
