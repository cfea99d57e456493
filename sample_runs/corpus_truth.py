"""Ground truth of a corpus case, computed from what its loop logged (never typed in).

Definitions the onsets use (also written into CORPUS.json's `conventions`):
- grad-norm spike: a step whose grad norm exceeds SPIKE_FACTOR x the median of the previous
  SPIKE_WINDOW finite grad norms (at least SPIKE_MIN_HISTORY of them).
- departure: the first step whose LR and the intended LR differ by more than DEPARTURE_FACTOR x.
- plateau start: the first step whose trailing PLATEAU_WINDOW-step mean training loss is within
  PLATEAU_RELATIVE of the mean of the last PLATEAU_WINDOW losses; the plateau fraction is the share of steps from there on.
- early loss spike: a step in the first EARLY_FRACTION of the run whose loss exceeds EARLY_SPIKE_FACTOR
  x the first step's loss (the untrained level).
- loss spike: a step whose loss exceeds SPIKE_FACTOR x the median of the previous SPIKE_WINDOW finite
  losses; it recovered when a loss within RECOVERY_STEPS after it is below 2x that median.
- LR collapse: the first step whose LR is below LR_COLLAPSE_FACTOR x the highest LR logged before it.
- LR growth: the first step whose LR is LR_GROWTH_FACTOR x the median LR of the run's first tenth.
- loss rise: the loss level is the median of the LOSS_LEVEL_WINDOW losses ending at a step; the rise
  starts at the lowest level.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from corpus_loop import CaseLifetime, dataset_function, make_optimizer
from corpus_spec import CHECKPOINTS, ON_VAL_LOSS, STDOUT, TENSORBOARD, CaseSpec
from sample_loop import CLASSIFICATION, VAL_SIZE, first_nonfinite

SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 50
SPIKE_MIN_HISTORY = 10
DEPARTURE_FACTOR = 2.0
PLATEAU_RELATIVE = 0.05
PLATEAU_WINDOW = 50
RECOVERY_STEPS = 10
EARLY_FRACTION = 0.05
EARLY_SPIKE_FACTOR = 2.0
LR_GROWTH_FACTOR = 10.0
LR_COLLAPSE_FACTOR = 1e-4
LOSS_LEVEL_WINDOW = 11
LOSS_RISE_FACTOR = 2.0
CONVENTIONS = {
    "step": "0-based index of the optimizer step (of the loop iteration when GradScaler may skip it)",
    "train/lr": "optimizer.param_groups[0]['lr'] when optimizer.step() runs, unless lr_logging_offset is 1",
    "lr_logging_offset": "1: the logged LR is the next step's (scheduler.get_last_lr() after scheduler.step())",
    "grad_norm": "clip_grad_norm_ return value: the norm before clipping",
    "val/*": "once per epoch, at the epoch's last step",
    "hf log lines": "printed after 1-based step (step+1) % log_every == 0; 'epoch' = (step+1)/steps_per_epoch, 2 dp",
    "timm log lines": "idx = optimizer update within the epoch; a line when idx % log_every == 0 and at the last",
    "checkpoint": "checkpoints/ckpt_epoch_{E}.pt after E epochs; keys epoch=E, global_step=steps done",
    "grad_norm_spike": f"> {SPIKE_FACTOR:g}x median of the previous {SPIKE_WINDOW} finite values (>= {SPIKE_MIN_HISTORY})",
    "departure": f"actual and intended LR differ by more than {DEPARTURE_FACTOR:g}x",
    "plateau_start": f"first step whose {PLATEAU_WINDOW}-step mean loss is within {PLATEAU_RELATIVE:.0%} of the last {PLATEAU_WINDOW}'s",
    "early_loss_spike": f"first {EARLY_FRACTION:.0%} of steps, loss > {EARLY_SPIKE_FACTOR:g}x the first step's loss",
    "loss_spike": f"loss > {SPIKE_FACTOR:g}x median of the previous {SPIKE_WINDOW} finite losses",
    "lr_collapse": f"first step whose LR is below {LR_COLLAPSE_FACTOR:g}x the highest LR before it",
    "lr_growth": f"first step whose LR is {LR_GROWTH_FACTOR:g}x the median LR of the first tenth of the run",
    "loss_rise": f"the step of the lowest {LOSS_LEVEL_WINDOW}-step median loss, from which the loss rises",
    "tolerance_steps": "the rule's own slack plus the sampling interval of the finest source carrying the series",
}


def replay_intended_lrs(spec: CaseSpec, steps: int, val_losses: list[float] | None = None) -> list[float]:
    """The LR the author meant at each optimizer step, from the real torch scheduler on a throwaway optimizer.

    A schedule that cannot be stepped further (OneCycleLR past total_steps) ends the list early.
    """
    factory = spec.intended_factory()
    optimizer = make_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))])
    if factory is None:
        return [spec.lr] * steps
    plan = spec.plan()
    scheduler = factory(optimizer, plan)
    lrs: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() here: we only read LRs
        for step in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            try:
                if spec.intended_interval == "step":
                    scheduler.step()
                elif (step + 1) % plan.optimizer_steps_per_epoch == 0:
                    epoch = step // plan.optimizer_steps_per_epoch
                    if spec.stepping == ON_VAL_LOSS:
                        scheduler.step(val_losses[epoch])
                    else:
                        scheduler.step()
            except ValueError:
                break
    return lrs


def grad_spike_steps(points: list[tuple[int, float]]) -> list[int]:
    """Steps whose grad norm exceeds SPIKE_FACTOR x the running median of the previous finite values."""
    history: list[float] = []
    spikes = []
    for step, value in points:
        if len(history) >= SPIKE_MIN_HISTORY and value > SPIKE_FACTOR * statistics.median(history[-SPIKE_WINDOW:]):
            spikes.append(step)
        if math.isfinite(value):
            history.append(value)
    return spikes


def departure_step(actual: list[tuple[int, float]], intended: list[float]) -> int | None:
    """First step whose LR and the intended LR differ by more than DEPARTURE_FACTOR x."""
    for step, lr in actual:
        if step >= len(intended):
            return step
        low, high = sorted((lr, intended[step]))
        if high > DEPARTURE_FACTOR * low:
            return step
    return None


def plateau_start(losses: list[tuple[int, float]], window: int = PLATEAU_WINDOW) -> int | None:
    """First step whose trailing `window`-step mean loss is within PLATEAU_RELATIVE of the last window's."""
    values = [value for _, value in losses]
    if len(values) < 2 * window or not all(math.isfinite(value) for value in values):
        return None
    final_level = sum(values[-window:]) / window
    for i in range(window - 1, len(values)):
        if sum(values[i - window + 1 : i + 1]) / window <= (1 + PLATEAU_RELATIVE) * final_level:
            return losses[i][0]
    return None


