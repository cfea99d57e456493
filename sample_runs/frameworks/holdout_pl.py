"""Hold-out cases: PyTorch Lightning 2.x runs (real .ckpt, lightning_logs/version_N, LearningRateMonitor,
CSVLogger / TensorBoardLogger, fit(ckpt_path=...) resumes). Labels are read back from the written logs."""
from __future__ import annotations

import csv
import math
import warnings

import torch
import torch.nn.functional as F

import holdout_common as c

DIM, HID, CLS, N, BS = 16, 32, 4, 512, 32
SPE = N // BS


class _Preempted(RuntimeError):
    pass


def _module(make_opt, hparams=None):
    import lightning.pytorch as pl

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            if hparams:
                self.save_hyperparameters(hparams)
            self.net = c.mlp(DIM, HID, CLS)

        def training_step(self, batch, i):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

        def validation_step(self, batch, i):
            x, y = batch
            out = self.net(x)
            self.log("val_loss", F.cross_entropy(out, y), on_epoch=True)
            self.log("val_acc", (out.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return make_opt(self)
    return Net()


def _loaders(seed, separable=False):
    if separable:
        x, y = c.separable(N, DIM, seed)
        xv, yv = c.separable(128, DIM, seed + 1)
    else:
        x, y = c.blobs(N, DIM, CLS, seed)
        xv, yv = c.blobs(128, DIM, CLS, seed + 1)
    g = torch.Generator().manual_seed(seed)
    tr = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BS, shuffle=True,
                                     generator=g)
    va = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=64)
    return tr, va


def _fit(run, seed, make_opt, *, epochs, logger="csv", accum=1, momentum=False, ckpt=True, kill_at=None,
         resume=False, hparams=None, separable=False, validate=True):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class Kill(Callback):
        def on_train_batch_start(self, trainer, *a):
            if kill_at is not None and trainer.global_step >= kill_at:
                raise _Preempted("SIGTERM: node preempted")

    with c.Tee(run / "stdout.log"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.seed_everything(seed, workers=True)
        lg = (CSVLogger(str(run), name="lightning_logs") if logger == "csv"
              else TensorBoardLogger(str(run), name="lightning_logs", default_hp_metric=False))
        cbs = [LearningRateMonitor(logging_interval="step", log_momentum=momentum), Kill()]
        if ckpt:
            cbs.append(ModelCheckpoint(dirpath=str(run / "checkpoints"), save_last=True, save_top_k=1))
        tr, va = _loaders(seed, separable)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=lg, callbacks=cbs,
                             log_every_n_steps=2, accumulate_grad_batches=accum, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=ckpt, deterministic=True,
                             default_root_dir=str(run), limit_val_batches=1.0 if validate else 0)
        model = _module(make_opt, hparams)
        try:
            trainer.fit(model, tr, va if validate else None,
                        ckpt_path=str(run / "checkpoints" / "last.ckpt") if resume else None)
        except _Preempted:
            print("Preempted; last checkpoint:", "checkpoints/last.ckpt")
        return lg.log_dir


def _series(log_dir, key):
    """The (step, value) rows of ``key`` that the logger wrote (metrics.csv or the event file)."""
    from pathlib import Path
    p = Path(log_dir)
    if (p / "metrics.csv").exists():
        with open(p / "metrics.csv", encoding="utf-8") as fh:
            return [(int(r["step"]), float(r[key])) for r in csv.DictReader(fh) if r.get(key) not in (None, "")]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(p))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(key)]


def _onecycle(interval=None, *, opt="sgd", total=None, max_lr=0.05, pct=0.3):
    def make(m):
        o = (torch.optim.SGD(m.parameters(), lr=max_lr, momentum=0.9) if opt == "sgd"
             else torch.optim.Adam(m.parameters(), lr=max_lr))
        s = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=max_lr, total_steps=total, pct_start=pct)
        sched = {"scheduler": s}
        if interval:
            sched["interval"] = interval
        return {"optimizer": o, "lr_scheduler": sched}
    return make


def onecycle_default_interval(run):
    epochs = 8
    total = epochs * SPE
    d = _fit(run, 71, _onecycle(None, total=total), epochs=epochs,
             hparams={"max_lr": 0.05, "epochs": epochs, "scheduler": "OneCycleLR"})
    lrs = _series(d, "lr-SGD")
    ref = c.replay(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=total,
                                                                 pct_start=0.3), 0.05, total)
    onset = c.measure_departure(lrs, ref)
    return c.case_meta(
        healthy=False, framework="lightning", logger="csv", intent="stated",
        description="OneCycleLR(total_steps=128) returned without interval='step': Lightning steps it once "
                    "per epoch, the LR crawls up a staircase and never reaches max_lr.",
        expected=[c.code("per_epoch_stepping", onset, 8, "first logged step whose lr-SGD is >2x off "
                         "OneCycleLR(total_steps=128) stepped per batch (replayed)")],
        allowed=["constant_lr", "schedule_incomplete", "warmup_missing"])


