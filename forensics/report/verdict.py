"""The verdict: one word for the run, and an honest account of what could not be checked.

A run is HEALTHY only when the checks that matter for the data it holds could run. A check that did
not run is one of three things:

- **missing input**: it needs something the run does not hold (a stated schedule, an LR series, a
  training loss, the checkpoints a resume used). When that input matters for any run, its absence
  makes the verdict LIMITED ("no findings, but 6 of 15 checks could not run"), and the report names
  the input and how to supply it (`--schedule ...`, a config, logging the LR, ...).
- **optional input**: it reads a signal that many healthy runs never log (a gradient norm, a validation
  accuracy, scheduler state in checkpoints). Listed with how to enable it, but the verdict stays HEALTHY:
  nothing the run logged went unexamined.
- **does not arise**: what it looks for cannot happen in this run (no restart, so no resume to check;
  a schedule with no horizon cannot overrun one; a single LR source cannot disagree with itself).
  Not listed; the checks table says why.

Which input an outcome lacks is read from the check's own reason (`CheckOutcome.detail`), the only
place a check states it. Checks phrase a missing input as "needs ..." (or "no intended schedule",
"only inferred"); a "needs ..." reason this module does not recognise is treated as a missing input that
matters, so an unfamiliar gap can make a verdict LIMITED but never HEALTHY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forensics.checks import INTERNAL_ERROR, check_by_code
from forensics.checks.base import Finding
from forensics.checks.runner import CheckOutcome
from forensics.formatting import fmt_step
from forensics.model import aliases
from forensics.model.run import Run
from forensics.report.model import SEVERITY_ORDER, Unchecked, Verdict


@dataclass(frozen=True)
class RunInput:
    """Something a run may hold that some checks need, and how a user supplies it."""

    key: str          # stable name in the JSON (`unchecked[].missing`)
    label: str        # what is missing, for the headline: "a stated LR schedule"
    matters: bool     # True: its absence limits the verdict; False: an optional signal
    reason: re.Pattern  # how a check's not-applicable reason names this input
    enable: str       # how to supply it
    short: str        # the same, in a few words for the headline


STATED_SCHEDULE = RunInput(
    "stated_schedule", "a stated LR schedule", True,
    re.compile(r"no intended schedule|only inferred|no schedule stated|\(inferred\)|inferred schedule|low confidence"),
    "state the schedule the run was meant to follow: `--schedule \"CosineAnnealingLR(T_max=...)\"` (with "
    "`--base-lr`, `--steps-per-epoch` and `--interval` as needed), or keep the config that names it in the run "
    "directory (HF `training_args.bin`/`trainer_state.json`, a YAML/JSON with the scheduler and its horizon, "
    "checkpoints with the scheduler's state)",
    "pass `--schedule` or keep the config that states it")
LR_SERIES = RunInput(
    "lr_series", "a logged LR series", True, re.compile(r"\bLR series\b|\bLR points\b|finite LR"),
    "log the learning rate at every optimizer step (`scheduler.get_last_lr()`, Lightning's `LearningRateMonitor`, "
    "HF Trainer `logging_steps`)",
    "log the LR every step")
LOSS_SERIES = RunInput(
    "loss_series", "a logged training loss", True, re.compile(r"training loss series"),
    "log the training loss at every optimizer step (or every few)",
    "log the training loss")
CHECKPOINTS = RunInput(
    "checkpoints", "the checkpoints the resume used", True, re.compile(r"no readable checkpoint"),
    "keep the checkpoints the resumed process loaded in the run directory",
    "keep the checkpoints")
SCHEDULER_STATE = RunInput(
    "scheduler_state", "scheduler state in checkpoints", False,
    re.compile(r"scheduler counters in checkpoints|checkpoints with scheduler"),
    "save the optimizer's and the scheduler's `state_dict()` in each checkpoint (or log the momentum/beta1)",
    "save the scheduler state")
GRAD_NORM = RunInput(
    "grad_norm_series", "a logged gradient norm", False, re.compile(r"grad norm series"),
    "log the gradient norm (the value `torch.nn.utils.clip_grad_norm_` returns)",
    "log the grad norm")
VALIDATION_METRIC = RunInput(
    "validation_metric", "a logged validation accuracy", False,
    re.compile(r"validation accuracy-like metric|no validation metric has"),
    "log a validation accuracy-like metric (val/accuracy, eval_acc, ...) at each evaluation",
    "log a validation accuracy")
# Most specific first: "needs an LR series and a training loss series" names two inputs, and the
# scheduler-state reasons must win over the broader LR patterns.
INPUTS = (STATED_SCHEDULE, SCHEDULER_STATE, LR_SERIES, LOSS_SERIES, CHECKPOINTS, GRAD_NORM, VALIDATION_METRIC)

# Reasons that start like a missing input but describe the run itself: one LR source cannot disagree.
DOES_NOT_ARISE = re.compile(r"from two sources")
# "No horizon known": a gap when no schedule is stated; when one is, that schedule has no horizon (ExponentialLR).
NO_HORIZON = re.compile(r"no declared schedule with a horizon|no stated horizon")
UNKNOWN_KEY = "unrecognised"
CRASHED_KEY = "check_crashed"


def classify(outcome: CheckOutcome, present: dict[str, bool]) -> Unchecked | None:
    """What a check that did not run lacked, or None when what it looks for cannot arise in this run.

    `present` says which inputs the run holds at all (`lr_series`, `loss_series`, `stated_schedule`). A reason that
    names several inputs ("needs an LR series and a training loss series") keeps those the run lacks; a
    reason naming one input keeps it even when present, since the series may be too short.
    """
    if outcome.status == "ran":
        return None
    if outcome.status == "error":
        return Unchecked(outcome.code, outcome.detail, (CRASHED_KEY,), "report this as a forensics bug; the "
                         "other checks still ran", True)
    reason = outcome.detail
    if DOES_NOT_ARISE.search(reason):
        return None
    if NO_HORIZON.search(reason):
        if present.get(STATED_SCHEDULE.key):
            return None
        missing = [STATED_SCHEDULE]
    else:
        missing = [item for item in INPUTS if item.reason.search(reason)]
    if SCHEDULER_STATE in missing:  # "scheduler counters in checkpoints" also mentions checkpoints/LR words
        missing = [SCHEDULER_STATE]
    absent = [item for item in missing if not present.get(item.key, False)]
    if len(missing) > 1 and absent:
        missing = absent
    if STATED_SCHEDULE in missing and not present.get(LR_SERIES.key) and LR_SERIES not in missing:
        missing.insert(0, LR_SERIES)  # a schedule alone cannot be compared with an LR nobody logged
    if missing:
        return Unchecked(outcome.code, reason, tuple(item.key for item in missing),
                         "; then ".join(item.enable for item in missing), any(item.matters for item in missing))
    if reason.startswith("needs "):
        check = check_by_code(outcome.code)
        wanted = ", ".join(check.needs) if check is not None else reason
        return Unchecked(outcome.code, reason, (UNKNOWN_KEY,), f"give the run what the check reads: {wanted}", True)
    return None


def build_verdict(run: Run, findings: list[Finding], outcomes: list[CheckOutcome]) -> Verdict:
    """The run's status and headline from its findings and from what its checks could not see."""
    counts = {severity: sum(1 for f in findings if f.severity == severity) for severity in SEVERITY_ORDER}
    has_lr, has_loss = bool(run.series(aliases.LR).size), bool(run.series(aliases.LOSS).size)
    stated = run.intended_schedule is not None and run.intended_schedule.source != "inferred"
    present = {LR_SERIES.key: has_lr, LOSS_SERIES.key: has_loss, STATED_SCHEDULE.key: stated}
    unchecked = tuple(item for item in (classify(outcome, present) for outcome in outcomes) if item is not None)
    ran = sum(1 for outcome in outcomes if outcome.status == "ran")
    verdict = lambda status, headline: Verdict(status, headline, counts, len(outcomes), ran, unchecked)  # noqa: E731
    # A crashed check is listed with the findings but never speaks for the run in the headline.
    diagnosed = [finding for finding in findings if finding.code != INTERNAL_ERROR]
    if diagnosed and diagnosed[0].severity in ("error", "warning"):
        return verdict("failed" if diagnosed[0].severity == "error" else "suspect", diagnosed[0].message)
    if findings and findings[0].severity in ("error", "warning"):
        return verdict("suspect", findings[0].message)
    if not has_lr and not has_loss:
        return verdict("inconclusive", "No learning-rate or loss series was found, so nothing could be diagnosed. "
                       + _missing_sentence(unchecked))
    step_range = run.step_range
    span = f" from step {fmt_step(step_range[0])} to {fmt_step(step_range[1])}" if step_range else ""
    limiting = [item for item in unchecked if item.limits_verdict]
    if limiting:
        return verdict("limited", f"No problems found{span}, but {len(limiting)} of {len(outcomes)} checks could not run "
                       f"for lack of input. {_missing_sentence(unchecked)}")
    return verdict("healthy", f"No problems found{span}; every check that applies to this run's data ran.")