def plateau_fraction(losses: list[tuple[int, float]], window: int = PLATEAU_WINDOW) -> float | None:
    """Share of the run's steps from the plateau start on."""
    start = plateau_start(losses, window)
    if start is None:
        return None
    return sum(1 for step, _ in losses if step >= start) / len(losses)


def early_loss_spikes(losses: list[tuple[int, float]]) -> list[int]:
    """Steps in the first EARLY_FRACTION of the run whose loss is EARLY_SPIKE_FACTOR x the first step's."""
    horizon = max(1, math.ceil(EARLY_FRACTION * len(losses)))
    first = losses[0][1]
    return [step for step, value in losses[1:horizon] if not value <= EARLY_SPIKE_FACTOR * first]


def recovered_spikes(losses: list[tuple[int, float]]) -> list[int]:
    """Loss spikes (the grad-spike rule on the loss) followed within RECOVERY_STEPS by a loss < 2x the median."""
    values = dict(losses)
    steps = [step for step, _ in losses]
    recovered = []
    for spike in grad_spike_steps(losses):
        index = steps.index(spike)
        before = [value for _, value in losses[max(0, index - SPIKE_WINDOW) : index] if math.isfinite(value)]
        level = 2 * statistics.median(before)
        if any(values[step] < level for step in steps[index + 1 : index + 1 + RECOVERY_STEPS]):
            recovered.append(spike)
    return recovered


def chance_accuracy(spec: CaseSpec) -> float | None:
    """Accuracy of always predicting the validation set's majority class."""
    if spec.task != CLASSIFICATION:
        return None
    labels = dataset_function(spec)(VAL_SIZE, spec.seed + 1).tensors[1]
    positive = labels.float().mean().item()
    return max(positive, 1 - positive)


