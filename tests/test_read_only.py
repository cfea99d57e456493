"""`forensics analyze` never writes inside the run directory it analyses, whatever the directory holds
(links out of it, link loops, unreadable files), and a run still being written is read consistently."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from typer.testing import CliRunner

from forensics.analyze import analyze
from forensics.cli.main import app
from forensics.ingest.tfrecord import encode_frame

from conftest import SAMPLE_RUNS


def _fingerprint(root: Path) -> dict[str, tuple]:
    """Every path under root with its content hash, size, mtime and mode."""
    prints = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            prints[str(path.relative_to(root))] = (digest, info.st_size, info.st_mtime_ns, info.st_mode)
    return prints


def test_analyze_leaves_the_run_dir_byte_for_byte_unchanged(tmp_path, monkeypatch):
    for name in ("resume_scheduler_reset", "nan_divergence"):
        run = tmp_path / name
        shutil.copytree(SAMPLE_RUNS / name, run)
        before = _fingerprint(run)
        monkeypatch.chdir(tmp_path)
        for output_format in ("html", "json", "md"):
            result = CliRunner().invoke(app, ["analyze", str(run), "-f", output_format, "-q"])
            assert result.exit_code == 0, result.output
        assert _fingerprint(run) == before
        assert not list(run.rglob("__pycache__"))


def _fingerprint_without_following(root: Path) -> dict[str, tuple]:
    """Like _fingerprint, but links are recorded by target (never followed) and unreadable files by mode."""
    prints = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory) / name
            info = path.lstat()
            if path.is_symlink():
                prints[str(path.relative_to(root))] = ("link", os.readlink(path), info.st_mode)
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            except PermissionError:
                digest = "unreadable"
            prints[str(path.relative_to(root))] = (digest, info.st_size, info.st_mtime_ns, info.st_mode)
    return prints


def test_hostile_run_dir_with_links_and_unreadable_files_is_unchanged_and_reported(tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text("step 1 loss 123.0\n")
    (run / "loop").mkdir()
    os.symlink("..", run / "loop" / "back_up")  # a folder link back to the run: a loop
    os.symlink("self_link", run / "self_link")  # a link to itself
    os.symlink(outside, run / "outside_dir")
    os.symlink(outside / "secret.log", run / "outside.log")
    os.symlink(tmp_path / "missing", run / "broken.log")
    locked = run / "locked.log"
    locked.write_text("step 1 loss 0.5\n")
    locked.chmod(0)
    before = _fingerprint_without_following(run)
    monkeypatch.chdir(tmp_path)

    for output_format in ("html", "json", "md"):
        result = CliRunner().invoke(app, ["analyze", str(run), "-f", output_format, "-o", f"report.{output_format}"])
        assert result.exit_code == 0, result.output

    assert _fingerprint_without_following(run) == before
    report = json.loads((tmp_path / "report.json").read_text())
    problems = {(problem["path"], problem["code"]) for problem in report["input_problems"]}
    assert {("outside_dir", "link_outside_run"), ("outside.log", "link_outside_run"),
            ("broken.log", "broken_link"), ("self_link", "symlink_loop"), ("loop/back_up", "symlink_loop")} <= problems
    assert not any("secret" in source["path"] for source in report["sources"])
    assert any(finding["code"] == "nan_onset" for finding in report["findings"])  # the rest is analysed
    if os.geteuid() != 0:  # root reads a chmod-000 file anyway; then it is simply read
        assert ("locked.log", "file_unreadable") in problems
    locked.chmod(0o644)


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root, which ignores file permissions")
def test_unreadable_file_is_reported_not_fatal(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", run)
    for name in ("locked.log", "locked.pt", "locked.yaml", "metrics.csv"):
        (run / name).write_text("x")
        (run / name).chmod(0)
    try:
        report = analyze(run)
    finally:
        for name in ("locked.log", "locked.pt", "locked.yaml", "metrics.csv"):
            (run / name).chmod(0o644)
    problems = {(problem.path, problem.code) for problem in report.input_problems}
    for name in ("locked.log", "locked.yaml", "metrics.csv"):
        assert (name, "file_unreadable") in problems
    assert any(path == "locked.pt" for path, _ in problems)


def test_a_run_appended_to_while_it_is_analysed(tmp_path):
    """A live run: a thread appends log lines and event records (half a record at a time) during analyze."""
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", run)
    (event_file,) = (run / "tb").glob("*tfevents*")
    original_log_lines = len((run / "train.log").read_text().splitlines())
    stop = threading.Event()

    def append() -> None:
        step = 10_000
        while not stop.is_set():
            frame = encode_frame(event_pb2.Event(step=step, wall_time=1.8e9, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="train/lr", simple_value=0.01)])).SerializeToString())
            with open(event_file, "ab") as events, open(run / "train.log", "a") as log:
                events.write(frame[:7])
                events.flush()
                log.write(f"step {step} loss 0.5 lr 0.01")  # a line without its newline yet
                log.flush()
                time.sleep(0.001)
                events.write(frame[7:])
                log.write("\n")
            step += 1

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    try:
        reports = [analyze(run) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    for report in reports:
        codes = {problem.code for problem in report.input_problems}
        assert codes <= {"event_file_truncated"}, codes  # a half-written last record at most
        assert all(problem.severity != "error" for problem in report.input_problems)
        sources = {source.path: source for source in report.sources}
        assert sources["train.log"].records >= original_log_lines and sources["train.log"].status != "failed"
        lr = next(t for t in report.trajectories if t.metric == "lr")
        assert lr.count >= 600 + 60  # everything that was there before is still read
