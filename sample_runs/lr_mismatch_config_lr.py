"""Generate sample_runs/lr_mismatch_config_lr: a real tiny loop whose stdout LR disagrees with TensorBoard.

The script logs `optimizer.param_groups[0]["lr"]` (the LR each step used) to TensorBoard, but its
progress line prints `args.lr`, the configured LR, as many hand-written loops do; with an
ExponentialLR stepped per batch the two part ways after step 0 (the stdout LR never moves).
(Printing `scheduler.get_lr()` instead would be one step ahead, an offset rather than a different
value; `lr_mismatch` aligns such offsets away and leaves them to `off_by_one`.)

    python sample_runs/lr_mismatch_config_lr.py [--out DIR]

Deterministic (seeded, one thread); TensorBoard's file name holds the wall time, so a rerun writes
a new event file name.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.tensorboard import SummaryWriter

NAME = "lr_mismatch_config_lr"
STEPS, LOG_EVERY, GAMMA = 100, 5, 0.98


def generate(out_dir: Path) -> Path:
    """Train the loop into `out_dir/NAME` (replacing it) and return the run folder."""
    args = SimpleNamespace(lr=0.01, momentum=0.9)
    run_dir = out_dir / NAME
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    inputs = torch.randn(STEPS * 16, 4)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(STEPS * 16, 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA)
    writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    with open(run_dir / "train.log", "w", encoding="utf-8") as log:
        log.write(f"Starting training: optimizer=SGD(lr={args.lr}, momentum={args.momentum}) "
                  f"scheduler=ExponentialLR(gamma={GAMMA}) steps={STEPS}\n")
        for step in range(STEPS):
            batch = slice(step * 16, (step + 1) * 16)
            loss = torch.nn.functional.mse_loss(model(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            if step % LOG_EVERY == 0:
                log.write(f"step {step}/{STEPS} loss {loss.item():.4f} lr {args.lr:.4e}\n")  # the bug: args.lr
            scheduler.step()
    writer.close()
    return run_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    print(generate(parser.parse_args().out))
