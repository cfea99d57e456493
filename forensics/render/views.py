"""View models for the HTML page: what each template section shows, computed from the report alone.

Templates receive these small dataclasses (and the report itself for tables); nothing here builds
markup. Chart data for the interactive charts travels as escaped JSON islands (see assets.json_island).
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from forensics.checks.base import Finding
from forensics.formatting import fmt_step
from forensics.render.assets import PageAssets, compact_number, json_island, page_assets
from forensics.formatting import split_headline
from forensics.render.intended import IntendedView, deviation_bands, intended_view
from forensics.render.static_chart import StaticChart, StepScale, static_chart
from forensics.render.timeline import TimelineView, timeline_view
from forensics.report.model import ChartSeries, Report, Unchecked
from forensics.report.verdict import Gap, gaps

LOG_METRICS = ("lr", "loss_scale")
# Other positive series switch to a log axis when they span this many decades (a diverging loss).
LOG_WHEN_DECADES = 4
TITLES = {"lr": "Learning rate", "loss": "Training loss", "grad_norm": "Gradient norm",
          "loss_scale": "Loss scale (mixed precision)", "val_loss": "Validation loss"}
LEGEND = {"actual": "logged", "intended": "intended (dashed)", "deviation": "off the intended schedule",
          "nan": "NaN/inf logged", "finding": "the finding's steps", "segment": "new segment (restart, resume)",
          "checkpoint": "checkpoint", "spike": "spike"}


@dataclass(frozen=True)
class ChartView:
    """One chart: its static SVG (always shown without JS) and the data the interactive chart draws."""

    dom_id: str
    metric: str
    title: str
    caption: str
    notes: tuple[str, ...]
    log_scale: bool
    static: StaticChart
    legend: tuple[tuple[str, str], ...]   # (css kind, words) for each kind of mark drawn
    data: Markup


@dataclass(frozen=True)
class FindingView:
    index: int
    finding: Finding
    chart: ChartView | None


@dataclass(frozen=True)
class PageView:
    """Everything report.html.j2 renders."""

    report: Report
    headline: str
    headline_rest: str
    timeline: TimelineView | None
    run_charts: tuple[ChartView, ...]
    findings: tuple[FindingView, ...]
    intended: IntendedView | None
    assets: PageAssets
    gaps: tuple[Gap, ...] = ()                    # inputs the run lacks, with the checks each would enable
    unchecked: dict[str, Unchecked] | None = None   # check code -> why it could not run and how to enable it


def page_view(report: Report) -> PageView:
    """The view of the whole page."""
    headline, rest = split_headline(report.verdict.headline)
    intended = intended_view(report.intended_schedule)
    run_charts = tuple(chart_view(report, series, intended, f"chart-{number}")
                       for number, series in enumerate(c for c in report.charts if c.scope == "run"))
    zooms = {series.scope: series for series in report.charts if series.scope != "run"}
    findings = tuple(
        FindingView(index, finding, chart_view(report, zooms[f"finding-{index}"], intended, f"finding-{index}-chart")
                    if f"finding-{index}" in zooms else None)
        for index, finding in enumerate(report.findings, start=1))
    return PageView(report, headline, rest, timeline_view(report), run_charts, findings, intended, page_assets(),
                    tuple(gaps(report.verdict.unchecked)), {item.code: item for item in report.verdict.unchecked})


def chart_view(report: Report, series: ChartSeries, intended: IntendedView | None, dom_id: str) -> ChartView:
    """Static geometry and interactive data for one series, with the run's boundaries on it."""
    low, high = series.window or (series.steps[0] if series.steps else 0, series.steps[-1] if series.steps else 1)
    if series.nonfinite_runs:
        high = max(high, series.nonfinite_runs[-1][1])
    log_scale = series.metric in LOG_METRICS or spans_decades(series.values)
    lines = [("actual", series.label, list(series.steps), list(series.values))]
    bands: list[tuple[str, int, int, str]] = []
    if series.window is not None and series.scope.startswith("finding-"):
        finding = report.findings[int(series.scope.split("-")[1]) - 1]
        end = finding.end_step if finding.end_step is not None else finding.step
        bands.append(("finding", finding.step, end, f"{finding.code}: steps {fmt_step(finding.step)}–{fmt_step(end)}"))
    if intended is not None and series.metric == "lr" and series.label == "lr":
        steps, values = intended.window(low, high)
        if steps:
            lines.append(("intended", "intended lr", steps, values))
            bands += [("deviation", start, end, f"LR off the intended schedule, steps {fmt_step(start)}–{fmt_step(end)}")
                      for start, end in deviation_bands(series.steps, series.values, steps, values)]
    bands += [("nan", start, end, f"non-finite values, steps {fmt_step(start)}–{fmt_step(end)}")
              for start, end in series.nonfinite_runs]
    markers = _markers(report, series, low, high)
    static = static_chart(StepScale(low, high), lines, log_scale, markers, bands)
    data = {
        "title": TITLES.get(series.metric, series.metric), "log": log_scale, "range": [low, high],
        "series": [{"label": label, "kind": kind, "x": list(steps), "y": [compact_number(v) for v in values]}
                   for kind, label, steps, values in lines],
        "markers": [{"kind": kind, "step": step, "label": label} for kind, step, label in markers],
        "bands": [{"kind": kind, "from": start, "to": end, "label": label} for kind, start, end, label in bands],
    }
    caption = _caption(series, low, high, log_scale)
    if len(lines) > 1:
        caption += f" · intended schedule from {intended.source}"
    return ChartView(dom_id, series.metric, _title(series), caption,
                     _notes(series, intended), log_scale, static,
                     _legend(lines, bands, markers), json_island(data))


