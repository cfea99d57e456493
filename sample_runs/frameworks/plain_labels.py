"""Measure each plain case's labels from what its lifetimes logged (the `Written` records, which hold the
exact numbers every sink wrote) and from its checkpoint files."""

from __future__ import annotations

import math
from pathlib import Path

import torch

import frameworks_common_hf as common
from plain_loop import Recipe, Written, reference_lrs

STDOUT_SINKS = {"tqdm", "kv", "free", "logging"}


def logger_name(recipe: Recipe) -> str:
    names = []
    for sink in recipe.sinks:
        name = {"tb": "tensorboard", "jsonl": "jsonl", "csv": "csv"}.get(sink, "stdout")
        if name not in names:
            names.append(name)
    return "+".join(names)


def series(lifetimes: list[Written], attr: str) -> list[tuple[int, float]]:
    return [(step, value) for life in lifetimes for step, value in zip(life.steps, getattr(life, attr))]


def steps_per_epoch(recipe: Recipe) -> int:
    return math.ceil(math.ceil(recipe.n_train / recipe.batch_size) / recipe.accum)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _decade_steps(points, start_step, falling: bool) -> int:
    """Steps the LR takes from `start_step` to move one more decade (the threshold's own ambiguity)."""
    start = dict(points)[start_step]
    for step, lr in points:
        if step > start_step and ((lr <= start / 10) if falling else (lr >= start * 10)):
            return step - start_step
    return 0


