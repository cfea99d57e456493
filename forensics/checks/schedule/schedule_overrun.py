"""schedule_overrun: training went on past the end of the LR schedule."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.resume.resumes import resumes
from forensics.checks.schedule.alignment import intended_or_skip, intent_evidence
from forensics.formatting import fmt_lr, fmt_step
from forensics.model import aliases
from forensics.model.run import Run

SLACK = 0.02  # steps past the horizon that do not count (off-by-one logging, a final eval step)
INFERRED_CONFIDENCE = 0.8


class ScheduleOverrun(Check):
    """Training ran past the LR schedule's horizon.

    **Symptom**: more optimizer steps ran than the schedule was sized for: a cosine schedule
    climbs back up after `T_max`, a OneCycleLR raises "Tried to step N times. The specified number
    of total steps is M", or the scheduler's counter in a checkpoint is past its horizon.

    **Bad run**: `CosineAnnealingLR(T_max=1000)` for 1,500 steps: after step 1,000 the LR rises
    back towards its maximum and the end of training runs at a high LR.

    **Healthy run**: the run stops at (or before) the schedule's horizon; or the schedule has no
    end (ExponentialLR, ReduceLROnPlateau, CosineAnnealingWarmRestarts).

    **Fix**: size the schedule from the real number of optimizer steps: `total_steps = epochs *
    ceil(len(loader) / accumulation_steps)` (count resumed epochs too), or stop training at the
    horizon; for restarts on purpose use `CosineAnnealingWarmRestarts`.
    """

    code = "schedule_overrun"
    severity = "error"
    needs = ("intended schedule with a horizon", "LR series, checkpoint counters or an overrun error in a log")

    def run(self, run: Run) -> list[Finding]:
        torch_errors = [event for event in run.events if event.kind == "onecycle_overrun"]
        if torch_errors:
            return [self._from_error(run, torch_errors[0])]
        # An inferred schedule may serve here: a fitted horizon inside the run is not the LR
        # contradicting itself; it is only believed when the LR visibly climbs again after it.
        intended = intended_or_skip(run, declared_only=False)
        if not intended.horizon:
            raise NotApplicable(f"{intended.class_name} has no horizon to run past")
        inferred = intended.source == "inferred"
        if inferred and intended.confidence < INFERRED_CONFIDENCE:
            raise NotApplicable(f"the inferred schedule's confidence {intended.confidence:.2f} is too low to place a horizon")
        horizon = intended.horizon
        evidence, end = [], None
        lr = run.series(aliases.LR, group=0)
        past = lr[lr["step"] > horizon * (1 + SLACK) + 1].sort_values("step", kind="stable")
        if len(past):
            at_horizon = lr.iloc[(lr["step"] - horizon).abs().argsort().iloc[0]]
            evidence += [row_evidence(run, at_horizon, note="LR at the horizon"),
                         row_evidence(run, past.iloc[-1], expected="no step past the horizon", note="last LR logged")]
            end = int(past["step"].iloc[-1])
        scheduler_steps = self._scheduler_past(run, intended)
        if scheduler_steps is not None:
            checkpoint, state = scheduler_steps
            evidence.append(Evidence(checkpoint.path, f"ckpt key {state.key}.last_epoch", state.last_epoch,
                                     expected=f"at most {self._horizon_units(intended)}",
                                     note="the scheduler had been stepped past its horizon"))
            end = end or checkpoint.global_step
        rising = self._rising(past)
        if not evidence or (inferred and not rising):
            return []
        message = (f"Training went past the end of {intended.spec} (horizon {fmt_step(horizon)} optimizer steps)"
                   + (f": the LR was logged until step {fmt_step(end)}" if len(past) else "")
                   + (f", and {scheduler_steps[0].path} shows the scheduler stepped {scheduler_steps[1].last_epoch:,} "
                      f"times" if scheduler_steps else "") + ".")
        if rising:
            message += f" After the horizon the LR climbs again, to {fmt_lr(rising)}."
        evidence.append(intent_evidence(intended))
        return [self.finding(step=horizon, end_step=end, message=message, fix=self.documentation()["Fix"],
                             evidence=evidence, confidence=0.7 if inferred else 0.85)]

    def _from_error(self, run: Run, event) -> Finding:
        total = event.data.get("total")
        tried = event.data.get("tried")
        message = (f"OneCycleLR was stepped past its end: torch raised \"Tried to step {tried} times. The specified "
                   f"number of total steps is {total}\" ({event.source} line {event.line}); the run stopped there.")
        evidence = [Evidence(event.source, f"line {event.line}", event.text, expected=f"at most {total} steps",
                             note="torch's OneCycleLR error")]
        if run.intended_schedule is not None:
            evidence.append(intent_evidence(run.intended_schedule))
        step = int(total) if total is not None else event.step
        return self.finding(step=step, end_step=event.step, message=message, fix=self.documentation()["Fix"],
                            evidence=evidence, confidence=0.99)

    @staticmethod
    def _horizon_units(intended) -> int:
        if intended.interval == "epoch" and intended.steps_per_epoch:
            return intended.horizon // intended.steps_per_epoch
        return intended.horizon

    def _scheduler_past(self, run: Run, intended):
        # Steps a resume logged again (a rewound counter) were real scheduler steps too: a scheduler
        # counter that is ahead of the logged steps by them is that resume's doing (resume_drift).
        rewound = sum(resume.segment.rewound_from_step - resume.step + 1 for resume in resumes(run)
                      if resume.segment.rewound_from_step is not None and resume.step is not None)
        if intended.interval == "epoch" and intended.steps_per_epoch:
            rewound = -(-rewound // intended.steps_per_epoch)
        limit = self._horizon_units(intended) * (1 + SLACK) + 1 + max(rewound, 0)
        for checkpoint in reversed(run.checkpoints):
            for state in checkpoint.schedulers:
                if state.class_name == intended.class_name and state.last_epoch is not None and state.last_epoch > limit:
                    return checkpoint, state
        return None

    @staticmethod
    def _rising(past) -> float | None:
        values = past["value"].to_numpy()
        values = values[np.isfinite(values)]
        if len(values) >= 2 and values[-1] > 2 * values[0]:
            return float(values[-1])
        return None
