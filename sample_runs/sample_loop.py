"""The tiny, real training loop every sample run is made of.

This is what a small training script does, split into pieces the scenarios in `generate.py` can
recombine: synthetic data from a seeded generator, a few-hundred-parameter MLP, a loop that steps a
real optimizer and a real `torch.optim.lr_scheduler`, and logging the way scripts log (a
TensorBoard `SummaryWriter`, a `train.log` with the lines the script prints, `torch.save`
checkpoints). Nothing here writes a value the loop did not compute.

Conventions (recorded in the manifest too):
- `global_step` is the 0-based index of an optimizer step; `train/*` is logged at the step just done.
- `train/lr` is `optimizer.param_groups[0]["lr"]` read before `scheduler.step()`: the LR that step used.
- `ckpt_epoch_{E}.pt` is written after E epochs are complete; its `epoch` key is E (the 0-based index
  of the next epoch to run) and its `global_step` key is the number of optimizer steps done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

FEATURES = 4
HIDDEN = 16
CLASSES = 2
BATCH_SIZE = 16
VAL_SIZE = 256
LABEL_NOISE = 0.05
# clip_grad_norm_ with an infinite max_norm only measures the norm: the usual "log grad norm" idiom.
MEASURE_ONLY_MAX_NORM = float("inf")
CLASSIFICATION = "classification"
REGRESSION = "regression"


def make_deterministic(seed: int) -> None:
    """Pin every source of nondeterminism a CPU run has: seed, algorithms, thread count."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


REGRESSION_WEIGHTS = (1.5, -2.0, 0.5, 1.0)
REGRESSION_NOISE = 0.1


def xor_dataset(samples: int, seed: int) -> TensorDataset:
    """A noisy XOR-ish classification set: the label is the sign of x0*x1, two features are noise."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(samples, FEATURES, generator=generator) * 2 - 1
    labels = (inputs[:, 0] * inputs[:, 1] > 0).long()
    flipped = torch.rand(samples, generator=generator) < LABEL_NOISE
    labels = torch.where(flipped, 1 - labels, labels)
    return TensorDataset(inputs, labels)


def linear_dataset(samples: int, seed: int) -> TensorDataset:
    """A noisy linear regression set: y = x @ w + noise, one target column."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(samples, FEATURES, generator=generator) * 2 - 1
    noise = REGRESSION_NOISE * torch.randn(samples, generator=generator)
    targets = inputs @ torch.tensor(REGRESSION_WEIGHTS) + noise
    return TensorDataset(inputs, targets.unsqueeze(1))


def make_model(task: str) -> nn.Module:
    """A 4-16-16-k ReLU MLP (386 parameters for classification, 369 for regression)."""
    outputs = CLASSES if task == CLASSIFICATION else 1
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, outputs)
    )


def describe_model(model: nn.Module) -> str:
    """`MLP(4-16-16-2, 386 params)`: what a script's start-up banner says about its model."""
    widths = [model[0].in_features] + [layer.out_features for layer in model if isinstance(layer, nn.Linear)]
    params = sum(parameter.numel() for parameter in model.parameters())
    return f"MLP({'-'.join(map(str, widths))}, {params} params)"


@dataclass
class Data:
    """Train loader and validation tensors for one run; rebuilt identically by every process."""

    task: str
    train_loader: DataLoader
    val_inputs: torch.Tensor
    val_labels: torch.Tensor

    def make_loss_fn(self) -> nn.Module:
        """Cross-entropy for classification, MSE for regression."""
        return nn.CrossEntropyLoss() if self.task == CLASSIFICATION else nn.MSELoss()


def make_data(task: str, steps_per_epoch: int, seed: int) -> Data:
    """Build the data a run trains on: exactly `steps_per_epoch` full batches per epoch."""
    dataset = xor_dataset if task == CLASSIFICATION else linear_dataset
    train_set = dataset(steps_per_epoch * BATCH_SIZE, seed)
    val_set = dataset(VAL_SIZE, seed + 1)
    loader = DataLoader(
        train_set, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(seed + 2)
    )
    return Data(task, loader, *val_set.tensors)


def model_is_finite(model: nn.Module) -> bool:
    """True when every parameter of the model is finite."""
    return all(bool(torch.isfinite(parameter).all()) for parameter in model.parameters())


