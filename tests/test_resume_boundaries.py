"""Resumes seen at every process boundary, on real resumed runs (`resume_scenarios`): each lifetime is
a forked process with its own SummaryWriter (or CSV logger) and real torch checkpoints. Expected onsets
are measured from what the loops did."""

from __future__ import annotations

import math

import pytest

from forensics.analyze import analyze

from resume_scenarios import SCENARIOS

LOUD = ("warning", "error")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build a scenario once per module: (report, lifetimes)."""
    cache = {}

    def build(name: str):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            lives = SCENARIOS[name](root)
            cache[name] = (analyze(root), lives)
        return cache[name]
    return build


def _loud(report) -> dict[str, list]:
    found: dict[str, list] = {}
    for finding in report.findings:
        if finding.severity in LOUD:
            found.setdefault(finding.code, []).append(finding)
    return found


def _segments(report) -> list[tuple]:
    return [(segment.kind, segment.start_step, segment.end_step) for segment in report.segments]


@pytest.mark.parametrize("name", ["fresh_scheduler", "fresh_scheduler_from_zero", "fresh_scheduler_slow_restart"])
def test_restart_that_continues_the_step_with_a_fresh_scheduler_is_resume_drift(built, name):
    """A new event file that continues at the next step, the LR back at its warmup start."""
    report, (first, second) = built(name)
    assert second.first_step == first.last_step + 1  # the step continued
    assert second.lrs[0] < first.lrs[-1] / 10  # and the LR went back to the warmup start
    assert _segments(report) == [("start", first.first_step, first.last_step),
                                 ("restart", second.first_step, second.last_step)]
    drift = _loud(report).get("resume_drift")
    assert drift and drift[0].step == second.first_step and drift[0].severity == "error"
    assert "started over" in drift[0].message


def test_slow_restart_is_one_segment_per_process(built):
    """Hours in the queue and minutes of loading between the writer's file_version record and the
    first value: still exactly one restart, holding every row of the new process."""
    report, (first, second) = built("fresh_scheduler_slow_restart")
    assert [segment.kind for segment in report.segments] == ["start", "restart"]
    assert all(segment.start_step is not None for segment in report.segments)


def test_leftover_start_epoch_zero_is_a_step_rewind_not_an_overrun(built):
    report, (first, second) = built("start_epoch_zero")
    assert second.first_step == 0 and first.last_step > 0
    assert not math.isclose(second.lrs[0], first.lrs[0], rel_tol=0.05)  # the restored scheduler went on
    loud = _loud(report)
    assert [f.step for f in loud.get("resume_drift", [])] == [second.first_step]
    assert "step counter restarted at 0" in loud["resume_drift"][0].message
    assert not {"schedule_overrun", "warmup_missing", "lr_mismatch"} & set(loud)


def test_weights_only_hf_folders_resumed_with_a_fresh_optimizer(built):
    report, (first, second) = built("hf_weights_only")
    loud = _loud(report)
    assert [f.step for f in loud.get("resume_drift", [])] == [second.first_step]
    assert "missing_resume_state" in loud
    assert "optimizer state" in loud["missing_resume_state"][0].message


def test_fast_forwarded_scheduler_is_missing_state_but_no_off_by_one(built):
    """No scheduler state or step in the checkpoints; the resume steps a fresh scheduler N times
    (torch prints its ordering warning) and the LR continues correctly."""
    report, (first, second) = built("fast_forward")
    assert abs(math.log(second.lrs[0] / first.lrs[-1])) < math.log(1.1)  # measured: the LR continued
    assert any(event.kind == "scheduler_order_warning" for event in report.events)
    loud = _loud(report)
    assert set(loud) == {"missing_resume_state"}
    assert [check.status for check in report.checks if check.code == "off_by_one"] == ["not_applicable"]


@pytest.mark.parametrize("name", ["lightning_versions", "hf_rerun", "never_stepped", "clean_restart"])
def test_correct_resumes_get_no_warning(built, name):
    report, lives = built(name)
    assert not _loud(report), [(f.code, f.message) for f in report.findings]
    assert [(s.start_step, s.end_step) for s in report.segments] == [(life.first_step, life.last_step)
                                                                      for life in lives]
    assert [s.kind for s in report.segments] == ["start"] + ["restart"] * (len(lives) - 1)


def test_hf_rerun_logs_the_same_steps_twice_with_the_same_lr(built):
    """The healthy twin's premise, measured: steps after the last checkpoint are logged twice, alike."""
    report, (first, second) = built("hf_rerun")
    shared = sorted(set(first.steps) & set(second.steps))
    assert shared
    then, now = dict(zip(first.steps, first.lrs)), dict(zip(second.steps, second.lrs))
    assert all(math.isclose(then[step], now[step], rel_tol=1e-6) for step in shared)
    assert report.segments[1].rewound_from_step == first.last_step
