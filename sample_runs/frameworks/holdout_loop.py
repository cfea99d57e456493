"""A hand-written PyTorch training loop with the knobs real scripts get wrong (order, interval, accumulation)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from holdout_common import batches, grad_norm


def train(model, opt, x, y, *, epochs: int, bs: int, log, sched=None, sched_when: str = "step",
          accum: int = 1, clip: float | None = None, corrupt=None, start_epoch: int = 0,
          global_step: int = 0, log_every: int = 1, epoch_end=None, step_end=None, seed: int = 0,
          targets=None, extra=None):
    """Train; returns the optimizer-step count. ``sched_when``: step | epoch | before (stepped before
    optimizer.step) | never. ``corrupt(step, xb, yb)`` may return a damaged batch."""
    spe = math.ceil(math.ceil(len(x) / bs) / accum)
    for epoch in range(start_epoch, epochs):
        model.train()
        micro = 0
        for xb, yb in batches(x, y, bs, seed * 1000 + epoch):
            if corrupt is not None:
                xb, yb = corrupt(global_step, epoch, xb, yb)
            if targets is not None:
                yb = targets(epoch, yb)
            loss = F.cross_entropy(model(xb), yb)
            (loss / accum).backward()
            micro += 1
            if micro % accum:
                continue
            gn = grad_norm(model)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if sched is not None and sched_when == "before":
                sched.step()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sched is not None and sched_when == "step":
                sched.step()
            if global_step % log_every == 0:
                vals = {"loss": float(loss.detach()), "lr": lr, "grad_norm": gn, "epoch": epoch,
                        "iter": (micro // accum) - 1}
                if extra is not None:
                    vals.update(extra(opt))
                log(global_step, vals, spe)
            global_step += 1
            if step_end is not None and step_end(global_step) is False:
                return global_step
        if sched is not None and sched_when == "epoch":
            sched.step()
        if epoch_end is not None:
            epoch_end(epoch, global_step)
    return global_step


@torch.no_grad()
def accuracy(model, x, y) -> tuple[float, float]:
    model.eval()
    out = model(x)
    loss = float(F.cross_entropy(out, y))
    acc = float((out.argmax(1) == y).float().mean())
    model.train()
    return loss, acc
