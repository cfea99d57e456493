"""A hand-written PyTorch training loop, configurable the ways other people's scripts differ.

`Recipe` holds the knobs: the scheduler and how it is stepped (per batch, per epoch, never, before
the optimizer, pre-stepped), accumulation, what is logged where (SummaryWriter tags, a tqdm bar with
postfix, `key=value` or `Step N:` lines, python logging, JSONL, CSV), the step convention (0- or
1-based), the checkpoint layout and what a resumed process restores. `lifetime()` is one process;
it records every value it wrote into `Written` so the case can measure its label from the same numbers.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import frameworks_common_hf as common


@dataclass
class Recipe:
    # optimisation
    optimizer: str = "adamw"              # adamw | adam | sgd
    lr: float = 3e-3
    weight_decay: float = 0.0
    scheduler: str = "none"               # none | onecycle | cosine | warmup_cosine | step | exp | linear_warmup
    sched_args: dict = field(default_factory=dict)
    stepping: str = "batch"               # batch | epoch | never | before_optimizer
    prestep: bool = False
    accum: int = 1
    clip: float | None = None
    epochs: int = 10
    batch_size: int = 32
    n_train: int = 320
    task: str = "classification"           # classification | regression
    n_classes: int = 8
    label_noise: float = 0.0
    val_label_noise: float = 0.0
    blobs: bool = False
    seed: int = 0
    # injected behaviour
    grad_hook_growth: tuple[int, float] | None = None   # (start step, factor per step) on every grad
    lr_spike: tuple[int, float] | None = None           # (step, new lr) set by a "manual override"
    val_on_stale_copy: bool = False
    penalty_sign_bug: tuple[int, float] | None = None   # (start step, lam): loss - lam*||w||^2 from then on
    second_lr_source: str | None = None                 # "config" -> one sink logs recipe.lr instead
    # logging
    sinks: tuple[str, ...] = ("tb",)                    # tb | tqdm | kv | free | logging | jsonl | csv
    tags: dict = field(default_factory=lambda: {"lr": "train/lr", "loss": "train/loss"})
    step_base: int = 0
    log_every: int = 1
    log_momentum: bool = False
    log_grad_norm: bool = True
    validate: bool = True
    # checkpoints and resume
    ckpt_layout: str | None = None        # epoch_pth | hf_dirs | step_pt | last_pt
    ckpt_every: int = 1
    crash_after_epoch: int | None = None
    resume: str = "correct"   # correct | fresh_scheduler | start_epoch_zero | weights_only | fastforward | no_optimizer
    tb_dir: str = "runs"
    log_file: str = "train.log"


@dataclass
class Written:
    steps: list = field(default_factory=list)       # logged step of every train record
    lr: list = field(default_factory=list)
    lr_other: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    momentum: list = field(default_factory=list)
    val: list = field(default_factory=list)         # (step, {name: value})
    first_step: int | None = None


def build_scheduler(recipe: Recipe, optimizer):
    kind, args = recipe.scheduler, dict(recipe.sched_args)
    if kind == "none":
        return None
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, **args)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **args)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, **args)
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, **args)
    if kind == "lambda_growth":
        rate = args["rate"]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 + rate * step)
    if kind == "exp":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, **args)
    warmup, total = args["warmup"], args["total"]
    if kind == "warmup_cosine":
        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * progress))
    elif kind == "linear_warmup":
        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))
    else:
        raise ValueError(kind)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def reference_lrs(recipe: Recipe, n_steps: int, stepping: str = "batch", steps_per_epoch: int = 1) -> list[float]:
    """The LR each 0-based optimizer step uses under the correctly stepped scheduler (a replay)."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(recipe, [param])
    scheduler = build_scheduler(recipe, optimizer)
    lrs = []
    for step in range(n_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None and (stepping == "batch" or (step + 1) % steps_per_epoch == 0):
            scheduler.step()
    return lrs


def make_optimizer(recipe: Recipe, params):
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay or 0.01)


