"""Hold-out cases: plain loops with scheduler order, two LR sources, gradient accumulation, OneCycle."""
from __future__ import annotations

import math
import warnings

import torch

import holdout_common as c
from holdout_loop import train
from holdout_plain import BS, CLS, DIM, HID, N, SPE


def scheduler_before_optimizer(run):
    """scheduler.step() called before optimizer.step(): every step uses the next step's LR."""
    c.seed_all(41)
    x, y = c.blobs(N, DIM, CLS, 41)
    epochs, warm = 10, 8
    total = epochs * SPE
    c.write_json(run / "config.json", {"optimizer": {"type": "SGD", "lr": 0.08, "momentum": 0.9},
                                       "lr_scheduler": {"type": "LinearLR", "start_factor": 0.05,
                                                        "total_iters": warm, "then": "CosineAnnealingLR",
                                                        "T_max": total - warm},
                                       "epochs": epochs, "batch_size": BS})

    def make(opt):
        return torch.optim.lr_scheduler.SequentialLR(opt, [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.05, total_iters=warm),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm)], milestones=[warm])
    with c.Tee(run / "stderr.log"), warnings.catch_warnings():
        warnings.simplefilter("default")
        model = c.mlp(DIM, HID, CLS)
        opt = torch.optim.SGD(model.parameters(), lr=0.08, momentum=0.9)
        sched = make(opt)
        log = c.RunLog(run, jsonl="metrics.jsonl")

        def sink(step, v, spe):
            log.log(step, loss=v["loss"], lr=v["lr"], epoch=v["epoch"])
        train(model, opt, x, y, epochs=epochs, bs=BS, log=sink, sched=sched, sched_when="before", seed=41)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "lr_scheduler": sched.state_dict(), "epoch": epochs - 1}, run / "final.pth")
        log.close()
    ref = c.replay(make, 0.08, total + 1)
    lrs = log.series["lr"]
    ahead = all(abs(lr - ref[s + 1]) <= 1e-9 * ref[s + 1] for s, lr in lrs)
    assert ahead and abs(lrs[0][1] - ref[0]) > 0.5 * ref[0]
    return c.case_meta(
        healthy=False, framework="plain", logger="jsonl", intent="stated",
        description="SGD with LinearLR warmup then cosine (config.json); scheduler.step() is called before "
                    "optimizer.step(), so step s uses the LR of step s+1 (torch's order warning in stderr.log).",
        expected=[c.code("off_by_one", 0, 4, "every logged LR equals the replayed schedule at step s+1, "
                         "not s, from the first step (1.9x the intended LR at step 0)")],
        allowed=["warmup_missing"])


def config_lr_vs_scaled_lr(run):
    """The print line shows the config LR; the optimizer got the linearly scaled one (x BS/256)."""
    c.seed_all(42)
    x, y = c.blobs(N, DIM, CLS, 42)
    base = 0.4
    c.write_yaml(run / "config.yaml", {"solver": {"base_lr": base, "momentum": 0.9, "lr_policy": "fixed",
                                                  "scale_lr_by_batch": True}, "batch_size": BS, "epochs": 8})
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=base * BS / 256, momentum=0.9)
    log = c.RunLog(run, tb="tb_logs", stdout="log.txt",
                   fmt=lambda step, loss, lr, epoch: f"Epoch: [{epoch}] step {step} loss: {loss:.4f} lr: {base}")

    def sink(step, v, spe):
        if step % 4 == 0:
            log.log(step, {"train/loss": "loss", "train/learning_rate": "lr"}, loss=v["loss"], lr=v["lr"],
                    epoch=v["epoch"])
    train(model, opt, x, y, epochs=8, bs=BS, log=sink, seed=42)
    log.close()
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard+stdout", intent="stated",
        description="Constant LR; log.txt prints the config base_lr 0.4 while the optimizer (and TensorBoard) "
                    "ran at the batch-scaled 0.05, 8x lower, on every step.",
        expected=[c.code("lr_mismatch", log.series["lr"][0][0], 8, "first step logged by both sources; "
                         "log.txt says 0.4 where the TensorBoard LR is 0.05")],
        allowed=[])


