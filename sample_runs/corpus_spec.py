"""What a corpus case is: the training script's choices, its evidence sources and its ground truth.

A `CaseSpec` describes one small training script (its optimizer, scheduler, where it calls
`scheduler.step()`, what it logs and checkpoints, the bug it carries) and the findings a correct
analysis must report for it. Onset steps are never typed in: each `Expect` names a rule
(`corpus_truth.ONSET_RULES`) that computes the onset from what the loop logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from sample_loop import BATCH_SIZE, CLASSIFICATION

# Evidence kinds a case can write, and the files that hold each.
TENSORBOARD = "tensorboard"  # tb/events.out.tfevents.*
STDOUT = "stdout"  # train.log: what the script prints (stderr merged in unless STDERR is declared)
STDERR = "stderr"  # stderr.log: warnings and tracebacks, when the launcher kept stderr apart
CHECKPOINTS = "checkpoints"  # checkpoints/ckpt_epoch_{E}.pt
SOURCE_KINDS = (TENSORBOARD, STDOUT, STDERR, CHECKPOINTS)

# Where the script calls scheduler.step().
PER_BATCH = "per_batch"  # after every optimizer.step() (correct for step-sized schedules)
PER_EPOCH = "per_epoch"  # once after each epoch's batches
NEVER = "never"  # created, never stepped
BEFORE_OPTIMIZER = "before_optimizer"  # every optimizer step, but before optimizer.step()
PRESTEP = "prestep"  # per batch, plus one stray scheduler.step() right after construction
ON_VAL_LOSS = "on_val_loss"  # ReduceLROnPlateau.step(val_loss) after each validation
STEPPINGS = (PER_BATCH, PER_EPOCH, NEVER, BEFORE_OPTIMIZER, PRESTEP, ON_VAL_LOSS)

# Resume bugs (second process lifetime).
SCHEDULER_NOT_RESTORED = "scheduler_not_restored"
STEP_COUNTER_RESET = "step_counter_reset"
STALE_CHECKPOINT = "stale_checkpoint"  # sorted(glob)[-1]: 'ckpt_epoch_9.pt' sorts after 'ckpt_epoch_10.pt'
RESUME_BUGS = (None, SCHEDULER_NOT_RESTORED, STEP_COUNTER_RESET, STALE_CHECKPOINT)

LOG_STYLES = ("kv", "hf", "timm")


@dataclass(frozen=True)
class Plan:
    """The run's shape as the script sees it at start-up (from `len(loader)` and its config)."""

    epochs: int
    batches_per_epoch: int  # len(loader): includes a last partial batch
    full_batches_per_epoch: int  # len(dataset) // batch_size: what a careless script multiplies by
    accum: int

    @property
    def optimizer_steps_per_epoch(self) -> int:
        """Optimizer steps per epoch with gradient accumulation (the last partial group steps too)."""
        return math.ceil(self.batches_per_epoch / self.accum)

    @property
    def total_batches(self) -> int:
        """Dataloader iterations in the whole run: the accumulation-unaware total."""
        return self.epochs * self.batches_per_epoch

    @property
    def total_optimizer_steps(self) -> int:
        """Optimizer steps in the whole run: what a step-sized schedule should be sized with."""
        return self.epochs * self.optimizer_steps_per_epoch


SchedulerFactory = Callable[[torch.optim.Optimizer, Plan], object]


@dataclass(frozen=True)
class Expect:
    """One code a correct analysis must report; `onset` names the rule that computes its step."""

    code: str
    onset: str  # a key of corpus_truth.ONSET_RULES
    tolerance: int = 0  # slack on top of the sampling interval of the case's sources


@dataclass(frozen=True)
class CaseSpec:
    """One corpus case: the script, its sources, and the ground truth (empty `expect` = healthy)."""

    name: str
    description: str
    sources: tuple[str, ...]
    expect: tuple[Expect, ...] = ()
    allowed: tuple[str, ...] = ()  # may be reported too without counting as a false alarm
    task: str = CLASSIFICATION
    dataset: str = "default"  # "default": sample_loop's XOR / linear sets; "threshold": see corpus_loop
    epochs: int = 10
    batches_per_epoch: int = 40  # full batches
    extra_samples: int = 0  # samples past the full batches: a last partial batch per epoch
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-2
    scheduler: SchedulerFactory | None = None  # what the script builds (with its sizing bug, if any)
    scheduler_text: str = "none"  # the constructor as the script writes it (description only)
    intended: SchedulerFactory | None = None  # what the author meant; default: `scheduler`
    intended_interval: str = "step"  # "step" or "epoch": how the author meant it to advance
    stepping: str = PER_BATCH
    accum: int = 1
    clip: float | None = None  # clip_grad_norm_ max_norm; None = measure only
    amp_init_scale: float | None = None  # float16 autocast + GradScaler("cpu") with this init scale
    amp_backoff: float = 0.5  # GradScaler backoff_factor
    ema: str | None = None  # "never_updated" | "zero_debias" (both: the update call is never reached)
    outlier_factor: float | None = None  # one training sample scaled by this (a corrupt record)
    log_style: str = "kv"
    log_every: int = 10
    lr_logged: str = "used"  # "used" or "next" (HF Trainer before its 2025 fix logged the next step's LR)
    log_momentum: bool = False
    checkpoint_every: int = 1
    checkpoint_omits: tuple[str, ...] = ()  # keys the script's save function never writes
    crash_after_epoch: int | None = None  # resumed runs: the first process dies after this many epochs
    resume_bug: str | None = None
    seed: int = 0
    # What a user would pass to `forensics analyze` to state the schedule when the files state none:
    # {"schedule": <--schedule spec>, and optionally "base_lr", "interval", "steps_per_epoch"}.
    cli_schedule: dict | None = None

    def __post_init__(self) -> None:
        unknown = set(self.sources) - set(SOURCE_KINDS)
        if unknown or not self.sources:
            raise ValueError(f"{self.name}: bad sources {self.sources}")
        if self.stepping not in STEPPINGS or self.log_style not in LOG_STYLES or self.resume_bug not in RESUME_BUGS:
            raise ValueError(f"{self.name}: bad stepping, log style or resume bug")
        if self.crash_after_epoch is not None and CHECKPOINTS not in self.sources:
            raise ValueError(f"{self.name}: a resumed run needs checkpoints to resume from")
        if self.scheduler is None and self.stepping != NEVER:
            raise ValueError(f"{self.name}: a run without a scheduler cannot step one")

    @property
    def healthy(self) -> bool:
        """A healthy twin: a correct analysis reports no warning or error for it."""
        return not self.expect

    @property
    def sample_count(self) -> int:
        """Training samples: full batches plus the extra partial batch, if any."""
        return self.batches_per_epoch * BATCH_SIZE + self.extra_samples

    def plan(self) -> Plan:
        """The plan the script computes at start-up (the loop checks it against `len(loader)`)."""
        return Plan(
            epochs=self.epochs,
            batches_per_epoch=math.ceil(self.sample_count / BATCH_SIZE),
            full_batches_per_epoch=self.sample_count // BATCH_SIZE,
            accum=self.accum,
        )

    def intended_factory(self) -> SchedulerFactory | None:
        """The schedule the author meant (replayed with the real torch class for the ground truth)."""
        return self.intended or self.scheduler