def measure(code: str, recipe: Recipe, lifetimes: list[Written], run_dir: Path) -> dict:
    lr, loss = series(lifetimes, "lr"), series(lifetimes, "loss")
    every, spe, first = recipe.log_every, steps_per_epoch(recipe), lifetimes[0].steps[0]
    base = recipe.step_base
    if code == "per_epoch_stepping":
        changes = [step for (step, a), (_, b) in zip(lr, lr[1:]) if a != b]
        off_boundary = [step for step in changes if (step + 1 - base) % spe]
        common.require(changes and not off_boundary, f"LR changes off epoch boundaries at {off_boundary[:3]}")
        return common.label(code, first, spe + every,
                            f"the logged LR changed {len(changes)} times in {len(lr)} logged steps, each time at an "
                            f"epoch boundary (every {spe} steps); onset is the first logged step")
    if code == "schedule_too_fast":
        ref = reference_lrs(recipe, lr[-1][0] - base + 1, stepping="epoch", steps_per_epoch=spe)
        onset = common.departure_step(lr, lambda step: ref[step - base])
        return common.label(code, onset, 2 * every + 1,
                            f"first logged step whose LR ({_fmt(dict(lr)[onset])}) is >10% off the same scheduler "
                            f"replayed per epoch ({_fmt(ref[onset - base])})")
    if code == "schedule_overrun":
        onset = common.overrun_step(lr)
        return common.label(code, onset, 2 * every + 1,
                            f"the logged LR reaches its minimum {_fmt(dict(lr)[onset])} at step {onset} (the scheduler's "
                            f"horizon) and rises on the next logged step; the run goes on to step {lr[-1][0]}")
    if code == "schedule_incomplete":
        peak = max(value for _, value in lr)
        return common.label(code, lr[-1][0], 2 * every,
                            f"the last logged step; its LR is {lr[-1][1] / peak:.2f}x the peak "
                            f"(the scheduler was sized for {_horizon(recipe)} steps, {lr[-1][0] - base + 1} were taken)")
    if code == "off_by_one":
        clean = Recipe(**{**recipe.__dict__, "prestep": False, "stepping": "batch"})
        ref = reference_lrs(clean, 3)
        common.require(abs(lr[0][1] / ref[0] - 1) > 0.5, "off_by_one: first LR not shifted")
        return common.label(code, first, 2 * every,
                            f"the first logged LR {_fmt(lr[0][1])} is {lr[0][1] / ref[0]:.2f}x the correctly stepped "
                            f"scheduler's {_fmt(ref[0])}; the whole schedule is one step early")
    if code == "warmup_missing":
        early = [value for step, value in loss[: max(5, len(loss) // 10)]]
        common.require(max(early) > 5 * early[0], "warmup_missing: no early loss spike")
        return common.label(code, first, 2 * every,
                            f"no warmup: the first logged LR is already the peak {_fmt(lr[0][1])} and the loss reaches "
                            f"{max(early) / early[0]:.1f}x its first value within the first 10% of logged steps")
    if code == "momentum_cycling":
        betas = [value for _, value in series(lifetimes, "momentum") if not math.isnan(value)]
        source, tol = "the logged beta1", 2 * every
        if not betas:
            betas = _checkpoint_betas(run_dir)
            source, tol = "beta1 in the checkpoints' optimizer state", recipe.ckpt_every * spe
        common.require(max(betas) - min(betas) > 0.05, "momentum_cycling: beta1 does not cycle")
        return common.label(code, first, tol, f"{source} ranges {min(betas):.3f}..{max(betas):.3f} on "
                                              f"{recipe.optimizer} (OneCycleLR cycle_momentum=True)")
    if code in ("resume_drift", "missing_resume_state"):
        onset = lifetimes[1].first_step
        before, after = lifetimes[0].lr[-1], lifetimes[1].lr[:3]
        return common.label(code, onset, 2 * every,
                            f"first step logged by the second process; the LR goes {_fmt(before)} -> "
                            f"{', '.join(map(_fmt, after))} across the restart (resume mode '{recipe.resume}')")
    if code == "constant_lr":
        values = [value for _, value in lr]
        common.require(max(values) <= min(values) * (1 + 1e-3), "constant_lr: the LR moves")
        return common.label(code, first, spe + every,
                            f"all {len(values)} logged LRs are within 0.1% of {_fmt(values[0])} although the run "
                            f"builds a {recipe.scheduler} scheduler")
    if code == "nan_onset":
        onset = common.first_nonfinite(loss)
        return common.label(code, onset, every, f"first logged non-finite loss ({dict(loss)[onset]}); the largest "
                                                f"finite loss before it was {_fmt(max(v for s, v in loss if s < onset))}")
    if code == "grad_explosion":
        grads = series(lifetimes, "grad_norm")
        onset = common.grad_spike_step(grads)
        common.require(common.first_nonfinite(loss) is None and common.ratio(grads) > 1e3, "grad_explosion too weak")
        return common.label(code, onset, 3 * every,
                            f"first logged grad norm > 10x the median of the previous 50 ({_fmt(dict(grads)[onset])}); "
                            f"it ends {grads[-1][1] / grads[0][1]:.3g}x its first value while the loss stays finite")
    if code == "loss_plateau":
        onset = common.plateau_start(loss)
        flat = sum(1 for step, _ in loss if step >= onset) / len(loss)
        common.require(flat > 0.6, f"loss_plateau: only {flat:.2f} of the run is flat")
        return common.label(code, onset, 30 + every,
                            f"first logged step whose 50-point mean loss is within 5% of the last 50 points' mean; "
                            f"{flat:.0%} of the run follows it at a constant LR")
    if code == "val_stuck":
        val = [(step, metrics["acc"]) for life in lifetimes for step, metrics in life.val]
        common.require(len({value for _, value in val}) == 1, "val_stuck: val acc moves")
        return common.label(code, val[0][0], spe, f"val acc is {val[0][1]:.4f} at all {len(val)} validations (chance "
                                                  f"is {1 / recipe.n_classes:.3f}) while the train loss falls "
                                                  f"{loss[0][1]:.2f} -> {loss[-1][1]:.2f}")
    if code == "lr_mismatch":
        other = series(lifetimes, "lr_other")
        onset = next(step for (step, a), (_, b) in zip(lr, other) if abs(a - b) > 0.1 * max(a, b))
        return common.label(code, onset, 2 * every,
                            f"first logged step where the two logged LRs differ by >10% "
                            f"({_fmt(dict(lr)[onset])} vs {_fmt(dict(other)[onset])})")
    if code == "lr_collapse":
        onset = common.collapse_step(lr)
        low = min(value for _, value in lr) / max(value for _, value in lr)
        return common.label(code, onset, max(3 * every, min(50, _decade_steps(lr, onset, True))),
                            f"first logged step whose LR is <= 1e-4 of the peak so far; the LR ends {low:.1e}x its "
                            f"peak while {lr[-1][0] - onset} more steps train; tolerance = one more decade of decay (at most 50 steps)")
    if code == "lr_runaway":
        onset = common.runaway_step(lr)
        growth = lr[-1][1] / lr[0][1]
        common.require(growth > 100, "lr_runaway too weak")
        return common.label(code, onset, max(3 * every, min(50, _decade_steps(lr, onset, False))),
                            f"first logged step whose LR is >= 10x the first logged LR; it ends {growth:.3g}x "
                            f"({_fmt(lr[0][1])} -> {_fmt(lr[-1][1])}); tolerance = one more decade of growth (at most 50 steps)")
    if code == "loss_divergence":
        onset, low, final = common.divergence_start(loss)
        common.require(common.first_nonfinite(loss) is None and final > 10 * low, "loss_divergence too weak")
        return common.label(code, onset, common.DIVERGENCE_WINDOW * every + 2 * every,
                            f"step of the smallest 10-point mean loss ({_fmt(low)}) before the rise; the loss ends at "
                            f"{_fmt(final)} ({final / low:.3g}x), finite throughout")
    raise KeyError(code)


def _horizon(recipe: Recipe) -> int:
    args = recipe.sched_args
    return args.get("total_steps") or args.get("total") or args.get("T_max")


def _checkpoint_betas(run_dir: Path) -> list[float]:
    betas = []
    for path in sorted(run_dir.rglob("*.pth")) + sorted(run_dir.rglob("*.pt")):
        state = torch.load(path, weights_only=False)
        optimizer = state.get("optimizer_state_dict") or state.get("optim") or state.get("optimizer")
        if optimizer:
            betas.append(optimizer["param_groups"][0]["betas"][0])
    return betas


def check_healthy(recipe: Recipe, lifetimes: list[Written]) -> str:
    loss = series(lifetimes, "loss")
    common.require(common.first_nonfinite(loss) is None, "healthy run with a non-finite loss")
    head = sum(value for _, value in loss[:5]) / 5
    tail = sum(value for _, value in loss[-5:]) / 5
    common.require(tail < head, "healthy run whose loss did not fall")
    return f"loss {head:.3f} -> {tail:.3f} (mean of first/last 5 logged), all finite"
