"""Tiny real training runs for the checks that need no stated schedule (lr_collapse, lr_runaway,
loss_divergence): a torch model, a real torch (or transformers) scheduler, and a real logger (a
`SummaryWriter`, a tqdm bar with a postfix, or HF Trainer-style dict lines on stdout).

The loop records what it logged (`Recorded`), so tests measure their labels from the run itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

STEPS_PER_EPOCH = 20
BATCH = 16


@dataclass
class Recorded:
    """What the loop logged: (step, value) pairs in the logger's step convention."""

    lr: list[tuple[int, float]] = field(default_factory=list)
    loss: list[tuple[int, float]] = field(default_factory=list)

    def lr_values(self) -> list[float]:
        return [value for _, value in self.lr]


class _Logger:
    """One of the loggers real scripts use; `step` is the optimizer steps done when the values are logged."""

    def __init__(self, run_dir: Path, kind: str, total_steps: int):
        self.kind, self.run_dir, self.total_steps = kind, run_dir, total_steps
        self.bar = None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
        else:
            self.stdout = (run_dir / "train.log").open("w", encoding="utf-8")
        if kind == "hf":  # transformers.Trainer: one bar over all steps, its log dicts printed between updates
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, file=self.stdout, mininterval=0, miniters=1, ncols=100)

    def epoch_start(self, epoch: int) -> None:
        if self.kind == "tqdm":
            from tqdm import tqdm

            self.bar = tqdm(total=STEPS_PER_EPOCH, desc=f"Epoch {epoch}", file=self.stdout, mininterval=0,
                            miniters=1, ascii=False, dynamic_ncols=False, ncols=100)

    def log(self, step: int, loss: float, lr: float, epoch: float) -> None:
        if self.kind == "tensorboard":
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
        elif self.kind == "tqdm":
            self.bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3e}", refresh=False)
            self.bar.update(1)
        else:  # transformers.Trainer's on_log print: the LR of the step just taken
            self.bar.update(1)
            self.bar.write(str({"loss": round(loss, 4), "learning_rate": lr, "epoch": round(epoch, 2)}),
                           file=self.stdout)

    def epoch_end(self) -> None:
        if self.kind == "tqdm" and self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.kind == "tensorboard":
            self.writer.close()
        else:
            self.stdout.close()


def train(run_dir: Path, make_scheduler: Callable, *, steps: int, lr: float, logger: str = "tensorboard",
          per_epoch: bool = False, clip: float | None = None, optimizer: str = "sgd", noise: float = 0.0,
          seed: int = 0) -> Recorded:
    """Train a small classifier on synthetic data with a real scheduler; log the LR and loss every step.

    `per_epoch` steps the scheduler once per epoch (as meant for StepLR and friends), otherwise per
    batch. `noise` flips that share of the labels, so the loss stays noisy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only cost time on a shared machine
    try:
        return _train(run_dir, make_scheduler, steps=steps, lr=lr, logger=logger, per_epoch=per_epoch, clip=clip,
                      optimizer=optimizer, noise=noise, seed=seed)
    finally:
        torch.set_num_threads(threads)  # other tests get the thread count back


def _train(run_dir: Path, make_scheduler: Callable, *, steps: int, lr: float, logger: str, per_epoch: bool,
           clip: float | None, optimizer: str, noise: float, seed: int) -> Recorded:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(STEPS_PER_EPOCH * BATCH, 8, generator=generator)
    labels = (features[:, :3].sum(dim=1) > 0).long() + 2 * (features[:, 3] > 0).long()
    flip = torch.rand(len(labels), generator=generator) < noise
    labels[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=generator)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=lr))
    scheduler = make_scheduler(opt)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _Logger(run_dir, logger, steps)
    recorded = Recorded()
    step = 0
    for epoch in range(math.ceil(steps / STEPS_PER_EPOCH)):
        log.epoch_start(epoch)
        for batch in range(STEPS_PER_EPOCH):
            if step == steps:
                break
            rows = slice(batch * BATCH, (batch + 1) * BATCH)
            loss = torch.nn.functional.cross_entropy(model(features[rows]), labels[rows])
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            used_lr = opt.param_groups[0]["lr"]
            opt.step()
            if scheduler is not None and not per_epoch:
                scheduler.step()
            step += 1
            # Log what a user would: the LR the step used (HF: the LR after the step, as Trainer does).
            logged_lr = opt.param_groups[0]["lr"] if logger == "hf" else used_lr
            log.log(step if logger != "tensorboard" else step - 1, loss.item(), logged_lr, step / STEPS_PER_EPOCH)
            recorded.lr.append((step if logger != "tensorboard" else step - 1, logged_lr))
            recorded.loss.append((step if logger != "tensorboard" else step - 1, loss.item()))
        log.epoch_end()
        if scheduler is not None and per_epoch:
            scheduler.step()
    log.close()
    return recorded
