"""The library entry point behind `forensics sweep`: every run under a root analysed, one report each, an index.

Each run is analysed by `forensics.analyze.analyze` in a pool of worker processes, so a run that kills
its worker (a segfault in a hostile checkpoint, the OOM killer) becomes an entry with status `error`
and the sweep goes on. Nothing is written inside the root or inside any run found below it.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from forensics import __version__
from forensics.errors import ForensicsError
from forensics.formatting import split_headline
from forensics.ingest.discovery import find_runs
from forensics.ingest.problems import InputProblem
from forensics.render.output import refuse_inside, safe_file_name, write_report
from forensics.render.sweep_index import INDEX_RENDERERS
from forensics.report.verdict import gaps
from forensics.schedule import ScheduleOptions

SCHEMA = "forensics.sweep/1"
FORMATS = ("html", "json", "md")
# A run path made into a file name is cut here (plus a short hash of the full path) to stay below
# the 255-byte name limit of common file systems.
MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class SweepEntry:
    """One run of the sweep: its verdict and where its reports are, or why it could not be analysed."""

    path: str                     # posix path relative to the sweep root ("." for the root itself)
    status: str                   # a verdict status, or "error" when the analysis itself failed
    headline: str                 # the verdict's headline, or the one-line error
    counts: dict[str, int]
    finding_codes: tuple[str, ...]
    finding_severities: tuple[str, ...]
    top_finding: str | None       # first sentence of the top finding's message
    input_problems: int
    input_problem_codes: tuple[str, ...]
    reports: dict[str, str]       # format -> file name inside the output folder
    seconds: float
    checks_total: int = 0
    unchecked_codes: tuple[str, ...] = ()   # checks that could not run for lack of an input that matters
    missing_inputs: tuple[str, ...] = ()    # those inputs' keys (verdict.unchecked[].missing)
    not_checked: str | None = None          # "8 of 18 checks: a logged LR series (log the LR every step)"

    def to_dict(self) -> dict:
        """This run's object in the `forensics.sweep/1` index."""
        return {"path": self.path, "status": self.status, "headline": self.headline, "counts": dict(self.counts),
                "finding_codes": list(self.finding_codes), "top_finding": self.top_finding,
                "input_problems": self.input_problems, "input_problem_codes": list(self.input_problem_codes),
                "reports": dict(self.reports), "seconds": self.seconds, "checks_total": self.checks_total,
                "unchecked_codes": list(self.unchecked_codes), "missing_inputs": list(self.missing_inputs),
                "not_checked": self.not_checked}


@dataclass
class SweepResult:
    """Everything the index renderers and the terminal summary need."""

    root: str
    out_dir: str
    generated_at: str
    tool_version: str
    command: str
    formats: tuple[str, ...]
    entries: list[SweepEntry] = field(default_factory=list)
    walk_problems: list[InputProblem] = field(default_factory=list)
    index_files: dict[str, str] = field(default_factory=dict)   # format -> absolute path written

    def totals(self) -> dict[str, int]:
        """Runs per status, every status present (zero included)."""
        statuses = ("failed", "suspect", "limited", "healthy", "inconclusive", "error")
        return {status: sum(1 for entry in self.entries if entry.status == status) for status in statuses}

    def matches_fail_on(self, severities: tuple[str, ...]) -> bool:
        """Any run with a finding of one of `severities`; a run that could not be analysed counts too."""
        return bool(severities) and any(entry.status == "error" or set(entry.finding_severities) & set(severities)
                                        for entry in self.entries)

    def to_dict(self) -> dict:
        """The `forensics.sweep/1` index document (docs/report-schema.md)."""
        return {"schema": SCHEMA, "tool": {"name": "forensics", "version": self.tool_version},
                "root": self.root, "generated_at": self.generated_at, "command": self.command,
                "formats": list(self.formats), "totals": self.totals(),
                "walk_problems": [problem.to_dict() for problem in self.walk_problems],
                "runs": [entry.to_dict() for entry in self.entries]}


@dataclass(frozen=True)
class _Task:
    run_dir: str
    path: str
    file_stem: str
    formats: tuple[str, ...]
    command: str
    schedule: ScheduleOptions | None
    follow_links: bool


def sweep(root: Path, out_dir: Path, formats: tuple[str, ...] = ("html", "json"), jobs: int = 1,
          schedule: ScheduleOptions | None = None, follow_links: bool = False, command: str = "") -> SweepResult:
    """Find every run under `root`, analyse each, write its reports and the index into `out_dir`.

    Raises `ForensicsError` (before anything is written) when `root` is not a directory, holds no run,
    or `out_dir` lies inside `root` or inside a run. Errors of one run never stop the sweep.
    """
    root = Path(root)
    if not root.is_dir():
        raise ForensicsError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ForensicsError(f"--format: {','.join(unknown) or 'nothing'} given; choose from {','.join(FORMATS)}")
    found = find_runs(root, follow_external_links=follow_links)
    target = refuse_inside(out_dir, found.root, "the sweep root")
    for run_dir in found.runs:  # a run reached through a followed link lies outside the root
        refuse_inside(target, run_dir)
    if not found.runs:
        raise ForensicsError(f"{found.root}: no training runs found (no event files, checkpoints, logs, "
                             "trainer_state.json or metric tables in any folder)")
    if target.exists() and not target.is_dir():
        raise ForensicsError(f"{target}: exists and is not a directory; give a folder with -o")
    target.mkdir(parents=True, exist_ok=True)
    command = command or f"forensics sweep {root} -o {out_dir}"
    tasks = [_Task(str(run_dir), _relative(run_dir, found.root), stem, tuple(formats), command, schedule, follow_links)
             for run_dir, stem in zip(found.runs, _file_stems([_relative(r, found.root) for r in found.runs],
                                                                  found.root.name))]
    result = SweepResult(root=str(found.root), out_dir=str(target), tool_version=__version__, command=command,
                         generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         formats=tuple(formats), walk_problems=found.problems)
    outcomes = _analyse_all(tasks, max(1, jobs))
    for task in tasks:
        entry, texts = outcomes[task.path]
        for name, text in texts.items():
            write_report(text, target / entry.reports[name], found.root)
        result.entries.append(entry)
    for name, render in INDEX_RENDERERS.items():
        result.index_files[name] = write_report(render(result), target / f"index.{name}", found.root)
    return result