class RunLogger:
    """One process lifetime's logging: a SummaryWriter, `train.log`, and a copy of each scalar.

    The copy (`scalars`) is what the ground truth is computed from, so the manifest describes
    exactly what was written. `train.log` is appended to: a restarted process continues it.
    """

    def __init__(
        self, run_dir: Path, log_every: int, tensorboard: bool = True, log_name: str | None = "train.log"
    ) -> None:
        self.run_dir = run_dir
        self.log_every = log_every
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        # A script may log to TensorBoard only, print only, or both (the corpus varies this).
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb")) if tensorboard else None
        self._log_file = open(run_dir / log_name, "a", encoding="utf-8") if log_name else None  # noqa: SIM115

    def print(self, line: str) -> None:
        """What the script prints; its stdout is redirected to train.log (dropped when there is no log)."""
        if self._log_file is not None:
            self._log_file.write(line + "\n")

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Log one scalar to TensorBoard (when the script has a writer) and remember it."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)
        self.scalars.setdefault(tag, []).append((step, value))

    def close(self) -> None:
        """Flush and close the event file and the log, as the process ends."""
        if self.writer is not None:
            self.writer.close()
        if self._log_file is not None:
            self._log_file.close()


@dataclass
class Loop:
    """Everything the epoch loop needs; `stepping` is where `scheduler.step()` is called."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: Data
    logger: RunLogger
    stepping: str  # "per_batch" (correct) or "per_epoch" (the incident's bug)
    total_steps: int  # what the script prints as the denominator: its own idea of the run length
    checkpoint_every: int
    checkpoints: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loss_fn = self.data.make_loss_fn()


def train_epochs(loop: Loop, start_epoch: int, end_epoch: int, global_step: int) -> int:
    """Train epochs [start_epoch, end_epoch) the way a plain script does; return the next global_step."""
    if loop.stepping not in ("per_batch", "per_epoch"):
        raise ValueError(f"unknown stepping {loop.stepping!r}")
    for epoch in range(start_epoch, end_epoch):
        loop.model.train()
        for inputs, labels in loop.data.train_loader:
            loss = loop.loss_fn(loop.model(inputs), labels)
            loop.optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(loop.model.parameters(), MEASURE_ONLY_MAX_NORM)
            loop.optimizer.step()
            lr = loop.optimizer.param_groups[0]["lr"]  # the LR this step used
            if loop.stepping == "per_batch":
                loop.scheduler.step()
            _log_step(loop, epoch, global_step, loss.item(), lr, grad_norm.item())
            global_step += 1
        if loop.stepping == "per_epoch":
            loop.scheduler.step()
        _validate(loop, epoch, global_step - 1)
        if (epoch + 1) % loop.checkpoint_every == 0:
            save_checkpoint(loop, epoch + 1, global_step)
    return global_step


def _log_step(loop: Loop, epoch: int, global_step: int, loss: float, lr: float, grad_norm: float) -> None:
    loop.logger.scalar("train/loss", loss, global_step)
    loop.logger.scalar("train/lr", lr, global_step)
    loop.logger.scalar("train/grad_norm", grad_norm, global_step)
    if global_step % loop.logger.log_every == 0:
        loop.logger.print(
            f"epoch {epoch} step {global_step}/{loop.total_steps} loss {loss:.4f} lr {lr:.3e} grad_norm {grad_norm:.2f}"
        )


def _validate(loop: Loop, epoch: int, global_step: int) -> None:
    loop.model.eval()
    with torch.no_grad():
        logits = loop.model(loop.data.val_inputs)
        val_loss = loop.loss_fn(logits, loop.data.val_labels).item()
    loop.logger.scalar("val/loss", val_loss, global_step)
    if loop.data.task != CLASSIFICATION:
        loop.logger.print(f"epoch {epoch} validation loss {val_loss:.4f}")
        return
    accuracy = (logits.argmax(dim=1) == loop.data.val_labels).float().mean().item()
    loop.logger.scalar("val/accuracy", accuracy, global_step)
    loop.logger.print(f"epoch {epoch} validation loss {val_loss:.4f} accuracy {accuracy:.4f}")


def save_checkpoint(loop: Loop, epochs_done: int, global_step: int) -> None:
    """`torch.save` the resume state under checkpoints/ckpt_epoch_{E}.pt and note what it holds."""
    checkpoint_dir = loop.logger.run_dir / "checkpoints"
    checkpoint_dir.mkdir(exist_ok=True)
    path = checkpoint_dir / f"ckpt_epoch_{epochs_done}.pt"
    torch.save(
        {
            "epoch": epochs_done,
            "global_step": global_step,
            "model": loop.model.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict(),
            "rng_state": torch.get_rng_state(),
        },
        path,
    )
    loop.logger.print(f"Saved checkpoint {path.relative_to(loop.logger.run_dir).as_posix()}")
    loop.checkpoints.append(
        {
            "path": path.relative_to(loop.logger.run_dir).as_posix(),
            "epoch": epochs_done,
            "global_step": global_step,
            "scheduler_last_epoch": loop.scheduler.last_epoch,
            "optimizer_lr": loop.optimizer.param_groups[0]["lr"],
            "weights_finite": model_is_finite(loop.model),
        }
    )


def first_nonfinite(points: list[tuple[int, float]]) -> tuple[int, float] | None:
    """The first (step, value) whose value is inf or NaN, or None."""
    return next(((step, value) for step, value in points if not math.isfinite(value)), None)
