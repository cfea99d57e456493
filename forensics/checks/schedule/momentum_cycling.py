"""momentum_cycling: OneCycleLR/CyclicLR cycling Adam's beta1 as if it were SGD momentum."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.scheduler_facts import saved_schedulers
from forensics.formatting import fmt_value
from forensics.model import aliases
from forensics.model.run import Run

_CYCLERS = ("OneCycleLR", "CyclicLR")


class MomentumCycling(Check):
    """OneCycleLR/CyclicLR cycles Adam's beta1 (`cycle_momentum=True` on an Adam-family optimizer).

    **Symptom**: the scheduler was built with `cycle_momentum=True` (the default) on Adam/AdamW, so
    it rewrites `betas[0]` every step between `base_momentum` and `max_momentum`; saved or logged
    beta1 moves with the LR.

    **Bad run**: `OneCycleLR(AdamW(...), max_lr=3e-3, total_steps=N)`: beta1 drops from 0.95 to 0.85
    during warmup and climbs back while annealing, a schedule meant for SGD momentum.

    **Healthy run**: SGD with momentum under OneCycleLR (momentum cycling is the intended
    behaviour there), or Adam/AdamW with `cycle_momentum=False`.

    **Fix**: pass `cycle_momentum=False` when the optimizer is Adam-family:
    `OneCycleLR(optimizer, max_lr=..., total_steps=..., cycle_momentum=False)`.
    """

    code = "momentum_cycling"
    severity = "warning"
    needs = ("scheduler state in a checkpoint, or a logged momentum/beta1 series",)

    def run(self, run: Run) -> list[Finding]:
        adam_checkpoints = [c for c in run.checkpoints if any(o.family == "adam" for o in c.optimizers)]
        cycling = [saved for saved in saved_schedulers(run)
                   if (saved.state.class_name or "") in _CYCLERS and saved.state.params.get("cycle_momentum") is True
                   and saved.checkpoint in adam_checkpoints]
        logged = run.series(aliases.MOMENTUM, group=0)
        logged = logged[np.isfinite(logged["value"].to_numpy())]
        if not cycling and (logged.empty or not adam_checkpoints):
            if not run.checkpoints and logged.empty:
                raise NotApplicable("needs checkpoints with scheduler/optimizer state or a logged momentum series")
            return []
        evidence = []
        if cycling:
            saved = cycling[0]
            evidence.append(Evidence(saved.checkpoint.path, f"ckpt key {saved.state.key}.cycle_momentum", "True",
                                     expected="False", note=f"{saved.state.class_name} on an Adam-family optimizer"))
        beta1_values = _saved_beta1(adam_checkpoints)
        if len(set(round(v, 6) for _, v in beta1_values)) > 1:
            evidence += [Evidence(path, "ckpt key optimizer.param_groups[0].betas[0]", value,
                                  note="beta1 differs between checkpoints") for path, value in beta1_values[:4]]
        if len(logged) > 1 and logged["value"].max() - logged["value"].min() > 1e-3:
            low, high = logged.loc[logged["value"].idxmin()], logged.loc[logged["value"].idxmax()]
            evidence += [row_evidence(run, low, note="lowest logged beta1"), row_evidence(run, high, note="highest logged beta1")]
        if not cycling and len(evidence) == 0:
            return []
        spread = [v for _, v in beta1_values] or logged["value"].tolist()
        message = ("The LR scheduler cycles Adam's beta1 (cycle_momentum=True)"
                   + (f": beta1 seen between {fmt_value(min(spread))} and {fmt_value(max(spread))}" if spread else "")
                   + ". Momentum cycling is meant for SGD momentum, not Adam's first-moment decay.")
        return [self.finding(step=0, end_step=None, message=message, fix=self.documentation()["Fix"],
                             evidence=evidence, confidence=0.9 if cycling else 0.6)]


def _saved_beta1(checkpoints) -> list[tuple[str, float]]:
    values = []
    for checkpoint in checkpoints:
        for optimizer in checkpoint.optimizers:
            if optimizer.param_groups and optimizer.param_groups[0].betas:
                values.append((checkpoint.path, float(optimizer.param_groups[0].betas[0])))
                break
    return values
