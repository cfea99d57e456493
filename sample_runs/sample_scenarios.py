"""The sample runs: one training script per scenario, healthy or carrying one real-world bug.

Each `train_*` function is what a small training script's `main()` would do for that scenario; it
returns what the loop itself observed (the values it logged, the checkpoints it wrote) plus the
scenario's own truths, computed from those values. `generate.py` turns that into the manifest.
Resumed runs do their second process lifetime in a real subprocess (`resume_phase`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LinearLR, OneCycleLR, SequentialLR

from sample_loop import (
    Loop,
    RunLogger,
    describe_model,
    first_nonfinite,
    make_data,
    make_deterministic,
    make_model,
    train_epochs,
)

SEED = 0
ONECYCLE_MAX_LR = 1e-2
ONECYCLE_PCT_START = 0.3
WARMUP_COSINE_LR = 3e-3
WARMUP_START_FACTOR = 0.01
WARMUP_STEPS = 40
DIVERGENCE_LR = 1e-3
DIVERGENCE_GAMMA = 1.05
COSINE_LR = 3e-3
FLAT_LR_TOLERANCE = 0.05  # "stays within 5% of its first value"
LAST_FINITE_LOSSES_KEPT = 5
SCHEDULER_NOT_RESTORED = "scheduler_not_restored"
STEP_COUNTER_RESET = "step_counter_reset"


@dataclass(frozen=True)
class RunSpec:
    """What a sample run is and the findings a correct analysis reports for it."""

    name: str
    description: str
    task: str
    optimizer: str
    scheduler: str
    stepping: str
    epochs: int
    steps_per_epoch: int
    checkpoint_every: int
    log_every: int
    expected_codes: tuple[str, ...]
    allowed_codes: tuple[str, ...]  # may also be reported without being a false alarm
    crash_after_epoch: int | None = None  # resumed runs: the first lifetime ends after this many epochs
    resume_bug: str | None = None  # SCHEDULER_NOT_RESTORED or STEP_COUNTER_RESET

    @property
    def planned_steps(self) -> int:
        """The run length the script plans for (and hands to its scheduler)."""
        return self.epochs * self.steps_per_epoch


@dataclass
class Lifetime:
    """What one process lifetime of the script logged and saved."""

    scalars: dict[str, list[tuple[int, float]]]
    checkpoints: list[dict]
    resumed_from: str | None = None

    def to_json(self) -> str:
        """Serialise for the parent process (NaN and inf survive as JSON's NaN/Infinity)."""
        return json.dumps({"scalars": self.scalars, "checkpoints": self.checkpoints, "resumed_from": self.resumed_from})

    @classmethod
    def from_json(cls, text: str) -> Lifetime:
        """Read what `to_json` wrote; steps come back as ints, pairs as tuples."""
        raw = json.loads(text)
        scalars = {tag: [(int(step), float(value)) for step, value in points] for tag, points in raw["scalars"].items()}
        return cls(scalars, raw["checkpoints"], raw["resumed_from"])


def _start(spec: RunSpec, run_dir: Path) -> tuple:
    make_deterministic(SEED)
    data = make_data(spec.task, spec.steps_per_epoch, SEED)
    model = make_model(spec.task)
    return data, model, RunLogger(run_dir, log_every=spec.log_every)


def _banner(spec: RunSpec, model: torch.nn.Module, logger: RunLogger) -> None:
    logger.print(
        f"Starting training: model={describe_model(model)} optimizer={spec.optimizer} scheduler={spec.scheduler} "
        f"scheduler_stepping={spec.stepping} epochs={spec.epochs} steps_per_epoch={spec.steps_per_epoch} "
        f"total_steps={spec.planned_steps} seed={SEED}"
    )


def _onecycle(optimizer: torch.optim.Optimizer, total_steps: int) -> OneCycleLR:
    return OneCycleLR(
        optimizer, max_lr=ONECYCLE_MAX_LR, total_steps=total_steps, pct_start=ONECYCLE_PCT_START, cycle_momentum=False
    )


def _warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> SequentialLR:
    warmup = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=WARMUP_STEPS)
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - WARMUP_STEPS)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[WARMUP_STEPS])