class Sinks:
    """Every place a value goes, written the way that kind of script writes it."""

    def __init__(self, recipe: Recipe, run_dir: Path, total_steps: int, first_step: int):
        self.recipe, self.run_dir = recipe, run_dir
        self.writer = self.bar = self.jsonl = self.csv = self.logger = None
        if "tb" in recipe.sinks:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(run_dir / recipe.tb_dir))
        if "tqdm" in recipe.sinks:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=first_step, mininterval=0, miniters=recipe.log_every,
                            file=os.sys.stdout, desc="train", dynamic_ncols=False, ncols=96)
        if "jsonl" in recipe.sinks:
            self.jsonl = open(run_dir / "metrics.jsonl", "a")
        if "csv" in recipe.sinks:
            path = run_dir / "logs" / "metrics.csv"
            path.parent.mkdir(exist_ok=True)
            new = not path.exists()
            self.csv = open(path, "a")
            if new:
                self.csv.write("step,epoch,loss,lr,grad_norm,val_loss,val_acc\n")
        if "logging" in recipe.sinks:
            logging.basicConfig(level=logging.INFO, stream=os.sys.stdout, force=True,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            self.logger = logging.getLogger("trainer")

    def train(self, step: int, epoch: int, values: dict, other_lr: float | None) -> None:
        r, tags = self.recipe, self.recipe.tags
        if self.writer is not None:
            self.writer.add_scalar(tags["loss"], values["loss"], step)
            self.writer.add_scalar(tags["lr"], values["lr"], step)
            for key in ("grad_norm", "momentum"):
                if key in values:
                    self.writer.add_scalar(tags.get(key, "train/" + key), values[key], step)
        stdout_lr = other_lr if other_lr is not None else values["lr"]
        if "kv" in r.sinks:
            extra = "".join(f" {key}={values[key]:.6g}" for key in ("grad_norm", "momentum") if key in values)
            print(f"epoch={epoch} step={step} loss={values['loss']:.6g} lr={stdout_lr:.6g}{extra}", flush=True)
        if "free" in r.sinks:
            print(f"Step {step}: loss {values['loss']:.5f}, lr {stdout_lr:.4e}"
                  + (f", grad norm {values['grad_norm']:.4g}" if "grad_norm" in values else ""), flush=True)
        if self.logger is not None:
            self.logger.info("iter %d | epoch %d | loss %.5f | lr %.4e", step, epoch, values["loss"], stdout_lr)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step, "epoch": epoch, **values}) + "\n")
            self.jsonl.flush()
        if self.csv is not None:
            self.csv.write(f"{step},{epoch},{values['loss']!r},{values['lr']!r},{values.get('grad_norm', '')},,\n")

    def tick(self, values: dict, other_lr: float | None) -> None:
        if self.bar is not None:
            lr = other_lr if other_lr is not None else values["lr"]
            self.bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.3e}", refresh=False)
            self.bar.update(1)

    def validation(self, step: int, epoch: int, metrics: dict) -> None:
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"val/{key}", value, step)
        if "kv" in self.recipe.sinks:
            print(f"epoch={epoch} step={step} " + " ".join(f"val_{k}={v:.6g}" for k, v in metrics.items()), flush=True)
        if self.logger is not None:
            self.logger.info("validation epoch %d step %d: %s", epoch, step,
                             ", ".join(f"val_{k}={v:.4f}" for k, v in metrics.items()))
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()}}) + "\n")
        if self.csv is not None:
            self.csv.write(f"{step},{epoch},,,,{metrics.get('loss', '')},{metrics.get('acc', '')}\n")
        if self.bar is not None:
            self.bar.write(f"Epoch {epoch} | " + " ".join(f"val_{k} {v:.4f}" for k, v in metrics.items()))

    def close(self) -> None:
        for handle in (self.writer, self.bar, self.jsonl, self.csv):
            if handle is not None:
                handle.close()


def _data(recipe: Recipe):
    if recipe.task == "regression":
        x, y = common.regression_data(recipe.n_train, recipe.seed)
        vx, vy = common.regression_data(128, recipe.seed + 100)
        return x, y, vx, vy, 1
    x, y = common.classification_data(recipe.n_train, recipe.seed, n_classes=recipe.n_classes,
                                      label_noise=recipe.label_noise, blobs=recipe.blobs)
    vx, vy = common.classification_data(256, recipe.seed + 100, n_classes=recipe.n_classes,
                                        label_noise=recipe.val_label_noise, blobs=recipe.blobs)
    return x, y, vx, vy, recipe.n_classes