@dataclass(frozen=True)
class Gap:
    """One missing input and every check it would enable: what the headline and the renderers list."""

    key: str
    label: str
    codes: tuple[str, ...]
    enable: str
    short: str
    limits_verdict: bool


def gaps(unchecked: tuple[Unchecked, ...]) -> list[Gap]:
    """The unchecked items grouped by the first input each lacks; those that limit the verdict first."""
    grouped: dict[str, list[Unchecked]] = {}
    for item in unchecked:
        grouped.setdefault(item.missing[0], []).append(item)
    by_key = {item.key: item for item in INPUTS}
    result = []
    for key, items in grouped.items():
        known = by_key.get(key)
        result.append(Gap(key, input_label(key), tuple(item.code for item in items),
                          known.enable if known else items[0].enable, known.short if known else items[0].enable,
                          any(item.limits_verdict for item in items)))
    return sorted(result, key=lambda gap: not gap.limits_verdict)


def _missing_sentence(unchecked: tuple[Unchecked, ...]) -> str:
    """`Missing: a stated LR schedule for constant_lr, off_by_one (pass --schedule ...); ...`"""
    parts = [f"{gap.label} for {', '.join(gap.codes)} ({gap.short})" for gap in gaps(unchecked) if gap.limits_verdict]
    return f"Missing: {'; '.join(parts)}." if parts else ""


def input_label(key: str) -> str:
    """The words for an input key, for the headline and the renderers."""
    known = next((item for item in INPUTS if item.key == key), None)
    if known is not None:
        return known.label
    return "a working check (it crashed)" if key == CRASHED_KEY else "an input the check needs"
