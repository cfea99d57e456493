"""The report's data model. `Report.to_dict()` is the JSON output contract (`forensics.report/1`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from forensics.checks.base import Finding
from forensics.checks.runner import CheckOutcome
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import RunEvent
from forensics.model.run import Segment, Source

SCHEMA = "forensics.report/1"
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Provenance:
    """Who made the report, when, how, and from what."""

    tool_version: str
    command: str
    generated_at: str     # ISO 8601, UTC
    run_path: str


@dataclass(frozen=True)
class Trajectory:
    """Summary of one canonical metric across all its sources."""

    metric: str
    count: int
    first_step: int
    last_step: int
    first_value: float
    last_value: float
    min_value: float | None
    max_value: float | None
    nonfinite: int
    groups: tuple[int, ...]
    tags: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class CheckpointSummary:
    """The counters and state a checkpoint holds, as shown in the report."""

    path: str
    layout: str
    epoch: int | None
    global_step: int | None
    optimizer_steps: tuple[int, ...]
    lrs: tuple[float | None, ...]
    schedulers: tuple[str, ...]
    scheduler_last_epoch: int | None
    has_rng_state: bool
    has_grad_scaler: bool
    nonfinite_weight_values: int
    weight_values: int


@dataclass(frozen=True)
class ChartSeries:
    """Points of one series for charts, already reduced to a drawable size (built by report/charts.py).

    `scope` is "run" for the overview charts or "finding-<n>" for the zoom on the n-th finding (1-based,
    in `Report.findings` order), whose steps lie inside `window`.
    """

    metric: str
    label: str
    scope: str
    window: tuple[int, int] | None
    steps: tuple[int, ...]
    values: tuple[float | None, ...]   # None where the run logged NaN/inf (the line breaks there)
    nonfinite_runs: tuple[tuple[int, int], ...]   # first and last step of each run of NaN/inf (capped)
    nonfinite_count: int
    spike_steps: tuple[int, ...]
    points_logged: int                 # points before reduction


@dataclass(frozen=True)
class Unchecked:
    """A check that could not run for lack of an input, and how to give the run that input."""

    code: str                  # the check's code
    reason: str                # the check's own words (its not-applicable reason or crash)
    missing: tuple[str, ...]   # input keys: "stated_schedule", "lr_series", ... (forensics/report/verdict.py)
    enable: str                # what to pass or log so the check can run
    limits_verdict: bool       # True: the run cannot be called healthy without it

    def to_dict(self) -> dict:
        return {"code": self.code, "reason": self.reason, "missing": list(self.missing), "enable": self.enable,
                "limits_verdict": self.limits_verdict}


@dataclass(frozen=True)
class Verdict:
    """One word for the run, one sentence for the reader, the counts behind them, and what went unchecked.

    `limited` means no findings, but checks that matter for the data present lacked an input
    (listed in `unchecked` with `limits_verdict`); `healthy` means no findings and every such check ran.
    """

    status: str           # "failed" | "suspect" | "limited" | "healthy" | "inconclusive"
    headline: str
    counts: dict[str, int]
    checks_total: int = 0
    checks_ran: int = 0
    unchecked: tuple[Unchecked, ...] = ()

    @property
    def limiting(self) -> tuple[Unchecked, ...]:
        """The unchecked items that keep the run from being called healthy."""
        return tuple(item for item in self.unchecked if item.limits_verdict)

    def to_dict(self) -> dict:
        """The `verdict` object of the JSON report."""
        return {"status": self.status, "headline": self.headline, "counts": dict(self.counts),
                "checks": {"total": self.checks_total, "ran": self.checks_ran,
                           "could_not_run": len(self.limiting)},
                "unchecked": [item.to_dict() for item in self.unchecked]}


@dataclass
class Report:
    """Everything a renderer needs; nothing here refers back to the run directory."""

    run_name: str
    provenance: Provenance
    first_step: int | None
    last_step: int | None
    sources: list[Source]
    input_problems: list[InputProblem]
    segments: list[Segment]
    trajectories: list[Trajectory]
    checkpoints: list[CheckpointSummary]
    checks: list[CheckOutcome]
    findings: list[Finding]
    verdict: Verdict
    intended_schedule: dict | None = None
    stated: dict = field(default_factory=lambda: {"facts": {}, "disagreements": {}})  # what the run's files state
    charts: list[ChartSeries] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)   # evidence lines from logs, in source order

    def to_dict(self) -> dict:
        """The JSON document (documented in docs/report-schema.md, validated by docs/report.schema.json)."""
        return {
            "schema": SCHEMA,
            "tool": {"name": "forensics", "version": self.provenance.tool_version},
            "provenance": {"command": self.provenance.command, "generated_at": self.provenance.generated_at,
                           "run_path": self.provenance.run_path},
            "run": {"name": self.run_name, "path": self.provenance.run_path, "first_step": self.first_step,
                    "last_step": self.last_step, "segments": len(self.segments),
                    "checkpoints": len(self.checkpoints)},
            "verdict": self.verdict.to_dict(),
            "sources": [_source_dict(source) for source in self.sources],
            "input_problems": [problem.to_dict() for problem in self.input_problems],
            "segments": [_segment_dict(segment) for segment in self.segments],
            "trajectories": {t.metric: _trajectory_dict(t) for t in self.trajectories},
            "checkpoints": [_checkpoint_dict(c) for c in self.checkpoints],
            "intended_schedule": self.intended_schedule,
            "stated": self.stated,
            "checks": [outcome.to_dict() for outcome in self.checks],
            "findings": [finding.to_dict() for finding in self.findings],
            "events": [_event_dict(event) for event in self.events],
        }


def _source_dict(source: Source) -> dict:
    return {"kind": source.kind, "path": source.path, "status": source.status, "records": source.records,
            "size_bytes": source.size_bytes, "detail": source.detail,
            "warnings": [problem.to_dict() for problem in source.problems],
            "process": {"host": source.host, "pid": source.pid, "first_wall_time": source.first_wall_time,
                        "last_wall_time": source.last_wall_time} if source.first_wall_time is not None else None,
            "coverage": source.coverage}


def _event_dict(event: RunEvent) -> dict:
    data = {key: value for key, value in event.data.items()
            if value is None or isinstance(value, (str, int)) or (isinstance(value, float) and value == value
                                                                  and abs(value) != float("inf"))}
    return {"kind": event.kind, "source": event.source, "line": event.line, "step": event.step, "text": event.text,
            "data": data}


def _segment_dict(segment: Segment) -> dict:
    return {"index": segment.index, "kind": segment.kind, "reason": segment.reason,
            "start_step": segment.start_step, "end_step": segment.end_step,
            "start_wall_time": segment.start_wall_time, "end_wall_time": segment.end_wall_time,
            "sources": list(segment.sources), "rewound_from_step": segment.rewound_from_step}


def _finite_or_none(value: float | None):
    return value if value is not None and value == value and abs(value) != float("inf") else None


def _trajectory_dict(trajectory: Trajectory) -> dict:
    return {"count": trajectory.count, "first_step": trajectory.first_step, "last_step": trajectory.last_step,
            "first_value": _finite_or_none(trajectory.first_value), "last_value": _finite_or_none(trajectory.last_value),
            "min": trajectory.min_value, "max": trajectory.max_value, "nonfinite": trajectory.nonfinite,
            "groups": list(trajectory.groups), "tags": list(trajectory.tags), "sources": list(trajectory.sources)}


def _checkpoint_dict(checkpoint: CheckpointSummary) -> dict:
    return {"path": checkpoint.path, "layout": checkpoint.layout, "epoch": checkpoint.epoch,
            "global_step": checkpoint.global_step, "optimizer_steps": list(checkpoint.optimizer_steps),
            "lrs": [_finite_or_none(lr) for lr in checkpoint.lrs], "schedulers": list(checkpoint.schedulers),
            "scheduler_last_epoch": checkpoint.scheduler_last_epoch, "has_rng_state": checkpoint.has_rng_state,
            "has_grad_scaler": checkpoint.has_grad_scaler,
            "nonfinite_weight_values": checkpoint.nonfinite_weight_values, "weight_values": checkpoint.weight_values}
