"""The committed Lightning/timm framework corpus: its CORPUS.json is well formed, every case folder is
there, and a few labels re-derived from the committed files agree with it (no regeneration)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "sample_runs" / "framework_corpus" / "lightning"
CODES = {"constant_lr", "per_epoch_stepping", "schedule_too_fast", "schedule_overrun", "schedule_incomplete",
         "off_by_one", "warmup_missing", "momentum_cycling", "resume_drift", "missing_resume_state", "nan_onset",
         "grad_explosion", "loss_plateau", "val_stuck", "lr_mismatch", "lr_collapse", "lr_runaway", "loss_divergence"}
TRAIN_LINE = re.compile(r"^Train: (\d+) \[\s*(\d+)/(\d+) \(\s*\d+%\)\]\s+Loss: (\S+)")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((CORPUS / "CORPUS.json").read_text())


def _metrics_rows(case: str, version: int = 0, folder: str = "lightning_logs") -> list[dict]:
    with open(CORPUS / case / folder / f"version_{version}" / "metrics.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def _column(rows: list[dict], column: str) -> list[tuple[int, float]]:
    return [(int(row["step"]), float(row[column])) for row in rows if row.get(column)]


def test_manifest_shape(manifest):
    assert "lightning_corpus.py" in manifest["generator"]
    assert len(manifest["cases"]) >= 60
    for name, case in manifest["cases"].items():
        assert set(case) >= {"healthy", "description", "framework", "logger", "intent", "expected_codes",
                             "allowed_codes", "cli_schedule"}, name
        assert case["framework"] in {"lightning", "timm", "plain"}, name
        assert case["intent"] in {"stated", "none"}, name
        assert case["healthy"] == (case["expected_codes"] == []), name
        for item in case["expected_codes"]:
            assert item["code"] in CODES, name
            assert isinstance(item["onset_step"], int) and item["onset_step"] >= 0, name
            assert 0 <= item["tolerance_steps"] <= 40, name
            assert item["measured"], name
        assert set(case["allowed_codes"]) <= CODES, name


def test_every_case_folder_exists_and_is_small(manifest):
    total = 0
    for name in manifest["cases"]:
        folder = CORPUS / name
        assert folder.is_dir(), name
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert 0 < size < 300_000, (name, size)
        total += size
    assert total < 8_000_000
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(manifest["cases"])


def test_coverage_has_variants_and_healthy_twins(manifest):
    by_code: dict[str, list[str]] = {}
    for name, case in manifest["cases"].items():
        for item in case["expected_codes"]:
            by_code.setdefault(item["code"], []).append(name)
    healthy = [name for name, case in manifest["cases"].items() if case["healthy"]]
    assert len(healthy) >= 12
    assert {"lightning", "timm"} <= {manifest["cases"][name]["framework"] for name in healthy}
    for code in CODES - {"off_by_one", "warmup_missing"}:
        assert len(by_code[code]) >= 4, code
    # schedule_incomplete and lr_mismatch need a stated horizon or LR by definition.
    for code in CODES - {"off_by_one", "warmup_missing", "schedule_incomplete", "lr_mismatch"}:
        assert any(manifest["cases"][n]["intent"] == "none" for n in by_code[code]), code


def test_nan_onset_matches_first_nan_in_metrics_csv(manifest):
    case = manifest["cases"]["nan_huge_lr_csv"]
    losses = _column(_metrics_rows("nan_huge_lr_csv"), "train_loss")
    first_nan = next(step for step, value in losses if not math.isfinite(value))
    assert case["expected_codes"][0]["onset_step"] == first_nan


def test_gan_nan_onset_from_component_losses(manifest):
    rows = _metrics_rows("nan_gan_csv")
    firsts = [next((s for s, v in _column(rows, key) if not math.isfinite(v)), None) for key in ("g_loss", "d_loss")]
    assert manifest["cases"]["nan_gan_csv"]["expected_codes"][0]["onset_step"] == min(s for s in firsts if s is not None)


def test_timm_nan_onset_matches_first_nan_train_line(manifest):
    for line in (CORPUS / "timm_nan_huge_lr" / "train.log").read_text().splitlines():
        match = TRAIN_LINE.match(line)
        if match and not math.isfinite(float(match.group(4))):
            epoch, idx, per_epoch = (int(g) for g in match.groups()[:3])
            break
    assert manifest["cases"]["timm_nan_huge_lr"]["expected_codes"][0]["onset_step"] == epoch * per_epoch + idx


def test_resume_labels_are_the_first_step_of_version_1(manifest):
    for name in ("resume_manual_scheduler_csv", "missing_state_weights_only_csv"):
        first = min(int(row["step"]) for row in _metrics_rows(name, version=1))
        assert manifest["cases"][name]["expected_codes"][0]["onset_step"] == first, name
    healthy = _metrics_rows("healthy_resume_ckpt_csv", version=1)
    before = _metrics_rows("healthy_resume_ckpt_csv", version=0)
    assert min(int(r["step"]) for r in healthy) == max(int(r["step"]) for r in before) + 1


def test_healthy_resume_lr_continues(manifest):
    lr0 = _column(_metrics_rows("healthy_resume_ckpt_csv", 0), "lr-AdamW")
    lr1 = _column(_metrics_rows("healthy_resume_ckpt_csv", 1), "lr-AdamW")
    slope = abs(lr0[-1][1] - lr0[-2][1])
    assert abs(lr1[0][1] - lr0[-1][1]) <= 2 * slope + 1e-12


def test_resume_reset_lr_falls_back_to_warmup(manifest):
    lr0 = _column(_metrics_rows("resume_manual_scheduler_csv", 0), "lr-AdamW")
    lr1 = _column(_metrics_rows("resume_manual_scheduler_csv", 1), "lr-AdamW")
    # The first resumed step still runs at the restored optimizer's LR; the fresh scheduler's first step
    # (a measured Lightning ordering) puts it back at the warmup start.
    assert min(v for _, v in lr1[:3]) < lr0[-1][1] / 3


def test_val_stuck_and_saturated_validation(manifest):
    frozen = {v for _, v in _column(_metrics_rows("val_stuck_ema_csv"), "val_acc")}
    assert len(frozen) == 1 and next(iter(frozen)) < 0.6
    settled = [v for _, v in _column(_metrics_rows("healthy_val_settled_csv"), "val_acc")]
    assert 0.9 <= settled[-1] <= 0.95
    with open(CORPUS / "timm_healthy_top5_saturated" / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert float(rows[-1]["eval_top5"]) == 100.0 and float(rows[-1]["eval_top1"]) > float(rows[2]["eval_top1"])


def test_collapse_label_is_where_lr_falls_below_1e_minus_4_of_peak(manifest):
    lr = _column(_metrics_rows("too_fast_steplr_step_csv"), "lr-AdamW")
    peak, onset = 0.0, None
    for step, value in lr:
        if peak and value <= 1e-4 * peak:
            onset = step
            break
        peak = max(peak, value)
    item = next(i for i in manifest["cases"]["too_fast_steplr_step_csv"]["expected_codes"] if i["code"] == "lr_collapse")
    assert item["onset_step"] == onset
    assert lr[-1][1] < 1e-40


def test_lightning_artifacts_are_real(manifest):
    version = CORPUS / "healthy_onecycle_csv" / "lightning_logs" / "version_0"
    assert (version / "hparams.yaml").read_text().strip()
    assert (version / "checkpoints" / "last.ckpt").stat().st_size > 0
    assert any((CORPUS / "healthy_resume_ckpt_tb" / "lightning_logs" / "version_1").glob("events.out.tfevents.*"))
    log = (CORPUS / "per_epoch_onecycle_stdout" / "train.log").read_text()
    assert "Epoch 0:" in log and "lr=" in log
