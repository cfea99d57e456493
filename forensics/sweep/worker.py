"""What a worker does for one run: analyse it where it lies and send back its entry and report texts.

The same function runs in a local worker process and on a Dask worker. It writes nothing: the entry
and the rendered report documents (strings) travel back to the sweep, which writes them into OUT.
"""

from __future__ import annotations

import time

from forensics.formatting import split_headline
from forensics.report.verdict import gaps
from forensics.sweep.model import FindingKey, SweepEntry, SweepTask

ERROR_COUNTS = {"error": 0, "warning": 0, "info": 0}


def warm_up() -> None:
    """Import the analysis stack (torch included) before the first run's clock starts."""
    import forensics.analyze  # noqa: F401
    import forensics.render  # noqa: F401


def analyse_one(task: SweepTask) -> tuple[SweepEntry, dict[str, str]]:
    """Analyse one run and render its reports; any exception becomes an `error` entry."""
    started = time.monotonic()
    try:
        from forensics.render import RENDERERS
        from forensics.storage import analyze_location, named_after

        report = analyze_location(task.location, command=task.command, schedule=task.schedule,
                                  follow_links=task.follow_links)
        report = named_after(report, task.source) if task.source else report
        out_of_memory = next((problem for problem in report.input_problems if problem.code == "reader_error"
                              and "(MemoryError" in problem.message), None)
        if out_of_memory is not None:
            # The model builder turns a reader's MemoryError into an input problem; under the worker's memory
            # cap that is a partial read, and a verdict from it would look like a real one.
            raise MemoryError(f"out of memory (the worker's memory cap) while reading {out_of_memory.path}")
        texts = {name: RENDERERS[name](report) for name in task.formats}
    except Exception as error:  # noqa: BLE001 - one run's failure must not stop the sweep
        message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        return error_entry(task, message, time.monotonic() - started), {}
    entry = SweepEntry(
        path=task.path, status=report.verdict.status, headline=report.verdict.headline,
        counts=dict(report.verdict.counts),
        findings=tuple(FindingKey(finding.code, finding.severity, finding.step, finding.end_step)
                       for finding in report.findings),
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


def error_entry(task: SweepTask, message: str, seconds: float) -> SweepEntry:
    """The entry of a run that could not be analysed: status `error`, the reason as its headline."""
    return SweepEntry(path=task.path, status="error", headline=message, counts=dict(ERROR_COUNTS), findings=(),
                      top_finding=None, input_problems=0, input_problem_codes=(), reports={},
                      seconds=round(seconds, 3))
