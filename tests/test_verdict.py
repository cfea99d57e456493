"""The verdict is honest: HEALTHY only when the checks that matter for the data present could run.

A run with an LR and a loss but no stated schedule is LIMITED and names `--schedule`/a config as the
way to enable what was not checked; the same run with the schedule stated is HEALTHY. Checks that
cannot apply (no restart, so no resume to check) never limit a verdict.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import torch
from typer.testing import CliRunner

from forensics.analyze import analyze
from forensics.checks import REGISTRY
from forensics.checks.runner import CheckOutcome
from forensics.cli.main import app
from forensics.render import render_html, render_json, render_markdown
from forensics.report.verdict import INPUTS, UNKNOWN_KEY, classify
from forensics.schedule.sources import schedule_options

from conftest import REPO, SAMPLE_RUNS, real_runs_root

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
STEPS = 400
BASE_LR = 0.1
RESUME_CODES = ("resume_drift", "missing_resume_state")


def _write_log_run(run_dir: Path, config: str | None = None) -> Path:
    """A plain stdout log of a cosine run (LR from torch's own scheduler) with a falling loss; no schedule stated."""
    run_dir.mkdir(parents=True)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    lines = []
    for step in range(STEPS):
        loss = 2.3 * math.exp(-step / 150) + 0.2
        lines.append(f"step {step} loss {loss:.4f} lr {optimizer.param_groups[0]['lr']:.6e}")
        optimizer.step()
        scheduler.step()
    (run_dir / "train.log").write_text("\n".join(lines) + "\n")
    if config is not None:
        (run_dir / "config.yaml").write_text(config)
    return run_dir


def _document(report) -> dict:
    document = json.loads(render_json(report))
    jsonschema.validate(document, SCHEMA)
    return document


def _limiting(document: dict) -> dict[str, dict]:
    return {item["code"]: item for item in document["verdict"]["unchecked"] if item["limits_verdict"]}


@pytest.fixture
def log_run(tmp_path) -> Path:
    return _write_log_run(tmp_path / "log_only")


def test_lr_and_loss_without_a_stated_schedule_is_limited_and_names_schedule_as_the_fix(log_run):
    document = _document(analyze(log_run))
    verdict = document["verdict"]
    assert verdict["status"] == "limited"
    assert document["findings"] == []
    limiting = _limiting(document)
    assert limiting, verdict
    # Every check limited here lacks the stated schedule, and says how to give it.
    assert {tuple(item["missing"]) for item in limiting.values()} == {("stated_schedule",)}
    assert all("--schedule" in item["enable"] and "config" in item["enable"] for item in limiting.values())
    assert {"per_epoch_stepping", "schedule_too_fast"} <= set(limiting)
    assert verdict["checks"]["could_not_run"] == len(limiting)
    assert verdict["checks"]["total"] == len(REGISTRY)
    assert f"{len(limiting)} of {len(REGISTRY)} checks could not run" in verdict["headline"]
    assert "--schedule" in verdict["headline"]
    # The run never restarted: the resume checks not applying is no gap.
    assert not set(RESUME_CODES) & {item["code"] for item in verdict["unchecked"]}


def test_the_same_run_with_the_schedule_stated_on_the_command_line_is_healthy(log_run):
    options = schedule_options(f"CosineAnnealingLR(T_max={STEPS})", base_lr=BASE_LR)
    document = _document(analyze(log_run, schedule=options))
    assert document["intended_schedule"]["source"] == "cli"
    assert document["verdict"]["status"] == "healthy", document["verdict"]
    assert _limiting(document) == {}
    assert document["verdict"]["checks"]["could_not_run"] == 0


def test_the_same_run_with_a_config_stating_the_schedule_is_healthy(tmp_path):
    run = _write_log_run(tmp_path / "with_config", config=f"optimizer:\n  lr: {BASE_LR}\nscheduler:\n"
                                                          f"  name: CosineAnnealingLR\n  T_max: {STEPS}\n")
    document = _document(analyze(run))
    assert document["intended_schedule"]["source"] == "config"
    assert document["verdict"]["status"] == "healthy", document["verdict"]


def test_optional_signals_are_listed_with_how_to_enable_them_but_leave_the_run_healthy(log_run):
    options = schedule_options(f"CosineAnnealingLR(T_max={STEPS})", base_lr=BASE_LR)
    unchecked = {item["code"]: item for item in _document(analyze(log_run, schedule=options))["verdict"]["unchecked"]}
    assert unchecked["grad_explosion"]["missing"] == ["grad_norm_series"]
    assert "clip_grad_norm_" in unchecked["grad_explosion"]["enable"]
    assert not any(item["limits_verdict"] for item in unchecked.values())


def test_a_loss_only_run_is_limited_and_asks_for_the_lr(tmp_path):
    run = tmp_path / "loss_only"
    run.mkdir()
    (run / "train.log").write_text("".join(f"step {step} loss {2.3 * math.exp(-step / 150) + 0.2:.4f}\n"
                                           for step in range(STEPS)))
    document = _document(analyze(run))
    assert document["verdict"]["status"] == "limited"
    limiting = _limiting(document)
    assert {"constant_lr", "lr_collapse", "lr_runaway"} <= set(limiting)
    assert all(item["missing"][0] == "lr_series" for item in limiting.values()), limiting
    assert "log the learning rate" in limiting["constant_lr"]["enable"]


@lru_cache(maxsize=None)
def _sample(name: str):
    return analyze(SAMPLE_RUNS / name)


def test_the_healthy_sample_run_with_a_saved_scheduler_is_healthy_and_resume_checks_do_not_limit_it():
    document = _document(_sample("healthy_onecycle"))
    assert document["verdict"]["status"] == "healthy"
    assert _limiting(document) == {}
    not_run = {outcome["code"] for outcome in document["checks"] if outcome["status"] != "ran"}
    assert set(RESUME_CODES) <= not_run  # they did not apply ...
    assert not set(RESUME_CODES) & {item["code"] for item in document["verdict"]["unchecked"]}  # ... and that is fine


def test_failed_runs_keep_their_status_and_still_list_what_went_unchecked():
    document = _document(_sample("nan_divergence"))
    assert document["verdict"]["status"] == "failed"
    assert document["verdict"]["headline"] == document["findings"][0]["message"]
    assert all({"code", "reason", "missing", "enable", "limits_verdict"} <= set(item)
               for item in document["verdict"]["unchecked"])


# Real runs by other people: (name, status, an input that must be named as missing, or None).
REAL_RUNS = [
    ("hf_tinyllama_lora_sft", "healthy", None),            # scheduler.pt + training_args: the schedule is stated
    ("hf_whisper_large_v2_ja", "limited", "stated_schedule"),  # the schedule is only inferred from the LR
    ("keras_tf2_mnist_sgd", "limited", "lr_series"),       # no LR logged anywhere
    ("lightning_testtube_neuralode", "limited", "lr_series"),
]


@pytest.mark.parametrize("name,status,missing", REAL_RUNS)
def test_real_runs_get_an_honest_verdict(real_run, name, status, missing):
    document = _document(analyze(real_run(name)))
    verdict = document["verdict"]
    assert verdict["status"] == status, verdict
    limiting = _limiting(document)
    if missing is None:
        assert limiting == {}
    else:
        assert any(missing in item["missing"] for item in limiting.values()), limiting
        enables = " ".join(item["enable"] for item in limiting.values() if missing in item["missing"])
        assert {"stated_schedule": "--schedule", "lr_series": "log the learning rate"}[missing] in enables


def _reasons_seen() -> list[tuple[str, str]]:
    runs = [SAMPLE_RUNS / name for name in ("healthy_onecycle", "nan_divergence", "lr_mismatch_config_lr",
                                            "stuck_lr_onecycle_per_epoch", "resume_scheduler_reset")]
    root = real_runs_root()
    if root.is_dir():
        runs += sorted(path for path in root.iterdir() if path.is_dir())
    return sorted({(outcome.code, outcome.detail) for run in runs for outcome in analyze(run).checks
                   if outcome.status == "not_applicable"})


def test_every_not_applicable_reason_the_checks_give_is_recognised():
    """A check whose "needs ..." reason names no known input would limit verdicts as `unrecognised`:
    catch it here, so its author words the reason like the others or the vocabulary grows."""
    unrecognised = []
    for code, reason in _reasons_seen():
        item = classify(CheckOutcome(code, "not_applicable", reason), {})
        if item is not None and UNKNOWN_KEY in item.missing:
            unrecognised.append((code, reason))
    assert unrecognised == []


@pytest.mark.parametrize("reason,present,expected", [
    ("the run has no restart or rewind, so there is no resume to check", {}, None),
    ("the run never restarted, so no resume depended on its checkpoints", {}, None),
    ("the run restarted but no readable checkpoint was found", {}, (("checkpoints",), True)),
    ("needs the LR from two sources with logged steps; found 1", {}, None),
    ("ExponentialLR has no horizon to run past", {}, None),
    ("the schedule was only inferred from the logged LR, so the LR cannot contradict it", {"lr_series": True},
     (("stated_schedule",), True)),
    ("no intended schedule: none stated in checkpoints, configs or --schedule, and none could be fitted",
     {"lr_series": False}, (("lr_series", "stated_schedule"), True)),
    ("no declared schedule with a horizon, and no stated horizon (max_steps, ...)", {"stated_schedule": True}, None),
    ("no declared schedule with a horizon, and no stated horizon (max_steps, ...)",
     {"stated_schedule": False, "lr_series": True}, (("stated_schedule",), True)),
    ("needs an LR series and a training loss series with at least 20 points", {"lr_series": True},
     (("loss_series",), True)),
    ("needs an LR series with at least 10 points; found 4", {"lr_series": True}, (("lr_series",), True)),
    ("needs a grad norm series with at least 20 points; none found", {}, (("grad_norm_series",), False)),
    ("needs scheduler counters in checkpoints or torch's ordering warning in a log (a logged LR one step ahead)",
     {}, (("scheduler_state",), False)),
    ("needs a quantum flux series; none found", {}, ((UNKNOWN_KEY,), True)),
])
def test_a_reason_is_read_as_the_input_it_lacks(reason, present, expected):
    item = classify(CheckOutcome("constant_lr", "not_applicable", reason), present)
    assert (None if item is None else (item.missing, item.limits_verdict)) == expected


def test_a_crashed_check_is_unchecked_and_never_healthy():
    item = classify(CheckOutcome("constant_lr", "error", "ZeroDivisionError: boom (at x.py:1)"), {})
    assert item.limits_verdict and item.missing == ("check_crashed",)


def test_every_input_says_how_to_supply_it():
    for item in INPUTS:
        assert item.enable and item.short and item.label, item.key


def test_markdown_html_and_terminal_show_the_limited_verdict_and_its_fix(log_run, tmp_path):
    report = analyze(log_run)
    markdown = render_markdown(report)
    assert "**LIMITED**" in markdown and "**Not checked**" in markdown and "`--schedule" in markdown
    html = render_html(report)
    assert 'class="verdict limited"' in html and "could not run for lack of input" in html
    assert "<code>--schedule" in html
    result = CliRunner().invoke(app, ["analyze", str(log_run), "-f", "json", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "LIMITED" in result.output and "missing" in result.output and "--schedule" in result.output
