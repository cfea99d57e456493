"""Shared pieces of the Lightning/timm corpus generators: data, tiny models, timm loading, label maths.

Everything here is deterministic (seeded generators, one CPU thread) and downloads nothing. The label
helpers take what a run *logged* (lists of (step, value) pairs) and return onsets; nothing is typed in.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import types

import torch

FEATURES = 8
CLASSES = 4
DEPARTURE_RELATIVE = 0.10   # a logged LR "leaves" the reference when it differs by more than 10%
SPIKE_FACTOR = 10.0         # grad-norm spike: > 10x the median of the previous finite values
SPIKE_MIN_HISTORY = 10
COLLAPSE_FRACTION = 1e-4    # lr_collapse: the LR is at or below 1e-4 of its running peak
RUNAWAY_FACTOR = 10.0       # lr_runaway onset: the LR first exceeds 10x the run's first LR
PLATEAU_WINDOW = 40
PLATEAU_RELATIVE = 0.05

CONVENTIONS = {
    "step": "0-based optimizer step (Lightning trainer.global_step before the step; timm num_updates before the update)",
    "lightning lr-*": "LearningRateMonitor(logging_interval='step') logs at on_train_batch_start: the LR the optimizer "
                      "step with the same index uses (measured: LambdaLR 1/(k+1) logs 1/(s+1) at step s)",
    "lightning epoch lr": "LearningRateMonitor(logging_interval='epoch') logs at the step the epoch starts at",
    "timm Train lines": "step = epoch * updates_per_epoch + update_idx; the LR is read before step_update, so it is the "
                        "LR that update used",
    "departure": f"first logged step whose LR differs from the replayed reference scheduler by > {DEPARTURE_RELATIVE:.0%}; "
                 "tolerance reaches back to the first step differing by > 1% (at least the logging interval)",
    "constant_lr": "first logged step from which the LR stays within 0.1% of its final value to the end",
    "grad_spike": f"first step whose grad norm exceeds {SPIKE_FACTOR:g}x the median of the previous finite values "
                  f"(>= {SPIKE_MIN_HISTORY})",
    "lr_collapse": f"first step whose LR is <= {COLLAPSE_FRACTION:g} x the highest LR logged before it",
    "lr_runaway": f"first step whose LR exceeds {RUNAWAY_FACTOR:g}x the first logged LR",
    "loss_divergence": "end step of the lowest 10-value mean training loss; tolerance reaches the first 10-value "
                       "mean 2x that minimum; every mean of the last quarter of the run is > 10x the minimum",
    "plateau_start": f"first step whose trailing {PLATEAU_WINDOW}-step mean loss is within {PLATEAU_RELATIVE:.0%} of "
                     f"the final {PLATEAU_WINDOW}-step mean",
}


def load_timm_scheduler() -> types.ModuleType:
    """Import `timm.scheduler` without running `timm/__init__.py`.

    timm is installed with --no-deps and its package __init__ imports torchvision (absent here), so
    `import timm.scheduler` would fail in the parent package. The scheduler subpackage itself only needs
    torch. We register a bare module object named `timm` whose `__path__` points at the installed
    folder; Python's import system then finds `timm/scheduler/` through that path and never executes
    the real `timm/__init__.py`.
    """
    if "timm.scheduler" in sys.modules:
        return sys.modules["timm.scheduler"]
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed")
    if "timm" not in sys.modules:
        bare = types.ModuleType("timm")
        bare.__path__ = list(spec.submodule_search_locations)
        sys.modules["timm"] = bare
    import timm.scheduler  # noqa: PLC0415 - deliberately after the bare package is registered

    return timm.scheduler


def seed_everything(seed: int) -> None:
    """One CPU thread and fixed seeds, so a run does not move with the machine's core count."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)


