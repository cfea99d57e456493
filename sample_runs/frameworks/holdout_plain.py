"""Hold-out cases: plain PyTorch loops, each logging in its own way (schedule and numerics failures)."""
from __future__ import annotations

import math

import torch

import holdout_common as c
from holdout_loop import accuracy, train

DIM, HID, CLS, N, BS = 16, 32, 4, 512, 32
SPE = N // BS  # 16 optimizer steps per epoch


def _data(seed):
    return c.blobs(N, DIM, CLS, seed)


def constant_lr_never_stepped(run):
    """Config asks for warmup + cosine; the scheduler is built but its step() call was lost in a refactor."""
    c.seed_all(11)
    x, y = _data(11)
    cfg = {"model": {"hidden": HID}, "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
           "lr_schedule": {"name": "warmup_cosine", "warmup_steps": 20, "total_steps": 12 * SPE},
           "data": {"batch_size": BS}, "epochs": 12}
    c.write_yaml(run / "config.yaml", cfg)
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

    def lam(s):
        return (s + 1) / 20 if s < 20 else 0.5 * (1 + math.cos(math.pi * (s - 20) / (12 * SPE - 20)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)  # noqa: F841 - never stepped: the bug
    log = c.RunLog(run, tb="tb")

    def sink(step, v, spe):
        log.log(step, {"train/loss": "loss", "train/lr": "lr"}, loss=v["loss"], lr=v["lr"])
    train(model, opt, x, y, epochs=12, bs=BS, log=sink, sched=None, seed=11)
    log.close()
    ref = c.replay(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lam), 3e-3, 12 * SPE)
    onset = c.measure_departure(log.series["lr"], ref)
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="stated",
        description="AdamW with a LambdaLR warmup+cosine from config.yaml that is built but never stepped; "
                    "the LR stays at its first warmup value 1.5e-4 for all 192 steps.",
        expected=[c.code("constant_lr", onset, 6, "first logged step whose LR is >2x off the config's "
                         "warmup+cosine replayed with LambdaLR")],
        allowed=["warmup_missing", "lr_mismatch"])


def intended_constant_lr(run):
    """Healthy twin: a constant LR on purpose, said so in the JSON config; JSON-lines metrics."""
    c.seed_all(12)
    x, y = _data(12)
    c.write_json(run / "hparams.json", {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                        "scheduler": "constant", "epochs": 10, "batch_size": BS})
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    log = c.RunLog(run, jsonl="metrics.jsonl")

    def sink(step, v, spe):
        if step % 2 == 0:
            log.log(step, loss=v["loss"], lr=v["lr"], epoch=v["epoch"])
    train(model, opt, x, y, epochs=10, bs=BS, log=sink, seed=12)
    log.close()
    return c.case_meta(
        healthy=True, framework="plain", logger="jsonl", intent="stated",
        description="SGD at a constant 0.05 stated as scheduler: constant in hparams.json; loss falls.")


def cosine_tmax_epochs_per_batch(run):
    """CosineAnnealingLR(T_max=epochs) stepped every batch: spent in the first epoch, then it oscillates."""
    c.seed_all(13)
    x, y = _data(13)
    epochs = 12
    c.write_json(run / "config.json", {"lr": 0.1, "optimizer": "SGD", "momentum": 0.9,
                                       "scheduler": "CosineAnnealingLR", "T_max": epochs, "epochs": epochs,
                                       "batch_size": BS, "eta_min": 0.0})
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    log = c.RunLog(run, stdout="train.log",
                   fmt=lambda step, loss, lr, epoch, it: f"Epoch {epoch} [{it + 1}/{SPE}] loss {loss:.4f} lr {lr:.6f}")

    def sink(step, v, spe):
        log.log(step, loss=v["loss"], lr=v["lr"], epoch=v["epoch"], it=v["iter"])
    train(model, opt, x, y, epochs=epochs, bs=BS, log=sink, sched=sched, sched_when="step", seed=13)
    log.close()
    ref = c.replay(lambda o: _per_epoch(o, epochs), 0.1, epochs * SPE)
    onset = c.measure_departure(log.series["lr"], ref)
    return c.case_meta(
        healthy=False, framework="plain", logger="stdout", intent="stated",
        description="CosineAnnealingLR(T_max=12) meant per epoch (config.json says epochs) stepped every "
                    "batch: the LR reaches 0 at step 12 and oscillates with period 24.",
        expected=[c.code("schedule_too_fast", onset, 4, "first step whose LR is >2x off CosineAnnealingLR"
                         "(T_max=12) stepped once per 16-step epoch (replayed)")],
        allowed=["schedule_overrun", "lr_collapse"])


