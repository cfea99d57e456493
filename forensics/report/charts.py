"""Chart series for the report: full-resolution metrics reduced to a drawable size.

Reduction uses MinMax-LTTB (tsdownsample): min/max preselection keeps every spike, LTTB keeps the
shape. On top of it we always keep what a reader must see whatever the zoom level: the first and
last point of each segment (resume boundaries), the detected spikes, and the edges of every run of
non-finite values, which are also listed separately as markers (a NaN has no y to downsample).
"""

from __future__ import annotations

import re

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

from forensics.checks.base import Finding
from forensics.model import aliases
from forensics.model.run import Run
from forensics.report.model import ChartSeries
from forensics.rolling import rolling_median

# Metrics drawn in the report, in the order a reader wants them.
CHARTED_METRICS = (aliases.LR, aliases.LOSS, aliases.GRAD_NORM, aliases.LOSS_SCALE, aliases.VAL_LOSS)
CHART_POINTS = 2000          # per overview series: plenty for a 1,100 px wide chart, small on disk
WINDOW_POINTS = 1000         # per finding's zoomed series
MAX_NONFINITE_RUNS = 50      # runs of NaN/inf kept as markers; the count says how many there were
MAX_SPIKES = 20
SPIKE_METRICS = (aliases.LOSS, aliases.GRAD_NORM, aliases.VAL_LOSS)
SPIKE_WINDOW = 51            # rolling-median window a spike is measured against
SPIKE_MADS = 10.0            # a spike sits this many median absolute deviations above the local median
_TAG_IN_LOCATOR = re.compile(r"tag=(\S+)")


def chart_series(run: Run, findings: list[Finding]) -> list[ChartSeries]:
    """Overview series of every charted metric, then one zoomed series per finding tied to steps."""
    charts = [_series(run, metric, group, "run", None)
              for metric in CHARTED_METRICS for group in _groups(run, metric)]
    for index, finding in enumerate(findings, start=1):
        window = finding_window(finding, run.step_range)
        metric = _finding_metric(run, finding)
        if window is not None and metric is not None:
            charts.append(_series(run, metric, 0, f"finding-{index}", window))
    return [chart for chart in charts if chart.steps or chart.nonfinite_runs]


def finding_window(finding: Finding, step_range: tuple[int, int] | None) -> tuple[int, int] | None:
    """The finding's steps with a margin on both sides (a tenth of its span, at least 20 steps)."""
    if finding.step is None or step_range is None:
        return None
    end = finding.end_step if finding.end_step is not None else finding.step
    margin = max(20, (end - finding.step) // 10)
    return max(step_range[0], finding.step - margin), min(step_range[1], end + margin)


def _groups(run: Run, metric: str) -> list[int]:
    frame = run.series(metric)
    return sorted(frame["group"].unique().tolist()) if len(frame) else []


def _finding_metric(run: Run, finding: Finding) -> str | None:
    """The metric of the first event tag the finding's evidence names; else LR, else loss."""
    tag_metrics = {str(tag): metric for metric in CHARTED_METRICS if len(run.series(metric))
                   for tag in run.series(metric)["tag"].unique()}
    for item in finding.evidence:
        for match in _TAG_IN_LOCATOR.finditer(item.locator):
            if match.group(1) in tag_metrics:
                return tag_metrics[match.group(1)]
    return next((metric for metric in (aliases.LR, aliases.LOSS) if len(run.series(metric))), None)


def _series(run: Run, metric: str, group: int, scope: str, window: tuple[int, int] | None) -> ChartSeries:
    rows = run.series(metric, group)
    steps = rows["step"].to_numpy(dtype=np.int64)
    # the three columns the chart needs, in step order (sorting the whole frame copied all eight)
    order = np.argsort(steps, kind="stable")
    if window is not None:
        order = order[(steps[order] >= window[0]) & (steps[order] <= window[1])]
    values = rows["value"].to_numpy(dtype=np.float64)[order]
    label = metric if group == 0 else f"{metric} (group {group})"
    return reduce_series(metric, label, steps[order], values, rows["segment"].to_numpy()[order], scope, window,
                         WINDOW_POINTS if window else CHART_POINTS)


def reduce_series(metric: str, label: str, steps: np.ndarray, values: np.ndarray, segments: np.ndarray,
                  scope: str = "run", window: tuple[int, int] | None = None,
                  points: int = CHART_POINTS) -> ChartSeries:
    """Downsample one step-sorted series, keeping spikes, segment edges and NaN-run edges."""
    nonfinite = ~np.isfinite(values)
    finite_index = np.flatnonzero(~nonfinite)
    keep = [finite_index[downsample(steps[finite_index], values[finite_index], points)]]
    run_starts, run_ends = _runs(nonfinite)
    keep += [run_starts, run_ends, np.maximum(run_starts - 1, 0), np.minimum(run_ends + 1, len(values) - 1)]
    for segment in np.unique(segments):
        # Rows of a resumed segment can interleave with the rows it replays, so take each one's ends.
        positions = np.flatnonzero(segments == segment)
        keep.append(positions[[0, -1]])
    spikes = find_spikes(values) if metric in SPIKE_METRICS else np.array([], dtype=np.int64)
    keep.append(spikes)
    chosen = np.unique(np.concatenate(keep).astype(np.int64)) if len(values) else np.array([], dtype=np.int64)
    return ChartSeries(
        metric=metric, label=label, scope=scope, window=window,
        steps=tuple(int(step) for step in steps[chosen]),
        values=tuple(None if nonfinite[i] else float(values[i]) for i in chosen),
        nonfinite_runs=tuple((int(steps[a]), int(steps[b])) for a, b in zip(run_starts[:MAX_NONFINITE_RUNS],
                                                                            run_ends[:MAX_NONFINITE_RUNS])),
        nonfinite_count=int(nonfinite.sum()),
        spike_steps=tuple(int(steps[i]) for i in spikes),
        points_logged=len(values))


def downsample(steps: np.ndarray, values: np.ndarray, points: int) -> np.ndarray:
    """Indices of a MinMax-LTTB reduction to about `points` (all indices when already small)."""
    if len(values) <= points:
        return np.arange(len(values))
    return np.asarray(MinMaxLTTBDownsampler().downsample(steps, values, n_out=points), dtype=np.int64)


def find_spikes(values: np.ndarray) -> np.ndarray:
    """Indices of the largest upward outliers against a rolling median (at most MAX_SPIKES)."""
    if len(values) < SPIKE_WINDOW:
        return np.array([], dtype=np.int64)
    finite = np.where(np.isfinite(values), values, np.nan)
    median = rolling_median(finite, SPIKE_WINDOW, min_periods=SPIKE_WINDOW // 2, center=True)
    deviation = rolling_median(np.abs(finite - median), SPIKE_WINDOW, min_periods=SPIKE_WINDOW // 2, center=True)
    floor = 1e-3 * np.abs(median) + 1e-12  # a perfectly flat stretch must not make every wiggle a spike
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (finite - median) / np.maximum(deviation, floor)
    candidates = np.flatnonzero(np.nan_to_num(score, nan=0.0) > SPIKE_MADS)
    chosen: list[int] = []
    for index in candidates[np.argsort(score[candidates], kind="stable")[::-1]]:
        # A burst of outliers is one spike: mark its strongest point only.
        if all(abs(index - other) > SPIKE_WINDOW // 2 for other in chosen):
            chosen.append(int(index))
        if len(chosen) == MAX_SPIKES:
            break
    return np.array(sorted(chosen), dtype=np.int64)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices (inclusive) of each run of True in `mask`."""
    if not len(mask):
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
