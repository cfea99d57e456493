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


RESTARTED_LOG = """Starting training: model=MLP epochs=8 steps_per_epoch=30 total_steps=240 seed=0
epoch 3 step 100/240 loss 0.2859 lr 9.283e-03 grad_norm 0.74
epoch 3 step 110/240 loss 0.1020 lr 8.728e-03 grad_norm 0.46
Saved checkpoint checkpoints/ckpt_epoch_4.pt
Starting training: model=MLP epochs=8 steps_per_epoch=30 total_steps=240 seed=0
Resuming from checkpoints/ckpt_epoch_4.pt (epoch 4, global_step 120)
epoch 4 step 120/240 loss 0.2395 lr 8.044e-03 grad_norm 0.65
epoch 4 step 130/240 loss 0.1495 lr 7.253e-03 grad_norm 0.40
"""


def test_log_only_run_restarts_at_a_repeated_banner_and_resume_line(tmp_path):
    """No wall times: the banner printed again (line 5) and the resume line (6) are one restart."""
    (tmp_path / "train.log").write_text(RESTARTED_LOG)
    segments = analyze(tmp_path).segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [("start", 100, 110), ("restart", 120, 130)]
    assert segments[1].sources == ("train.log",) and "train.log line 5" in segments[1].reason
    assert "line 6, a resume line" in segments[1].reason


def test_log_resume_line_without_training_after_it_is_no_restart(tmp_path):
    """Lightning's "Restoring states from ..." before a test pass after fit() is not a restart of the run."""
    (tmp_path / "train.log").write_text("".join(RESTARTED_LOG.splitlines(keepends=True)[:4])
                                        + "Restoring states from the checkpoint path at best.ckpt\n"
                                        + "test_loss 0.21 test_acc 0.93\n")
    assert [s.kind for s in analyze(tmp_path).segments] == ["start"]


def _write(log_dir, steps, wall_start=None, lr=0.1, hparams=False):
    """One writer's values; `wall_start` None stamps them with the real clock."""
    writer = SummaryWriter(log_dir=str(log_dir))
    for offset, step in enumerate(steps):
        wall = None if wall_start is None else wall_start + offset
        writer.add_scalar("train/lr", lr, step, walltime=wall)
        writer.add_scalar("train/loss", 1.0 / (step + 1), step, walltime=wall)
    if hparams:  # opens a second writer (sub-folder, same pid, next writer ordinal) after the values
        writer.add_hparams({"lr": lr}, {"hparam/loss": 0.5})
    writer.close()


def test_hparams_writer_of_the_same_process_is_no_restart(tmp_path):
    import time

    _write(tmp_path / "run", range(40))
    time.sleep(1.05 - time.time() % 1.0)  # the hparams file starts after the values' file ended
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    writer.add_hparams({"lr": 0.1}, {"hparam/loss": 0.5})
    writer.close()
    assert len(list((tmp_path / "run").rglob("events.out.tfevents.*"))) >= 2
    segments = analyze(tmp_path / "run").segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [("start", 0, 39)]


def test_processes_back_to_back_are_one_segment_each_and_hold_their_own_rows(tmp_path):
    """Three processes seconds apart (a crash loop), the values stamped an hour before each file's
    file_version record (a clock passed to add_scalar): every process is its own segment with its
    own steps."""
    import time

    from resume_runs import Lifetime, in_new_process

    def process(first: int, last: int) -> Lifetime:
        _write(tmp_path / "run", range(first, last), time.time() - 3600.0)
        return Lifetime(list(range(first, last)))

    lives = [in_new_process(process, first, last) for first, last in ((0, 30), (30, 45), (45, 80))]
    segments = analyze(tmp_path / "run").segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [
        ("start" if index == 0 else "restart", life.first_step, life.last_step) for index, life in enumerate(lives)]


def test_counter_rewinding_in_an_untimed_log_is_a_segment(tmp_path):
    """No wall times and no banner: the step going back is the only sign of the restart."""
    lines = [f"epoch {s // 30} step {s}/240 loss {1 / (s + 1):.4f} lr 1.000e-02" for s in range(0, 100, 10)]
    lines += [f"epoch {s // 30} step {s}/240 loss {1 / (s + 1):.4f} lr 1.000e-02" for s in range(40, 140, 10)]
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    segments = analyze(tmp_path).segments
    assert [(s.kind, s.start_step, s.end_step, s.rewound_from_step) for s in segments] == [
        ("start", 0, 90, None), ("rewind", 40, 130, 90)]


def test_second_writer_of_one_process_logging_the_same_tags_is_a_new_segment(tmp_path):
    """A notebook that trains again in the same process: same pid, next writer ordinal, same tags."""
    import time

    _write(tmp_path / "run", range(40))
    time.sleep(1.05 - time.time() % 1.0)
    _write(tmp_path / "run", range(40))
    segments = analyze(tmp_path / "run").segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [("start", 0, 39), ("restart", 0, 39)]
