"""Every check has a bad run that triggers it and a healthy run that does not; healthy runs are silent.

The second assertion is the one that catches false alarms: a healthy run must yield zero findings of
ANY code, not just of the code under test.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path

import pytest

from forensics.analyze import analyze
from forensics.checks import REGISTRY
from forensics.checks.base import Check, NotApplicable
from forensics.checks.runner import run_checks
from forensics.model.build import build_run

from conftest import SAMPLE_RUNS

MANIFEST = json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())
# Findings the committed sample runs show that their MANIFEST.json does not label (a run outside the
# manifest, a second finding of a labelled run). A new check adds its cases where its tests live, not here.
UNLABELLED_SAMPLE_CASES = {
    "grad_explosion": ["nan_divergence"],
    "lr_mismatch": ["lr_mismatch_config_lr"],
}


def _sample_cases() -> dict[str, tuple[list[str], list[str]]]:
    """code -> (sample runs that must produce it, sample runs that must be completely healthy),
    from the sample runs' own labels."""
    healthy = sorted(name for name, truth in MANIFEST.items() if not truth["expected_codes"])
    bad: dict[str, set[str]] = {code: set(names) for code, names in UNLABELLED_SAMPLE_CASES.items()}
    for name, truth in MANIFEST.items():
        for code in truth["expected_codes"]:
            bad.setdefault(code, set()).add(name)
    return {code: (sorted(names), healthy) for code, names in sorted(bad.items())}


def _module_cases() -> dict[str, tuple[list[str], list[str]]]:
    """CHECK_CASES of the test modules that build their own runs for some checks (tests/test_*_checks.py)."""
    cases: dict[str, tuple[list[str], list[str]]] = {}
    for path in sorted(Path(__file__).parent.glob("test_*_checks.py")):
        for code, (bad, healthy) in getattr(importlib.import_module(path.stem), "CHECK_CASES", {}).items():
            known_bad, known_healthy = cases.get(code, ([], []))
            cases[code] = (known_bad + [f"{path.stem}::{name}" for name in bad],
                           known_healthy + [f"{path.stem}::{name}" for name in healthy])
    return cases


CASES = _sample_cases()
HEALTHY_RUNS = sorted({name for _, healthy in CASES.values() for name in healthy})


@lru_cache(maxsize=None)
def _report(name: str):
    return analyze(SAMPLE_RUNS / name)


def test_every_registered_check_has_bad_and_healthy_cases(corpus_truth):
    """Each code has a bad and a healthy run: among the sample runs (their MANIFEST.json), in the
    labelled corpus (whose detection is asserted case by case in test_detection.py), or in a test module
    that builds its own runs (`CHECK_CASES` in tests/test_*_checks.py, asserted there)."""
    corpus_bad = {item["code"] for truth in corpus_truth.values() for item in truth["expected_codes"]}
    corpus_healthy = [name for name, truth in corpus_truth.items() if truth["healthy"]]
    module_cases = _module_cases()
    for check in REGISTRY:
        bad, healthy = CASES.get(check.code, ([], []))
        module_bad, module_healthy = module_cases.get(check.code, ([], []))
        assert bad or module_bad or check.code in corpus_bad, f"{check.code} has no run that should trigger it"
        assert healthy or module_healthy or corpus_healthy, f"{check.code} has no healthy run"


def test_case_lists_name_registered_codes_and_existing_runs():
    codes = {check.code for check in REGISTRY}
    assert set(CASES) <= codes and set(_module_cases()) <= codes
    assert all((SAMPLE_RUNS / name).is_dir() for name in HEALTHY_RUNS + [n for bad, _ in CASES.values() for n in bad])


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
    diagnosed = [finding for finding in report.findings if finding.code != "internal_error"]
    assert report.verdict.headline == diagnosed[0].message and "always_crashes" not in report.verdict.headline


def test_an_empty_check_list_runs_no_check():
    assert run_checks(build_run(SAMPLE_RUNS / "healthy_onecycle"), []) == []
