"""constant_lr asks whether the LR *should* have moved where it sat still, not just whether it sat.

A cosine sized for four times the steps taken is within 5% for half the run: that is the schedule's
slow start (`schedule_incomplete`'s case), not a scheduler that never moved. A file that logs the
configured LR beside the optimizer's moving one is `lr_mismatch`'s case. The classic failure, a
scheduler stepped once per epoch, stays an error whatever else the run holds.
"""

from __future__ import annotations

import json

import torch
from torch.utils.tensorboard import SummaryWriter

from forensics.analyze import analyze
from forensics.schedule import schedule_options

PER_EPOCH = 20


def _train(run_dir, *, steps, horizon, per_epoch=False, jsonl_lr=None):
    """A tiny classifier with CosineAnnealingLR(T_max=horizon); TB logs the LR each step used, a
    checkpoint at the end holds the scheduler and the global step."""
    torch.manual_seed(0)
    features = torch.randn(PER_EPOCH * 8, 4)
    labels = (features.sum(dim=1) > 0).long()
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=horizon)
    writer = SummaryWriter(run_dir / "tb")
    jsonl = (run_dir / "metrics.jsonl").open("w") if jsonl_lr is not None else None
    for step in range(steps):
        rows = slice((step % PER_EPOCH) * 8, (step % PER_EPOCH + 1) * 8)
        loss = torch.nn.functional.cross_entropy(model(features[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        writer.add_scalar("train/loss", loss.item(), step)
        if jsonl:
            jsonl.write(json.dumps({"step": step, "lr": jsonl_lr, "loss": loss.item()}) + "\n")
        optimizer.step()
        if not per_epoch or (step + 1) % PER_EPOCH == 0:
            scheduler.step()
    writer.close()
    if jsonl:
        jsonl.close()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "global_step": steps, "epoch": steps // PER_EPOCH}, run_dir / "last.pt")


def _codes(run_dir, **options):
    report = analyze(run_dir, command="test", schedule=schedule_options(**options) if options else None,
                     follow_links=False)
    return {finding.code for finding in report.findings if finding.severity in ("warning", "error")}


def test_slow_start_of_a_long_cosine_is_no_constant_lr(tmp_path):
    _train(tmp_path, steps=120, horizon=480)
    assert "constant_lr" not in _codes(tmp_path)
    assert "constant_lr" not in _codes(tmp_path, spec_text="CosineAnnealingLR(T_max=480)", base_lr=0.1)


def test_the_same_cosine_stepped_per_epoch_is_constant_lr(tmp_path):
    _train(tmp_path, steps=120, horizon=120, per_epoch=True)  # sized in steps, stepped per epoch
    assert "constant_lr" in _codes(tmp_path)


def test_a_file_logging_the_configured_lr_is_lr_mismatch_not_constant_lr(tmp_path):
    _train(tmp_path, steps=120, horizon=120, jsonl_lr=0.1)
    codes = _codes(tmp_path)
    assert "constant_lr" not in codes and "lr_mismatch" in codes
