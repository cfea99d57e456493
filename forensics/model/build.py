"""Build the run model: discover the files, run each reader, gather metrics and segments."""

from __future__ import annotations

import traceback
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from forensics.errors import ForensicsError
from forensics.ingest import discovery as kinds
from forensics.ingest.checkpoint import Checkpoint, read_checkpoint_file, read_hf_checkpoint_dir, read_training_args
from forensics.ingest.discovery import FoundFile, discover
from forensics.ingest.problems import InputProblem
from forensics.ingest.tensorboard import EventFile, read_event_file
from forensics.model.aliases import canonical_metric
from forensics.model.run import Run, Source, empty_series
from forensics.model.segments import assign_segments

# What the report says about kinds this version lists but does not read yet.
_NOT_READ_YET = {
    kinds.LOG: "stdout/stderr logs are listed but not parsed yet",
    kinds.CONFIG: "configs are listed but not parsed yet",
    kinds.METRICS_TABLE: "metric tables (CSV/JSONL) are listed but not parsed yet",
    kinds.TRAINER_STATE: "trainer_state.json log history is listed but not parsed yet",
    kinds.WEIGHTS: "bare weight files are listed; checkpoints with optimizer state are read instead",
    kinds.OTHER: "not a kind of file forensics reads",
}


def build_run(root: Path, name: str | None = None) -> Run:
    """Read everything under `root` into a `Run`. Raises ForensicsError only for an unusable root."""
    root = _check_root(root)
    found = discover(root)
    run = Run(name=name or root.name, path=str(root))
    series_parts: dict[str, list[pd.DataFrame]] = defaultdict(list)

    for event_file in found.of_kind(kinds.TENSORBOARD):
        result = _guarded(event_file, lambda f=event_file: read_event_file(f.path, f.display_path))
        if isinstance(result, EventFile):
            run.sources.append(_event_source(event_file, result))
            _collect_scalars(result, series_parts)
        else:
            run.sources.append(result)

    for checkpoint_file in found.of_kind(kinds.CHECKPOINT) + found.of_kind(kinds.HF_CHECKPOINT_DIR):
        reader = read_hf_checkpoint_dir if checkpoint_file.kind == kinds.HF_CHECKPOINT_DIR else read_checkpoint_file
        result = _guarded(checkpoint_file, lambda f=checkpoint_file, r=reader: r(f.path, f.display_path))
        if isinstance(result, Checkpoint):
            run.sources.append(_checkpoint_source(checkpoint_file, result))
            if result.readable:
                run.checkpoints.append(result)
        else:
            run.sources.append(result)

    for args_file in found.of_kind(kinds.TRAINING_ARGS):
        result = _guarded(args_file, lambda f=args_file: read_training_args(f.path, f.display_path))
        if isinstance(result, Source):
            run.sources.append(result)
            continue
        training_args, problems = result
        if training_args is not None:
            run.configs[args_file.display_path] = training_args
        run.sources.append(Source(
            args_file.display_path, args_file.kind, _status(training_args is not None, problems),
            len(training_args or {}), args_file.size_bytes,
            f"{len(training_args or {})} training arguments read without running any code", tuple(problems)))

    for other in found.files:
        if other.kind in _NOT_READ_YET:
            run.sources.append(Source(other.display_path, other.kind, "not_read", 0, other.size_bytes,
                                      _NOT_READ_YET[other.kind]))

    if found.problems:
        run.sources.append(Source(".", "directory", "partial", 0, 0, "problems met while walking the run directory",
                                  tuple(found.problems)))

    run.metrics = {metric: _concat(parts) for metric, parts in series_parts.items()}
    run.checkpoints.sort(key=_checkpoint_order)
    run.segments = assign_segments(run.metrics, run.sources)
    return run


def _check_root(root: Path) -> Path:
    if not root.exists():
        raise ForensicsError(f"{root}: no such directory")
    if not root.is_dir():
        raise ForensicsError(f"{root}: not a directory; give the run directory that holds the logs and checkpoints")
    return root.resolve()


def _guarded(found: FoundFile, read):
    """Run a reader; a reader bug becomes an input problem on that file, never a crash."""
    try:
        return read()
    except Exception as error:  # noqa: BLE001 - one bad reader must not cost the whole analysis
        where = traceback.extract_tb(error.__traceback__)[-1]
        problem = InputProblem(
            code="reader_error", path=found.display_path, severity="error",
            message=f"{found.display_path}: internal error while reading ({type(error).__name__}: {error}) "
                    f"at {PurePosixPath(where.filename).name}:{where.lineno}; please report it")
        return Source(found.display_path, found.kind, "failed", 0, found.size_bytes, "reader failed", (problem,))


def _status(read_anything: bool, problems: list[InputProblem]) -> str:
    if not read_anything:
        return "failed"
    return "partial" if problems else "read"


def _event_source(found: FoundFile, events: EventFile) -> Source:
    values = sum(len(series.steps) for series in events.scalars)
    detail = f"{events.records} records, {values} scalar values in {len(events.scalars)} tags"
    return Source(found.display_path, found.kind, _status(events.records > 0 or not events.problems, events.problems),
                  values, found.size_bytes, detail, tuple(events.problems), events.host, events.pid,
                  events.first_wall_time, events.last_wall_time)


def _checkpoint_source(found: FoundFile, checkpoint: Checkpoint) -> Source:
    parts = [checkpoint.layout.replace("_", " ")]
    if checkpoint.global_step is not None:
        parts.append(f"global step {checkpoint.global_step}")
    if checkpoint.epoch is not None:
        parts.append(f"epoch {checkpoint.epoch}")
    parts.append(f"{len(checkpoint.optimizers)} optimizer(s), {len(checkpoint.schedulers)} scheduler(s)")
    return Source(found.display_path, found.kind, _status(checkpoint.readable, checkpoint.problems),
                  1 if checkpoint.readable else 0, found.size_bytes, ", ".join(parts), tuple(checkpoint.problems))


def _collect_scalars(events: EventFile, series_parts: dict[str, list[pd.DataFrame]]) -> None:
    context = str(PurePosixPath(events.path).parent)
    for scalar in events.scalars:
        metric = canonical_metric(scalar.tag, context)
        count = len(scalar.steps)
        series_parts[metric.name].append(pd.DataFrame({
            "step": scalar.steps.astype("int64", copy=False),
            "value": scalar.values.astype("float64", copy=False),
            "wall_time": scalar.wall_times.astype("float64", copy=False),
            "source": pd.Categorical.from_codes(np.zeros(count, dtype="int8"), categories=[events.path]),
            "tag": pd.Categorical.from_codes(np.zeros(count, dtype="int8"), categories=[scalar.tag]),
            "group": np.full(count, metric.group, dtype="int64"),
            "record": np.arange(count, dtype="int64"),
            "segment": np.zeros(count, dtype="int64"),
        }))


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return empty_series()
    frame = pd.concat(parts, ignore_index=True)
    for column in ("source", "tag"):
        # concat of categoricals with different categories falls back to object; keep it compact
        frame[column] = frame[column].astype("category")
    return frame


def _checkpoint_order(checkpoint: Checkpoint) -> tuple:
    return (checkpoint.global_step if checkpoint.global_step is not None else -1,
            checkpoint.epoch if checkpoint.epoch is not None else -1, checkpoint.path)
