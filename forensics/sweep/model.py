"""What a sweep produces: one entry per run, the folders it did not take as runs, and the whole result.

These are plain data. The index renderers, the JUnit writer, the cache and the baseline diff read them;
`to_dict()` is the single source of the `forensics.sweep/1` index keys (docs/sweep.schema.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forensics.ingest.problems import InputProblem
from forensics.schedule import ScheduleOptions

SCHEMA = "forensics.sweep/1"
FORMATS = ("html", "json", "md")
STATUSES = ("failed", "suspect", "limited", "healthy", "inconclusive", "error")
# --fail-on: the severities that gate, and whether only findings new against the baseline count.
FAIL_ON = {"never": ((), False), "error": (("error",), False), "warning": (("error", "warning"), False),
           "new-error": (("error",), True), "new-warning": (("error", "warning"), True)}


@dataclass(frozen=True)
class FindingKey:
    """What the baseline diff compares of a finding: its code, severity and step range."""

    code: str
    severity: str
    step: int | None
    end_step: int | None

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "step": self.step, "end_step": self.end_step}

    @classmethod
    def from_dict(cls, data: dict) -> FindingKey:
        return cls(str(data["code"]), str(data["severity"]), data.get("step"), data.get("end_step"))


@dataclass(frozen=True)
class SweepEntry:
    """One run of the sweep: its verdict and where its reports are, or why it could not be analysed."""

    path: str                     # posix path relative to the sweep root ("." for the root itself)
    status: str                   # a verdict status, or "error" when the analysis itself failed
    headline: str                 # the verdict's headline, or the one-line error
    counts: dict[str, int]
    findings: tuple[FindingKey, ...]
    top_finding: str | None       # first sentence of the top finding's message
    input_problems: int
    input_problem_codes: tuple[str, ...]
    reports: dict[str, str]       # format -> file name inside the output folder
    seconds: float
    checks_total: int = 0
    unchecked_codes: tuple[str, ...] = ()   # checks that could not run for lack of an input that matters
    missing_inputs: tuple[str, ...] = ()    # those inputs' keys (verdict.unchecked[].missing)
    not_checked: str | None = None          # "8 of 18 checks: a logged LR series (log the LR every step)"
    reused: bool = False                    # taken from the cache in OUT: the run's files had not changed

    @property
    def finding_codes(self) -> tuple[str, ...]:
        return tuple(finding.code for finding in self.findings)

    @property
    def finding_severities(self) -> tuple[str, ...]:
        return tuple(finding.severity for finding in self.findings)

    def to_dict(self) -> dict:
        """This run's object in the `forensics.sweep/1` index."""
        return {"path": self.path, "status": self.status, "headline": self.headline, "counts": dict(self.counts),
                "finding_codes": list(self.finding_codes), "findings": [item.to_dict() for item in self.findings],
                "top_finding": self.top_finding, "input_problems": self.input_problems,
                "input_problem_codes": list(self.input_problem_codes), "reports": dict(self.reports),
                "seconds": self.seconds, "checks_total": self.checks_total,
                "unchecked_codes": list(self.unchecked_codes), "missing_inputs": list(self.missing_inputs),
                "not_checked": self.not_checked, "reused": self.reused}

    @classmethod
    def from_dict(cls, data: dict) -> SweepEntry:
        """An entry read back from an index or the cache (the inverse of `to_dict`)."""
        return cls(path=data["path"], status=data["status"], headline=data["headline"], counts=dict(data["counts"]),
                   findings=tuple(FindingKey.from_dict(item) for item in data.get("findings", ())),
                   top_finding=data.get("top_finding"), input_problems=int(data.get("input_problems", 0)),
                   input_problem_codes=tuple(data.get("input_problem_codes", ())), reports=dict(data["reports"]),
                   seconds=float(data.get("seconds", 0.0)), checks_total=int(data.get("checks_total", 0)),
                   unchecked_codes=tuple(data.get("unchecked_codes", ())),
                   missing_inputs=tuple(data.get("missing_inputs", ())), not_checked=data.get("not_checked"),
                   reused=bool(data.get("reused", False)))


@dataclass(frozen=True)
class SkippedFolder:
    """A folder the walk looked at and did not take as a run (nor holds one below it), and why."""

    path: str        # posix path relative to the sweep root
    reason: str
    files: int       # regular files at any depth below it

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "files": self.files}


@dataclass(frozen=True)
class SweepTask:
    """One run to analyse, as sent to a worker process or a Dask worker (picklable, no open handles)."""

    location: str                 # a local folder, or an fsspec URL the worker reads the run from
    path: str
    file_stem: str
    formats: tuple[str, ...]
    command: str
    schedule: ScheduleOptions | None
    follow_links: bool
    source: str = ""              # where the run really lies when `location` is a copy (a memory:// URL)


@dataclass
class SweepResult:
    """Everything the index renderers, the JUnit writer and the terminal summary need."""

    root: str
    out_dir: str
    generated_at: str
    tool_version: str
    command: str
    formats: tuple[str, ...]
    entries: list[SweepEntry] = field(default_factory=list)
    walk_problems: list[InputProblem] = field(default_factory=list)
    skipped: list[SkippedFolder] = field(default_factory=list)
    baseline: dict | None = None      # the `baseline` object of the index (forensics.sweep.baseline)
    executor: str = "processes"
    index_files: dict[str, str] = field(default_factory=dict)   # format -> absolute path written
    guard: Path | None = field(default=None, repr=False)   # the local folder no output may go into

    def totals(self) -> dict[str, int]:
        """Runs per status, every status present (zero included)."""
        return {status: sum(1 for entry in self.entries if entry.status == status) for status in STATUSES}

    @property
    def reused(self) -> int:
        """Runs whose entry and reports came from the cache."""
        return sum(1 for entry in self.entries if entry.reused)

    def entry_fails(self, entry: SweepEntry, fail_on: str) -> bool:
        """The run meets `--fail-on`: a finding of a gated severity (only new ones for `new-*`), or, under
        any gate, a run that could not be analysed (under `new-*`, only when it newly could not)."""
        severities, only_new = FAIL_ON[fail_on]
        if not severities:
            return False
        if only_new:
            return any(item["path"] == entry.path and item["severity"] in severities
                       for item in (self.baseline or {}).get("new", ()))
        return entry.status == "error" or bool(set(entry.finding_severities) & set(severities))

    def fails(self, fail_on: str) -> bool:
        """Any run meets `--fail-on`."""
        return any(self.entry_fails(entry, fail_on) for entry in self.entries)

    def matches_fail_on(self, severities: tuple[str, ...]) -> bool:
        """Any run with a finding of one of `severities`; a run that could not be analysed counts too."""
        return bool(severities) and any(entry.status == "error" or set(entry.finding_severities) & set(severities)
                                        for entry in self.entries)

    def to_dict(self) -> dict:
        """The `forensics.sweep/1` index document (docs/sweep.schema.json)."""
        return {"schema": SCHEMA, "tool": {"name": "forensics", "version": self.tool_version},
                "root": self.root, "generated_at": self.generated_at, "command": self.command,
                "formats": list(self.formats), "executor": self.executor, "totals": self.totals(),
                "reused": self.reused, "walk_problems": [problem.to_dict() for problem in self.walk_problems],
                "skipped": [folder.to_dict() for folder in self.skipped], "baseline": self.baseline,
                "runs": [entry.to_dict() for entry in self.entries]}
