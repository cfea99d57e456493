"""Every check has a bad run that triggers it and a healthy run that does not; healthy runs are silent.

The second assertion is the one that catches false alarms: a healthy run must yield zero findings of
ANY code, not just of the code under test.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from forensics.analyze import analyze
from forensics.checks import REGISTRY
from forensics.checks.base import Check, NotApplicable
from forensics.checks.runner import run_checks
from forensics.model.build import build_run

from conftest import SAMPLE_RUNS

# code -> (runs that must produce it, runs that must be completely healthy)
CASES = {
    "constant_lr": (["stuck_lr_onecycle_per_epoch"], ["healthy_onecycle"]),
    "nan_onset": (["nan_divergence"], ["healthy_onecycle"]),
    "resume_drift": (["resume_scheduler_reset", "resume_start_epoch_reset"], ["healthy_onecycle"]),
    "grad_explosion": (["nan_divergence"], ["healthy_onecycle"]),
    "lr_mismatch": (["lr_mismatch_config_lr"], ["healthy_onecycle"]),
}
HEALTHY_RUNS = sorted({name for _, healthy in CASES.values() for name in healthy})


@lru_cache(maxsize=None)
def _report(name: str):
    return analyze(SAMPLE_RUNS / name)


def test_every_registered_check_has_bad_and_healthy_cases(corpus_truth):
    """Each code has a bad and a healthy run: here among the sample runs, or in the labelled corpus
    (whose detection is asserted case by case in test_detection.py)."""
    corpus_bad = {item["code"] for truth in corpus_truth.values() for item in truth["expected_codes"]}
    corpus_healthy = [name for name, truth in corpus_truth.items() if truth["healthy"]]
    for check in REGISTRY:
        bad, healthy = CASES.get(check.code, ([], []))
        assert bad or check.code in corpus_bad, f"{check.code} has no run that should trigger it"
        assert healthy or corpus_healthy, f"{check.code} has no healthy run"


@pytest.mark.parametrize("code", sorted(CASES))
def test_bad_runs_trigger_their_check(code):
    for name in CASES[code][0]:
        codes = [finding.code for finding in _report(name).findings]
        assert code in codes, f"{name} should yield {code}, got {codes}"


@pytest.mark.parametrize("name", HEALTHY_RUNS)
def test_healthy_runs_yield_no_findings_at_all(name):
    report = _report(name)
    assert [f.message for f in report.findings] == []
    assert report.verdict.status == "healthy"
    assert all(outcome.status != "error" for outcome in report.checks), report.checks


def test_every_check_documents_itself():
    for check in REGISTRY:
        sections = check.documentation()
        assert check.title() and all(sections.values()), check.code


def test_a_malformed_check_fails_at_definition():
    with pytest.raises(TypeError, match="docstring lacks sections"):
        class Undocumented(Check):  # noqa: F841
            """Does something."""
            code = "undocumented"
            severity = "warning"
            needs = ()
    with pytest.raises(TypeError, match="snake_case"):
        class BadCode(Check):  # noqa: F841
            """T.

            **Symptom** s **Bad run** b **Healthy run** h **Fix** f
            """
            code = "Bad-Code"
            severity = "warning"
            needs = ()


class _Crashes(Check):
    """Always crashes (test double for the runner).

    **Symptom** none. **Bad run** any. **Healthy run** none. **Fix** none.
    """

    code = "always_crashes"
    severity = "warning"
    needs = ()

    def run(self, run):
        raise ZeroDivisionError("boom")


class _DoesNotApply(Check):
    """Never applies (test double for the runner).

    **Symptom** none. **Bad run** any. **Healthy run** none. **Fix** none.
    """

    code = "never_applies"
    severity = "warning"
    needs = ("a series no run has",)

    def run(self, run):
        raise NotApplicable("needs a series no run has; none found")


def test_a_crashing_check_becomes_an_internal_error_and_the_others_still_run():
    run = build_run(SAMPLE_RUNS / "nan_divergence")
    outcomes = run_checks(run, [_Crashes, _DoesNotApply, *REGISTRY])
    crash, absent, *real = outcomes
    assert crash.status == "error" and "ZeroDivisionError: boom" in crash.detail
    assert crash.findings[0].code == "internal_error" and "always_crashes" in crash.findings[0].message
    assert absent.status == "not_applicable" and "none found" in absent.detail
    assert any(f.code == "nan_onset" for outcome in real for f in outcome.findings)


def test_every_registered_code_is_documented_in_the_schema_docs():
    from conftest import REPO

    documented = (REPO / "docs" / "report-schema.md").read_text()
    for check in REGISTRY:
        assert f"| `{check.code}` | implemented |" in documented, check.code


def test_a_crashed_check_never_takes_the_headline():
    from forensics.checks.runner import run_checks
    from forensics.report.build import build_report

    run = build_run(SAMPLE_RUNS / "nan_divergence")
    report = build_report(run, run_checks(run, [_Crashes, *REGISTRY]), "test")
    assert report.verdict.status == "failed"
    assert report.verdict.headline.startswith("train/loss became")


def test_an_empty_check_list_runs_no_check():
    assert run_checks(build_run(SAMPLE_RUNS / "healthy_onecycle"), []) == []
