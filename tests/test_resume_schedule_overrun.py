"""schedule_overrun without a stated schedule: a cosine that climbs again after its horizon is found from
the LR alone; schedules that rise again by design are not overruns. (A resume that rewound the step
counter is not an overrun either: tests/test_resume_boundaries.py.)"""

from __future__ import annotations

import pytest
from torch.optim import lr_scheduler

from forensics.analyze import analyze

from resume_runs import Lifetime, Loop, TensorBoardLog


def _run(root, make_scheduler, steps: int) -> Lifetime:
    loop, log, life = Loop(make_scheduler), TensorBoardLog(root / "tb"), Lifetime()
    for step in range(steps):
        loop.step(step, life, log)
    log.close()
    return life


def test_cosine_past_its_horizon_is_found_without_intent(tmp_path):
    life = _run(tmp_path, lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=100), 160)
    trough = min(range(len(life.lrs)), key=life.lrs.__getitem__)  # measured: where the LR turns back up
    assert life.lrs[-1] > 10 * life.lrs[trough]
    report = analyze(tmp_path)
    assert report.intended_schedule["source"] == "inferred"
    overrun = [f for f in report.findings if f.code == "schedule_overrun"]
    assert overrun and abs(overrun[0].step - life.steps[trough]) <= 2 and overrun[0].severity == "error"


@pytest.mark.parametrize("make_scheduler", [
    lambda opt: lr_scheduler.CyclicLR(opt, 0.001, 0.1, step_size_up=30),
    lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=50),
], ids=["cyclic", "warm_restarts"])
def test_schedules_that_rise_again_by_design_are_no_overrun(tmp_path, make_scheduler):
    _run(tmp_path, make_scheduler, 200)
    report = analyze(tmp_path)
    assert not [f for f in report.findings if f.code == "schedule_overrun"]
