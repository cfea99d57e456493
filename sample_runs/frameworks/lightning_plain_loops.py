"""Plain PyTorch loops for the framework corpus (no Lightning, no timm; the file carries this folder's
`lightning_` prefix only because the corpus generator owns that name space).

Written unlike `sample_runs/corpus_loop.py` on purpose: the loop is a generator that yields one record per
optimizer step, and separate sinks (a tqdm bar with a postfix, a metrics.jsonl, a SummaryWriter) consume
the stream, the way many hand-written scripts bolt logging onto a loop. A restart is a second call of
`train_steps` in a fresh interpreter state, resuming from `state.pt`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.nn import functional as F
from torch.optim import lr_scheduler as S

from frameworks_common_pl import (
    blobs,
    collapse_step,
    departure_window,
    divergence_onset,
    expect,
    first_nonfinite,
    regression,
    log_interval,
    replay_torch,
    runaway_step,
    seed_everything,
    tiny_mlp,
)

STEPS_PER_EPOCH = 16


@dataclass
class PlainCase:
    name: str
    description: str
    build: Callable                      # (optimizer) -> scheduler
    sink: str                            # tqdm | jsonl | tb
    epochs: int = 10
    lr: float = 0.1
    optimizer: str = "sgd"
    clip: float | None = None
    restart_at_epoch: int | None = None
    restore_scheduler: bool = True
    scheduler_in_state: bool = True      # state.pt carries the scheduler state_dict
    fast_forward: bool = False           # without it, step the fresh scheduler global_step times
    task: str = "classify"               # classify | regression
    labels: list[tuple[str, str]] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    reference: Callable | None = None
    reference_per_epoch: bool = False
    framework: str = "plain"

    @property
    def healthy(self) -> bool:
        return not self.labels


def train_steps(case: PlainCase, run_dir: Path, first_epoch: int, last_epoch: int) -> Iterator[dict]:
    """Yield {step, epoch, loss, lr, grad_norm} per optimizer step; save state.pt after every epoch."""
    seed_everything(first_epoch)
    regress = case.task == "regression"
    x, y = (regression if regress else blobs)(STEPS_PER_EPOCH * 16, seed=7)
    model = tiny_mlp(out=1 if regress else 4)
    criterion = F.mse_loss if regress else F.cross_entropy
    optimizer = (torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9) if case.optimizer == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=case.lr))
    scheduler = case.build(optimizer)
    if first_epoch:
        state = torch.load(run_dir / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if case.restore_scheduler:
            scheduler.load_state_dict(state["scheduler"])
        elif case.fast_forward:
            for _ in range(first_epoch * STEPS_PER_EPOCH):
                scheduler.step()
    order = torch.Generator().manual_seed(11)
    for epoch in range(last_epoch):
        perm = torch.randperm(len(x), generator=order)  # drawn every epoch so a restart sees the same order
        if epoch < first_epoch:
            continue
        for i in range(STEPS_PER_EPOCH):
            idx = perm[i * 16:(i + 1) * 16]
            loss = criterion(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), case.clip or float("inf"))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            yield {"step": epoch * STEPS_PER_EPOCH + i, "epoch": epoch, "loss": float(loss), "lr": lr,
                   "grad_norm": float(norm)}
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}
        if case.scheduler_in_state:
            state["scheduler"] = scheduler.state_dict()
        torch.save(state, run_dir / "state.pt")


def _sink(case: PlainCase, run_dir: Path, records: Iterator[dict], lifetime: int) -> list[dict]:
    seen = []
    if case.sink == "jsonl":
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps({k: record[k] for k in ("step", "epoch", "loss", "lr", "grad_norm")}) + "\n")
                seen.append(record)
    elif case.sink == "tqdm":
        from tqdm import tqdm
        with open(run_dir / "train.log", "a", encoding="utf-8") as stream:
            bar = None
            for record in records:
                if bar is None or record["epoch"] != bar.epoch:
                    if bar is not None:
                        bar.close()
                    bar = tqdm(total=STEPS_PER_EPOCH, desc=f"epoch {record['epoch']}", file=stream, ascii=True,
                               mininterval=0, bar_format="{l_bar}{bar:10}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
                    bar.epoch = record["epoch"]
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.3g}", refresh=False)
                bar.update(1)
                seen.append(record)
            if bar is not None:
                bar.close()
    else:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(run_dir / "runs"), filename_suffix=f".lifetime{lifetime}")
        for record in records:
            for tag in ("loss", "lr", "grad_norm"):
                writer.add_scalar(f"train/{tag}", record[tag], record["step"])
            seen.append(record)
        writer.close()
    return seen


def generate_plain_case(case: PlainCase, out: Path) -> dict:
    """Run one plain case (and its restart) into out/name and return its CORPUS.json entry."""
    run_dir = out / case.name
    run_dir.mkdir(parents=True)
    stop = case.restart_at_epoch or case.epochs
    records = _sink(case, run_dir, train_steps(case, run_dir, 0, stop), 0)
    resumed = []
    if case.restart_at_epoch:
        resumed = _sink(case, run_dir, train_steps(case, run_dir, stop, case.epochs), 1)
    if case.scheduler_in_state:
        (run_dir / "state.pt").unlink()  # scratch file; kept only where its missing keys are the evidence
    everything = records + resumed
    if case.healthy and not all(math.isfinite(r["loss"]) and r["loss"] < 1e3 for r in everything):  # noqa: PLR2004
        raise AssertionError(f"healthy case {case.name} has a bad loss")
    return {
        "healthy": case.healthy, "description": case.description, "framework": case.framework,
        "logger": {"jsonl": "jsonl", "tqdm": "stdout", "tb": "tensorboard"}[case.sink], "intent": "none",
        "expected_codes": [_measure(case, everything, resumed, code, rule) for code, rule in case.labels],
        "allowed_codes": case.allowed, "cli_schedule": None,
    }


def _measure(case: PlainCase, records: list[dict], resumed: list[dict], code: str, rule: str) -> dict:
    lr = [(r["step"], r["lr"]) for r in records]
    loss = [(r["step"], r["loss"]) for r in records]
    if rule == "collapse":
        return expect(code, collapse_step(lr), 1, "first logged lr <= 1e-4 of the highest lr before it")
    if rule == "runaway":
        onset = runaway_step(lr)
        further = next((s for s, v in lr if v > 30 * lr[0][1]), lr[-1][0])
        return expect(code, onset, max(1, further - onset), "first lr above 10x the first; tolerance to 30x")
    if rule == "divergence":
        onset, width = divergence_onset(loss)
        return expect(code, onset, max(1, width), "end of the lowest 10-step mean loss; tolerance to the first "
                      "mean 2x it; the last quarter stays > 10x the minimum")
    if rule == "departure":
        reference = replay_torch(case.reference, case.lr, len(lr), STEPS_PER_EPOCH if case.reference_per_epoch else None)
        onset, window = departure_window(lr, reference)
        return expect(code, onset, max(window, log_interval(lr)), "first lr differing by >10% from the correctly "
                      "built scheduler replayed; tolerance reaches back to the first >1% difference")
    if rule == "resume":
        return expect(code, resumed[0]["step"], 1, "first step logged by the restarted process")
    raise KeyError(rule)


def _warmup_cosine(o):
    return S.LambdaLR(o, lambda s: (s + 1) / 16 if s < 16 else 0.5 * (1 + math.cos(math.pi * (s - 16) / 144)))


PLAIN_CASES = [
    PlainCase("plain_tqdm_steplr_collapse", "StepLR(step_size=30, gamma=0.1) meant per epoch, stepped per batch: "
              "0.1 -> 1e-6 by step 150; the LR only in a tqdm postfix in train.log.",
              lambda o: S.StepLR(o, 30, 0.1), "tqdm", epochs=14,
              labels=[("lr_collapse", "collapse")], allowed=["schedule_too_fast", "loss_plateau", "constant_lr"]),
    PlainCase("plain_jsonl_exponential_runaway", "ExponentialLR(gamma=1.05) on Adam with clip_grad_norm_(1.0), regression: lr "
              "1e-3 -> ~2000, the loss climbs far above its minimum without NaN; metrics.jsonl.",
              lambda o: S.ExponentialLR(o, 1.05), "jsonl", lr=1e-3, optimizer="adam", clip=1.0, epochs=14, task="regression",
              labels=[("lr_runaway", "runaway"), ("loss_divergence", "divergence")],
              allowed=["loss_plateau", "grad_explosion"]),
    PlainCase("plain_jsonl_healthy_cosine", "SGD + CosineAnnealingLR(T_max=160) per batch, as intended; metrics.jsonl.",
              lambda o: S.CosineAnnealingLR(o, 160), "jsonl"),
    PlainCase("plain_tb_restart_continues", "Warmup+cosine; the process stops after 5 epochs, the restart loads "
              "model, optimizer and scheduler from state.pt and writes a second event file continuing at step 80.",
              _warmup_cosine, "tb", restart_at_epoch=5),
    PlainCase("plain_tb_restart_fresh_scheduler", "The same restart, but the scheduler state is not loaded: the new "
              "event file continues at step 80 with the LR back at the warmup start.",
              _warmup_cosine, "tb", restart_at_epoch=5, restore_scheduler=False,
              labels=[("resume_drift", "resume")], allowed=["schedule_incomplete", "lr_mismatch"]),
    PlainCase("plain_tb_restart_no_scheduler_state", "state.pt holds model, optimizer and epoch but no scheduler; "
              "the restart fast-forwards a fresh scheduler 80 times, so the LR is right (state.pt kept as evidence).",
              _warmup_cosine, "tb", restart_at_epoch=5, restore_scheduler=False, scheduler_in_state=False,
              fast_forward=True, labels=[("missing_resume_state", "resume")], allowed=["resume_drift"]),
]