def sampling_interval(spec: CaseSpec) -> int:
    """Steps between observations in the finest source that carries a per-step series."""
    if TENSORBOARD in spec.sources:
        return 0
    if STDOUT in spec.sources:
        return spec.log_every
    if CHECKPOINTS in spec.sources:
        return spec.checkpoint_every * spec.plan().optimizer_steps_per_epoch
    return 0


@dataclass
class Observed:
    """The series one case's loop logged, joined over its process lifetimes, and the intent."""

    spec: CaseSpec
    run_dir: Path
    lifetimes: list[CaseLifetime]

    def __post_init__(self) -> None:
        self.lr_used = [(int(step), lr) for life in self.lifetimes for step, lr in life.extras["lr_used"]]
        self.losses = self.series("train/loss")
        self.grad_norms = self.series("train/grad_norm")
        self.val_losses = [value for _, value in self.series("val/loss")]
        self.intended = replay_intended_lrs(self.spec, max(step for step, _ in self.lr_used) + 1, self.val_losses)

    def series(self, tag: str) -> list[tuple[int, float]]:
        """(step, value) of one tag over every lifetime, in write order."""
        return [point for life in self.lifetimes for point in life.scalars.get(tag, [])]

    @property
    def last_step(self) -> int:
        """The last optimizer step the run logged."""
        return self.lr_used[-1][0]

    @property
    def resume_step(self) -> int | None:
        """The first step of the last process lifetime, for resumed runs."""
        return self.lifetimes[-1].extras["lr_used"][0][0] if len(self.lifetimes) > 1 else None


def _onset_start(observed: Observed) -> tuple[int, int | None, dict]:
    return 0, None, {}


def _onset_departure(observed: Observed) -> tuple[int, int | None, dict]:
    step = departure_step(observed.lr_used, observed.intended)
    spe = observed.spec.plan().optimizer_steps_per_epoch
    lr_end_epoch_1 = dict(observed.lr_used)[spe - 1]
    facts = {"lr_at_end_of_first_epoch": lr_end_epoch_1, "intended_lr_at_end_of_first_epoch": observed.intended[spe - 1]}
    return step, observed.last_step, facts


def _onset_horizon(observed: Observed) -> tuple[int, int | None, dict]:
    state = observed.lifetimes[-1].extras["scheduler_state"]
    horizon = state.get("T_max", state.get("total_steps"))
    error_text = observed.lifetimes[-1].extras["error_text"]
    facts = {"schedule_horizon_steps": horizon, "error_text": error_text}
    return horizon, observed.last_step if error_text is None else horizon, facts


def _onset_last_step(observed: Observed) -> tuple[int, int | None, dict]:
    spec = observed.spec
    state = observed.lifetimes[-1].extras["scheduler_state"]
    horizon = state.get("total_steps", state.get("T_max"))
    if horizon is None and spec.accum > 1:  # a LambdaLR: the accumulation bug sized it in batches
        horizon = spec.plan().total_batches
    facts = {
        "time_scale_factor_k": spec.accum,
        "schedule_horizon_steps": horizon,
        "schedule_fraction_completed": (observed.last_step + 1) / horizon if horizon else None,
        "intended_final_lr": observed.intended[-1],
    }
    return observed.last_step, None, facts


def _onset_resume(observed: Observed) -> tuple[int, int | None, dict]:
    first, last = observed.lifetimes[0], observed.lifetimes[-1]
    last_before = first.extras["lr_used"][-1][0]
    end = last_before if observed.resume_step <= last_before else None  # steps rewound: the overlap ends here
    facts = {"last_step_before_resume": last_before, "resumed_from": last.resumed_from}
    return observed.resume_step, end, facts


def _onset_nonfinite(observed: Observed) -> tuple[int, int | None, dict]:
    step, value = first_nonfinite(observed.losses)
    spikes = grad_spike_steps(observed.grad_norms)
    warning = spikes[0] if spikes and spikes[0] < step else None
    recovered = [spike for spike in recovered_spikes(observed.losses) if spike < step]
    facts = {
        "first_nonfinite_loss_value": repr(value),
        "first_warning_sign_step": warning,
        "lr_at_onset": dict(observed.lr_used)[step],
        "lr_peak_before_onset": max(lr for point_step, lr in observed.lr_used if point_step <= step),
        "loss_peak_before_onset": max(value for point_step, value in observed.losses if point_step < step),
        "recovered_loss_spike_steps": recovered,
    }
    return step, observed.last_step, facts