def _intended_lrs(make_scheduler: Callable, steps: int) -> list[float]:
    """The LR per step of the same scheduler stepped once per batch from step 0 and never reset."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    scheduler = make_scheduler(optimizer)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping a scheduler with no optimizer.step(): we only read LRs
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
    return lrs


# ---- healthy_onecycle and stuck_lr_onecycle_per_epoch ----------------------------------------


def train_onecycle(spec: RunSpec, run_dir: Path) -> tuple[list[Lifetime], dict]:
    """AdamW + OneCycleLR; `spec.stepping` says whether scheduler.step() is per batch or per epoch."""
    data, model, logger = _start(spec, run_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ONECYCLE_MAX_LR, weight_decay=0.01)
    scheduler = _onecycle(optimizer, spec.planned_steps)
    _banner(spec, model, logger)
    loop = Loop(model, optimizer, scheduler, data, logger, spec.stepping, spec.planned_steps, spec.checkpoint_every)
    train_epochs(loop, 0, spec.epochs, 0)
    logger.close()
    lifetime = Lifetime(logger.scalars, loop.checkpoints)

    lrs = [lr for _, lr in lifetime.scalars["train/lr"]]
    intended = _intended_lrs(lambda opt: _onecycle(opt, spec.planned_steps), spec.planned_steps)
    peak_step, peak_lr = max(lifetime.scalars["train/lr"], key=lambda point: point[1])
    truths = {
        "lr_at_start": lrs[0],
        "lr_at_end": lrs[-1],
        "lr_peak": peak_lr,
        "lr_peak_step": peak_step,
        "intended_lr_at_end": intended[-1],
        "intended_lr_peak": max(intended),
        "fraction_of_steps_lr_within_5pct_of_first": _fraction_near(lrs, lrs[0]),
        "scheduler_steps_taken": scheduler.last_epoch,
        "scheduler_total_steps": scheduler.total_steps,
        "schedule_fraction_completed": scheduler.last_epoch / scheduler.total_steps,
    }
    return [lifetime], truths


def _fraction_near(values: list[float], reference: float) -> float:
    near = sum(1 for value in values if abs(value - reference) <= FLAT_LR_TOLERANCE * abs(reference))
    return near / len(values)


# ---- nan_divergence ------------------------------------------------------------------------


def train_divergence(spec: RunSpec, run_dir: Path) -> tuple[list[Lifetime], dict]:
    """SGD with momentum and an LR that grows 5% per batch until the regression loss overflows."""
    data, model, logger = _start(spec, run_dir)
    optimizer = torch.optim.SGD(model.parameters(), lr=DIVERGENCE_LR, momentum=0.9)
    scheduler = ExponentialLR(optimizer, gamma=DIVERGENCE_GAMMA)
    _banner(spec, model, logger)
    loop = Loop(model, optimizer, scheduler, data, logger, spec.stepping, spec.planned_steps, spec.checkpoint_every)
    train_epochs(loop, 0, spec.epochs, 0)  # no NaN guard: the loop keeps going, as buggy loops do
    logger.close()
    lifetime = Lifetime(logger.scalars, loop.checkpoints)

    losses = lifetime.scalars["train/loss"]
    onset_step, onset_value = first_nonfinite(losses)
    first_nan = next(step for step, value in losses if math.isnan(value))
    grad_onset = first_nonfinite(lifetime.scalars["train/grad_norm"])
    finite_before = [[step, value] for step, value in losses if step < onset_step][-LAST_FINITE_LOSSES_KEPT:]
    lr_at = dict(lifetime.scalars["train/lr"])
    finite_checkpoints = [ckpt["path"] for ckpt in loop.checkpoints if ckpt["weights_finite"]]
    nonfinite_checkpoints = [ckpt["path"] for ckpt in loop.checkpoints if not ckpt["weights_finite"]]
    truths = {
        "first_nonfinite_loss_step": onset_step,
        "first_nonfinite_loss_value": repr(onset_value),  # "inf" or "nan", as a string: JSON has neither
        "first_nan_loss_step": first_nan,
        "first_nonfinite_grad_norm_step": grad_onset[0] if grad_onset else None,
        "last_finite_losses": finite_before,
        "lr_at_onset": lr_at[onset_step],
        "lr_at_start": lr_at[0],
        "nonfinite_loss_steps": sum(1 for _, value in losses if not math.isfinite(value)),
        "last_checkpoint_with_finite_weights": finite_checkpoints[-1] if finite_checkpoints else None,
        "first_checkpoint_with_nonfinite_weights": nonfinite_checkpoints[0] if nonfinite_checkpoints else None,
    }
    return [lifetime], truths


# ---- resumed runs: first lifetime here, second in a subprocess ------------------------------


def _resume_scheduler_factory(spec: RunSpec) -> Callable:
    if spec.resume_bug == SCHEDULER_NOT_RESTORED:
        return lambda optimizer: _warmup_cosine(optimizer, spec.planned_steps)
    return lambda optimizer: CosineAnnealingLR(optimizer, T_max=spec.planned_steps)


def _first_lifetime(spec: RunSpec, run_dir: Path) -> Lifetime:
    data, model, logger = _start(spec, run_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=WARMUP_COSINE_LR, weight_decay=0.01)
    scheduler = _resume_scheduler_factory(spec)(optimizer)
    _banner(spec, model, logger)
    loop = Loop(model, optimizer, scheduler, data, logger, spec.stepping, spec.planned_steps, spec.checkpoint_every)
    train_epochs(loop, 0, spec.crash_after_epoch, 0)
    logger.close()  # the process dies here; its event file is complete up to the last step
    return Lifetime(logger.scalars, loop.checkpoints)


def _second_lifetime(spec: RunSpec, run_dir: Path) -> Lifetime:
    _wait_for_a_later_event_file_name(run_dir / "tb")
    command = [sys.executable, str(Path(__file__).with_name("generate.py")), "--_resume-phase", spec.name]
    result = subprocess.run([*command, "--out", str(run_dir.parent)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"resume phase of {spec.name} failed:\n{result.stderr}")
    return Lifetime.from_json(result.stdout.strip().splitlines()[-1])


def _wait_for_a_later_event_file_name(tb_dir: Path) -> None:
    # Event file names start with the creation time in whole seconds: wait out the current second so
    # the restarted process's file sorts after the first one (pids alone do not sort).
    stamps = [int(path.name.split(".")[3]) for path in tb_dir.glob("events.out.tfevents.*")]
    while int(time.time()) <= max(stamps, default=0):
        time.sleep(0.05)


def resume_phase(spec: RunSpec, run_dir: Path) -> Lifetime:
    """The restarted process: load the last checkpoint, carry the scenario's resume bug, train to the end."""
    data, model, logger = _start(spec, run_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=WARMUP_COSINE_LR, weight_decay=0.01)
    resume_path = f"checkpoints/ckpt_epoch_{spec.crash_after_epoch}.pt"
    checkpoint = torch.load(run_dir / resume_path)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng_state"])
    start_epoch, global_step = checkpoint["epoch"], checkpoint["global_step"]
    scheduler = _resume_scheduler_factory(spec)(optimizer)
    if spec.resume_bug == SCHEDULER_NOT_RESTORED:
        pass  # the bug: scheduler.load_state_dict(checkpoint["scheduler"]) is missing, warmup starts over
    else:
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, global_step = 0, 0  # the bug: a leftover reset after the resume logic
    _banner(spec, model, logger)
    logger.print(f"Resuming from {resume_path} (epoch {checkpoint['epoch']}, global_step {checkpoint['global_step']})")
    loop = Loop(model, optimizer, scheduler, data, logger, spec.stepping, spec.planned_steps, spec.checkpoint_every)
    train_epochs(loop, start_epoch, spec.epochs, global_step)
    logger.close()
    return Lifetime(logger.scalars, loop.checkpoints, resumed_from=resume_path)


