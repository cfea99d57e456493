"""Build the report from the run model and the check outcomes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from forensics import __version__
from forensics.checks.runner import CheckOutcome
from forensics.formatting import fmt_step
from forensics.ingest.checkpoint import Checkpoint
from forensics.model import aliases
from forensics.model.run import Run
from forensics.report.model import (SEVERITY_ORDER, ChartSeries, CheckpointSummary, Provenance, Report, Trajectory,
                                    Verdict)

# Metrics drawn in the report, in the order a reader wants them.
CHARTED_METRICS = (aliases.LR, aliases.LOSS, aliases.GRAD_NORM, aliases.LOSS_SCALE, aliases.VAL_LOSS)
CHART_POINTS = 800


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
        verdict=_verdict(run, findings),
        charts=_charts(run),
    )


def _metric_order(item: tuple[str, pd.DataFrame]) -> tuple:
    name = item[0]
    return (CHARTED_METRICS.index(name) if name in CHARTED_METRICS else len(CHARTED_METRICS), name)


def _trajectory(metric: str, frame: pd.DataFrame) -> Trajectory:
    values = frame["value"].to_numpy()
    finite = values[np.isfinite(values)]
    return Trajectory(
        metric=metric, count=len(frame), first_step=int(frame["step"].iloc[0]), last_step=int(frame["step"].iloc[-1]),
        first_value=float(values[0]), last_value=float(values[-1]),
        min_value=float(finite.min()) if len(finite) else None, max_value=float(finite.max()) if len(finite) else None,
        nonfinite=int(len(values) - len(finite)), groups=tuple(sorted(frame["group"].unique().tolist())),
        tags=tuple(str(tag) for tag in frame["tag"].unique()), sources=tuple(str(s) for s in frame["source"].unique()))


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


def _verdict(run: Run, findings: list) -> Verdict:
    counts = {severity: sum(1 for f in findings if f.severity == severity) for severity in SEVERITY_ORDER}
    if findings and findings[0].severity in ("error", "warning"):
        status = "failed" if findings[0].severity == "error" else "suspect"
        return Verdict(status, findings[0].message, counts)
    if not run.series(aliases.LR).size and not run.series(aliases.LOSS).size:
        return Verdict("inconclusive", "No learning-rate or loss series was found, so nothing could be diagnosed.",
                       counts)
    step_range = run.step_range
    span = f" from step {fmt_step(step_range[0])} to {fmt_step(step_range[1])}" if step_range else ""
    return Verdict("healthy", f"No problems found{span} by the checks that could run.", counts)


def _charts(run: Run) -> list[ChartSeries]:
    charts = []
    for metric in CHARTED_METRICS:
        frame = run.series(metric)
        for group in sorted(frame["group"].unique().tolist()) if len(frame) else []:
            rows = frame[frame["group"] == group].sort_values("step", kind="stable")
            label = metric if group == 0 else f"{metric} (group {group})"
            charts.append(_chart(metric, label, rows["step"].to_numpy(), rows["value"].to_numpy()))
    return charts


def _chart(metric: str, label: str, steps: np.ndarray, values: np.ndarray) -> ChartSeries:
    nonfinite = ~np.isfinite(values)
    keep = min_max_indices(np.where(nonfinite, np.nan, values), CHART_POINTS)
    keep = np.union1d(keep, np.flatnonzero(nonfinite)[:CHART_POINTS])
    return ChartSeries(metric, label, tuple(int(s) for s in steps[keep]),
                       tuple(None if nonfinite[i] else float(values[i]) for i in keep),
                       tuple(int(s) for s in steps[nonfinite][:CHART_POINTS]))


def min_max_indices(values: np.ndarray, points: int) -> np.ndarray:
    """Indices that keep each bucket's min and max (so spikes survive) plus both ends."""
    count = len(values)
    if count <= points:
        return np.arange(count)
    buckets = np.array_split(np.arange(count), points // 2)
    chosen = [0, count - 1]
    for bucket in buckets:
        chunk = values[bucket]
        if np.all(np.isnan(chunk)):
            chosen.append(int(bucket[0]))
            continue
        chosen += [int(bucket[np.nanargmin(chunk)]), int(bucket[np.nanargmax(chunk)])]
    return np.unique(np.array(chosen))
