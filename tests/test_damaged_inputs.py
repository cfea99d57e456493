"""Damaged files in a real run give warnings that name the file; the rest is still analysed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forensics.analyze import analyze

from conftest import SAMPLE_RUNS


def _copy(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(SAMPLE_RUNS / name, run)
    return run


def test_truncated_event_file_and_corrupt_checkpoint(tmp_path):
    run = _copy("nan_divergence", tmp_path)
    (event_file,) = (run / "tb").glob("*tfevents*")
    size = event_file.stat().st_size
    event_file.write_bytes(event_file.read_bytes()[: size - 7])  # the writer died mid-record
    checkpoints = sorted((run / "checkpoints").glob("*.pt"))
    checkpoints[0].write_bytes(checkpoints[0].read_bytes()[:1000])  # disk filled up mid-save
    (run / "checkpoints" / "garbage.pth").write_bytes(bytes(range(256)) * 10)

    report = analyze(run)

    problems = {(problem.path, problem.code) for problem in report.input_problems}
    event_path = f"tb/{event_file.name}"
    assert (event_path, "event_file_truncated") in problems
    assert (f"checkpoints/{checkpoints[0].name}", "checkpoint_unreadable") in problems
    assert ("checkpoints/garbage.pth", "checkpoint_unreadable") in problems
    truncated = next(p for p in report.input_problems if p.code == "event_file_truncated")
    assert truncated.locator.startswith("byte ") and event_path in truncated.message
    # everything before the cut is still analysed: the NaN onset is found at the same step
    truth = json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())["nan_divergence"]
    (finding,) = [f for f in report.findings if f.code == "nan_onset"]
    assert finding.step == truth["first_nonfinite_loss_step"]
    statuses = {source.path: source.status for source in report.sources}
    assert statuses[event_path] == "partial"
    assert statuses["checkpoints/garbage.pth"] == "failed"


def test_event_file_of_random_bytes_and_empty_files(tmp_path):
    run = _copy("healthy_onecycle", tmp_path)
    (run / "tb" / "events.out.tfevents.1.host.1.0").write_bytes(b"\x00\xff" * 5000)
    (run / "tb" / "events.out.tfevents.2.host.2.0").write_bytes(b"")
    (run / "empty.pt").write_bytes(b"")
    report = analyze(run)
    codes = {problem.path: problem.code for problem in report.input_problems}
    assert "tb/events.out.tfevents.1.host.1.0" in codes and "empty.pt" in codes
    # the healthy part of the run is still read and still healthy
    assert [f.code for f in report.findings] == []
    lr = next(t for t in report.trajectories if t.metric == "lr")
    assert lr.count == 600 + 60 and set(lr.sources) == {"tb/events.out.tfevents.1795625437.vm.4913.0", "train.log"}


def test_non_finite_lr_everywhere_never_crashes_a_check_or_the_json(tmp_path):
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from forensics.render import render_json

    run = tmp_path / "nan_lr"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(60):
        writer.add_scalar("train/lr", float("nan"), step)
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.close()
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["lr"] = float("nan")  # what a diverged LR finder leaves behind
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "global_step": 60},
               run / "last.pt")

    report = analyze(run)

    assert [outcome.code for outcome in report.checks if outcome.status == "error"] == []
    document = json.loads(render_json(report))
    assert document["checkpoints"][0]["lrs"] == [None]
