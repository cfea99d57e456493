"""Which reader reads which kind of file. One entry per kind; discovery decides the kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from forensics.ingest import discovery as kinds
from forensics.ingest.checkpoint import Checkpoint, read_checkpoint_file, read_hf_checkpoint_dir, read_training_args
from forensics.ingest.configs import read_config
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.reader import read_log
from forensics.ingest.metric_tables import read_metric_table
from forensics.ingest.mlflow_store import read_mlflow_metric, read_mlflow_params
from forensics.ingest.source import SourceRead, TaggedSeries
from forensics.ingest.tensorboard import read_event_file
from forensics.ingest.trainer_state import read_trainer_state

Reader = Callable[[FoundFile], SourceRead]


def read_tensorboard(found: FoundFile) -> SourceRead:
    """An event file: every scalar, plus the process identity its name and wall times give."""
    events = read_event_file(found.path, found.display_path)
    context = found.display_path.rsplit("/", 1)[0] if "/" in found.display_path else ""
    series = [TaggedSeries(scalar.tag, scalar.steps, scalar.values, scalar.wall_times,
                           np.arange(len(scalar.steps), dtype="int64"), context) for scalar in events.scalars]
    values = sum(len(scalar.steps) for scalar in events.scalars)
    return SourceRead(
        found.display_path, found.kind, found.size_bytes, readable=events.records > 0 or not events.problems,
        records=values, detail=f"{events.records} records, {values} scalar values in {len(events.scalars)} tags",
        problems=list(events.problems), series=series, host=events.host, pid=events.pid,
        first_wall_time=events.first_wall_time, last_wall_time=events.last_wall_time)


def read_checkpoint(found: FoundFile) -> SourceRead:
    """A checkpoint file or an HF `checkpoint-N/` folder, loaded with weights_only=True only."""
    reader = read_hf_checkpoint_dir if found.kind == kinds.HF_CHECKPOINT_DIR else read_checkpoint_file
    checkpoint = reader(found.path, found.display_path)
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=checkpoint.readable,
                      records=1 if checkpoint.readable else 0, detail=_checkpoint_detail(checkpoint),
                      problems=list(checkpoint.problems), checkpoint=checkpoint if checkpoint.readable else None)


def read_training_arguments(found: FoundFile) -> SourceRead:
    """HF `training_args.bin`, unpickled inertly: the intended LR, schedule, steps, accumulation."""
    training_args, problems = read_training_args(found.path, found.display_path)
    count = len(training_args or {})
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=training_args is not None,
                      records=count, detail=f"{count} training arguments read without running any code",
                      problems=list(problems), config=training_args)


def _checkpoint_detail(checkpoint: Checkpoint) -> str:
    if not checkpoint.readable:
        return "could not be loaded safely"
    parts = [checkpoint.layout.replace("_", " ")]
    if checkpoint.global_step is not None:
        parts.append(f"global step {checkpoint.global_step}")
    if checkpoint.epoch is not None:
        parts.append(f"epoch {checkpoint.epoch}")
    parts.append(f"{len(checkpoint.optimizers)} optimizer(s), {len(checkpoint.schedulers)} scheduler(s)")
    return ", ".join(parts)


READERS: dict[str, Reader] = {
    kinds.TENSORBOARD: read_tensorboard,
    kinds.CHECKPOINT: read_checkpoint,
    kinds.HF_CHECKPOINT_DIR: read_checkpoint,
    kinds.TRAINING_ARGS: read_training_arguments,
    kinds.TRAINER_STATE: read_trainer_state,
    kinds.METRICS_TABLE: read_metric_table,
    kinds.MLFLOW_METRIC: read_mlflow_metric,
    kinds.LOG: read_log,
    kinds.CONFIG: read_config,
    kinds.MLFLOW_PARAMS: read_mlflow_params,
}

# What the report says about kinds that are listed but have no reader yet.
NOT_READ = {
    kinds.WEIGHTS: "bare weight files are listed; checkpoints with optimizer state are read instead",
    kinds.OTHER: "not a kind of file forensics reads",
}
