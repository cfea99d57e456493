"""The committed Trainer / plain-loop corpus (sample_runs/framework_corpus/hf): its CORPUS.json has the agreed
shape and coverage, every case folder is there and small, and labels re-derived from the committed files
(event files, metrics.jsonl, CSV, trainer_state.json) equal the labels. Nothing is regenerated here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "sample_runs" / "framework_corpus" / "hf"
sys.path.insert(0, str(REPO / "sample_runs" / "frameworks"))

import frameworks_common_hf as common  # noqa: E402

MANIFEST = json.loads((CORPUS / "CORPUS.json").read_text())
CASES = MANIFEST["cases"]
CODES = {"constant_lr", "per_epoch_stepping", "schedule_too_fast", "schedule_overrun", "schedule_incomplete",
         "off_by_one", "warmup_missing", "momentum_cycling", "resume_drift", "missing_resume_state", "nan_onset",
         "grad_explosion", "loss_plateau", "val_stuck", "lr_mismatch", "lr_collapse", "lr_runaway", "loss_divergence"}
FRAMEWORKS = {"transformers.Trainer", "plain"}


def _expected(name: str, code: str) -> dict:
    return next(item for item in CASES[name]["expected_codes"] if item["code"] == code)


def _cases_with(code: str) -> list[str]:
    return [name for name, truth in CASES.items() if any(item["code"] == code for item in truth["expected_codes"])]


def test_manifest_names_its_generator_command():
    assert MANIFEST["generator"].endswith("sample_runs/frameworks/hf_corpus.py --out sample_runs/framework_corpus/hf")
    assert (REPO / "sample_runs" / "frameworks" / "hf_corpus.py").exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_shape_and_folder(name):
    truth = CASES[name]
    assert set(truth) >= {"healthy", "description", "framework", "logger", "intent", "expected_codes",
                          "allowed_codes", "cli_schedule"}
    assert truth["framework"] in FRAMEWORKS
    assert truth["intent"] in ("stated", "none")
    assert truth["healthy"] == (truth["expected_codes"] == [])
    assert truth["description"].strip()
    for item in truth["expected_codes"]:
        assert item["code"] in CODES
        assert isinstance(item["onset_step"], int) and isinstance(item["tolerance_steps"], int)
        assert 0 <= item["tolerance_steps"] <= 100
        assert item["measured"].strip()
    assert set(truth["allowed_codes"]) <= CODES
    if truth["healthy"]:
        assert truth["allowed_codes"] == [] and truth["measured"].strip()
    folder = CORPUS / name
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files, f"{name} has no files"
    assert sum(path.stat().st_size for path in files) < 300_000


def test_corpus_is_small():
    assert sum(path.stat().st_size for path in CORPUS.rglob("*") if path.is_file()) < 8_000_000


def test_every_code_has_four_variants_one_without_intent_and_every_family_a_healthy_twin():
    for code in sorted(CODES):
        names = _cases_with(code)
        assert len(names) >= 4, (code, names)
    no_intent = {code for code in CODES for name in _cases_with(code) if CASES[name]["intent"] == "none"}
    assert len(no_intent) >= 12, sorted(CODES - no_intent)
    healthy = [name for name, truth in CASES.items() if truth["healthy"]]
    assert len(healthy) >= 15
    assert {CASES[name]["framework"] for name in healthy} == FRAMEWORKS


def _tb_loss_per_file(name: str, tag: str) -> list[list[tuple[int, float]]]:
    return common.tb_series(CORPUS / name, tag)


def test_nan_onset_equals_the_first_non_finite_value_in_the_committed_files():
    checked = 0
    for name in _cases_with("nan_onset"):
        folder, onset = CORPUS / name, _expected(name, "nan_onset")["onset_step"]
        if list(folder.rglob("events.out.tfevents.*")):
            tags = ["train/loss", "train/grad_norm"]
            found = [common.first_nonfinite([p for points in _tb_loss_per_file(name, tag) for p in points])
                     for tag in tags]
            assert onset == next(step for step in found if step is not None), name
            checked += 1
        elif (folder / "metrics.jsonl").exists():
            assert onset == common.first_nonfinite(common.jsonl_series(folder / "metrics.jsonl", "loss")), name
            checked += 1
    assert checked >= 3


def test_resume_onset_is_the_first_step_of_the_second_event_file():
    checked = 0
    for name in _cases_with("resume_drift") + _cases_with("missing_resume_state"):
        files = common.event_files(CORPUS / name)
        if len(files) != 2:
            continue
        series = [common.read_scalars(path) for path in files]
        tag = next(tag for tag in series[1] if "lr" in tag.lower() or "learning_rate" in tag)
        code = CASES[name]["expected_codes"][0]
        assert code["onset_step"] == series[1][tag][0][0], name
        checked += 1
    assert checked >= 4


def test_hf_healthy_resume_reruns_steps_with_identical_lrs():
    files = common.event_files(CORPUS / "hf_healthy_resume_rerun")
    assert len(files) == 2
    first, second = (dict(common.read_scalars(path)["train/learning_rate"]) for path in files)
    shared = set(first) & set(second)
    assert shared and all(first[step] == second[step] for step in shared)


def test_hf_incomplete_run_states_a_horizon_it_never_reached():
    state = common.trainer_state(CORPUS / "hf_incomplete_max_steps_accum" / "trainer_state.json")
    assert state["global_step"] * 4 == state["max_steps"]
    label = _expected("hf_incomplete_max_steps_accum", "schedule_incomplete")
    assert abs(label["onset_step"] - state["global_step"]) <= label["tolerance_steps"]


def test_lr_collapse_and_runaway_labels_follow_from_the_committed_lr_series():
    checked = 0
    for code, rule in (("lr_collapse", common.collapse_step), ("lr_runaway", common.runaway_step)):
        for name in _cases_with(code):
            folder = CORPUS / name
            if (folder / "metrics.jsonl").exists():
                points = common.jsonl_series(folder / "metrics.jsonl", "lr")
            elif (folder / "logs" / "metrics.csv").exists():
                points = common.csv_series(folder / "logs" / "metrics.csv", "lr")
            elif common.event_files(folder):
                scalars = common.read_scalars(common.event_files(folder)[0])
                tag = next((t for t in scalars if t in ("train/lr", "learning_rate", "optim/lr", "lr",
                                                        "train/learning_rate")), None)
                if tag is None:
                    continue
                # event files hold float32: allow the threshold's own ambiguity, the label's tolerance
                points = scalars[tag]
            else:
                continue
            label = _expected(name, code)
            assert abs(rule(points) - label["onset_step"]) <= label["tolerance_steps"], name
            checked += 1
    assert checked >= 5


def test_grad_explosion_grows_by_orders_of_magnitude_with_a_finite_loss():
    checked = 0
    for name in _cases_with("grad_explosion"):
        folder = CORPUS / name
        if not common.event_files(folder):
            continue
        scalars = common.read_scalars(common.event_files(folder)[0])
        grad_tag = next(tag for tag in scalars if "grad_norm" in tag)
        loss_tag = next(tag for tag in scalars if "loss" in tag.lower() and not tag.startswith(("val", "eval")))
        assert common.ratio(scalars[grad_tag]) > 1e3
        assert all(math.isfinite(value) for _, value in scalars[loss_tag])
        label = _expected(name, "grad_explosion")
        assert abs(common.grad_spike_step(scalars[grad_tag]) - label["onset_step"]) <= label["tolerance_steps"]
        checked += 1
    assert checked >= 2