def _checkpoint(recipe, run_dir, model, optimizer, scheduler, epoch, step):
    layout = recipe.ckpt_layout
    if layout is None:
        return
    sched = scheduler.state_dict() if scheduler is not None else None
    if layout == "epoch_pth":
        path = run_dir / "checkpoints" / f"epoch_{epoch}.pth"
        path.parent.mkdir(exist_ok=True)
        state = {"epoch": epoch, "global_step": step, "model_state_dict": model.state_dict(),
                 "optimizer_state_dict": optimizer.state_dict()}
        if recipe.resume != "fastforward":
            state["scheduler_state_dict"] = sched
        torch.save(state, path)
    elif layout == "hf_dirs":
        folder = run_dir / "output" / f"checkpoint-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        if recipe.resume not in ("weights_only", "no_optimizer"):
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        if recipe.resume != "weights_only":
            if sched is not None:
                torch.save(sched, folder / "scheduler.pt")
            (folder / "state.json").write_text(json.dumps({"global_step": step, "epoch": epoch}))
    elif layout == "step_pt":
        path = run_dir / "ckpt" / f"step_{step:06d}.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save({"model": model.state_dict(), "optim": optimizer.state_dict(), "sched": sched,
                    "step": step, "epoch": epoch, "rng": torch.get_rng_state()}, path)
    elif layout == "last_pt":
        path = run_dir / "weights" / "last.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save({"epoch": epoch - 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": sched, "updates": step}, path)