def _per_epoch(opt, epochs):
    """Cosine over epochs, stepped per epoch, expressed per optimizer step (for the reference)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * (s // SPE) / epochs)))


def cosine_overrun_hardcoded_tmax(run):
    """T_max hard-coded for 8 epochs, the run extended to 12 with --epochs: the cosine climbs back."""
    c.seed_all(14)
    x, y = _data(14)
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8 * SPE, eta_min=1e-5)
    log = c.RunLog(run, tb="runs/exp1")

    def sink(step, v, spe):
        log.log(step, {"loss/train": "loss", "lr": "lr"}, loss=v["loss"], lr=v["lr"])
    train(model, opt, x, y, epochs=12, bs=BS, log=sink, sched=sched, seed=14)
    log.close()
    onset = c.measure_cosine_rise(log.series["lr"])
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="none",
        description="CosineAnnealingLR(T_max=128 steps) in a 192-step run, no config: after step 128 the "
                    "LR climbs back up towards 0.05.",
        expected=[c.code("schedule_overrun", onset, 6, "step of the logged LR's minimum, after which it "
                         "rises again")])


def nan_from_corrupt_batch(run):
    """A batch with an inf feature (bad preprocessing) at step 150 makes the weights NaN: print lines."""
    c.seed_all(15)
    x, y = _data(15)
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def corrupt(step, epoch, xb, yb):
        if step == 150:
            xb = xb.clone()
            xb[3, 5] = float("inf")
        return xb, yb
    log = c.RunLog(run, stdout="stdout.txt",
                   fmt=lambda step, loss, lr: f"it {step:5d} | loss {loss:.4f} | lr {lr:.2e}")

    def sink(step, v, spe):
        if step % 5 == 0 or not math.isfinite(v["loss"]):
            log.log(step, loss=v["loss"], lr=v["lr"])
    log.line("starting training: adam lr=2e-3 bs=32")
    train(model, opt, x, y, epochs=14, bs=BS, log=sink, corrupt=corrupt, seed=15)
    log.close()
    return c.case_meta(
        healthy=False, framework="plain", logger="stdout", intent="none",
        description="Adam loop; one batch at step 150 holds an inf feature, the loss is NaN from there on.",
        expected=[c.code("nan_onset", c.measure_nonfinite(log.series["loss"]), 5,
                         "first non-finite loss in stdout.txt")],
        allowed=["grad_explosion"])


def grad_spike_clipped(run):
    """Clipped SGD; at step 200 one batch is x1000 (a unit bug): the pre-clip grad norm jumps 3 orders."""
    c.seed_all(16)
    x, y = c.blobs(N, DIM, CLS, 16, spread=2.5)
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)

    def corrupt(step, epoch, xb, yb):
        # a collate bug: raw pixel units and the labels of the neighbouring shard for one batch
        return (xb * 1000.0, yb.roll(1)) if step == 200 else (xb, yb)
    log = c.RunLog(run, jsonl="train_metrics.jsonl")

    def sink(step, v, spe):
        log.log(step, loss=v["loss"], lr=v["lr"], grad_norm=v["grad_norm"])
    train(model, opt, x, y, epochs=20, bs=BS, log=sink, clip=1.0, corrupt=corrupt, seed=16)
    log.close()
    return c.case_meta(
        healthy=False, framework="plain", logger="jsonl", intent="none",
        description="Clipped SGD at 0.02; one batch scaled x1000 at step 200 sends the logged pre-clip "
                    "grad norm up by orders of magnitude; training recovers.",
        expected=[c.code("grad_explosion", c.measure_grad_spike(log.series["grad_norm"]), 2,
                         "first step whose grad_norm is >100x the median of the 10 before")],
        allowed=["loss_divergence"])


def exponential_gamma_above_one(run):
    """ExponentialLR(gamma=1.04) stepped per batch (meant 0.96 per epoch): LR and loss run away. CSV."""
    c.seed_all(17)
    x, y = c.blobs(N, DIM, CLS, 17, spread=2.5)
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.04)
    log = c.RunLog(run, csv="log.csv", csv_fields=["step", "epoch", "loss", "lr"])

    def sink(step, v, spe):
        log.log(step, loss=v["loss"], lr=v["lr"], epoch=v["epoch"])
    train(model, opt, x, y, epochs=20, bs=BS, log=sink, sched=sched, clip=5.0, seed=17)
    log.close()
    loss = log.series["loss"]
    expected = [c.code("lr_runaway", c.measure_lr_runaway(log.series["lr"]), 3,
                       "first step whose LR is 10x the first logged LR")]
    nan = c.measure_nonfinite(loss)
    med = [m for _, m in c.centred_medians(loss)]
    assert med[-1] > 10 * min(med), (med[-1], min(med))
    if nan is None:
        expected.append(c.code("loss_divergence", c.measure_divergence(loss), 12,
                               "first step after the lowest 11-step median loss whose median is 2x it"))
    else:
        expected.append(c.code("nan_onset", nan, 3, "first non-finite loss"))
    return c.case_meta(
        healthy=False, framework="plain", logger="csv", intent="none",
        description="Adam with ExponentialLR(gamma=1.04) stepped every batch: the LR grows from 1e-4 to "
                    f"{log.series['lr'][-1][1]:.2g} and the loss median ends {med[-1] / min(med):.0f}x its lowest.",
        expected=expected, allowed=["grad_explosion", "loss_divergence", "nan_onset"])


def loss_diverges_weight_decay_sign(run):
    """Hand-written decoupled weight decay with the sign flipped: the weights grow 1% a step, the loss
    rises for hundreds of steps and ends far above its minimum, never NaN."""
    c.seed_all(18)
    x, y = c.blobs(N, DIM, CLS, 18, spread=4.0)
    model = c.mlp(DIM, HID, CLS)
    lr, wd = 0.05, 0.15
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    log = c.RunLog(run, tb="logs")

    def decay(step):
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim > 1:
                    p.add_(p, alpha=lr * wd)  # should be alpha=-lr * wd
        return True

    def sink(step, v, spe):
        if step % 2 == 0:
            log.log(step, {"Loss/train": "loss", "LR": "lr"}, loss=v["loss"], lr=v["lr"])
    train(model, opt, x, y, epochs=20, bs=BS, log=sink, step_end=decay, seed=18)
    log.close()
    loss = log.series["loss"]
    assert c.measure_nonfinite(loss) is None
    med = [m for _, m in c.centred_medians(loss)]
    assert med[-1] > 3 * min(med), (med[-1], min(med))
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="none",
        description="Constant-LR SGD with a hand-written weight decay whose sign is flipped (weights x1.0075 "
                    f"per step): the loss falls, then climbs to {med[-1]:.3g} ({med[-1] / min(med):.0f}x its "
                    "lowest median), never NaN.",
        expected=[c.code("loss_divergence", c.measure_divergence(loss), 16,
                         "first step after the lowest 11-point median loss whose median is 2x it")],
        allowed=["loss_plateau", "grad_explosion"])


def lr_typo_plateau(run):
    """lr: 1e-7 (typo for 1e-3), constant: the loss never moves. key=value lines."""
    c.seed_all(19)
    x, y = _data(19)
    c.write_yaml(run / "train.yaml", {"optimizer": {"type": "SGD", "lr": 1e-7, "momentum": 0.0},
                                      "max_epochs": 10, "batch_size": BS})
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    log = c.RunLog(run, stdout="output.log",
                   fmt=lambda step, loss, lr, epoch: f"step={step} epoch={epoch} loss={loss:.5f} lr={lr:.3g}")

    def sink(step, v, spe):
        if step % 4 == 0:
            log.log(step, loss=v["loss"], lr=v["lr"], epoch=v["epoch"])
    train(model, opt, x, y, epochs=10, bs=BS, log=sink, seed=19)
    log.close()
    loss = [v for _, v in log.series["loss"]]
    rel = (max(loss) - min(loss)) / max(loss)
    assert rel < 0.2, rel
    return c.case_meta(
        healthy=False, framework="plain", logger="stdout", intent="stated",
        description="SGD at a constant lr 1e-7 (typo) from train.yaml: the loss stays at its initial value.",
        expected=[c.code("loss_plateau", 0, 16, f"loss stays within {rel:.1%} of its range from the first "
                         "logged step")])


def val_frozen_ema_copy(run):
    """Validation runs on an EMA copy whose decay is 1.0: frozen at its init while training improves."""
    import copy
    c.seed_all(20)
    classes = 10
    x, y = c.blobs(N, DIM, classes, 20, spread=0.8)
    xv, yv = c.blobs(256, DIM, classes, 20, spread=0.8)
    c.write_yaml(run / "cfg.yaml", {"num_classes": classes, "lr": 3e-3, "optimizer": "adam",
                                    "ema_decay": 1.0, "epochs": 12})
    model = c.mlp(DIM, HID, classes)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    log = c.RunLog(run, tb="tensorboard")

    def sink(step, v, spe):
        if step % 4 == 0:
            log.log(step, {"train/loss": "loss", "train/lr": "lr"}, loss=v["loss"], lr=v["lr"])

    def epoch_end(epoch, step):
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(1.0).add_(pm, alpha=0.0)
        vl, va = accuracy(ema, xv, yv)
        log.log(step - 1, {"val/loss": "val_loss", "val/acc": "val_acc"}, val_loss=vl, val_acc=va)
    train(model, opt, x, y, epochs=12, bs=BS, log=sink, epoch_end=epoch_end, seed=20)
    log.close()
    accs = log.series["val_acc"]
    assert len({round(a, 9) for _, a in accs}) == 1
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="stated",
        description="10-class Adam run validating an EMA copy with decay 1.0: val/acc frozen at "
                    f"{accs[0][1]:.3f} for all 12 evaluations while train loss falls.",
        expected=[c.code("val_stuck", accs[0][0], 2 * SPE, "first validation step; val/acc identical at "
                         "every evaluation")],
        allowed=[])


CASES = {
    "plain_constant_lr_unstepped_lambda": constant_lr_never_stepped,
    "plain_constant_lr_intended_jsonl": intended_constant_lr,
    "plain_cosine_tmax_epochs_per_batch": cosine_tmax_epochs_per_batch,
    "plain_cosine_overrun_hardcoded_tmax": cosine_overrun_hardcoded_tmax,
    "plain_nan_inf_feature_stdout": nan_from_corrupt_batch,
    "plain_grad_spike_x1000_jsonl": grad_spike_clipped,
    "plain_exponential_runaway_csv": exponential_gamma_above_one,
    "plain_loss_diverges_wd_sign_tb": loss_diverges_weight_decay_sign,
    "plain_plateau_lr_typo_keyvalue": lr_typo_plateau,
    "plain_val_frozen_ema_copy": val_frozen_ema_copy,
}
