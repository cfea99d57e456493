"""Real resumed training runs for the resume tests: a tiny torch model, real `torch.optim.lr_scheduler`
classes, a real `SummaryWriter` (or a CSV / stdout logger), real `torch.save` checkpoints.

Every process lifetime runs in its own forked child process, so each has its own pid and writes its own
event file, exactly as a restarted job does. What the loop did (the step and LR of every optimizer step,
per lifetime) is returned to the test, so labels are measured from the run, never typed in.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim import lr_scheduler

BASE_LR = 0.1
# Seconds added to this process's clock (`advance_clock`): a job that waited in a queue or spent
# minutes loading data, without the test waiting for it. SummaryWriter reads time.time() for its file
# name, its file_version record and every value's wall time.
_CLOCK_OFFSET = [0.0]
_REAL_TIME = time.time


def advance_clock(seconds: float) -> None:
    """Move this process's clock forward, as if `seconds` had passed."""
    if time.time is _REAL_TIME:
        time.time = lambda: _REAL_TIME() + _CLOCK_OFFSET[0]
    _CLOCK_OFFSET[0] += seconds


@dataclass
class Lifetime:
    """What one process logged: (step, lr) per optimizer step, and where it wrote."""

    steps: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    pid: int | None = None
    stderr: str = ""

    @property
    def first_step(self) -> int:
        return self.steps[0]

    @property
    def last_step(self) -> int:
        return self.steps[-1]


def warmup_cosine(optimizer, warmup: int = 20, total: int = 200):
    """Linear warmup from 1% then cosine to 0: the shape whose restart is easiest to miss."""
    return lr_scheduler.SequentialLR(optimizer, [
        lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup),
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)], milestones=[warmup])


def linear_warmup_decay(optimizer, warmup: int = 20, total: int = 200):
    """HF's get_linear_schedule_with_warmup: from 0 up to the peak, then linearly down to 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total - step) / (total - warmup))
    return lr_scheduler.LambdaLR(optimizer, factor)


def cosine(optimizer, total: int = 200):
    """A plain cosine over `total` steps."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


class Loop:
    """A tiny regression model trained with SGD+momentum; the LR logged is the one each step used."""

    def __init__(self, make_scheduler: Callable | None, seed: int = 0):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        self.model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=BASE_LR, momentum=0.9)
        self.scheduler = make_scheduler(self.optimizer) if make_scheduler else None
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(256, 8, generator=generator)
        self.y = torch.sin(self.x.sum(1, keepdim=True))

    def step(self, step: int, life: Lifetime, log: Callable[[int, float, float], None]) -> None:
        """One optimizer step logged at `step`."""
        lr = self.optimizer.param_groups[0]["lr"]
        batch = slice((step * 32) % 256, (step * 32) % 256 + 32)
        loss = torch.nn.functional.mse_loss(self.model(self.x[batch]), self.y[batch])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        life.steps.append(step)
        life.lrs.append(lr)
        log(step, lr, loss.item())

    def state(self, *keys: str, global_step: int | None = None, epoch: int | None = None) -> dict:
        """A checkpoint dict holding only the named parts (model, optimizer, scheduler, rng)."""
        parts = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                 "rng_state": torch.get_rng_state()}
        state = {key: parts[key] for key in keys}
        if global_step is not None:
            state["global_step"] = global_step
        if epoch is not None:
            state["epoch"] = epoch
        return state

    def restore(self, state: dict) -> None:
        """Load whatever the checkpoint holds, as a resume script does."""
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


class TensorBoardLog:
    """Scalars through a real SummaryWriter: train/lr and train/loss at the step they belong to."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, step: int, lr: float, loss: float) -> None:
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/loss", loss, step)

    def close(self) -> None:
        self.writer.close()


class CsvLog:
    """Lightning CSVLogger's layout: `<root>/version_N/metrics.csv` with `lr-SGD`, `train_loss`, `step`."""

    def __init__(self, root: Path):
        versions = [int(p.name.split("_")[1]) for p in root.glob("version_*")] if root.is_dir() else []
        folder = root / f"version_{max(versions, default=-1) + 1}"
        folder.mkdir(parents=True)
        (folder / "hparams.yaml").write_text("lr: 0.1\n")
        self.file = (folder / "metrics.csv").open("w", newline="")
        self.table = csv.writer(self.file)
        self.table.writerow(["epoch", "lr-SGD", "step", "train_loss"])

    def __call__(self, step: int, lr: float, loss: float) -> None:
        self.table.writerow([step // 20, repr(lr), step, repr(loss)])

    def close(self) -> None:
        self.file.close()


def _child(target, args, queue) -> None:
    try:
        life = target(*args)
        queue.put(("ok", json.dumps(life.__dict__)))
    except BaseException as error:  # noqa: BLE001 - report to the parent, whatever it was
        queue.put(("error", f"{type(error).__name__}: {error}"))


def in_new_process(target: Callable[..., Lifetime], *args) -> Lifetime:
    """Run one lifetime in a forked child (its own pid, hence its own event file name) and return it."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    status, payload = queue.get(timeout=120)
    process.join(timeout=60)
    if status != "ok":
        raise RuntimeError(f"lifetime {getattr(target, '__name__', target)} failed: {payload}")
    # Event file names carry the creation time in whole seconds: a restarted job is never that fast,
    # and two files of one second would only differ by pid.
    time.sleep(max(0.0, 1.05 - (time.time() % 1.0)))
    return Lifetime(**json.loads(payload))


def capture_stderr(path: Path):
    """Send this process's stderr (torch's warnings) to `path`, as a job scheduler's log does."""
    handle = path.open("a")
    sys.stderr = handle
    import warnings

    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: handle.write(
        warnings.formatwarning(message, category, filename, lineno, line))
    return handle
