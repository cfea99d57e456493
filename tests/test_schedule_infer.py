"""Inference of a schedule from the logged LR: series produced by real torch schedulers, then real runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forensics.model.build import build_run
from forensics.schedule import parse_spec, replay, resolve_intended
from forensics.schedule.infer import confidence_from_residual, fit_families

FAMILIES = {
    "constant": ("ConstantLR(factor=1.0, total_iters=0)", 1e-3, 1000),
    "step": ("StepLR(step_size=300, gamma=0.1)", 0.1, 1000),
    "multistep": ("MultiStepLR(milestones=[300, 800], gamma=0.1)", 0.1, 1000),
    "exponential": ("ExponentialLR(gamma=0.995)", 0.01, 1000),
    "cosine": ("CosineAnnealingLR(T_max=1000, eta_min=1e-5)", 0.01, 1000),
    "warmup_cosine": ("SequentialLR([LinearLR(start_factor=0.01, total_iters=100), CosineAnnealingLR(T_max=900)], "
                      "milestones=[100])", 3e-3, 1000),
    "linear": ("LinearLR(start_factor=1.0, end_factor=0.0, total_iters=1000)", 1e-3, 1000),
    "warmup_linear": ("linear(warmup_steps=500, total_steps=5000)", 1e-5, 5000),
    "polynomial": ("PolynomialLR(total_iters=1000, power=2.0)", 1e-2, 1000),
    "inverse_sqrt": ("inverse_sqrt(warmup_steps=400)", 1e-3, 4000),
    "one_cycle": ("OneCycleLR(max_lr=0.01, total_steps=1000, pct_start=0.3)", 4e-4, 1000),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_recovered_from_a_real_torch_scheduler(family):
    text, base_lr, steps = FAMILIES[family]
    logged_steps = np.arange(steps)[::5]  # logged every 5 steps, as loops do
    values = replay(parse_spec(text), [base_lr], steps).lrs[0][logged_steps].astype(np.float32)
    best = fit_families(logged_steps, values)[0]
    # a linear decay to 0 is PolynomialLR(power=1) exactly; either name is right
    assert best.family == family or (family == "linear" and best.family == "polynomial")
    assert best.nrmse < 1e-4
    assert confidence_from_residual(best.nrmse, len(logged_steps)) >= 0.85
    # the fitted spec, replayed by torch, reproduces the series
    replayed = replay(best.spec, [best.base_lr], steps).lrs[0][logged_steps]
    assert np.max(np.abs(replayed - values)) / values.max() < 1e-3


def test_noise_is_never_claimed_with_confidence():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 1000, 5)
    values = np.abs(1e-3 * (1 + 0.3 * rng.standard_normal(len(steps))))
    best = fit_families(steps, values)[0]
    assert confidence_from_residual(best.nrmse, len(steps)) < 0.01


def test_too_few_points_give_no_fit():
    assert fit_families(np.arange(3), np.ones(3)) == []
    assert fit_families(np.array([], dtype=int), np.array([])) == []


def test_inferred_schedule_reports_its_source_residual_and_caveat(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    lrs = replay(parse_spec("CosineAnnealingLR(T_max=400)"), [0.1], 400).lrs[0]
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        for step in range(0, 400, 4):
            writer.add_scalar("train/lr", lrs[step], step)
    intended = resolve_intended(build_run(tmp_path))
    assert intended.source == "inferred" and intended.class_name == "CosineAnnealingLR"
    assert intended.params["T_max"] == 400 and intended.confidence > 0.85 and intended.residual < 1e-4
    assert "train/lr" in intended.source_detail and "(100 points)" in intended.source_detail
    assert any("cannot reveal a schedule that was never applied" in note for note in intended.notes)


def test_whisper_log_history_infers_linear_warmup_500_then_decay_to_5000(real_run):
    state = json.loads((real_run("hf_whisper_large_v2_ja") / "trainer_state.json").read_text())
    rows = [(r["step"], r["learning_rate"]) for r in state["log_history"] if "learning_rate" in r]
    steps, values = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    best = fit_families(steps, values)[0]
    assert best.family == "warmup_linear"
    warmup, decay = best.spec.children
    assert abs(warmup.params["total_iters"] - 500) <= 5       # HF's fp16 loop skipped ~4 early steps
    assert abs(best.horizon - 5000) <= 5
    assert best.base_lr == pytest.approx(1e-5, rel=1e-3)
    assert confidence_from_residual(best.nrmse, len(steps)) > 0.8


def test_tinyllama_cosine_with_warmup_from_training_args_and_scheduler_pt(real_run):
    intended = resolve_intended(build_run(real_run("hf_tinyllama_lora_sft")))
    assert intended.source == "checkpoint"
    assert intended.spec == "cosine(num_training_steps=2808, num_warmup_steps=57)"
    assert intended.horizon == 2808 and intended.base_lrs == (1e-05, 1e-05)
    assert "scheduler.pt" in intended.source_detail and "training_args.bin" in intended.source_detail
    assert "last_epoch 2799" in intended.source_detail
    # the replay lands on the saved _last_lr at last_epoch 2799, and on the logged LR at step 15 (HF logs
    # the LR the last step used, i.e. the scheduler's value one step earlier)
    assert intended.expected_at([2799])[0] == pytest.approx(2.640825890470877e-10, rel=1e-6)
    assert intended.expected_at([14])[0] == pytest.approx(2.456140350877193e-06, rel=1e-9)
    assert intended.replayed_as.startswith("SequentialLR([LinearLR(start_factor=1e-12")
