"""Segments: restarts, rewinds and long silences, from event files written by real SummaryWriters."""

from __future__ import annotations

import json

from torch.utils.tensorboard import SummaryWriter

from forensics.analyze import analyze

from conftest import SAMPLE_RUNS


def _manifest(name: str) -> dict:
    return json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())[name]


def test_resume_with_fresh_scheduler_is_two_lifetimes():
    truth = _manifest("resume_scheduler_reset")
    segments = analyze(SAMPLE_RUNS / "resume_scheduler_reset").segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [
        ("start", lifetime["first_step"], lifetime["last_step"]) if index == 0 else
        ("restart", lifetime["first_step"], lifetime["last_step"])
        for index, lifetime in enumerate(truth["lifetimes"])]
    assert segments[1].rewound_from_step is None  # the step continued where it left off


def test_resume_that_resets_the_step_counter_is_a_rewind():
    truth = _manifest("resume_start_epoch_reset")
    first, second = analyze(SAMPLE_RUNS / "resume_start_epoch_reset").segments
    assert second.kind == "restart"
    assert second.start_step == 0
    assert second.rewound_from_step == truth["lifetimes"][0]["last_step"]
    assert "pid" in second.reason


def test_step_going_back_inside_one_file_is_a_rewind(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    wall = 1_700_000_000.0
    for step in list(range(50)) + list(range(20, 60)):  # the loop reset its counter to 20
        wall += 1.0
        writer.add_scalar("train/lr", 0.1, step, walltime=wall)
        writer.add_scalar("train/loss", 1.0 / (step + 1), step, walltime=wall)
    writer.close()
    segments = analyze(tmp_path / "run").segments
    assert [(s.kind, s.start_step, s.end_step, s.rewound_from_step) for s in segments] == [
        ("start", 0, 49, None), ("rewind", 20, 59, 49)]
    assert "goes back from step 49 to 20" in segments[1].reason


def test_long_silence_is_a_gap_but_slow_eval_is_not(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    wall = 1_700_000_000.0
    for step in range(200):
        wall += 2.0
        if step % 50 == 0:
            wall += 300.0  # a five-minute evaluation pass: normal
        if step == 120:
            wall += 6 * 3600.0  # the job sat suspended for six hours
        writer.add_scalar("train/loss", 1.0, step, walltime=wall)
    writer.close()
    segments = analyze(tmp_path / "run").segments
    assert [(s.kind, s.start_step) for s in segments] == [("start", 0), ("gap", 120)]
