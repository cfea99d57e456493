"""lr_mismatch compares sources after lining up their steps; a constant offset is not a mismatch."""

from __future__ import annotations

import json

from forensics.analyze import analyze
from forensics.checks.runner import run_checks
from forensics.checks.sources.lr_mismatch import LrMismatch
from forensics.model.build import build_run

from conftest import SAMPLE_RUNS


def _write(path, steps, lrs):
    path.write_text("".join(json.dumps({"step": step, "lr": lr}) + "\n" for step, lr in zip(steps, lrs)))


def _outcome(run_dir):
    (outcome,) = run_checks(build_run(run_dir), [LrMismatch])
    return outcome


def test_a_source_one_step_ahead_is_not_a_mismatch(tmp_path):
    lrs = [1e-3 * 0.9 ** step for step in range(30)]
    _write(tmp_path / "optimizer.jsonl", range(30), lrs)
    _write(tmp_path / "trainer.jsonl", range(30), lrs[1:] + [lrs[-1] * 0.9])  # logs the next step's LR
    outcome = _outcome(tmp_path)
    assert outcome.status == "ran" and outcome.findings == ()


def test_values_within_printing_precision_agree(tmp_path):
    lrs = [1e-3 * 0.97 ** step for step in range(30)]
    _write(tmp_path / "exact.jsonl", range(30), lrs)
    _write(tmp_path / "printed.jsonl", range(0, 30, 3), [float(f"{lr:.3e}") for lr in lrs[::3]])
    assert _outcome(tmp_path).findings == ()


def test_a_different_lr_is_a_finding_with_both_sources_as_evidence(tmp_path):
    _write(tmp_path / "a.jsonl", range(30), [1e-3] * 30)
    _write(tmp_path / "b.jsonl", range(30), [1e-3] * 10 + [2e-3] * 20)
    (finding,) = _outcome(tmp_path).findings
    assert finding.step == 10 and finding.end_step == 29
    assert {item.source for item in finding.evidence} == {"a.jsonl", "b.jsonl"}
    assert finding.evidence[0].observed != finding.evidence[0].expected


def test_one_source_is_not_applicable(tmp_path):
    _write(tmp_path / "a.jsonl", range(30), [1e-3] * 30)
    outcome = _outcome(tmp_path)
    assert outcome.status == "not_applicable" and "found 1" in outcome.detail


def test_sample_run_printing_the_configured_lr_is_caught_with_line_numbers():
    report = analyze(SAMPLE_RUNS / "lr_mismatch_config_lr")
    (finding,) = [f for f in report.findings if f.code == "lr_mismatch"]
    assert finding.step == 5 and finding.evidence[0].source == "train.log"
    assert finding.evidence[0].locator.startswith("line 3 ") and finding.evidence[0].observed == 0.01


# The stated LR against the used one: a config is a source too.

def _stated_run(run_dir, config: dict, groups: dict[int, list[float]]):
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with (run_dir / "metrics.jsonl").open("w") as out:
        for step in range(len(next(iter(groups.values())))):
            row = {"step": step, "loss": 2.0 / (1 + step)}
            row.update({f"lr/pg{group}": lrs[step] for group, lrs in groups.items()})
            out.write(json.dumps(row) + "\n")


def test_an_optimizer_built_with_a_literal_lr_disagrees_with_its_config(tmp_path):
    _stated_run(tmp_path, {"lr": 0.01, "epochs": 3}, {0: [1e-3] * 40})
    (outcome,) = run_checks(build_run(tmp_path), [LrMismatch])
    (finding,) = outcome.findings
    assert finding.step == 0 and "10.0x below" in finding.message
    assert (finding.evidence[0].source, finding.evidence[0].locator, finding.evidence[0].observed) == (
        "config.yaml", "config key lr", 0.01)


def test_the_stated_lr_in_use_is_no_finding(tmp_path):
    _stated_run(tmp_path, {"lr": 1e-3, "epochs": 3}, {0: [1e-3] * 40})
    (outcome,) = run_checks(build_run(tmp_path), [LrMismatch])
    assert outcome.status == "ran" and outcome.findings == ()


def test_one_param_group_at_the_stated_lr_is_enough(tmp_path):
    # Groups at their own LRs (yolov5's bias group at 10x, a backbone at a tenth) are a recipe.
    _stated_run(tmp_path, {"lr": 1e-2, "epochs": 3}, {0: [1e-2] * 40, 1: [1e-1] * 40, 2: [1e-3] * 40})
    (outcome,) = run_checks(build_run(tmp_path), [LrMismatch])
    assert outcome.findings == ()
