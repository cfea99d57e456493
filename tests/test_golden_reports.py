"""Golden reports: the JSON, Markdown and HTML of each sample run, compared after scrubbing.

Volatile parts (generation time, tool version, absolute paths) are scrubbed. A golden keeps only the
checks that produced a finding on its run: the rows of checks that found nothing or could not run, and
the verdict's check counts, change whenever a check is added anywhere, so they are left out (the full
check list is asserted by tests/test_report_formats.py and tests/test_check_catalogue.py). Adding a
check therefore changes a golden only when the check finds something on that run. On a mismatch the actual
output is saved under tests/.golden-actual/ and the failure message prints the command that accepts
the new output:  FORENSICS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_reports.py
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from forensics import __version__
from forensics.analyze import analyze
from forensics.checks import REGISTRY
from forensics.checks.base import Check, NotApplicable
from forensics.checks.runner import run_checks
from forensics.model.build import build_run
from forensics.render import render_html, render_json, render_markdown
from forensics.render.assets import STYLE_FILES, page_assets
from forensics.report.build import build_report
from forensics.schedule import resolve_intended

from conftest import REPO, SAMPLE_RUNS

GOLDEN = REPO / "tests" / "golden"
ACTUAL = REPO / "tests" / ".golden-actual"
RUNS = ["healthy_onecycle", "nan_divergence", "resume_scheduler_reset", "stuck_lr_onecycle_per_epoch"]
RENDERERS = {"json": render_json, "md": render_markdown, "html": render_html}


def scrub(text: str) -> str:
    """Replace what changes between machines and runs with fixed markers.

    The vendored chart library (tens of KB of minified code, identical in every report) becomes a
    marker naming the file, so goldens stay reviewable; its CSP hash still pins the exact bytes.
    """
    assets = page_assets()
    for name, body in [(s.name, s.body) for s in assets.scripts] + list(zip(STYLE_FILES, assets.styles)):
        if name.startswith("vendor/"):
            text = text.replace(str(body), f"/* {name} inlined here */")
    text = text.replace(str(SAMPLE_RUNS), "SAMPLE_RUNS")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\+00:00|Z)", "GENERATED_AT", text)
    text = text.replace(f"forensics {__version__}", "forensics VERSION")
    return re.sub(r'("version": )"[^"]+"', r'\1"VERSION"', text)


def golden_view(report):
    """The report as its golden shows it: only the checks with findings, and verdict counts over those.

    The sentence "N of M checks could not run" counts every registered check, so its numbers are scrubbed.
    """
    kept = [outcome for outcome in report.checks if outcome.findings]
    codes = {outcome.code for outcome in kept}
    verdict = dataclasses.replace(
        report.verdict, checks_total=len(kept), checks_ran=sum(outcome.status == "ran" for outcome in kept),
        unchecked=tuple(item for item in report.verdict.unchecked if item.code in codes),
        headline=re.sub(r"\b\d+ of \d+ checks\b", "N of M checks", report.verdict.headline))
    return dataclasses.replace(report, checks=kept, verdict=verdict)


def test_golden_view_keeps_the_checks_that_found_something():
    report = analyze(SAMPLE_RUNS / "nan_divergence")
    view = golden_view(report)
    assert {o.code for o in view.checks} == {f.code for f in report.findings}
    assert view.findings == report.findings and len(view.checks) < len(report.checks)


class _FindsNothing(Check):
    """A check added later that finds nothing on this run (test double).

    **Symptom** none. **Bad run** none. **Healthy run** any. **Fix** none.
    """

    code = "added_later_finds_nothing"
    severity = "error"
    needs = ()

    def run(self, run):
        return []


class _CannotRun(Check):
    """A check added later that cannot run on this run (test double).

    **Symptom** none. **Bad run** none. **Healthy run** any. **Fix** none.
    """

    code = "added_later_cannot_run"
    severity = "error"
    needs = ("a series no run has",)

    def run(self, run):
        raise NotApplicable("needs a series no run has; none found")


@pytest.mark.parametrize("name", ["healthy_onecycle", "nan_divergence"])
def test_adding_a_check_that_finds_nothing_leaves_every_golden_unchanged(name):
    """A check that finds nothing changes no golden; one that cannot run adds no row either (it may still
    change the verdict, when the verdict depends on it: that change is real news for the reader)."""
    run = build_run(SAMPLE_RUNS / name)
    run.intended_schedule = resolve_intended(run, None)
    before = build_report(run, run_checks(run, REGISTRY), "cmd")
    after = build_report(run, run_checks(run, [*REGISTRY, _FindsNothing]), "cmd")
    assert len(after.checks) == len(before.checks) + 1
    for render in RENDERERS.values():
        assert scrub(render(golden_view(after))) == scrub(render(golden_view(before)))
    unrunnable = build_report(run, run_checks(run, [*REGISTRY, _CannotRun]), "cmd")
    assert golden_view(unrunnable).checks == golden_view(before).checks


@pytest.mark.parametrize("extension", sorted(RENDERERS))
@pytest.mark.parametrize("name", RUNS)
def test_report_matches_golden(name, extension):
    report = analyze(SAMPLE_RUNS / name, command=f"forensics analyze sample_runs/{name}")
    actual = scrub(RENDERERS[extension](golden_view(report)))
    expected_path = GOLDEN / f"{name}.{extension}"
    if os.environ.get("FORENSICS_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        expected_path.write_text(actual, encoding="utf-8")
        return
    expected = expected_path.read_text(encoding="utf-8") if expected_path.exists() else None
    if actual != expected:
        ACTUAL.mkdir(exist_ok=True)
        (ACTUAL / expected_path.name).write_text(actual, encoding="utf-8")
        pytest.fail(f"{expected_path.name} differs from the golden copy; actual saved to {ACTUAL / expected_path.name}. "
                    "If the change is intended: FORENSICS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest "
                    "tests/test_golden_reports.py")