def blobs(n: int, seed: int, spread: float = 0.6, label_noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """CLASSES Gaussian blobs in FEATURES dims; with label_noise a fixed share of labels is reassigned."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(CLASSES, FEATURES) * 3.0
    labels = torch.arange(n) % CLASSES
    labels = labels[torch.randperm(n, generator=gen)]
    x = centres[labels] + spread * torch.randn(n, FEATURES, generator=gen)
    if label_noise:
        flip = torch.randperm(n, generator=gen)[: int(round(label_noise * n))]
        labels = labels.clone()
        labels[flip] = (labels[flip] + 1 + torch.randint(0, CLASSES - 1, (len(flip),), generator=gen)) % CLASSES
    return x, labels


def regression(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x . w + small noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=gen)
    w = torch.randn(FEATURES, 1, generator=gen)
    return x, x @ w + 0.05 * torch.randn(n, 1, generator=gen)


def tiny_mlp(out: int = CLASSES, hidden: int = 16) -> torch.nn.Module:
    """Two linear layers: a few hundred parameters, so a checkpoint is a few KB."""
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out))


# ---- replaying a correctly built reference scheduler -------------------------------------------------

def replay_torch(build, base_lr: float, optimizer_steps: int, steps_per_epoch: int | None = None) -> list[float]:
    """LR used at each optimizer step by `build(optimizer)` stepped per step (or per epoch when
    `steps_per_epoch` is given). A dummy parameter carries the optimizer; nothing is trained."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = build(optimizer)
    lrs = []
    for step in range(optimizer_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if steps_per_epoch is None or (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    return lrs


def replay_timm(build, base_lr: float, epochs: int, updates_per_epoch: int, per_update: bool) -> list[float]:
    """LR used at each update by a timm scheduler driven the way timm's train.py drives it:
    step_update(num_updates) after every update and step(epoch + 1) after every epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = build(optimizer)
    lrs, num_updates = [], 0
    for epoch in range(epochs):
        for _ in range(updates_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            num_updates += 1
            if per_update:
                scheduler.step_update(num_updates=num_updates)
        scheduler.step(epoch + 1)
    return lrs


# ---- onsets measured from logged series -----------------------------------------------------------------

def departure_step(logged: list[tuple[int, float]], reference: list[float]) -> int | None:
    """First logged step whose LR differs from the reference by more than DEPARTURE_RELATIVE (relative to
    the larger of the two); a step past the reference's end counts as departed."""
    for step, lr in logged:
        if step >= len(reference):
            return step
        ref = reference[step]
        scale = max(abs(lr), abs(ref))
        if scale > 0 and abs(lr - ref) > DEPARTURE_RELATIVE * scale:
            return step
    return None


def departure_window(logged: list[tuple[int, float]], reference: list[float]) -> tuple[int | None, int]:
    """(departure step, tolerance): the tolerance reaches back to the first step whose LR differs from the
    reference by more than 1%, where the departure first becomes visible (at least 1)."""
    onset = departure_step(logged, reference)
    if onset is None:
        return None, 1
    visible = onset
    for step, lr in logged:
        if step >= len(reference) or step >= onset:
            break
        scale = max(abs(lr), abs(reference[step]))
        if scale > 0 and abs(lr - reference[step]) > 0.01 * scale:
            visible = step
            break
    return onset, max(1, onset - visible)


def constant_start(points: list[tuple[int, float]]) -> int | None:
    """First logged step from which the LR stays within 0.1% of its final value to the end of the run."""
    final = points[-1][1]
    start = None
    for step, lr in points:
        if abs(lr - final) <= 1e-3 * abs(final):
            start = step if start is None else start
        else:
            start = None
    return start


def first_nonfinite(points: list[tuple[int, float]]) -> int | None:
    """Step of the first NaN/inf value."""
    return next((step for step, value in points if not math.isfinite(value)), None)


def first_grad_spike(points: list[tuple[int, float]]) -> int | None:
    """First step whose value exceeds SPIKE_FACTOR x the median of the finite values before it."""
    history: list[float] = []
    for step, value in points:
        if len(history) >= SPIKE_MIN_HISTORY and value > SPIKE_FACTOR * statistics.median(history):
            return step
        if math.isfinite(value):
            history.append(value)
    return None


def collapse_step(points: list[tuple[int, float]]) -> int | None:
    """First step whose LR is at most COLLAPSE_FRACTION of the highest LR before it."""
    peak = 0.0
    for step, lr in points:
        if peak > 0 and lr <= COLLAPSE_FRACTION * peak:
            return step
        peak = max(peak, lr)
    return None


def runaway_step(points: list[tuple[int, float]]) -> int | None:
    """First step whose LR exceeds RUNAWAY_FACTOR x the first logged LR."""
    first = points[0][1]
    return next((step for step, lr in points if lr > RUNAWAY_FACTOR * first), None)


def divergence_onset(points: list[tuple[int, float]], window: int = 10) -> tuple[int, int]:
    """(end step of the lowest `window`-point mean loss, steps from there until that mean first doubles).

    Raises unless the rise is sustained and large: every window mean in the last quarter of the run is
    more than 10x the minimum (so a noisy or recovering loss is never labelled a divergence)."""
    values = [value for _, value in points]
    if not all(math.isfinite(value) for value in values):
        raise AssertionError("the loss went non-finite: that is nan_onset, not a divergence without NaN")
    means = [sum(values[i - window + 1 : i + 1]) / window for i in range(window - 1, len(values))]
    best = min(range(len(means)), key=means.__getitem__)
    if min(means[-max(1, len(means) // 4):]) <= 10 * means[best]:
        raise AssertionError("the loss does not stay far above its minimum")
    doubled = next(i for i in range(best, len(means)) if means[i] > 2 * means[best])
    onset = points[best + window - 1][0]
    return onset, points[doubled + window - 1][0] - onset


def plateau_start(points: list[tuple[int, float]], window: int = PLATEAU_WINDOW) -> int | None:
    """First step whose trailing window mean is within PLATEAU_RELATIVE of the final window's mean."""
    values = [value for _, value in points]
    if len(values) < 2 * window:
        return None
    final = sum(values[-window:]) / window
    for i in range(window - 1, len(values)):
        if sum(values[i - window + 1 : i + 1]) / window <= (1 + PLATEAU_RELATIVE) * final:
            return points[i][0]
    return None


def log_interval(points: list[tuple[int, float]]) -> int:
    """The most common gap between logged steps (1 when every step is logged)."""
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:]) if b[0] > a[0]]
    return statistics.mode(gaps) if gaps else 1


def expect(code: str, onset: int | None, tolerance: int, measured: str) -> dict:
    """One expected_codes entry; a rule that found no onset is a generator bug, not a label."""
    if onset is None:
        raise AssertionError(f"no onset measured for {code}: {measured}")
    return {"code": code, "onset_step": int(onset), "tolerance_steps": int(tolerance), "measured": measured}
