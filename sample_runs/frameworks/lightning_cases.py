"""The Lightning cases of the framework corpus: one `LCase` per run, with the reference schedule its
labels are measured against. Labels (`Label`) name a measuring rule, never a step.

Steps per epoch are 16 (256 samples, batch 16) unless a case accumulates; epochs are 10 unless said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from torch.optim import lr_scheduler as S

from lightning_runs import Recipe

EPOCHS = 10


@dataclass
class Label:
    """An expected code and the rule that measures its onset (see lightning_corpus.RULES)."""

    code: str
    rule: str
    key: str | None = None


@dataclass
class LCase:
    name: str
    description: str
    recipe: Recipe
    labels: list[Label] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    reference: Callable | None = None    # (optimizer, steps_per_epoch) -> the correctly built scheduler
    reference_interval: str = "step"
    framework: str = "lightning"

    @property
    def healthy(self) -> bool:
        return not self.labels


def onecycle(total: Callable[[int], int], momentum: bool = False, max_lr: float = 0.01):
    """OneCycleLR whose total_steps is total(steps_per_epoch)."""
    return lambda o, spe: S.OneCycleLR(o, max_lr=max_lr, total_steps=total(spe), cycle_momentum=momentum)


def warmup_cosine(total: Callable[[int], int], warmup_steps: int = 16):
    """Linear warmup then cosine to 0, a LambdaLR counted in optimizer steps."""
    def factor(step: int, horizon: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, horizon - warmup_steps))))
    return lambda o, spe: S.LambdaLR(o, lambda s, h=total(spe): factor(s, h))


def cosine(t_max: Callable[[int], int]):
    return lambda o, spe: S.CosineAnnealingLR(o, T_max=t_max(spe))


FULL = lambda spe: EPOCHS * spe  # noqa: E731 - the whole run in optimizer steps
ONECYCLE_HP = {"lr": 0.01, "scheduler": "onecycle", "max_lr": 0.01, "total_steps": 160, "interval": "step"}
STATED = {"lr": 0.01, "max_epochs": EPOCHS, "batch_size": 16}
NO_FILES = {"checkpoint": False, "hparams": None}


def _hp(**extra) -> dict:
    return {**STATED, **extra}


def healthy() -> list[LCase]:
    """Healthy twins: correct schedules, correct resumes, converged or saturated metrics, constant LR on purpose."""
    return [
        LCase("healthy_onecycle_csv", "AdamW + OneCycleLR(total_steps=epochs*steps_per_epoch), interval='step'; "
              "CSVLogger, LearningRateMonitor('step'), ModelCheckpoint(save_last=True).",
              Recipe(scheduler=onecycle(FULL), hparams=dict(ONECYCLE_HP))),
        LCase("healthy_resume_ckpt_csv", "Warmup+cosine LambdaLR per step; the job stops after 4 of 10 epochs and "
              "fit(ckpt_path=last.ckpt) resumes into version_1 with the scheduler restored: the LR continues.",
              Recipe(scheduler=warmup_cosine(FULL), stop_after_epoch=4, resume="ckpt",
                     hparams=_hp(scheduler="warmup_cosine", warmup_steps=16, total_steps=160))),
        LCase("healthy_resume_ckpt_tb", "OneCycleLR per step, TensorBoardLogger+CSVLogger; stopped after 5 epochs and "
              "resumed with fit(ckpt_path=last.ckpt) into version_1.",
              Recipe(scheduler=onecycle(FULL), stop_after_epoch=5, resume="ckpt", loggers=("tb", "csv"),
                     hparams=dict(ONECYCLE_HP))),
        LCase("healthy_constant_lr_csv", "Adam at a constant lr=3e-3 on purpose (hparams scheduler: none); "
              "the loss keeps falling on a separable task.",
              Recipe(optimizer="adam", lr=3e-3, hparams=_hp(lr=3e-3, scheduler="none"))),
        LCase("healthy_saturated_val_acc_tb", "Separable blobs: val_acc reaches exactly 1.0 by epoch 2 and stays; "
              "CosineAnnealingLR(T_max=epochs) stepped per epoch (interval='epoch') as intended.",
              Recipe(scheduler=cosine(lambda spe: EPOCHS), interval="epoch", loggers=("tb",), lr_monitor="epoch",
                     hparams=_hp(scheduler="cosine", T_max=EPOCHS, interval="epoch"))),
        LCase("healthy_val_settled_csv", "Validation labels carry 7% noise: val_acc settles at 0.93 while the training "
              "loss keeps falling; OneCycleLR per step, 14 epochs.",
              Recipe(scheduler=onecycle(lambda spe: 14 * spe), epochs=14, val_label_noise=0.07,
                     hparams=_hp(scheduler="onecycle", max_epochs=14))),
        LCase("healthy_steplr_epoch_stdout", "StepLR(step_size=3, gamma=0.5) with interval='epoch' as intended; only "
              "the progress bar (lr and loss in the postfix) captured to train.log, no logger files.",
              Recipe(scheduler=lambda o, spe: S.StepLR(o, 3, 0.5), interval="epoch", loggers=(), lr_monitor=None,
                     progress_log=True, log_every=4, extra={"lr_in_bar": True}, **NO_FILES)),
        LCase("healthy_gan_csv", "Least-squares GAN, Adam lr 2e-4 for generator and discriminator (manual "
              "optimization); g_loss and d_loss stay finite.",
              Recipe(task="gan", optimizer="adam", lr=2e-4, lr_monitor="step", hparams={"lr": 2e-4, "gan": "lsgan"})),
        LCase("healthy_accum_onecycle_tb", "accumulate_grad_batches=4 with OneCycleLR sized in optimizer steps "
              "(epochs*ceil(batches/4)): the schedule finishes.",
              Recipe(scheduler=onecycle(FULL), accumulate=4, loggers=("tb",),
                     hparams=_hp(scheduler="onecycle", accumulate_grad_batches=4, total_steps=40))),
    ]


def schedule_failures() -> list[LCase]:
    """Wrong interval, unstepped, too fast, collapsing, runaway, incomplete and overrunning schedules."""
    per_epoch = Recipe(scheduler=onecycle(FULL), interval="epoch")
    ref_onecycle = onecycle(FULL)
    too_fast_cos = Recipe(scheduler=cosine(lambda spe: EPOCHS), interval="step")
    ref_cos_epoch = cosine(lambda spe: EPOCHS)
    steplr = lambda o, spe: S.StepLR(o, 3, 0.1)  # noqa: E731
    expo = lambda o, spe: S.ExponentialLR(o, 1.05)  # noqa: E731
    ref_expo = lambda o, spe: S.ExponentialLR(o, 0.95)  # noqa: E731
    runaway = dict(task="regression", optimizer="adam", lr=1e-3, scheduler=expo, clip=1.0, epochs=16)
    accum = dict(scheduler=onecycle(lambda spe: EPOCHS * 16), accumulate=4)
    short = dict(scheduler=cosine(lambda spe: 6 * spe))
    onecycle_momentum = dict(optimizer="adam", scheduler=onecycle(FULL, momentum=True), log_momentum=True)
    lbl = Label
    return [
        LCase("per_epoch_onecycle_csv", "OneCycleLR sized in steps (160) but returned with interval='epoch': 10 of "
              "160 steps taken, a staircase near max_lr/25.", _with(per_epoch, hparams=dict(ONECYCLE_HP, interval="epoch")),
              [lbl("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "warmup_missing"], ref_onecycle),
        LCase("per_epoch_onecycle_tb", "The same per-epoch OneCycleLR, TensorBoardLogger; the checkpoint's "
              "lr_schedulers holds total_steps=160, last_epoch=10.", _with(per_epoch, loggers=("tb",)),
              [lbl("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "warmup_missing"], ref_onecycle),
        LCase("per_epoch_onecycle_stdout", "Per-epoch OneCycleLR seen only through the progress bar (lr in the "
              "postfix) in train.log; no checkpoint, no hparams.",
              _with(per_epoch, loggers=(), lr_monitor=None, progress_log=True, log_every=4,
                    extra={"lr_in_bar": True}, **NO_FILES),
              [lbl("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "warmup_missing"], ref_onecycle),
        LCase("per_epoch_onecycle_tb_nointent", "Per-epoch OneCycleLR, TensorBoard only, no checkpoint or hparams.",
              _with(per_epoch, loggers=("tb",), **NO_FILES),
              [lbl("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "warmup_missing"], ref_onecycle),
        LCase("constant_unreturned_cosine_csv", "CosineAnnealingLR built in configure_optimizers but only the optimizer "
              "returned: Lightning never steps it, the LR stays at 0.01 (hparams say cosine).",
              Recipe(scheduler=cosine(FULL), unreturned_scheduler=True, hparams=_hp(scheduler="cosine", T_max=160)),
              [lbl("constant_lr", "constant")], ["loss_plateau"], cosine(FULL)),
        LCase("constant_unreturned_onecycle_tb_nointent", "OneCycleLR built but not returned: the LR stays at the "
              "optimizer's 0.01; TB only, nothing states the schedule.",
              Recipe(scheduler=onecycle(FULL), unreturned_scheduler=True, loggers=("tb",), **NO_FILES),
              [lbl("constant_lr", "constant")], ["loss_plateau"], ref_onecycle),
        LCase("too_fast_cosine_step_csv", "CosineAnnealingLR(T_max=epochs=10) meant per epoch, returned with "
              "interval='step': LR 0 by step 10, then oscillating.",
              _with(too_fast_cos, hparams=_hp(scheduler="cosine", T_max=EPOCHS, epochs=EPOCHS)),
              [lbl("schedule_too_fast", "departure")], ["schedule_overrun", "lr_collapse"], ref_cos_epoch, "epoch"),
        LCase("too_fast_cosine_step_tb_nointent", "The same per-step CosineAnnealingLR(T_max=10); TB only.",
              _with(too_fast_cos, loggers=("tb",), **NO_FILES),
              [lbl("schedule_too_fast", "departure")], ["schedule_overrun", "lr_collapse"], ref_cos_epoch, "epoch"),
        LCase("too_fast_steplr_step_csv", "StepLR(step_size=3, gamma=0.1) meant every 3 epochs, interval='step': "
              "0.01 -> ~1e-55 over 160 steps.", Recipe(scheduler=steplr, hparams=_hp(scheduler="step", step_size=3, gamma=0.1)),
              [lbl("schedule_too_fast", "departure"), lbl("lr_collapse", "collapse")], ["constant_lr", "loss_plateau"],
              steplr, "epoch"),
        LCase("too_fast_steplr_step_stdout", "The per-step StepLR collapse seen only in the progress-bar postfix of "
              "train.log; nothing states the schedule.",
              Recipe(scheduler=steplr, loggers=(), lr_monitor=None, progress_log=True, log_every=2,
                     extra={"lr_in_bar": True}, **NO_FILES),
              [lbl("schedule_too_fast", "departure"), lbl("lr_collapse", "collapse")], ["constant_lr", "loss_plateau"],
              steplr, "epoch"),
        LCase("collapse_multistep_tb_nointent", "MultiStepLR(milestones=[3, 6, 8], gamma=0.001) meant in epochs, "
              "interval='step': the LR falls 1e9x inside the first epoch; TB only.",
              Recipe(scheduler=lambda o, spe: S.MultiStepLR(o, [3, 6, 8], 0.001), loggers=("tb",), **NO_FILES),
              [lbl("schedule_too_fast", "departure"), lbl("lr_collapse", "collapse")], ["constant_lr", "loss_plateau"],
              lambda o, spe: S.MultiStepLR(o, [3, 6, 8], 0.001), "epoch"),
        LCase("runaway_exponential_csv", "ExponentialLR(gamma=1.05) (meant 0.95) per step on Adam with "
              "gradient_clip_val=1 on a regression task, 16 epochs: LR 1e-3 -> ~250, the MSE climbs far above its minimum without NaN.",
              Recipe(**runaway, hparams=_hp(lr=1e-3, scheduler="exponential", gamma=1.05)),
              [lbl("lr_runaway", "runaway"), lbl("loss_divergence", "divergence")], ["loss_plateau", "grad_explosion"], ref_expo),
        LCase("runaway_exponential_tb_nointent", "The same gamma=1.05 runaway, TB only.",
              Recipe(**runaway, loggers=("tb",), **NO_FILES),
              [lbl("lr_runaway", "runaway"), lbl("loss_divergence", "divergence")], ["loss_plateau", "grad_explosion"], ref_expo),
        LCase("runaway_exponential_epoch_monitor_csv", "gamma=1.05 per step, but LearningRateMonitor logs once per "
              "epoch (logging_interval='epoch').", Recipe(**runaway, lr_monitor="epoch", hparams=_hp(lr=1e-3)),
              [lbl("lr_runaway", "runaway"), lbl("loss_divergence", "divergence")], ["loss_plateau", "grad_explosion"], ref_expo),
        LCase("incomplete_accum_onecycle_csv", "accumulate_grad_batches=4 but OneCycleLR total_steps = batches*epochs "
              "(160): 40 optimizer steps of a 160-step cycle, the run ends still warming up.",
              Recipe(**accum, hparams=_hp(scheduler="onecycle", total_steps=160, accumulate_grad_batches=4)),
              [lbl("schedule_incomplete", "last_step")], ["warmup_missing"], onecycle(FULL)),
        LCase("incomplete_accum_onecycle_tb", "The same accumulation-blind OneCycleLR, TB; the checkpoint holds "
              "total_steps=160 at global_step 40.", Recipe(**accum, loggers=("tb",)),
              [lbl("schedule_incomplete", "last_step")], ["warmup_missing"], onecycle(FULL)),
        LCase("incomplete_cosine_max_epochs_tb", "Cosine sized for hparams max_epochs=20 (T_max=320 steps) while the "
              "Trainer stops at max_epochs=10: the LR ends at half its peak.",
              Recipe(scheduler=cosine(lambda spe: 20 * spe), loggers=("tb",), hparams=_hp(max_epochs=20, T_max=320)),
              [lbl("schedule_incomplete", "last_step")], [], cosine(FULL)),
        LCase("overrun_cosine_tmax_short_csv", "CosineAnnealingLR(T_max=6 epochs of steps) from a stale config while "
              "the run trains 10 epochs: the LR reaches 0 at step 96 and climbs again.",
              Recipe(**short, hparams=_hp(scheduler="cosine", T_max=96)),
              [lbl("schedule_overrun", "trough")], [], cosine(FULL)),
        LCase("overrun_cosine_tmax_short_tb_nointent", "The same T_max overrun, TB only.",
              Recipe(**short, loggers=("tb",), **NO_FILES), [lbl("schedule_overrun", "trough")], [], cosine(FULL)),
        LCase("momentum_onecycle_adam_csv", "OneCycleLR with cycle_momentum=True on Adam: beta1 cycles 0.95->0.85->0.95; "
              "LearningRateMonitor(log_momentum=True) logs it.",
              Recipe(**onecycle_momentum, hparams=dict(ONECYCLE_HP)), [lbl("momentum_cycling", "momentum")]),
        LCase("momentum_onecycle_adam_tb", "The same beta1 cycling, TensorBoardLogger.",
              Recipe(**onecycle_momentum, loggers=("tb",)), [lbl("momentum_cycling", "momentum")]),
        LCase("momentum_onecycle_adamw_csv_nointent", "AdamW + OneCycleLR(cycle_momentum=True), CSV only.",
              Recipe(**dict(onecycle_momentum, optimizer="adamw"), **NO_FILES), [lbl("momentum_cycling", "momentum")]),
        LCase("momentum_onecycle_adam_epoch_monitor_tb", "beta1 cycling logged once per epoch "
              "(LearningRateMonitor('epoch', log_momentum=True)).",
              Recipe(**onecycle_momentum, loggers=("tb",), lr_monitor="epoch"), [lbl("momentum_cycling", "momentum")]),
    ]


def _with(recipe: Recipe, **changes) -> Recipe:
    from dataclasses import replace
    return replace(recipe, **changes)