def _onset_grad_spike(observed: Observed) -> tuple[int, int | None, dict]:
    step = grad_spike_steps(observed.grad_norms)[0]
    finite_before = [value for point_step, value in observed.grad_norms if point_step < step]
    peak_step, peak = max(observed.grad_norms, key=lambda point: point[1])
    facts = {
        "grad_norm_median_before_onset": statistics.median(finite_before[-SPIKE_WINDOW:]),
        "grad_norm_peak": peak,
        "grad_norm_growth": peak / statistics.median(finite_before[-SPIKE_WINDOW:]),
        "loss_finite_throughout": all(math.isfinite(value) for _, value in observed.losses),
    }
    return step, peak_step, facts


def _onset_lr_collapse(observed: Observed) -> tuple[int, int | None, dict]:
    peak, onset = 0.0, None
    for step, lr in observed.lr_used:
        if onset is None and lr <= LR_COLLAPSE_FACTOR * peak * (1 + 1e-6):  # 1e-4 itself, float32 last bits
            onset = step
        peak = max(peak, lr)
    lowest = min(lr for _, lr in observed.lr_used)
    return onset, observed.last_step, {"lr_peak": peak, "lr_lowest": lowest}


def _onset_lr_growth(observed: Observed) -> tuple[int, int | None, dict]:
    # The starting level: the median LR over the first tenth of the run (an LR growing from step 0 has no
    # single starting value).
    head = [lr for _, lr in observed.lr_used[:max(1, len(observed.lr_used) // 10)]]
    first = statistics.median(head)
    step = next(step for step, lr in observed.lr_used if lr >= LR_GROWTH_FACTOR * first)
    peak = max(lr for _, lr in observed.lr_used)
    return step, observed.last_step, {"lr_first": first, "lr_peak": peak, "lr_growth": peak / first}


def _onset_loss_rise(observed: Observed) -> tuple[int, int | None, dict]:
    steps = [step for step, _ in observed.losses]
    values = [value for _, value in observed.losses]
    levels = [statistics.median(values[max(0, i - LOSS_LEVEL_WINDOW + 1): i + 1]) for i in range(len(values))]
    lowest = min(range(len(levels)), key=levels.__getitem__)
    facts = {"loss_lowest_level": levels[lowest], "loss_final_level": levels[-1],
             "loss_finite_throughout": all(math.isfinite(value) for value in values)}
    return steps[lowest], observed.last_step, facts


def _onset_plateau(observed: Observed) -> tuple[int, int | None, dict]:
    facts = {"plateau_fraction": plateau_fraction(observed.losses)}
    return plateau_start(observed.losses), observed.last_step, facts


def _onset_first_validation(observed: Observed) -> tuple[int, int | None, dict]:
    steps = [step for step, _ in observed.series("val/loss")]
    return steps[0], steps[-1], {}


ONSET_RULES = {
    "start": _onset_start,
    "departure": _onset_departure,
    "horizon": _onset_horizon,
    "last_step": _onset_last_step,
    "resume": _onset_resume,
    "first_nonfinite_loss": _onset_nonfinite,
    "grad_spike": _onset_grad_spike,
    "plateau": _onset_plateau,
    "lr_collapse": _onset_lr_collapse,
    "lr_growth": _onset_lr_growth,
    "loss_rise": _onset_loss_rise,
    "first_validation": _onset_first_validation,
}


def expected_codes(observed: Observed) -> list[dict]:
    """`expected_codes` entries: code, onset_step, tolerance_steps, end_step and the rule's facts."""
    entries = []
    for expect in observed.spec.expect:
        onset, end, facts = ONSET_RULES[expect.onset](observed)
        if onset is None:
            raise AssertionError(f"{observed.spec.name}: rule {expect.onset} found no onset for {expect.code}")
        entry = {"code": expect.code, "onset_step": onset, "tolerance_steps": expect.tolerance + sampling_interval(observed.spec)}
        if end is not None:
            entry["end_step"] = end
        entry["onset_rule"] = expect.onset
        entry["facts"] = facts
        entries.append(entry)
    return entries
