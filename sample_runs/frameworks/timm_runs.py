"""Training loops driven by real `timm.scheduler` classes, written the way timm's train.py writes a run:
`args.yaml`, `Train:`/`Test:` lines in train.log, `summary.csv` per epoch, `last.pth.tar` checkpoints,
and (where a case asks) a TensorBoard SummaryWriter the user bolted on.

The step of a record is timm's `num_updates` before the update (epoch * updates_per_epoch + update_idx).
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from frameworks_common_pl import FEATURES, load_timm_scheduler, regression, seed_everything

TIMM_CLASSES = 10


@dataclass
class TRecipe:
    """One timm-style run."""

    scheduler: Callable                 # (optimizer, updates_per_epoch, timm.scheduler) -> scheduler
    per_update: bool = False            # the loop calls step_update(num_updates) after every update
    epoch_step: bool = True             # the loop calls step(epoch + extra_epoch_offset) after every epoch
    extra_epoch_offset: int = 1         # timm's train.py passes epoch + 1; 0 is the off-by-one
    epochs: int = 12
    n_train: int = 320
    batch_size: int = 16
    grad_accum: int = 1
    opt: str = "adamw"
    lr: float = 1e-2
    code_lr: float | None = None        # the LR the script really builds the optimizer with (else lr)
    task: str = "classify"              # classify | regression
    label_noise: float = 0.0
    clip: float | None = None
    blowup_step: int | None = None
    ema_never_updated: bool = False
    tb: bool = False
    summary: bool = True
    args: dict | None = None            # written as args.yaml (None: no args.yaml)
    log_interval: int = 5
    checkpoints: bool = False
    keep_optimizer: bool = True
    stop_after_epoch: int | None = None
    resume: str | None = None           # "correct" | "num_updates_reset" | "no_optimizer"
    seed: int = 0

    @property
    def updates_per_epoch(self) -> int:
        batches = -(-self.n_train // self.batch_size)
        return -(-batches // self.grad_accum)


def _data(recipe: TRecipe):
    gen = torch.Generator().manual_seed(recipe.seed)
    if recipe.task == "regression":
        x, y = regression(recipe.n_train, recipe.seed)
        vx, vy = regression(100, recipe.seed + 1)
    else:
        centres = torch.randn(TIMM_CLASSES, FEATURES, generator=gen) * 1.6
        def draw(n, noise):
            labels = torch.randint(0, TIMM_CLASSES, (n,), generator=gen)
            points = centres[labels] + torch.randn(n, FEATURES, generator=gen)
            flip = torch.rand(n, generator=gen) < noise
            return points, torch.where(flip, torch.randint(0, TIMM_CLASSES, (n,), generator=gen), labels)
        x, y = draw(recipe.n_train, recipe.label_noise)
        vx, vy = draw(200, 0.0)
    shuffle = torch.Generator().manual_seed(recipe.seed)
    return (DataLoader(TensorDataset(x, y), batch_size=recipe.batch_size, shuffle=True, generator=shuffle),
            DataLoader(TensorDataset(vx, vy), batch_size=100))


def _model(recipe: TRecipe) -> torch.nn.Module:
    out = 1 if recipe.task == "regression" else TIMM_CLASSES
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, out))


def _optimizer(recipe: TRecipe, model) -> torch.optim.Optimizer:
    lr = recipe.code_lr if recipe.code_lr is not None else recipe.lr
    if recipe.opt == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[recipe.opt](model.parameters(), lr=lr)


def _loss(recipe: TRecipe, out, y):
    return F.mse_loss(out, y) if recipe.task == "regression" else F.cross_entropy(out, y)


@dataclass
class TimmLog:
    """What a run logged, for measuring labels: per-update (step, lr, loss, grad_norm), per-epoch eval."""

    updates: list[tuple[int, float, float, float]] = field(default_factory=list)
    logged_steps: list[int] = field(default_factory=list)   # steps that got a Train: line
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (step, top1, top5)
    resume_step: int | None = None


def _validate(recipe, model, loader, log, name="Test"):
    model.eval()
    losses, top1, top5, count = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            losses += float(_loss(recipe, out, y)) * len(x)
            if recipe.task != "regression":
                ranks = out.topk(5, dim=1).indices
                top1 += float((ranks[:, 0] == y).sum())
                top5 += float((ranks == y[:, None]).any(1).sum())
            count += len(x)
    model.train()
    metrics = {"loss": losses / count, "top1": 100 * top1 / count, "top5": 100 * top5 / count}
    log.write(f"{name}: [   0/0]  Time: 0.001 (0.001)  Loss: {metrics['loss']:>7.3f} ({metrics['loss']:>6.3f})  "
              f"Acc@1: {metrics['top1']:>7.3f} ({metrics['top1']:>7.3f})  "
              f"Acc@5: {metrics['top5']:>7.3f} ({metrics['top5']:>7.3f})\n")
    return metrics


def run_timm(recipe: TRecipe, out: Path) -> TimmLog:
    """Train the recipe into `out` (one or two process lifetimes) and return what it logged."""
    out.mkdir(parents=True, exist_ok=True)
    if recipe.args is not None:
        # timm writes args.yaml with yaml.safe_dump(args.__dict__); JSON is valid YAML and needs no yaml import.
        (out / "args.yaml").write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in recipe.args.items()) + "\n")
    record = TimmLog()
    stop = recipe.stop_after_epoch if recipe.resume else None
    _lifetime(recipe, out, record, start_epoch=0, end_epoch=stop or recipe.epochs, resumed=False)
    if recipe.resume:
        _lifetime(recipe, out, record, start_epoch=stop, end_epoch=recipe.epochs, resumed=True)
    return record


def _lifetime(recipe: TRecipe, out: Path, record: TimmLog, start_epoch: int, end_epoch: int, resumed: bool) -> None:
    timm_scheduler = load_timm_scheduler()
    seed_everything(recipe.seed + (100 if resumed else 0))
    train, val = _data(recipe)
    model = _model(recipe)
    ema = copy.deepcopy(model) if recipe.ema_never_updated else None
    optimizer = _optimizer(recipe, model)
    upe = recipe.updates_per_epoch
    scheduler = recipe.scheduler(optimizer, upe, timm_scheduler)
    writer = None
    if recipe.tb:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"))
    with open(out / "train.log", "a", encoding="utf-8") as log:
        log.write(f"Model tinymlp created, param count:{sum(p.numel() for p in model.parameters())}\n")
        if resumed:
            state = torch.load(out / "last.pth.tar", weights_only=False)
            model.load_state_dict(state["state_dict"])
            if "optimizer" in state:
                optimizer.load_state_dict(state["optimizer"])
            log.write(f"Loaded checkpoint '{out / 'last.pth.tar'}' (epoch {state['epoch']})\n")
            # timm's train.py: re-step the fresh scheduler to where the run stopped.
            if scheduler.t_in_epochs:
                scheduler.step(start_epoch)
            else:
                scheduler.step_update(start_epoch * upe)
        log.write(f"Scheduled epochs: {recipe.epochs}. LR stepped per "
                  f"{'epoch' if scheduler.t_in_epochs else 'update'}.\n")
        for epoch in range(start_epoch, end_epoch):
            # timm computes num_updates = epoch * updates_per_epoch; the bug counts from this process's start.
            first_epoch = start_epoch if recipe.resume == "num_updates_reset" and resumed else 0
            num_updates = (epoch - first_epoch) * upe
            loss_avg, count = 0.0, 0
            batches = list(train)
            for update_idx in range(upe):
                step = epoch * upe + update_idx
                if resumed and record.resume_step is None:
                    record.resume_step = step
                loss_value = 0.0
                for x, y in batches[update_idx * recipe.grad_accum:(update_idx + 1) * recipe.grad_accum]:
                    if recipe.blowup_step is not None and step >= recipe.blowup_step:
                        x = x * 1000.0
                    loss = _loss(recipe, model(x), y) / recipe.grad_accum
                    loss.backward()
                    loss_value += float(loss)
                norms = [p.grad.norm() for p in model.parameters()]
                grad_norm = float(torch.stack(norms).norm())
                if recipe.clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
                optimizer.step()
                optimizer.zero_grad()
                lr = sum(g["lr"] for g in optimizer.param_groups) / len(optimizer.param_groups)
                loss_avg, count = loss_avg + loss_value, count + 1
                record.updates.append((step, lr, loss_value, grad_norm))
                last = update_idx == upe - 1
                if update_idx % recipe.log_interval == 0 or last:
                    record.logged_steps.append(step)
                    log.write(f"Train: {epoch} [{update_idx:>4d}/{upe} ({100.0 * (update_idx + 1) / upe:>3.0f}%)]  "
                              f"Loss: {loss_value:#.3g} ({loss_avg / count:#.3g})  "
                              f"Time: 0.004s, 4000.00/s  (0.004s, 4000.00/s)  LR: {lr:.3e}  Data: 0.000 (0.000)\n")
                    if writer is not None:
                        writer.add_scalar("train/lr", lr, step)
                        writer.add_scalar("train/loss", loss_value, step)
                        writer.add_scalar("train/grad_norm", grad_norm, step)
                num_updates += 1
                if recipe.per_update:
                    scheduler.step_update(num_updates=num_updates, metric=loss_avg / count)
            metrics = _validate(recipe, model, val, log)
            if ema is not None:
                metrics = _validate(recipe, ema, val, log, name="Test (EMA)")  # the EMA update is never called
            record.evals.append((epoch * upe + upe - 1, metrics["top1"], metrics["top5"]))
            if writer is not None:
                writer.add_scalar("eval/top1", metrics["top1"], epoch * upe + upe - 1)
            if recipe.summary:
                _summary_row(out / "summary.csv", epoch, loss_avg / count, metrics, optimizer)
            if recipe.epoch_step:
                scheduler.step(epoch + recipe.extra_epoch_offset, metrics["top1"])
            if recipe.checkpoints or recipe.resume:
                state = {"epoch": epoch, "arch": "tinymlp", "state_dict": model.state_dict(), "version": 2,
                         "args": recipe.args or {}, "metric": metrics["top1"]}
                if recipe.keep_optimizer:
                    state["optimizer"] = optimizer.state_dict()
                torch.save(state, out / "last.pth.tar")
    if writer is not None:
        writer.close()


def _summary_row(path: Path, epoch: int, train_loss: float, metrics: dict, optimizer) -> None:
    """timm's utils.update_summary: epoch, train_*, eval_*, lr (the LR after the epoch)."""
    row = {"epoch": epoch, "train_loss": train_loss, "eval_loss": metrics["loss"],
           "eval_top1": metrics["top1"], "eval_top5": metrics["top5"], "lr": optimizer.param_groups[0]["lr"]}
    new = not path.exists()
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
