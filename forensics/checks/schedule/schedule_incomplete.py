"""schedule_incomplete: the run ended long before its LR schedule did."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.alignment import MIN_CONFIDENCE, intent_evidence, steps_done
from forensics.formatting import fmt_lr, fmt_percent, fmt_step
from forensics.model import aliases
from forensics.model.run import Run
from forensics.model.stated import Fact
from forensics.schedule import IntendedSchedule, name_time_scale
from forensics.schedule.named import family_of

ENDED_BY = 0.75      # the run covered at most this share of the horizon
LR_FAR = 10.0        # ... and its last LR is this many times the schedule's final LR (or more)
MID_DECAY = 0.1      # without a replayed schedule: the last LR is at least this share of the peak LR
MOVED = 0.02         # ... and the LR moved by more than this share of its peak (it is a schedule, not a constant)
_CRASH_EVENTS = ("traceback", "oom")
_FLAT_FAMILIES = ("constant", "plateau")


class ScheduleIncomplete(Check):
    """The run ended far before the end of its LR schedule.

    **Symptom**: the schedule is sized for more optimizer steps than the run took, so training
    stopped while the LR was still high: it never annealed. A horizon that is k times the steps
    taken points at the counter that was used by mistake (k = gradient accumulation steps, world
    size). The horizon comes from the declared schedule, or from what the run's files state
    (`trainer_state.json` max_steps, a config's total steps, epochs x steps per epoch).

    **Bad run**: `total_steps = len(loader) * epochs` with 4-step gradient accumulation: the
    optimizer steps 4x less often, the run ends a quarter of the way into OneCycleLR, at its peak.

    **Healthy run**: the last optimizer step is at (or near) the schedule's horizon; a constant LR
    stopped early; a run that crashed is reported by the crash, not here.

    **Fix**: size the schedule in optimizer steps: `total_steps = epochs * ceil(len(loader) /
    accumulation_steps)` (divide by the world size too if the loader is not sharded per rank).
    """

    code = "schedule_incomplete"
    severity = "warning"
    needs = ("a declared schedule with a horizon or a stated horizon", "the run's last optimizer step")

    def run(self, run: Run) -> list[Finding]:
        if any(event.kind in _CRASH_EVENTS for event in run.events):
            raise NotApplicable("the run ended with a crash (traceback or OOM in its logs)")
        lr = run.series(aliases.LR, group=0)
        lr = lr[np.isfinite(lr["value"].to_numpy())].sort_values("step", kind="stable")
        steps_taken = _steps_taken(run, lr)
        intended = _declared(run)
        if intended is not None:
            return self._against_schedule(run, lr, steps_taken, intended)
        return self._against_stated_horizon(run, lr, steps_taken)

    def _against_schedule(self, run: Run, lr, steps_taken: int, intended: IntendedSchedule) -> list[Finding]:
        counter = _scheduler_counter(run, steps_taken) if intended.interval == "step" else None
        progress = counter[0] if counter else steps_taken
        share = progress / intended.horizon
        if share > ENDED_BY:
            return []
        schedule_end = intended.key_points()["end"]
        last_row = lr.iloc[-1] if len(lr) else None
        if last_row is not None and schedule_end and schedule_end["lr"]:
            if float(last_row["value"]) < LR_FAR * schedule_end["lr"]:
                return []
        lr_text = (f", with the LR at {fmt_lr(float(last_row['value']))} instead of the schedule's final "
                   f"{fmt_lr(schedule_end['lr'])}" if last_row is not None and schedule_end else "")
        evidence = [intent_evidence(intended)]
        stated_horizon = run.stated.horizon()
        if stated_horizon is not None and stated_horizon[0] == intended.horizon:
            evidence += [_fact_evidence(fact, "the horizon the run states") for fact in stated_horizon[2]]
        if last_row is not None:
            evidence.insert(0, row_evidence(run, last_row, expected=schedule_end["lr"] if schedule_end else None,
                                            note="last LR logged"))
        what = f"{intended.spec} (horizon {fmt_step(intended.horizon)})"
        if counter:
            checkpoint, state = counter[1], counter[2]
            lr_text += (f"; its scheduler had been stepped only {progress:,} times in {steps_taken:,} optimizer "
                        f"steps ({checkpoint.path} last_epoch)")
            evidence.append(Evidence(checkpoint.path, f"ckpt key {state.key}.last_epoch", progress,
                                     expected=checkpoint.global_step, note="scheduler steps taken vs optimizer steps"))
        return [self._finding(run, steps_taken, intended.horizon, what, lr_text, evidence, intended.steps_per_epoch,
                              0.75, progress=progress)]

    def _against_stated_horizon(self, run: Run, lr, steps_taken: int) -> list[Finding]:
        stated = run.stated
        horizon = stated.horizon()
        if horizon is None:
            raise NotApplicable("no declared schedule with a horizon, and no stated horizon (max_steps, total "
                                "steps, epochs with steps per epoch) in the run's files")
        total, how, facts = horizon
        share = steps_taken / total
        if share > ENDED_BY:
            return []
        scheduler = stated.get("scheduler")
        name = (scheduler.value.get("name") if isinstance(scheduler.value, dict) else scheduler.value) if scheduler else None
        if name and family_of(str(name))[0] in _FLAT_FAMILIES:
            return []  # a constant LR stopped early has nothing left to anneal
        if len(lr) < 2:
            raise NotApplicable("needs an LR series to see whether the LR was still high at the end")
        values = lr["value"].to_numpy()
        peak, last = float(values.max()), float(values[-1])
        min_lr = stated.value("min_lr") if isinstance(stated.value("min_lr"), (int, float)) else 0.0
        moved = peak > 0 and (peak - float(values.min())) > MOVED * peak
        if not moved or last < max(MID_DECAY * peak, LR_FAR * float(min_lr or 0.0)):
            return []
        last_row = lr.iloc[-1]
        lr_text = f", with the LR still at {fmt_lr(last)} ({last / peak:.0%} of its peak {fmt_lr(peak)})"
        evidence = [row_evidence(run, last_row, note="last LR logged: the schedule had not annealed")]
        evidence += [_fact_evidence(fact, "the horizon the run states") for fact in facts]
        return [self._finding(run, steps_taken, total, f"the stated horizon of {fmt_step(total)} optimizer steps "
                              f"({how})", lr_text, evidence, stated.int_value("steps_per_epoch"), 0.7)]

    def _finding(self, run: Run, steps_taken: int, horizon: int, what: str, lr_text: str, evidence: list,
                 steps_per_epoch: int | None, confidence: float, progress: int | None = None) -> Finding:
        stated = run.stated
        progress = progress or steps_taken
        ratio = horizon / progress
        accumulation = stated.get("gradient_accumulation_steps")
        world = stated.get("world_size")
        names = name_time_scale(ratio, steps_per_epoch, stated.int_value("gradient_accumulation_steps"),
                                stated.int_value("world_size"))
        message = (f"The run ended at step {fmt_step(steps_taken - 1)}, {fmt_percent(progress / horizon)} of the "
                   f"way through {what}{lr_text}. The horizon is {ratio:.2f}x the "
                   f"{'scheduler ' if progress != steps_taken else ''}steps taken"
                   + _factor_hint(ratio, names, accumulation, world) + ".")
        for fact, note in ((accumulation, "gradient accumulation stated by the run"),
                           (world, "world size stated by the run")):
            if fact is not None and stated.int_value(fact.name) and stated.int_value(fact.name) > 1:
                evidence.append(_fact_evidence(fact, note))
        return self.finding(step=steps_taken - 1, end_step=horizon, message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=confidence)


def _declared(run: Run) -> IntendedSchedule | None:
    """The declared (not inferred) intended schedule with a horizon, when trustworthy."""
    intended = run.intended_schedule
    if intended is None or intended.source == "inferred" or not intended.horizon:
        return None
    return intended if intended.confidence >= MIN_CONFIDENCE else None


def _scheduler_counter(run: Run, steps_taken: int):
    """(scheduler steps, checkpoint, state) when the last checkpoint, saved near the end, shows the scheduler
    stepped far less often than the optimizer (once per epoch instead of per step): the schedule's progress."""
    saved = [c for c in run.checkpoints if c.global_step and c.schedulers and c.schedulers[0].last_epoch is not None]
    if not saved:
        return None
    checkpoint = saved[-1]
    state = checkpoint.schedulers[0]
    if checkpoint.global_step < ENDED_BY * steps_taken or not 0 < state.last_epoch < ENDED_BY * checkpoint.global_step:
        return None
    return state.last_epoch, checkpoint, state


def _steps_taken(run: Run, lr) -> int:
    """Optimizer steps the run took: its last logged LR step, checkpoint counters, a stated global_step."""
    done = [steps_done(run, lr)] if len(lr) else []
    # A checkpoint's (or trainer_state's) global_step counts the steps done.
    done += [c.global_step for c in run.checkpoints if c.global_step]
    done += [int(fact.value) for fact in run.stated.all("global_step") if isinstance(fact.value, int)]
    if not done:
        raise NotApplicable("needs an LR series or checkpoint step counters to know where the run ended")
    return max(done)


def _factor_hint(ratio: float, names: tuple[str, ...], accumulation: Fact | None, world: Fact | None) -> str:
    """Name the counter the factor matches and where the run states it; a whole factor is still a hint."""
    matched = [name for name in names if "advanced" not in name]
    if matched:
        where = [f"{fact.name}={fact.value} in {fact.where()}" for fact in (accumulation, world)
                 if fact is not None and any(str(fact.value) in name for name in matched)]
        return f": matches {', '.join(matched)}" + (f" (stated as {'; '.join(where)})" if where else "")
    if ratio >= 2 and abs(ratio - round(ratio)) < 0.05:
        return (f", a whole factor: typically the gradient accumulation steps or the world size "
                f"({round(ratio)}) counted into total_steps")
    return ""


def _fact_evidence(fact: Fact, note: str) -> Evidence:
    value = fact.value if isinstance(fact.value, (int, float, str)) else str(fact.value)
    return Evidence(fact.source, fact.locator, value, note=f"{note} ({fact.origin})")
