"""The first warning sign before a NaN onset: what an on-call engineer looks at first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forensics.checks.base import Evidence
from forensics.checks.evidence import row_evidence
from forensics.checks.numerics.spikes import first_spike
from forensics.checks.series import busiest_source
from forensics.formatting import fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

# A lone noisy batch is not a warning sign: the loss must stay this far up for two values.
GRAD_SPIKE = 10.0
LOSS_SPIKE = 5.0
LOSS_SPIKE_LENGTH = 2
SCALE_COLLAPSE = 8.0  # the loss scale fell to 1/8 of its running maximum


def first_warning_sign(run: Run, onset_step: int) -> tuple[str, Evidence] | None:
    """The earliest sign before `onset_step`: grad-norm or loss spike, loss-scale collapse, skipped steps."""
    signs = [sign for sign in (_spike(run, aliases.GRAD_NORM, GRAD_SPIKE, 1, onset_step, "grad norm"),
                               _spike(run, aliases.LOSS, LOSS_SPIKE, LOSS_SPIKE_LENGTH, onset_step, "loss"),
                               _scale_collapse(run, onset_step),
                               _skipped_iterations(run, onset_step)) if sign is not None]
    if not signs:
        return None
    step, description, evidence = min(signs, key=lambda sign: sign[0])
    return f"{description} at step {fmt_step(step)}, {onset_step - step:,} steps before the onset", evidence


def _before(run: Run, metric: str, onset_step: int) -> pd.DataFrame:
    series = run.series(metric, group=0)
    if series.empty:
        return series
    series = busiest_source(series)
    series = series[series["step"] < onset_step]
    return series.sort_values(["segment", "step"], kind="stable").reset_index(drop=True)


def _spike(run: Run, metric: str, factor: float, length: int, onset_step: int, label: str):
    series = _before(run, metric, onset_step)
    if len(series) < 20:
        return None
    spike = first_spike(series["value"].to_numpy(), factor, sustained=length)
    if spike is None:
        return None
    row = series.iloc[spike.index]
    description = f"{label} {fmt_value(float(row['value']))}, {spike.ratio:,.0f}x its running median"
    return int(row["step"]), description, row_evidence(run, row, expected=f"about {fmt_value(spike.baseline)}",
                                                       note=f"first warning sign: {label} spike")


def _scale_collapse(run: Run, onset_step: int):
    series = _before(run, aliases.LOSS_SCALE, onset_step)
    if len(series) < 2:
        return None
    values = series["value"].to_numpy()
    peak_so_far = np.maximum.accumulate(np.where(np.isfinite(values), values, 0))
    collapsed = np.flatnonzero(values * SCALE_COLLAPSE <= peak_so_far)
    if not len(collapsed):
        return None
    row = series.iloc[collapsed[0]]
    description = f"loss scale fell to {fmt_value(float(row['value']))} from {fmt_value(float(peak_so_far[collapsed[0]]))}"
    return int(row["step"]), description, row_evidence(run, row, note="first warning sign: loss-scale collapse")


def _skipped_iterations(run: Run, onset_step: int):
    """Counters such as Megatron's `number of skipped iterations` / `number of nan iterations`."""
    for name in run.metrics:
        if "skipped" not in name and "nan iterations" not in name:
            continue
        series = _before(run, name, onset_step)
        positive = series[series["value"] > 0]
        if len(positive):
            row = positive.iloc[0]
            return int(row["step"]), f"{row['tag']} = {fmt_value(float(row['value']))}", row_evidence(
                run, row, expected=0, note="first warning sign: skipped iterations")
    return None