def _accum_run(run, seed, accum, total_steps, name, healthy):
    c.seed_all(seed)
    x, y = c.blobs(N, DIM, CLS, seed)
    epochs = 12
    micro = N // BS
    c.write_yaml(run / "train_config.yaml", {
        "trainer": {"max_epochs": epochs, "accumulate_grad_batches": accum, "micro_batch_size": BS},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
        "lr_scheduler": {"name": "OneCycleLR", "max_lr": 3e-3, "pct_start": 0.1,
                         "total_steps": total_steps, "interval": "step"}})
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=total_steps, pct_start=0.1)
    log = c.RunLog(run, tb="runs")

    def sink(step, v, spe):
        log.log(step, {"loss": "loss", "lr": "lr"}, loss=v["loss"], lr=v["lr"])

    beta1_saved = []

    def epoch_end(epoch, step):
        if epoch % 4 == 3:
            beta1_saved.append(opt.param_groups[0]["betas"][0])
            torch.save({"epoch": epoch, "global_step": step, "state_dict": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
                       run / f"epoch_{epoch:02d}.pt")
    steps = train(model, opt, x, y, epochs=epochs, bs=BS, log=sink, sched=sched, accum=accum,
                  epoch_end=epoch_end, seed=seed)
    log.close()
    lrs = log.series["lr"]
    peak = max(v for _, v in lrs)
    return steps, lrs, peak, micro * epochs, beta1_saved


def _beta1_cycling(beta1_saved):
    """OneCycleLR's default cycle_momentum=True moves AdamW's beta1: measured from the checkpoints."""
    assert max(beta1_saved) > min(beta1_saved)
    return c.code("momentum_cycling", 0, 6, f"beta1 in the saved checkpoints spans {min(beta1_saved):.4f}.."
                  f"{max(beta1_saved):.4f}: OneCycleLR's default cycle_momentum=True on AdamW")


def accumulation_horizon_wrong(run):
    micro = N // BS
    steps, lrs, peak, micro_total, beta1_saved = _accum_run(run, 43, 4, 12 * micro, "", False)
    frac = steps / (12 * micro)
    assert frac <= 0.3 and lrs[-1][1] > 0.5 * peak
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="stated",
        description="OneCycleLR(total_steps=epochs x micro-batches = 192) with accumulate_grad_batches 4: "
                    f"only {steps} optimizer steps happen, the run ends at {frac:.0%} of the schedule with the "
                    f"LR at {lrs[-1][1] / peak:.2f}x its peak.",
        expected=[c.code("schedule_incomplete", lrs[-1][0], 6, "last logged optimizer step; the stated "
                         "horizon (train_config.yaml total_steps, checkpoint scheduler total_steps) is 4x it"),
                  _beta1_cycling(beta1_saved)],
        allowed=[])


def accumulation_horizon_right(run):
    micro = N // BS
    steps, lrs, peak, _, beta1_saved = _accum_run(run, 44, 4, 12 * math.ceil(micro / 4), "", True)
    assert lrs[-1][1] < 1e-3 * peak
    # Not a healthy twin after all: the default cycle_momentum=True cycles AdamW's beta1 (label
    # corrected after the one scoring; see docs/detection.md).
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="stated",
        description="OneCycleLR sized to optimizer steps (12 epochs x 16 micro-batches / 4 = 48) with "
                    "accumulate_grad_batches 4: the schedule finishes on the last step, but the default "
                    "cycle_momentum=True cycles AdamW's beta1.",
        expected=[_beta1_cycling(beta1_saved)])


def onecycle_sgd_full(run):
    """Healthy: a full OneCycle on SGD (momentum cycling 0.95->0.85 is the intended recipe)."""
    c.seed_all(45)
    x, y = c.blobs(N, DIM, CLS, 45)
    epochs = 10
    model = c.mlp(DIM, HID, CLS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs, steps_per_epoch=SPE)
    log = c.RunLog(run, stdout="train.out",
                   fmt=lambda step, loss, lr, momentum, epoch: f"[{epoch + 1}/{epochs}] it {step} "
                                                               f"loss={loss:.4f} lr={lr:.5f} mom={momentum:.3f}")

    def sink(step, v, spe):
        log.log(step, loss=v["loss"], lr=v["lr"], momentum=v["momentum"], epoch=v["epoch"])
    train(model, opt, x, y, epochs=epochs, bs=BS, log=sink, sched=sched, seed=45,
          extra=lambda o: {"momentum": o.param_groups[0]["momentum"]})
    log.close()
    ref = c.replay(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, epochs=epochs,
                                                                 steps_per_epoch=SPE), 0.1, epochs * SPE)
    assert c.measure_departure(log.series["lr"], ref, factor=1.001) is None
    return c.case_meta(
        healthy=True, framework="plain", logger="stdout", intent="none",
        description="SGD with OneCycleLR(max_lr=0.1) over all 160 steps, momentum cycled as intended; "
                    "the LR ends at 4e-7 on the last step.")


CASES = {
    "plain_scheduler_before_optimizer_jsonl": scheduler_before_optimizer,
    "plain_lr_printed_from_config_tb": config_lr_vs_scaled_lr,
    "plain_accum_onecycle_total_micro": accumulation_horizon_wrong,
    "plain_accum_onecycle_sized_right": accumulation_horizon_right,
    "plain_onecycle_sgd_full_stdout": onecycle_sgd_full,
}