def train_resumed(spec: RunSpec, run_dir: Path) -> tuple[list[Lifetime], dict]:
    """Train until the 'crash', restart in a new process, and compare the LR to the intended schedule."""
    first = _first_lifetime(spec, run_dir)
    second = _second_lifetime(spec, run_dir)
    # From the first lifetime's record, not the file: a step-counter reset overwrites that file later.
    checkpoint = next(ckpt for ckpt in first.checkpoints if ckpt["path"] == second.resumed_from)
    resume_step = second.scalars["train/lr"][0][0]
    last_step_before = first.scalars["train/lr"][-1][0]
    lr_before = first.scalars["train/lr"][-1][1]
    lr_after = second.scalars["train/lr"][0][1]
    truths = {
        "resume_checkpoint": second.resumed_from,
        "resume_checkpoint_global_step": checkpoint["global_step"],
        "resume_checkpoint_scheduler_last_epoch": checkpoint["scheduler_last_epoch"],
        "last_step_before_resume": last_step_before,
        "resume_step": resume_step,
        "lr_before_resume": lr_before,
        "lr_after_resume": lr_after,
        "lr_ratio_after_to_before": lr_after / lr_before,
        "lr_at_end": second.scalars["train/lr"][-1][1],
        "final_checkpoint_scheduler_last_epoch": second.checkpoints[-1]["scheduler_last_epoch"],
        "final_checkpoint_global_step": second.checkpoints[-1]["global_step"],
    }
    if spec.resume_bug == SCHEDULER_NOT_RESTORED:
        # A correctly restored scheduler continues the uninterrupted schedule from the resume step.
        intended = _intended_lrs(_resume_scheduler_factory(spec), spec.planned_steps)[resume_step:]
        logged = [lr for _, lr in second.scalars["train/lr"]]
        truths["intended_lr_after_resume"] = intended[0]
        truths["intended_lr_at_end"] = intended[-1]
        truths["max_relative_lr_deviation_after_resume"] = max(abs(a - b) / b for a, b in zip(logged, intended))
    else:
        truths["step_rewound_to"] = resume_step
        truths["overlapping_steps"] = [resume_step, last_step_before]
        truths["scheduler_t_max"] = spec.planned_steps
        first_paths = {ckpt["path"] for ckpt in first.checkpoints}
        truths["overwritten_checkpoints"] = sorted(
            {ckpt["path"] for ckpt in second.checkpoints} & first_paths, key=lambda path: int(path.split("_")[-1][:-3])
        )
    return [first, second], truths
