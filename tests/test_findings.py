"""The first diagnoses on the sample runs: right code, right step, verifiable evidence."""

from __future__ import annotations

import json

from forensics.analyze import analyze

from conftest import SAMPLE_RUNS


def _manifest() -> dict:
    return json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())


def test_stuck_lr_reports_constant_lr_with_evidence():
    truth = _manifest()["stuck_lr_onecycle_per_epoch"]
    report = analyze(SAMPLE_RUNS / "stuck_lr_onecycle_per_epoch")
    (finding,) = [f for f in report.findings if f.code == "constant_lr"]
    assert finding.severity == "error"
    assert finding.step == 0
    assert finding.end_step == truth["total_optimizer_steps"] - 1
    assert "OneCycleLR" in finding.message
    assert "once per epoch" in finding.message
    locators = [item.locator for item in finding.evidence]
    assert any(locator.startswith("event tag=train/lr step=") for locator in locators)
    assert any("last_epoch" in locator for locator in locators)
    assert report.verdict.status == "failed"
    assert report.verdict.headline == finding.message


def test_nan_run_reports_nan_onset_at_the_first_nonfinite_step():
    truth = _manifest()["nan_divergence"]
    report = analyze(SAMPLE_RUNS / "nan_divergence")
    (finding,) = [f for f in report.findings if f.code == "nan_onset"]
    assert finding.step == truth["first_nonfinite_loss_step"]
    onset = finding.evidence[0]
    assert onset.locator == f"event tag=train/loss step={truth['first_nonfinite_loss_step']}"
    assert onset.observed != onset.observed or abs(onset.observed) == float("inf")  # NaN or inf
    finite_before = [item.observed for item in finding.evidence if item.note == "last finite values before the onset"]
    assert finite_before and all(abs(value) < float("inf") for value in finite_before)
    restart = [item for item in finding.evidence if item.locator == "ckpt key global_step"]
    assert restart and restart[0].observed < finding.step
    assert "Restart from" in finding.fix


def test_nan_fix_names_the_checkpoint_to_restart_from():
    truth = _manifest()["nan_divergence"]
    (finding,) = [f for f in analyze(SAMPLE_RUNS / "nan_divergence").findings if f.code == "nan_onset"]
    assert finding.fix.startswith(f"Restart from {truth['last_checkpoint_with_finite_weights']}")
