"""schedule_incomplete: the run ended long before its LR schedule did."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.alignment import intended_or_skip, intent_evidence
from forensics.formatting import fmt_lr, fmt_percent, fmt_step
from forensics.model import aliases
from forensics.model.run import Run
from forensics.schedule import name_time_scale

ENDED_BY = 0.75      # the run covered at most this share of the horizon
LR_FAR = 10.0        # ... and its last LR is this many times the schedule's final LR (or more)
_CRASH_EVENTS = ("traceback", "oom")
ACCUMULATION_KEYS = ("gradient_accumulation_steps", "accumulate_grad_batches", "accum_steps")


class ScheduleIncomplete(Check):
    """The run ended far before the end of its LR schedule.

    **Symptom**: the schedule is sized for more optimizer steps than the run took, so training
    stopped while the LR was still high: it never annealed. A horizon that is k times the steps
    taken points at the counter that was used by mistake (k = gradient accumulation steps, world
    size).

    **Bad run**: `total_steps = len(loader) * epochs` with 4-step gradient accumulation: the
    optimizer steps 4x less often, the run ends a quarter of the way into OneCycleLR, at its peak.

    **Healthy run**: the last optimizer step is at (or near) the schedule's horizon; a run that
    crashed is reported by the crash, not here.

    **Fix**: size the schedule in optimizer steps: `total_steps = epochs * ceil(len(loader) /
    accumulation_steps)` (divide by the world size too if the loader is not sharded per rank).
    """

    code = "schedule_incomplete"
    severity = "warning"
    needs = ("intended schedule with a horizon", "the run's last optimizer step")

    def run(self, run: Run) -> list[Finding]:
        intended = intended_or_skip(run, declared_only=True)
        if not intended.horizon:
            raise NotApplicable(f"{intended.class_name} has no horizon to fall short of")
        if any(event.kind in _CRASH_EVENTS for event in run.events):
            raise NotApplicable("the run ended with a crash (traceback or OOM in its logs)")
        lr = run.series(aliases.LR, group=0)
        lr = lr[np.isfinite(lr["value"].to_numpy())]
        last_steps = [int(lr["step"].max())] if len(lr) else []
        # A checkpoint's global_step counts the steps done, so the last step it saw is global_step - 1
        # (0-based, like a logged step).
        last_steps += [c.global_step - 1 for c in run.checkpoints if c.global_step]
        if not last_steps:
            raise NotApplicable("needs an LR series or checkpoint step counters to know where the run ended")
        steps_taken = max(last_steps) + 1
        share = steps_taken / intended.horizon
        if share > ENDED_BY:
            return []
        schedule_end = intended.key_points()["end"]
        last_row = lr.sort_values("step", kind="stable").iloc[-1] if len(lr) else None
        if last_row is not None and schedule_end and schedule_end["lr"]:
            if float(last_row["value"]) < LR_FAR * schedule_end["lr"]:
                return []
        ratio = intended.horizon / steps_taken
        accumulation = _config_value(run, *ACCUMULATION_KEYS)
        names = name_time_scale(ratio, intended.steps_per_epoch, accumulation, _config_value(run, "world_size"))
        message = (f"The run ended at step {fmt_step(steps_taken - 1)}, {fmt_percent(share)} of the way through "
                   f"{intended.spec} (horizon {fmt_step(intended.horizon)})"
                   + (f", with the LR at {fmt_lr(float(last_row['value']))} instead of the schedule's final "
                      f"{fmt_lr(schedule_end['lr'])}" if last_row is not None and schedule_end else "")
                   + f". The horizon is {ratio:.2f}x the steps taken" + _factor_hint(ratio, names) + ".")
        evidence = [intent_evidence(intended)]
        if last_row is not None:
            evidence.insert(0, row_evidence(run, last_row, expected=schedule_end["lr"] if schedule_end else None,
                                            note="last LR logged"))
        if accumulation:
            path, key, _ = _config_statement(run, *ACCUMULATION_KEYS)
            evidence.append(Evidence(path, f"config key {key}", accumulation, note="gradient accumulation stated by the run"))
        return [self.finding(step=steps_taken - 1, end_step=intended.horizon, message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.75)]


def _factor_hint(ratio: float, names: tuple[str, ...]) -> str:
    """Name the counter the factor matches; a whole factor without a config is still a strong hint."""
    matched = [name for name in names if "advanced" not in name]
    if matched:
        return f": matches {', '.join(matched)}"
    if ratio >= 2 and abs(ratio - round(ratio)) < 0.05:
        return (f", a whole factor: typically the gradient accumulation steps or the world size "
                f"({round(ratio)}) counted into total_steps")
    return ""


def _config_value(run: Run, *keys: str) -> int | None:
    """The first integer a config states under one of `keys` (normalised intent or raw)."""
    stated = _config_statement(run, *keys)
    return stated[2] if stated else None


def _config_statement(run: Run, *keys: str) -> tuple[str, str, int] | None:
    """(config path, key, value) of the first positive integer a config states under one of `keys`."""
    for path, config in run.configs.items():
        for key in keys:
            value = config.get(key) if isinstance(config, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return path, key, int(value)
    return None