def _restore(recipe, run_dir, model, optimizer, scheduler):
    """Load the newest checkpoint the way the case's script does; return (start_epoch, global_step)."""
    layout = recipe.ckpt_layout
    if layout == "epoch_pth":
        path = max((run_dir / "checkpoints").glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model_state_dict"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        if recipe.resume == "correct":
            scheduler.load_state_dict(state["scheduler_state_dict"])
        elif recipe.resume == "fastforward":
            for _ in range(state["global_step"]):
                scheduler.step()
        epoch, step = state["epoch"], state["global_step"]
    elif layout == "hf_dirs":
        folder = max((run_dir / "output").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        model.load_state_dict(torch.load(folder / "pytorch_model.bin"))
        if (folder / "optimizer.pt").exists():
            optimizer.load_state_dict(torch.load(folder / "optimizer.pt"))
        if recipe.resume in ("correct", "no_optimizer") and (folder / "scheduler.pt").exists():
            scheduler.load_state_dict(torch.load(folder / "scheduler.pt"))
        step = int(folder.name.split("-")[1])
        epoch = step // recipe._steps_per_epoch
    elif layout == "step_pt":
        path = max((run_dir / "ckpt").glob("step_*.pt"))
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
        if recipe.resume in ("correct", "start_epoch_zero"):
            scheduler.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        epoch, step = state["epoch"], state["step"]
    else:
        state = torch.load(run_dir / "weights" / "last.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if recipe.resume in ("correct", "start_epoch_zero"):
            scheduler.load_state_dict(state["scheduler"])
        epoch, step = state["epoch"] + 1, state["updates"]
    if recipe.resume == "start_epoch_zero":
        epoch, step = 0, 0
    return epoch, step


def lifetime(recipe: Recipe, run_dir: Path, resuming: bool, out_json: Path) -> None:
    """One process: build everything, optionally restore, train to the end (or crash), dump `Written`."""
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    x, y, vx, vy, n_out = _data(recipe)
    loader = DataLoader(TensorDataset(x, y), batch_size=recipe.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(recipe.seed))
    steps_per_epoch = math.ceil(len(loader) / recipe.accum)
    recipe._steps_per_epoch = steps_per_epoch
    model = common.mlp(n_out=n_out)
    frozen = copy.deepcopy(model) if recipe.val_on_stale_copy else None
    optimizer = make_optimizer(recipe, model.parameters())
    scheduler = build_scheduler(recipe, optimizer)
    if recipe.prestep:
        scheduler.step()
    start_epoch, step = 0, 0
    if resuming:
        start_epoch, step = _restore(recipe, run_dir, model, optimizer, scheduler)
    loss_fn = nn.MSELoss() if recipe.task == "regression" else nn.CrossEntropyLoss()
    scale = {"value": 1.0}
    if recipe.grad_hook_growth is not None:
        for param in model.parameters():
            param.register_hook(lambda grad: grad * scale["value"])
    written = Written(first_step=step + recipe.step_base)
    sinks = Sinks(recipe, run_dir, recipe.epochs * steps_per_epoch, step)
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        for index, (xb, yb) in enumerate(loader):
            if recipe.grad_hook_growth is not None and step >= recipe.grad_hook_growth[0]:
                scale["value"] = recipe.grad_hook_growth[1] ** (step - recipe.grad_hook_growth[0] + 1)
            loss = loss_fn(model(xb), yb)
            total = loss
            if recipe.penalty_sign_bug is not None and step >= recipe.penalty_sign_bug[0]:
                total = loss - recipe.penalty_sign_bug[1] * sum((p ** 2).sum() for p in model.parameters())
            (total / recipe.accum).backward()
            if (index + 1) % recipe.accum and index + 1 != len(loader):
                continue
            if recipe.lr_spike is not None and step == recipe.lr_spike[0]:
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr_spike[1]
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip if recipe.clip else float("inf"))
            lr_used = optimizer.param_groups[0]["lr"]
            if recipe.stepping == "before_optimizer":
                scheduler.step()
                lr_used = optimizer.param_groups[0]["lr"]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if recipe.stepping == "batch" and scheduler is not None:
                scheduler.step()
            logged = step + recipe.step_base
            values = {"loss": loss.item(), "lr": lr_used}
            if recipe.log_grad_norm:
                values["grad_norm"] = float(norm)
            if recipe.log_momentum:
                group = optimizer.param_groups[0]
                values["momentum"] = group["betas"][0] if "betas" in group else group["momentum"]
            other = recipe.lr if recipe.second_lr_source == "config" else None
            if (step + 1) % recipe.log_every == 0 or step == 0:
                sinks.train(logged, epoch, values, other)
                written.steps.append(logged)
                written.lr.append(lr_used)
                written.lr_other.append(other if other is not None else lr_used)
                written.loss.append(values["loss"])
                written.grad_norm.append(values.get("grad_norm", math.nan))
                written.momentum.append(values.get("momentum", math.nan))
            sinks.tick(values, other)
            step += 1
        if recipe.stepping == "epoch" and scheduler is not None:
            scheduler.step()
        if recipe.validate:
            metrics = _validate(frozen if frozen is not None else model, vx, vy, loss_fn, recipe)
            sinks.validation(step - 1 + recipe.step_base, epoch, metrics)
            written.val.append((step - 1 + recipe.step_base, metrics))
        if (epoch + 1) % recipe.ckpt_every == 0:
            _checkpoint(recipe, run_dir, model, optimizer, scheduler, epoch + 1, step)
        if not resuming and recipe.crash_after_epoch is not None and epoch + 1 == recipe.crash_after_epoch:
            sinks.close()
            out_json.write_text(json.dumps(written.__dict__))
            print(f"Killed: node preempted after epoch {epoch + 1}", flush=True)
            raise common.Crash()
    sinks.close()
    out_json.write_text(json.dumps(written.__dict__))


@torch.no_grad()
def _validate(model, vx, vy, loss_fn, recipe: Recipe) -> dict:
    model.eval()
    out = model(vx)
    metrics = {"loss": float(loss_fn(out, vy))}
    if recipe.task == "classification":
        metrics["acc"] = common.topk_accuracy(out, vy, 1)
        metrics["acc_top5"] = common.topk_accuracy(out, vy, 5)
    return metrics


def run(recipe: Recipe, run_dir: Path) -> list[Written]:
    """All lifetimes of a case, each in its own forked process; what each one wrote."""
    lifetimes = []
    for resuming in ([False, True] if recipe.crash_after_epoch is not None else [False]):
        out_json = run_dir / f".written_{len(lifetimes)}.json"
        log = run_dir / recipe.log_file if set(recipe.sinks) & {"tqdm", "kv", "free", "logging"} else None
        if resuming:
            import time
            time.sleep(1.1)  # a restart comes later: a new event file name, a later timestamp
        code = common.run_forked(lifetime, log, recipe, run_dir, resuming, out_json)
        if code not in (0, 3):
            raise RuntimeError(f"{run_dir.name}: lifetime failed with {code}; see {log}")
        lifetimes.append(Written(**json.loads(out_json.read_text())))
        out_json.unlink()
    return lifetimes
