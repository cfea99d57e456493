"""Checks that need no stated schedule: lr_collapse, lr_runaway and loss_divergence on real tiny runs.

Each bad run is trained here with a real torch scheduler and a real logger; its label (the onset
step) is measured from what the loop logged. Each healthy twin must yield none of the three codes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from forensics.analyze import analyze
from forensics.checks.schedule.lr_collapse import COLLAPSE, LAST_BITS
from forensics.schedule import ScheduleOptions
from forensics.schedule.spec import parse_spec

from physics_runs import STEPS_PER_EPOCH, Recorded, train

PHYSICS_CODES = {"lr_collapse", "lr_runaway", "loss_divergence"}
sched = torch.optim.lr_scheduler

# name -> (how the run is made, the codes it must yield)
RUNS = {
    # StepLR meant per epoch, stepped per batch; the LR only in a tqdm postfix (issue 9, pattern 2).
    "steplr_per_batch_tqdm": (dict(make=lambda o: sched.StepLR(o, step_size=30, gamma=0.1), steps=800, lr=0.1,
                                   logger="tqdm"), {"lr_collapse"}),
    "exponential_decay_per_batch_tb": (dict(make=lambda o: sched.ExponentialLR(o, gamma=0.9), steps=400, lr=0.1),
                                       {"lr_collapse"}),
    # ExponentialLR(gamma=1.05) meant 0.95, gradients clipped: the loss climbs but stays finite.
    "exponential_growth_clipped_tb": (dict(make=lambda o: sched.ExponentialLR(o, gamma=1.05), steps=250, lr=1e-3,
                                           clip=1.0), {"lr_runaway", "loss_divergence"}),
    "exponential_growth_clipped_hf": (dict(make=lambda o: sched.ExponentialLR(o, gamma=1.05), steps=250, lr=1e-3,
                                           clip=1.0, logger="hf"), {"lr_runaway", "loss_divergence"}),
    # Healthy twins.
    "hf_cosine_with_warmup_to_zero": (dict(make=lambda o: get_cosine_schedule_with_warmup(o, 30, 400), steps=400,
                                           lr=3e-3, optimizer="adamw", logger="hf"), set()),
    "onecycle_full_cycle_tb": (dict(make=lambda o: sched.OneCycleLR(o, max_lr=0.05, total_steps=400), steps=400,
                                    lr=0.05), set()),
    "linear_warmup_from_zero_tb": (dict(make=lambda o: get_linear_schedule_with_warmup(o, 40, 400), steps=400,
                                        lr=0.05), set()),
    "constant_lr_tb": (dict(make=lambda o: None, steps=300, lr=0.05), set()),
    "exponential_decay_ending_mid_run_tb": (dict(make=lambda o: sched.ExponentialLR(o, gamma=0.99), steps=300,
                                                 lr=0.1), set()),
    "noisy_loss_tqdm": (dict(make=lambda o: None, steps=400, lr=0.05, noise=0.3, logger="tqdm"), set()),
    "multistep_per_epoch_tb": (dict(make=lambda o: sched.MultiStepLR(o, milestones=[5, 10, 15], gamma=0.1),
                                    steps=400, lr=0.1, per_epoch=True), set()),
    "warmup_longer_than_the_run_tb": (dict(make=lambda o: get_linear_schedule_with_warmup(o, 1000, 2000),
                                           steps=300, lr=0.05), set()),
    "cyclic_ending_mid_rise_tb": (dict(make=lambda o: sched.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=50),
                                       steps=330, lr=1e-2), set()),
    "steplr_per_epoch_tb": (dict(make=lambda o: sched.StepLR(o, step_size=5, gamma=0.5), steps=400, lr=0.1,
                                 per_epoch=True), set()),
}
HEALTHY = sorted(name for name, (_, codes) in RUNS.items() if not codes)
# Read by test_check_catalogue's meta-test: the bad and healthy runs of each code these tests cover.
CHECK_CASES = {code: (sorted(name for name, (_, codes) in RUNS.items() if code in codes), HEALTHY)
               for code in sorted(PHYSICS_CODES)}


@lru_cache(maxsize=None)
def _trained(name: str, root: str) -> Recorded:
    spec = dict(RUNS[name][0])
    make = spec.pop("make")
    return train(Path(root) / name, make, **spec)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("physics_runs"))


def _run(name: str, root: str, schedule: ScheduleOptions | None = None):
    recorded = _trained(name, root)
    return recorded, analyze(Path(root) / name, schedule=schedule)


def _of(report, code: str):
    return [finding for finding in report.findings if finding.code == code]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_run_yields_exactly_its_physics_codes(name, runs_root):
    _, report = _run(name, runs_root)
    found = {finding.code for finding in report.findings if finding.code in PHYSICS_CODES}
    assert found == RUNS[name][1], [(f.code, f.message) for f in report.findings]
    for finding in report.findings:
        if finding.code in PHYSICS_CODES:
            assert finding.severity == "error" and finding.fix and len(finding.evidence) >= 3
            assert all(item.source and item.locator for item in finding.evidence)


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_twins_get_no_warning_or_error_of_any_code(name, runs_root):
    _, report = _run(name, runs_root)
    assert [(f.code, f.message) for f in report.findings if f.severity in ("error", "warning")] == []


def test_collapse_onset_is_where_the_logged_lr_fell_to_1e_4_of_its_peak(runs_root):
    for name in ("steplr_per_batch_tqdm", "exponential_decay_per_batch_tb"):
        recorded, report = _run(name, runs_root)
        lrs = np.array(recorded.lr_values())
        below = np.flatnonzero(lrs <= COLLAPSE * np.maximum.accumulate(lrs) * (1 + LAST_BITS))
        onset = recorded.lr[int(below[0])][0]
        (finding,) = _of(report, "lr_collapse")
        assert finding.step == onset, (name, finding.step, onset)
        assert finding.end_step == recorded.loss[-1][0]
        peak = max(lrs)
        assert f"{peak:.2e}" in finding.message and "orders of magnitude" in finding.message
        # the measured factor is the one the run shows: peak over the lowest logged LR
        assert f"{peak / lrs.min():.1e}x" in finding.message


def test_runaway_onset_is_where_the_lr_reached_ten_times_its_start(runs_root):
    for name in ("exponential_growth_clipped_tb", "exponential_growth_clipped_hf"):
        recorded, report = _run(name, runs_root)
        steps = np.array([step for step, _ in recorded.lr])
        lrs = np.array(recorded.lr_values())
        start = float(np.median(lrs[steps - steps[0] <= 0.1 * (steps[-1] - steps[0])]))
        onset = int(steps[np.flatnonzero(lrs >= 10 * start)[0]])
        (finding,) = _of(report, "lr_runaway")
        # a level is the median of 5 neighbouring values: on a monotone LR it is off by at most 2 rows
        assert abs(finding.step - onset) <= 2, (name, finding.step, onset)
        assert "still growing at the end" in finding.message
        assert lrs[-1] > 1e4 * lrs[0]  # the fact the label rests on: 1e-3 -> ~190


def test_divergence_onset_is_where_the_loss_was_lowest_before_its_rise(runs_root):
    for name in ("exponential_growth_clipped_tb", "exponential_growth_clipped_hf"):
        recorded, report = _run(name, runs_root)
        steps = np.array([step for step, _ in recorded.loss])
        losses = np.array([value for _, value in recorded.loss])
        assert np.isfinite(losses).all()  # a divergence without NaN, or the run is not this case
        # label: the centre of the 10 consecutive logged losses with the smallest mean
        means = np.convolve(losses, np.ones(10) / 10, mode="valid")
        lowest = int(np.argmin(means)) + 5
        assert np.median(losses[-len(losses) // 10:]) > 100 * means.min()
        (finding,) = _of(report, "loss_divergence")
        # the bottom of a noisy loss is flat: a tenth of the run either way is the same valley
        assert abs(finding.step - steps[lowest]) <= 0.1 * len(steps), (name, finding.step, steps[lowest])
        assert finding.end_step == steps[-1]


def test_a_stated_schedule_that_expects_the_lr_silences_the_lr_checks(runs_root):
    """The user said the LR should do this (`--schedule`): the LR checks do not contradict them."""
    stated = ScheduleOptions(spec=parse_spec("StepLR(step_size=30, gamma=0.1)"), base_lr=0.1, interval="step",
                             steps_per_epoch=STEPS_PER_EPOCH)
    _, report = _run("steplr_per_batch_tqdm", runs_root, stated)
    assert report.intended_schedule["source"] == "cli"
    assert _of(report, "lr_collapse") == []
    stated = ScheduleOptions(spec=parse_spec("ExponentialLR(gamma=1.05)"), base_lr=1e-3, interval="step")
    _, report = _run("exponential_growth_clipped_tb", runs_root, stated)
    assert _of(report, "lr_runaway") == [] and _of(report, "loss_divergence")


def test_a_stated_schedule_that_disagrees_leaves_the_collapse_reported(runs_root):
    """Meant per epoch, stepped per batch: the stated schedule does not expect the collapse."""
    stated = ScheduleOptions(spec=parse_spec("StepLR(step_size=30, gamma=0.1)"), base_lr=0.1, interval="epoch",
                             steps_per_epoch=STEPS_PER_EPOCH)
    _, report = _run("steplr_per_batch_tqdm", runs_root, stated)
    assert report.intended_schedule["source"] == "cli"
    assert len(_of(report, "lr_collapse")) == 1


def test_a_loss_that_rises_and_then_turns_nan_is_left_to_nan_onset(tmp_path):
    """Like the GAN runs whose loss reaches 1e24 and then NaN: nan_onset reports it, loss_divergence does not."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "run" / "tb"))
    losses = [2.3 * 0.97 ** step for step in range(100)] + [0.1 * 1.7 ** step for step in range(1, 101)]
    losses += [float("nan")] * 50
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/lr", 0.01, step)
    writer.close()
    report = analyze(tmp_path / "run")
    assert _of(report, "nan_onset") and not _of(report, "loss_divergence")