def _legend(lines, bands, markers) -> tuple[tuple[str, str], ...]:
    present = [kind for kind, *_ in lines] + [kind for kind, *_ in bands] + [kind for kind, *_ in markers]
    return tuple((kind, words) for kind, words in LEGEND.items() if kind in present)


def spans_decades(values, decades: float = LOG_WHEN_DECADES) -> bool:
    """True when every finite value is positive and max/min exceeds 10**decades."""
    finite = [v for v in values if v is not None]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 10 ** decades


def _title(series: ChartSeries) -> str:
    title = TITLES.get(series.metric, series.metric)
    return title if series.label == series.metric else f"{title}, {series.label}"


def _caption(series: ChartSeries, low: int, high: int, log_scale: bool) -> str:
    scale = "log scale" if log_scale else "linear scale"
    drawn = (f"{fmt_step(series.points_logged)} points" if len(series.steps) == series.points_logged
             else f"{fmt_step(series.points_logged)} points, {fmt_step(len(series.steps))} drawn")
    return f"steps {fmt_step(low)}–{fmt_step(high)} · {drawn} · {scale}"


def _notes(series: ChartSeries, intended: IntendedView | None) -> tuple[str, ...]:
    notes = []
    if series.nonfinite_count:
        notes.append(f"non-finite from step {fmt_step(series.nonfinite_runs[0][0])} "
                     f"({fmt_step(series.nonfinite_count)} values)")
    if series.spike_steps:
        notes.append(f"{len(series.spike_steps)} spike(s) marked, first at step {fmt_step(series.spike_steps[0])}")
    if series.metric == "lr" and intended is None:
        notes.append("no intended schedule known, so only the logged LR is drawn")
    return tuple(notes)


def _markers(report: Report, series: ChartSeries, low: int, high: int) -> list[tuple[str, int, str]]:
    """Segment starts after the first, checkpoints and spikes that fall inside the chart."""
    markers = [("segment", segment.start_step, f"segment {segment.index} ({segment.kind}) starts")
               for segment in report.segments[1:]
               if segment.start_step is not None and low <= segment.start_step <= high]
    markers += [("checkpoint", checkpoint.global_step, f"checkpoint {checkpoint.path}")
                for checkpoint in report.checkpoints
                if checkpoint.global_step is not None and low <= checkpoint.global_step <= high]
    markers += [("spike", step, f"spike at step {fmt_step(step)}") for step in series.spike_steps]
    return markers