def onecycle_accum_incomplete(run):
    epochs, accum = 12, 4
    total = epochs * SPE  # forgot to divide by accumulate_grad_batches
    d = _fit(run, 72, _onecycle("step", total=total, pct=0.1), epochs=epochs, accum=accum, logger="tb")
    lrs = _series(d, "lr-SGD")
    peak = max(v for _, v in lrs)
    assert lrs[-1][1] > 0.5 * peak
    return c.case_meta(
        healthy=False, framework="lightning", logger="tensorboard", intent="stated",
        description="OneCycleLR(total_steps=epochs x len(train_dataloader) = 192, interval step) with "
                    "accumulate_grad_batches 4: 48 optimizer steps, the run ends with the LR at "
                    f"{lrs[-1][1] / peak:.2f}x its peak; the .ckpt scheduler state has total_steps 192.",
        expected=[c.code("schedule_incomplete", lrs[-1][0], 6, "last logged step; the checkpoint's "
                         "OneCycleLR total_steps is 4x the optimizer steps run")],
        allowed=[])


def adam_onecycle_momentum(run):
    epochs = 8
    d = _fit(run, 73, _onecycle("step", opt="adam", total=epochs * SPE, max_lr=3e-3), epochs=epochs,
             momentum=True)
    mom = _series(d, "lr-Adam-momentum")
    spread = max(v for _, v in mom) - min(v for _, v in mom)
    assert spread > 0.05
    onset = next(s for s, v in mom if abs(v - 0.9) > 1e-6)
    return c.case_meta(
        healthy=False, framework="lightning", logger="csv", intent="stated",
        description="Adam with OneCycleLR(cycle_momentum=True, the default): Adam's beta1 is cycled "
                    "0.95 -> 0.85 -> 0.95 (LearningRateMonitor log_momentum shows it).",
        expected=[c.code("momentum_cycling", onset, 4, "first logged step whose lr-Adam-momentum differs "
                         "from Adam's configured beta1 0.9")],
        allowed=[])


def resume_ckpt_path(run):
    epochs = 8
    make = _onecycle("step", total=epochs * SPE)
    d0 = c.in_new_process(_fit, run, 74, make, epochs=epochs, kill_at=3 * SPE + 5)
    d1 = c.in_new_process(_fit, run, 74, make, epochs=epochs, resume=True)
    lrs = _series(d0, "lr-SGD") + _series(d1, "lr-SGD")
    ref = c.replay(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=epochs * SPE),
                   0.05, epochs * SPE)
    assert c.measure_departure(lrs, ref, factor=1.001) is None and d0 != d1
    return c.case_meta(
        healthy=True, framework="lightning", logger="csv", intent="stated",
        description="OneCycleLR per step; the job is preempted 5 steps into epoch 3 and resumed with "
                    "fit(ckpt_path=last.ckpt), which logs to lightning_logs/version_1 from step 48.")


def _steplr(step_size, interval):
    def make(m):
        o = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        s = {"scheduler": torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=0.1)}
        if interval:
            s["interval"] = interval
        return {"optimizer": o, "lr_scheduler": s}
    return make


def steplr_interval_step(run):
    d = _fit(run, 75, _steplr(2, "step"), epochs=6, logger="tb", ckpt=False, validate=False)
    lrs = _series(d, "lr-SGD")
    return c.case_meta(
        healthy=False, framework="lightning", logger="tensorboard", intent="none",
        description="StepLR(step_size=2, gamma=0.1) meant per epoch but returned with interval 'step': the "
                    f"LR falls from 0.05 to {lrs[-1][1]:.1e}; no checkpoint or config states the schedule.",
        expected=[c.code("lr_collapse", c.measure_lr_collapse(lrs), 4, "first logged step whose lr-SGD is "
                         "below 1e-4 x the highest LR before it")],
        allowed=["schedule_too_fast", "constant_lr", "loss_plateau"])


def steplr_per_epoch(run):
    d = _fit(run, 76, _steplr(3, None), epochs=8, logger="tb",
             hparams={"lr": 0.05, "lr_scheduler": "StepLR", "step_size": 3, "gamma": 0.1, "max_epochs": 8})
    lrs = _series(d, "lr-SGD")
    assert min(v for _, v in lrs) >= 1e-3 * 0.05 * 0.999
    return c.case_meta(
        healthy=True, framework="lightning", logger="tensorboard", intent="stated",
        description="StepLR(step_size=3, gamma=0.1) stepped per epoch as intended (hparams.yaml): two "
                    "decays to 5e-4 over 8 epochs.")


def saturated_val_acc(run):
    make = (lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
    d = _fit(run, 77, make, epochs=8, separable=True, hparams={"lr": 1e-3, "optimizer": "adam"})
    acc = _series(d, "val_acc")
    assert all(v == 1.0 for _, v in acc[1:])
    return c.case_meta(
        healthy=True, framework="lightning", logger="csv", intent="stated",
        description="Adam at a constant 1e-3 (no scheduler) on a separable task: val_acc is exactly 1.0 from "
                    "the second validation on while the training loss keeps falling.")


CASES = {
    "pl_onecycle_default_epoch_interval_csv": onecycle_default_interval,
    "pl_onecycle_accum4_total_from_dataloader_tb": onecycle_accum_incomplete,
    "pl_adam_onecycle_cycles_beta1_csv": adam_onecycle_momentum,
    "pl_resume_ckpt_path_version1_csv": resume_ckpt_path,
    "pl_steplr_interval_step_tb_no_ckpt": steplr_interval_step,
    "pl_steplr_per_epoch_tb": steplr_per_epoch,
    "pl_val_acc_saturated_constant_csv": saturated_val_acc,
}
