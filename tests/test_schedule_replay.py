"""The intended schedule of the sample runs, replayed with the real torch classes against the logged LR."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from forensics.model.build import build_run
from forensics.schedule import compare_schedule, parse_spec, replay, resolve_intended, schedule_options
from forensics.schedule.hf import HF_SCHEDULES, hf_lambda, torch_equivalent
from forensics.schedule.replay import CLOSED_FORM
from forensics.schedule.spec import ScheduleSpec

from conftest import SAMPLE_RUNS

MANIFEST = json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _intended_and_lr(sample_run, name, options=None):
    run = build_run(sample_run(name))
    intended = resolve_intended(run, options)
    lr = run.series("lr", group=0)
    lr = lr[lr["tag"] == "train/lr"]  # the TensorBoard scalar (train.log repeats it with 4 digits)
    return run, intended, lr["step"].to_numpy(), lr["value"].to_numpy()


def test_healthy_onecycle_replay_equals_the_logged_lr_at_every_step(sample_run):
    _, intended, steps, values = _intended_and_lr(sample_run, "healthy_onecycle")
    assert intended.source == "checkpoint"
    assert intended.source_detail.startswith("checkpoints/ckpt_epoch_3.pt key scheduler")
    assert intended.class_name == "OneCycleLR" and intended.interval == "step" and intended.horizon == 600
    assert intended.params["max_lr"] == 0.01 and intended.params["total_steps"] == 600
    assert intended.params["pct_start"] == 0.3 and intended.params["anneal_strategy"] == "cos"
    assert not intended.approximate and intended.disagreements == ()
    expected = intended.expected_at(steps)
    assert len(steps) == 600
    # TensorBoard stores float32: the replay rounded to float32 is the logged value, bit for bit.
    assert np.array_equal(expected.astype(np.float32), values.astype(np.float32))
    assert np.max(np.abs(expected - values) / expected) <= FLOAT32_EPS
    truth = MANIFEST["healthy_onecycle"]
    peak = intended.key_points()["peak"]
    assert peak["step"] == truth["lr_peak_step"] and peak["lr"] == pytest.approx(truth["lr_peak"])
    comparison = compare_schedule(steps, values, intended)
    assert comparison.time_scale == 1.0 and comparison.offset == 0 and comparison.time_scale_names == ()


def test_stuck_onecycle_is_far_from_its_intent_and_the_time_scale_names_the_epoch(sample_run):
    _, intended, steps, values = _intended_and_lr(sample_run, "stuck_lr_onecycle_per_epoch")
    assert intended.class_name == "OneCycleLR" and intended.params["total_steps"] == 2400
    assert intended.horizon == 2400 and intended.steps_per_epoch == 200
    comparison = compare_schedule(steps, values, intended)
    assert comparison.max_relative_error > 100           # intended peak 1e-2 vs actual ~4e-4
    assert comparison.residual > 0.3
    assert comparison.time_scale == pytest.approx(1 / 200)  # actual(step) = expected(step / 200)
    assert comparison.time_scale_residual < 1e-6
    assert "steps per epoch (200)" in comparison.time_scale_names


def test_resume_scheduler_reset_intent_comes_from_the_first_checkpoints(sample_run):
    run, intended, steps, values = _intended_and_lr(sample_run, "resume_scheduler_reset")
    assert intended.source == "checkpoint"
    assert intended.source_detail.startswith("checkpoints/ckpt_epoch_1.pt key scheduler")
    assert intended.class_name == "SequentialLR"
    assert parse_spec(intended.spec) == ScheduleSpec("SequentialLR", {"milestones": [40]}, (
        ScheduleSpec("LinearLR", {"start_factor": 0.01, "end_factor": 1.0, "total_iters": 40}),
        ScheduleSpec("CosineAnnealingLR", {"T_max": 360, "eta_min": 0.0})))
    truth = MANIFEST["resume_scheduler_reset"]
    # The uninterrupted schedule at the resume step is the LR the resume checkpoint saved. (MANIFEST's
    # intended_lr_after_resume is 3x lower: sample_scenarios._intended_lrs builds its optimizer with
    # AdamW's default lr=0.001 instead of the run's 0.003.)
    saved = next(c for c in MANIFEST["resume_scheduler_reset"]["checkpoints"] if c["path"] == truth["resume_checkpoint"])
    assert intended.expected_at([truth["resume_step"]])[0] == pytest.approx(saved["optimizer_lr"], rel=1e-12)
    assert intended.expected_at([truth["resume_step"]])[0] == pytest.approx(3 * truth["intended_lr_after_resume"])
    first_life = steps < truth["resume_step"]
    expected = intended.expected_at(steps[first_life])
    assert np.max(np.abs(expected - values[first_life]) / expected) <= FLOAT32_EPS
    after = compare_schedule(steps, values, intended)
    assert after.max_relative_error > 1000  # warmup repeated from the resume step


def test_nan_divergence_exponential_matches_until_the_lr_is_nan(sample_run):
    _, intended, steps, values = _intended_and_lr(sample_run, "nan_divergence")
    assert intended.spec == "ExponentialLR(gamma=1.05)" and intended.base_lrs == (0.001,)
    assert intended.horizon is None and intended.interval == "step"
    finite = np.isfinite(values)
    expected = intended.expected_at(steps[finite])
    assert np.max(np.abs(expected - values[finite]) / expected) <= FLOAT32_EPS
    onset = MANIFEST["nan_divergence"]["first_nonfinite_loss_step"]
    assert intended.expected_at([onset])[0] == pytest.approx(MANIFEST["nan_divergence"]["lr_at_onset"], rel=1e-6)


def test_cli_spec_wins_and_the_checkpoint_disagreement_is_reported(sample_run):
    options = schedule_options("OneCycleLR(max_lr=0.02, total_steps=600)", None, None, None)
    _, intended, _, _ = _intended_and_lr(sample_run, "healthy_onecycle", options)
    assert intended.source == "cli" and intended.confidence == 1.0
    assert len(intended.disagreements) == 1
    assert intended.disagreements[0].startswith("checkpoint (checkpoints/ckpt_epoch_3.pt key scheduler")
    assert "max_lr=0.01" in intended.disagreements[0]


def test_epoch_interval_maps_epochs_to_optimizer_steps():
    spec = parse_spec("StepLR(step_size=2, gamma=0.5)")
    result = replay(spec, [1.0], 250, interval="epoch", steps_per_epoch=50)
    lrs = result.lrs[0]
    assert lrs[0] == lrs[99] == 1.0 and lrs[100] == lrs[199] == 0.5 and lrs[200] == 0.25
    assert result.scheduler_steps == 5


def test_onecycle_past_its_horizon_is_nan_with_torchs_reason():
    result = replay(parse_spec("OneCycleLR(max_lr=0.1, total_steps=10)"), [0.004], 20)
    assert np.all(np.isfinite(result.lrs[0][:11])) and np.all(np.isnan(result.lrs[0][11:]))
    assert "Tried to step" in result.notes[0]


@pytest.mark.parametrize("name", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup", [0, 57, 500])
def test_hf_torch_equivalents_match_transformers_lambdas(name, warmup):
    """Stated tolerance: relative 1e-12 x warmup steps from step 1 on; step 0 is 1e-12 x lr, not 0."""
    params = {"num_warmup_steps": warmup, "num_training_steps": 5000}
    assert torch_equivalent(name, params) is not None
    got = replay(ScheduleSpec(name, params), [1e-5], 6000).lrs[0]
    lam = hf_lambda(name, params, 1e-5)
    want = np.array([lam(step) for step in range(6000)]) * 1e-5
    positive = want[1:] > 0
    relative = np.abs(got[1:] - want[1:])[positive] / want[1:][positive]
    assert relative.max() <= max(warmup, 1) * 1e-12 * 1.5
    assert np.all(np.abs(got[1:][~positive]) <= 1e-20)
    assert got[0] == pytest.approx(want[0], abs=1e-12 * 1e-5)


@pytest.mark.parametrize("name", sorted(set(HF_SCHEDULES) - {"linear", "cosine", "constant", "constant_with_warmup"}))
def test_hf_schedules_without_torch_equivalent_replay_their_lambda(name):
    params = {"num_warmup_steps": 100, "num_training_steps": 1000}
    result = replay(ScheduleSpec(name, params), [1e-3], 1200)
    lam = hf_lambda(name, params, 1e-3)
    assert result.used.startswith("LambdaLR") and result.method == CLOSED_FORM
    assert np.allclose(result.lrs[0], [lam(step) * 1e-3 for step in range(1200)], rtol=1e-12, atol=0)


def test_replay_of_a_million_steps_is_correct():
    started = time.perf_counter()
    result = replay(parse_spec("OneCycleLR(max_lr=3e-3, total_steps=1000000, pct_start=0.1)"), [1.2e-4], 1_000_000)
    elapsed = time.perf_counter() - started
    print(f"replay of 1,000,000 OneCycleLR steps: {elapsed:.2f}s")
    lrs = result.lrs[0]
    assert result.method == CLOSED_FORM
    assert lrs.shape == (1_000_000,) and np.all(np.isfinite(lrs))
    assert int(np.argmax(lrs)) == 99_999 and lrs[99_999] == pytest.approx(3e-3)
    # spot-check against a fresh torch scheduler built at a given last_epoch
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    check = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=1_000_000, pct_start=0.1,
                                                cycle_momentum=False)
    for step in (1, 12_345, 500_000, 999_999):
        check.last_epoch = step
        with torch.optim.lr_scheduler._enable_get_lr_call(check):
            assert lrs[step] == pytest.approx(check.get_lr()[0], rel=1e-12)
