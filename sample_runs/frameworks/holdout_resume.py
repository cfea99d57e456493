"""Hold-out cases: plain loops that are preempted and resumed in a second process, plus scheduler order,
two-source LR and gradient-accumulation cases."""
from __future__ import annotations

import math
import warnings

import torch

import holdout_common as c
from holdout_loop import train
from holdout_plain import BS, CLS, DIM, HID, N, SPE

EPOCHS = 12
TOTAL = EPOCHS * SPE


def _warm_cos(opt, total=TOTAL, warm=20):
    return torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warm),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=1e-5)], milestones=[warm])


def _process(run, seed, *, stop_epoch, resume, load_sched, start_epoch_bug=False, weights_only=False,
             tb="tb", csv=None):
    """One process lifetime of a preemptible script; returns what it logged."""
    with c.Tee(run / "train.log"):
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            c.seed_all(seed)
            x, y = c.blobs(N, DIM, CLS, seed)
            model = c.mlp(DIM, HID, CLS)
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
            sched = _warm_cos(opt)
            start_epoch, step = 0, 0
            ck = run / "checkpoints" / "last.pt"
            if resume:
                state = torch.load(ck, weights_only=True)
                if weights_only:
                    model.load_state_dict(state)
                    step = int(ck.with_suffix(".step").read_text())
                    start_epoch = step // SPE
                    print(f"resumed weights from {ck.relative_to(run)} at step {step}; fast-forwarding the scheduler")
                    for _ in range(step):
                        sched.step()
                else:
                    model.load_state_dict(state["model"])
                    opt.load_state_dict(state["optimizer"])
                    if load_sched:
                        sched.load_state_dict(state["scheduler"])
                    step = state["step"]
                    start_epoch = 0 if start_epoch_bug else state["epoch"] + 1
                    print(f"=> resuming from {ck.relative_to(run)} (epoch {state['epoch']}, step {step})")
                if start_epoch_bug:
                    step = 0
            log = c.RunLog(run, tb=tb, csv=csv, csv_fields=["step", "epoch", "train_loss", "lr"])

            def sink(s, v, spe):
                if s % 2 == 0:
                    log.log(s, {"train/loss": "train_loss", "train/lr": "lr"}, train_loss=v["loss"],
                            lr=v["lr"], epoch=v["epoch"])
                    print(f"epoch {v['epoch']} step {s} loss {v['loss']:.4f} lr {v['lr']:.3e}")

            def epoch_end(epoch, s):
                ck.parent.mkdir(exist_ok=True)
                if weights_only:
                    torch.save(model.state_dict(), ck)
                    ck.with_suffix(".step").write_text(str(s))
                else:
                    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "epoch": epoch, "step": s}, ck)

            def stop(s):
                return not (stop_epoch is not None and s >= (stop_epoch + 1) * SPE + 6)
            train(model, opt, x, y, epochs=EPOCHS, bs=BS, log=sink, sched=sched, start_epoch=start_epoch,
                  global_step=step, epoch_end=epoch_end, step_end=stop, seed=seed)
            if stop_epoch is not None and not resume:
                print("Terminated: SIGTERM received (preempted)")
            log.close()
            return log.series


def _two_processes(run, seed, **kw):
    first = c.in_new_process(_process, run, seed, stop_epoch=5, resume=False, load_sched=True,
                             weights_only=kw.get("weights_only", False), tb=kw.get("tb", "tb"), csv=kw.get("csv"))
    second = c.in_new_process(_process, run, seed, stop_epoch=None, resume=True, **kw)
    return first, second


def resume_fresh_scheduler(run):
    first, second = _two_processes(run, 31, load_sched=False)
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="none",
        description="Preempted after epoch 5 and resumed in a new process that restores model and optimizer "
                    "but builds a new warmup+cosine scheduler: the warmup repeats from 2e-5 at step 96.",
        expected=[c.code("resume_drift", second["lr"][0][0], 4, "first step logged by the resumed process "
                         "(its second event file)")],
        allowed=["schedule_incomplete", "lr_mismatch", "warmup_missing"])


def resume_correct(run):
    first, second = _two_processes(run, 32, load_sched=True)
    ref = c.replay(_warm_cos, 2e-3, TOTAL)
    assert all(c.measure_departure(p["lr"], ref, factor=1.001) is None for p in (first, second))
    return c.case_meta(
        healthy=True, framework="plain", logger="tensorboard", intent="none",
        description="Preempted 6 steps into epoch 6 and resumed from the epoch-5 checkpoint with model, "
                    "optimizer and scheduler state: a second event file re-logs 6 steps with the same LR.")


def resume_start_epoch_reset(run):
    c.write_yaml(run / "config.yaml", {"optimizer": {"name": "AdamW", "lr": 2e-3, "weight_decay": 0.05},
                                       "scheduler": {"name": "cosine", "warmup_steps": 20, "warmup_start_factor": 0.01,
                                                     "min_lr": 1e-5}, "epochs": EPOCHS, "batch_size": BS,
                                       "resume": "checkpoints/last.pt"})
    first, second = _two_processes(run, 33, load_sched=True, start_epoch_bug=True, tb=None, csv="metrics.csv")
    return c.case_meta(
        healthy=False, framework="plain", logger="csv", intent="stated",
        description="Resume restores the scheduler but a leftover start_epoch = 0 makes the second process "
                    "log from step 0 again into the same metrics.csv while the scheduler runs on past its end.",
        expected=[c.code("resume_drift", second["lr"][0][0], 4, "first step logged by the resumed process "
                         "(the CSV step column rewinds to it)")],
        allowed=["schedule_overrun", "lr_mismatch", "warmup_missing"])


def resume_weights_only(run):
    first, second = _two_processes(run, 34, load_sched=False, weights_only=True)
    lr1, lr2 = first["lr"], second["lr"]
    ref = c.replay(_warm_cos, 2e-3, TOTAL)
    assert c.measure_departure(lr1 + [p for p in lr2 if p[0] > lr1[-1][0]], ref) is None
    return c.case_meta(
        healthy=False, framework="plain", logger="tensorboard", intent="none",
        description="Checkpoints hold the weights only (state_dict, step in a side file); the resume builds a "
                    "fresh AdamW and fast-forwards the scheduler, so the LR is right but the optimizer "
                    "moments and scheduler state were never saved.",
        expected=[c.code("missing_resume_state", lr2[0][0], 4, "first step logged by the resumed process; "
                         "checkpoints/last.pt has no optimizer/scheduler/step keys")],
        allowed=["resume_drift"])


CASES = {
    "plain_resume_fresh_scheduler_tb": resume_fresh_scheduler,
    "plain_resume_full_state_tb": resume_correct,
    "plain_resume_start_epoch_reset_csv": resume_start_epoch_reset,
    "plain_resume_weights_only_fastforward": resume_weights_only,
}
