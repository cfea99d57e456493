"""Scheduler factories the corpus scripts use, each sized the way a script (buggy or not) sizes it.

A factory takes `(optimizer, plan)` and returns a real `torch.optim.lr_scheduler` object. `sized`
names what the script multiplies by: `optimizer` steps (correct with accumulation), dataloader
`batches` (the accumulation bug), `full_batches` (len(dataset) // batch_size: drop_last=False bug),
or a hard-coded number of epochs.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from corpus_spec import Plan
from sample_loop import BATCH_SIZE


def _total(plan: Plan, sized: str) -> int:
    if sized == "optimizer":
        return plan.total_optimizer_steps
    if sized == "batches":
        return plan.total_batches
    if sized == "full_batches":
        return plan.epochs * plan.full_batches_per_epoch
    raise ValueError(f"unknown sizing {sized!r}")


def onecycle(max_lr: float, sized: str = "optimizer", cycle_momentum: bool = False, pct_start: float = 0.3):
    """OneCycleLR(max_lr, total_steps=<sized>, pct_start, cycle_momentum)."""

    def factory(optimizer, plan: Plan) -> OneCycleLR:  # noqa: ANN001
        total = _total(plan, sized)
        return OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total, pct_start=pct_start, cycle_momentum=cycle_momentum
        )

    return factory


def warmup_cosine(warmup: int, sized: str = "optimizer", start_factor: float = 0.01):
    """SequentialLR([LinearLR(start_factor, total_iters=warmup), CosineAnnealingLR(T_max=total-warmup)])."""

    def factory(optimizer, plan: Plan) -> SequentialLR:  # noqa: ANN001
        total = _total(plan, sized)
        linear = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup)
        cosine = CosineAnnealingLR(optimizer, T_max=total - warmup)
        return SequentialLR(optimizer, [linear, cosine], milestones=[warmup])

    return factory


def warmup_cosine_epochs(warmup_epochs: int, start_factor: float = 0.1):
    """The epoch-interval recipe: LinearLR over warmup epochs, then cosine over the remaining epochs."""

    def factory(optimizer, plan: Plan) -> SequentialLR:  # noqa: ANN001
        linear = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_epochs)
        cosine = CosineAnnealingLR(optimizer, T_max=plan.epochs - warmup_epochs)
        return SequentialLR(optimizer, [linear, cosine], milestones=[warmup_epochs])

    return factory


def lambda_warmup_cosine(warmup: int):
    """LambdaLR with timm/HF-style (step+1)/warmup linear warmup then cosine to 0, sized in optimizer steps."""

    def factory(optimizer, plan: Plan) -> LambdaLR:  # noqa: ANN001
        total = plan.total_optimizer_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

        return LambdaLR(optimizer, factor)

    return factory


def linear_with_warmup(warmup_fraction: float, sized: str = "optimizer"):
    """transformers.get_linear_schedule_with_warmup as a LambdaLR: 0 -> peak over warmup, then linear to 0."""

    def factory(optimizer, plan: Plan) -> LambdaLR:  # noqa: ANN001
        total = _total(plan, sized)
        warmup = max(1, round(warmup_fraction * total))

        def factor(step: int) -> float:
            if step < warmup:
                return step / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        return LambdaLR(optimizer, factor)

    return factory


def cosine(sized: str = "optimizer", t_max_epochs: int | None = None, per_sample: bool = False):
    """CosineAnnealingLR sized in optimizer steps, in a hard-coded epoch count's steps, or in samples."""

    def factory(optimizer, plan: Plan) -> CosineAnnealingLR:  # noqa: ANN001
        if per_sample:  # the bug: len(train_dataset) * epochs instead of len(loader) * epochs
            t_max = plan.epochs * plan.batches_per_epoch * BATCH_SIZE
        elif t_max_epochs is not None:  # the bug: sized from a stale config value of epochs
            t_max = t_max_epochs * plan.optimizer_steps_per_epoch
        else:
            t_max = _total(plan, sized)
        return CosineAnnealingLR(optimizer, T_max=t_max)

    return factory


def cosine_over_epochs():
    """CosineAnnealingLR(T_max=epochs): an epoch-interval schedule."""
    return lambda optimizer, plan: CosineAnnealingLR(optimizer, T_max=plan.epochs)


def step_lr(step_size: int, gamma: float = 0.1):
    """StepLR(step_size, gamma): meant in epochs."""
    return lambda optimizer, plan: StepLR(optimizer, step_size=step_size, gamma=gamma)


def exponential(gamma: float):
    """ExponentialLR(gamma)."""
    return lambda optimizer, plan: ExponentialLR(optimizer, gamma=gamma)


def reduce_on_plateau(factor: float, patience: int):
    """ReduceLROnPlateau(mode='min', factor, patience), stepped with the validation loss."""
    return lambda optimizer, plan: ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)