def _relative(run_dir: Path, root: Path) -> str:
    try:
        return run_dir.relative_to(root).as_posix() or "."
    except ValueError:
        return run_dir.as_posix()


def _file_stems(paths: list[str], root_name: str) -> list[str]:
    """One distinct, safe file name stem per run path: `group/run` -> `group__run`."""
    stems, taken = [], set()
    for path in paths:
        stem = "__".join(safe_file_name(part) for part in (root_name if path == "." else path).split("/"))
        if len(stem) > MAX_NAME_CHARS:
            stem = stem[:MAX_NAME_CHARS] + "-" + hashlib.sha256(path.encode()).hexdigest()[:8]
        unique, number = stem, 2
        while unique.lower() in taken or unique.lower() == "index":  # case-insensitive file systems
            unique, number = f"{stem}-{number}", number + 1
        taken.add(unique.lower())
        stems.append(unique)
    return stems


def _analyse_all(tasks: list[_Task], jobs: int) -> dict[str, tuple[SweepEntry, dict[str, str]]]:
    """Run every task in worker processes; a task whose worker dies is retried alone once, then is an error."""
    outcomes: dict[str, tuple[SweepEntry, dict[str, str]]] = {}
    queue = list(tasks)
    while queue:
        suspects = _pool_pass(queue, jobs, outcomes)
        for task in suspects:  # one of them killed the pool; alone, only the culprit dies again
            if _pool_pass([task], 1, outcomes):
                outcomes[task.path] = (_error_entry(task, "the analysis process died (killed by a signal or out "
                                                          "of memory) while reading this run", 0.0), {})
    return outcomes


def _pool_pass(queue: list[_Task], jobs: int, outcomes: dict) -> list[_Task]:
    """Take tasks from `queue` with at most `jobs` in flight until it is empty or a worker dies.

    Returns the tasks whose results were lost because the pool broke (the ones in flight then).
    """
    broken: list[_Task] = []
    # spawn, not fork: the parent may already run torch's thread pools, which do not survive a fork.
    with ProcessPoolExecutor(max_workers=min(jobs, len(queue)), mp_context=multiprocessing.get_context("spawn")) as pool:
        in_flight = {}
        while queue or in_flight:
            while queue and len(in_flight) < jobs and not broken:
                task = queue.pop(0)
                in_flight[pool.submit(analyse_one, task)] = task
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                try:
                    outcomes[task.path] = future.result()
                except BrokenProcessPool:
                    broken.append(task)
    return broken


def analyse_one(task: _Task) -> tuple[SweepEntry, dict[str, str]]:
    """In a worker: analyse one run and render its reports; any exception becomes an `error` entry."""
    started = time.monotonic()
    try:
        from forensics.analyze import analyze
        from forensics.render import RENDERERS

        report = analyze(Path(task.run_dir), command=task.command, schedule=task.schedule,
                         follow_links=task.follow_links)
        texts = {name: RENDERERS[name](report) for name in task.formats}
    except Exception as error:  # noqa: BLE001 - one run's failure must not stop the sweep
        message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        return _error_entry(task, message, time.monotonic() - started), {}
    entry = SweepEntry(
        path=task.path, status=report.verdict.status, headline=report.verdict.headline,
        counts=dict(report.verdict.counts), finding_codes=tuple(finding.code for finding in report.findings),
        finding_severities=tuple(finding.severity for finding in report.findings),
        top_finding=split_headline(report.findings[0].message)[0] if report.findings else None,
        input_problems=len(report.input_problems),
        input_problem_codes=tuple(sorted({problem.code for problem in report.input_problems})),
        reports={name: f"{task.file_stem}.{name}" for name in task.formats},
        seconds=round(time.monotonic() - started, 3), **_unchecked_fields(report))
    return entry, texts


def _unchecked_fields(report) -> dict:
    """What the run's verdict could not check, for its row in the index."""
    limiting = [gap for gap in gaps(report.verdict.unchecked) if gap.limits_verdict]
    codes = tuple(item.code for item in report.verdict.limiting)
    text = (f"{len(codes)} of {report.verdict.checks_total} checks: "
            + "; ".join(f"{gap.label} ({gap.short})" for gap in limiting)) if limiting else None
    return {"checks_total": report.verdict.checks_total, "unchecked_codes": codes,
            "missing_inputs": tuple(gap.key for gap in limiting), "not_checked": text}


def _error_entry(task: _Task, message: str, seconds: float) -> SweepEntry:
    return SweepEntry(path=task.path, status="error", headline=message, counts={"error": 0, "warning": 0, "info": 0},
                      finding_codes=(), finding_severities=(), top_finding=None, input_problems=0,
                      input_problem_codes=(), reports={}, seconds=round(seconds, 3))
