"""Hold-out cases: loops in the style of timm's train.py with real ``timm.scheduler`` classes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import holdout_common as c
from holdout_common import batches, grad_norm

DIM, HID, N, BS = 16, 32, 512, 32
UPE = N // BS  # updates per epoch
LOG_INTERVAL = 4


def _timm_loop(run, *, seed, classes, epochs, make_sched, drive, spread=1.0, summary=False, val=False):
    """drive: 'per_epoch' (step(epoch) at epoch end), 'per_update' (step_update + step), 'batch_as_epoch'
    (the bug: step(num_updates) after every batch)."""
    c.seed_all(seed)
    x, y = c.blobs(N, DIM, classes, seed, spread=spread)
    xv, yv = c.blobs(256, DIM, classes, seed, spread=spread)
    model = c.mlp(DIM, HID, classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-5)
    sched = make_sched(opt)
    logged = []
    out = open(run / "output.log", "w", encoding="utf-8")
    rows = []
    num_updates = 0
    for epoch in range(epochs):
        model.train()
        losses = []
        for bi, (xb, yb) in enumerate(batches(x, y, BS, seed * 100 + epoch)):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            num_updates += 1
            losses.append(loss.item())
            lr = opt.param_groups[0]["lr"]
            if bi % LOG_INTERVAL == 0 or bi == UPE - 1:
                logged.append((epoch * UPE + bi, lr, float(loss)))
                avg = sum(losses) / len(losses)
                out.write(f"Train: {epoch} [{bi:>4d}/{UPE} ({100.0 * bi / (UPE - 1):>3.0f}%)]  "
                          f"Loss: {float(loss):#.3g} ({avg:#.3g})  Time: 0.004s, 8000.00/s  "
                          f"(0.005s, 6400.00/s)  LR: {lr:.3e}  Data: 0.000 (0.000)\n")
            if drive == "per_update":
                sched.step_update(num_updates=num_updates)
            elif drive == "batch_as_epoch":
                sched.step(num_updates)
        row = {"epoch": epoch, "train_loss": sum(losses) / len(losses)}
        if val:
            model.eval()
            with torch.no_grad():
                o = model(xv)
                vl = float(F.cross_entropy(o, yv))
                top = o.topk(5, 1).indices
                a1 = float((top[:, 0] == yv).float().mean()) * 100
                a5 = float((top == yv[:, None]).any(1).float().mean()) * 100
            out.write(f"Test: [   7/7]  Time: 0.002 (0.002)  Loss:  {vl:.4f} ({vl:.4f})  "
                      f"Acc@1: {a1:.4f} ({a1:.4f})  Acc@5: {a5:.4f} ({a5:.4f})\n")
            row.update(eval_loss=vl, eval_top1=a1, eval_top5=a5)
        row["lr"] = opt.param_groups[0]["lr"]
        rows.append(row)
        if drive in ("per_update", "per_epoch"):
            sched.step(epoch + 1)
    out.close()
    if summary:
        keys = list(rows[0])
        with open(run / "summary.csv", "w", encoding="utf-8") as fh:
            fh.write(",".join(keys) + "\n")
            for r in rows:
                fh.write(",".join(repr(r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys) + "\n")
    return logged, rows


def cosine_stepped_per_batch(run):
    ts = c.timm_scheduler()
    epochs = 10
    c.write_yaml(run / "args.yaml", {"model": "mlp_tiny", "opt": "sgd", "lr": 0.05, "momentum": 0.9,
                                     "weight_decay": 2e-5, "sched": "cosine", "epochs": epochs,
                                     "warmup_epochs": 2, "warmup_lr": 1e-5, "min_lr": 1e-4,
                                     "batch_size": BS, "log_interval": LOG_INTERVAL})

    def make(opt):
        return ts.CosineLRScheduler(opt, t_initial=epochs, lr_min=1e-4, warmup_t=2, warmup_lr_init=1e-5,
                                    t_in_epochs=True)
    logged, _ = _timm_loop(run, seed=51, classes=4, epochs=epochs, make_sched=make, drive="batch_as_epoch",
                           summary=True)
    ref = c.replay_timm(make, 0.05, epochs * UPE, per_update=False, updates_per_epoch=UPE)
    onset = c.measure_departure([(s, lr) for s, lr, _ in logged], ref)
    return c.case_meta(
        healthy=False, framework="timm", logger="stdout", intent="stated",
        description="timm CosineLRScheduler(t_initial=10 epochs, warmup_t=2) but step(num_updates) is called "
                    "after every batch: warmup and cosine are spent by update 10, then the LR sits at min_lr.",
        expected=[c.code("schedule_too_fast", onset, 8, "first logged update whose LR is >2x off the same "
                         "timm scheduler stepped with step(epoch) once per epoch (replayed)")],
        allowed=["constant_lr", "warmup_missing"])


def cosine_warmup_per_update_healthy(run):
    ts = c.timm_scheduler()
    epochs = 10
    c.write_yaml(run / "args.yaml", {"model": "mlp_tiny", "opt": "sgd", "lr": 0.05, "momentum": 0.9,
                                     "sched": "cosine", "sched_on_updates": True, "epochs": epochs,
                                     "warmup_epochs": 2, "warmup_lr": 1e-5, "min_lr": 1e-5,
                                     "batch_size": BS, "num_classes": 10})

    def make(opt):
        return ts.CosineLRScheduler(opt, t_initial=epochs * UPE, lr_min=1e-5, warmup_t=2 * UPE,
                                    warmup_lr_init=1e-5, t_in_epochs=False)
    logged, rows = _timm_loop(run, seed=52, classes=10, epochs=epochs, make_sched=make, drive="per_update",
                              spread=1.6, summary=True, val=True)
    ref = c.replay_timm(make, 0.05, epochs * UPE, per_update=True)
    assert c.measure_departure([(s, lr) for s, lr, _ in logged], ref, factor=1.001) is None
    top5 = [r["eval_top5"] for r in rows[1:]]
    return c.case_meta(
        healthy=True, framework="timm", logger="stdout+summary.csv", intent="stated",
        description="timm CosineLRScheduler on updates with a 2-epoch warmup that finishes at min_lr; "
                    f"Acc@1 rises to {rows[-1]['eval_top1']:.1f} and settles while Acc@5 stays within "
                    f"{min(top5):.1f}-{max(top5):.0f} from epoch 1.")


def step_decay_per_batch(run):
    ts = c.timm_scheduler()

    def make(opt):
        return ts.StepLRScheduler(opt, decay_t=3, decay_rate=0.1, warmup_t=0, t_in_epochs=True)
    logged, _ = _timm_loop(run, seed=53, classes=4, epochs=10, make_sched=make, drive="batch_as_epoch")
    series = [(s, lr) for s, lr, _ in logged]
    assert series[-1][1] < 1e-20
    return c.case_meta(
        healthy=False, framework="timm", logger="stdout", intent="none",
        description="timm StepLRScheduler(decay_t=3, decay_rate=0.1) meant per epoch, stepped with the "
                    "update count after every batch: LR 0.05 -> ~1e-55 while training goes on.",
        expected=[c.code("lr_collapse", c.measure_lr_collapse(series), 8, "first logged update whose LR is "
                         "below 1e-4 x the highest LR before it")],
        allowed=["schedule_too_fast", "constant_lr", "loss_plateau"])


CASES = {
    "timm_cosine_step_per_batch": cosine_stepped_per_batch,
    "timm_cosine_warmup_updates_top5_saturated": cosine_warmup_per_update_healthy,
    "timm_step_decay_per_batch_no_config": step_decay_per_batch,
}
