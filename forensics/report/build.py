"""Build the report from the run model and the check outcomes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from forensics import __version__
from forensics.checks.runner import CheckOutcome
from forensics.ingest.checkpoint import Checkpoint
from forensics.model.run import Run
from forensics.report.charts import CHARTED_METRICS, chart_series
from forensics.report.model import SEVERITY_ORDER, CheckpointSummary, Provenance, Report, Trajectory
from forensics.report.verdict import build_verdict


def build_report(run: Run, outcomes: list[CheckOutcome], command: str) -> Report:
    """Assemble the report; the result holds plain data only."""
    findings = sorted((finding for outcome in outcomes for finding in outcome.findings),
                      key=lambda f: (SEVERITY_ORDER[f.severity], f.step if f.step is not None else -1))
    step_range = run.step_range
    return Report(
        run_name=run.name,
        provenance=Provenance(__version__, command, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              run.path),
        first_step=step_range[0] if step_range else None,
        last_step=step_range[1] if step_range else None,
        sources=list(run.sources),
        input_problems=run.problems,
        segments=list(run.segments),
        trajectories=[_trajectory(name, frame) for name, frame in sorted(run.metrics.items(), key=_metric_order)
                      if len(frame)],
        checkpoints=[_checkpoint_summary(checkpoint) for checkpoint in run.checkpoints],
        checks=list(outcomes),
        findings=findings,
        verdict=build_verdict(run, findings, outcomes),
        intended_schedule=run.intended_schedule.to_dict() if run.intended_schedule is not None else None,
        stated=run.stated.to_dict(),
        charts=chart_series(run, findings),
        events=list(run.events),
    )


def _metric_order(item: tuple[str, pd.DataFrame]) -> tuple:
    name = item[0]
    return (CHARTED_METRICS.index(name) if name in CHARTED_METRICS else len(CHARTED_METRICS), name)


def _trajectory(metric: str, frame: pd.DataFrame) -> Trajectory:
    # First and last by time (segment, then step), whatever order the sources were read in.
    first, last = _first_and_last(frame["segment"].to_numpy(), frame["step"].to_numpy())
    values, steps = frame["value"].to_numpy(), frame["step"].to_numpy()
    finite = values[np.isfinite(values)]
    return Trajectory(
        metric=metric, count=len(frame), first_step=int(steps[first]),
        last_step=int(steps[last]), first_value=float(values[first]), last_value=float(values[last]),
        min_value=float(finite.min()) if len(finite) else None, max_value=float(finite.max()) if len(finite) else None,
        nonfinite=int(len(values) - len(finite)), groups=tuple(sorted(frame["group"].unique().tolist())),
        tags=tuple(str(tag) for tag in frame["tag"].unique()), sources=tuple(str(s) for s in frame["source"].unique()))


def _first_and_last(segments: np.ndarray, steps: np.ndarray) -> tuple[int, int]:
    """Positions of the first and last rows a stable sort by (segment, step) would give, without sorting."""
    earliest = np.flatnonzero(segments == segments.min())
    latest = np.flatnonzero(segments == segments.max())
    latest_steps = steps[latest]
    return (int(earliest[np.argmin(steps[earliest])]),
            int(latest[len(latest) - 1 - np.argmax(latest_steps[::-1])]))


def _checkpoint_summary(checkpoint: Checkpoint) -> CheckpointSummary:
    first_scheduler = checkpoint.schedulers[0] if checkpoint.schedulers else None
    return CheckpointSummary(
        path=checkpoint.path, layout=checkpoint.layout, epoch=checkpoint.epoch, global_step=checkpoint.global_step,
        optimizer_steps=tuple(step for optimizer in checkpoint.optimizers for step in optimizer.step_counts),
        lrs=tuple(group.lr for optimizer in checkpoint.optimizers for group in optimizer.param_groups),
        schedulers=tuple(s.class_name or "unidentified" for s in checkpoint.schedulers),
        scheduler_last_epoch=first_scheduler.last_epoch if first_scheduler else None,
        has_rng_state=checkpoint.has_rng_state, has_grad_scaler=checkpoint.has_grad_scaler,
        nonfinite_weight_values=checkpoint.nonfinite_weight_values, weight_values=checkpoint.weight_values)
