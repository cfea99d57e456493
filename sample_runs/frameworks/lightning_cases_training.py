"""Lightning cases whose failure is in the training itself or in a resume: NaN, grad explosion, plateau,
stuck validation, resume drift, missing resume state, a stated LR the code does not use."""

from __future__ import annotations

from lightning_cases import EPOCHS, FULL, NO_FILES, Label, LCase, _hp, cosine, warmup_cosine
from lightning_runs import Recipe

BLOWUP_STEP = 80


def training_failures() -> list[LCase]:
    """Numerics, progress, resume and source failures."""
    lbl = Label
    huge_lr = dict(task="regression", optimizer="sgd", lr=2.0)
    gan_nan = dict(task="gan", optimizer="sgd", lr=1e-3, extra={"d_lr": 50.0})
    blowup = dict(task="regression", blowup_step=BLOWUP_STEP, clip=1.0)
    plateau = dict(optimizer="adam", lr=1e-2, label_noise=0.3, epochs=10, n_train=2048, batch_size=64)
    ema = dict(ema_frozen=True, scheduler=warmup_cosine(FULL))
    manual = dict(scheduler=warmup_cosine(FULL), manual_scheduler=True, stop_after_epoch=5, resume="ckpt")
    weights = dict(scheduler=warmup_cosine(FULL), stop_after_epoch=5, resume="weights", weights_only=True)
    mismatch = dict(lr=1e-2, code_lr=1e-3)
    no_warmup = dict(task="regression", optimizer="adam", lr=1.0, scheduler=cosine(FULL))
    return [
        LCase("nan_huge_lr_csv", "SGD(momentum=0.9) at lr=2.0 on a regression task: the MSE overflows to inf and "
              "NaN within a few dozen steps; the fit runs on to its end.",
              Recipe(**huge_lr, hparams=_hp(lr=2.0, optimizer="sgd")), [lbl("nan_onset", "nonfinite", "train_loss")],
              ["loss_divergence", "grad_explosion", "loss_plateau", "val_stuck", "warmup_missing"]),
        LCase("nan_huge_lr_tb_nointent", "The same lr=2.0 divergence to NaN, TensorBoard only.",
              Recipe(**huge_lr, loggers=("tb",), **NO_FILES), [lbl("nan_onset", "nonfinite", "train_loss")],
              ["loss_divergence", "grad_explosion", "loss_plateau", "val_stuck", "warmup_missing"]),
        LCase("nan_gan_csv", "LSGAN with the discriminator on SGD lr=50: d_loss and then g_loss overflow to NaN "
              "(component losses only, no 'loss' key).", Recipe(**gan_nan, hparams={"g_lr": 1e-3, "d_lr": 50.0}),
              [lbl("nan_onset", "nonfinite", "d_loss|g_loss")], ["loss_divergence", "loss_plateau"]),
        LCase("nan_gan_stdout", "The same GAN blow-up seen only in the progress bar (g_loss, d_loss) of train.log.",
              Recipe(**gan_nan, loggers=(), lr_monitor=None, progress_log=True, log_every=2, **NO_FILES),
              [lbl("nan_onset", "nonfinite", "d_loss|g_loss")], ["loss_divergence", "loss_plateau"]),
        LCase("grad_explosion_blowup_csv", f"From step {BLOWUP_STEP} every input batch arrives scaled x1000 (a "
              "broken normaliser) on a regression task; gradient_clip_val=1 keeps updates bounded while the logged grad_2.0_norm_total "
              "(lightning.pytorch.utilities.grad_norm) jumps by orders of magnitude.",
              Recipe(**blowup, grad_norms="lightning", hparams=_hp(gradient_clip_val=1.0)),
              [lbl("grad_explosion", "grad_spike", "grad_2.0_norm_total")],
              ["loss_divergence", "loss_plateau", "val_stuck", "nan_onset"]),
        LCase("grad_explosion_blowup_tb", "The same x1000 regression inputs from step 80, one grad_norm scalar in TensorBoard.",
              Recipe(**blowup, grad_norms="plain", loggers=("tb",)), [lbl("grad_explosion", "grad_spike", "grad_norm")],
              ["loss_divergence", "loss_plateau", "val_stuck", "nan_onset"]),
        LCase("grad_explosion_blowup_csv_nointent", "x1000 inputs from step 80, CSV only, no checkpoint or hparams.",
              Recipe(**blowup, grad_norms="plain", **NO_FILES), [lbl("grad_explosion", "grad_spike", "grad_norm")],
              ["loss_divergence", "loss_plateau", "val_stuck", "nan_onset"]),
        LCase("plateau_constant_lr_csv", "Adam at a constant lr=0.01 with 30% label noise: the loss reaches its noise "
              "floor early and stays flat for most of the 20 epochs.",
              Recipe(**plateau, hparams=_hp(lr=1e-2, scheduler="none", max_epochs=20)),
              [lbl("loss_plateau", "plateau", "train_loss")], ["constant_lr", "val_stuck"]),
        LCase("plateau_constant_lr_tb_nointent", "The same early plateau at constant LR, TB only.",
              Recipe(**plateau, loggers=("tb",), **NO_FILES), [lbl("loss_plateau", "plateau", "train_loss")],
              ["constant_lr", "val_stuck"]),
        LCase("plateau_constant_lr_stdout", "The same plateau through the progress bar (train_loss) only.",
              Recipe(**plateau, loggers=(), lr_monitor=None, progress_log=True, log_every=2, **NO_FILES),
              [lbl("loss_plateau", "plateau", "train_loss")], ["constant_lr", "val_stuck"]),
        LCase("val_stuck_ema_csv", "Validation runs on an EMA copy whose update sits in the accumulation branch "
              "(dead with accumulate_grad_batches=1): val_acc is the initial model's every epoch.",
              Recipe(**ema, hparams=_hp(ema_decay=0.99)), [lbl("val_stuck", "first_val", "val_acc")]),
        LCase("val_stuck_ema_tb", "The same frozen EMA validation, TensorBoardLogger.",
              Recipe(**ema, loggers=("tb",)), [lbl("val_stuck", "first_val", "val_acc")]),
        LCase("val_stuck_ema_stdout", "Frozen EMA validation seen only through the progress bar (val_acc) in train.log.",
              Recipe(**ema, loggers=(), lr_monitor=None, progress_log=True, log_every=4, **NO_FILES),
              [lbl("val_stuck", "first_val", "val_acc")]),
        LCase("resume_manual_scheduler_csv", "Warmup+cosine LambdaLR built in on_fit_start and stepped by hand, so "
              "Lightning never checkpoints it: fit(ckpt_path=last.ckpt) continues the step count in version_1 but "
              "the warmup starts over.", Recipe(**manual, hparams=_hp(scheduler="warmup_cosine", warmup_steps=16)),
              [lbl("resume_drift", "resume")], ["schedule_incomplete", "lr_mismatch", "missing_resume_state"], warmup_cosine(FULL)),
        LCase("resume_manual_scheduler_tb", "The same hand-stepped scheduler reset on resume, TensorBoardLogger.",
              Recipe(**manual, loggers=("tb",)), [lbl("resume_drift", "resume")],
              ["schedule_incomplete", "lr_mismatch", "missing_resume_state"], warmup_cosine(FULL)),
        LCase("missing_state_weights_only_csv", "ModelCheckpoint(save_weights_only=True): last.ckpt has no optimizer "
              "or scheduler state, so the restart loads the weights and starts a fresh fit (step 0, warmup again) "
              "in version_1.", Recipe(**weights, hparams=_hp(scheduler="warmup_cosine")),
              [lbl("missing_resume_state", "resume")], ["resume_drift", "schedule_incomplete"]),
        LCase("missing_state_weights_only_tb", "The same weights-only checkpoint restart, TensorBoardLogger.",
              Recipe(**weights, loggers=("tb",)), [lbl("missing_resume_state", "resume")],
              ["resume_drift", "schedule_incomplete"]),
        LCase("warmup_missing_adam_csv", "Adam at lr=1.0 from step 0 with a per-step cosine and no warmup on a "
              "regression task: the loss jumps to several times its initial value in the first steps.",
              Recipe(**no_warmup, hparams=_hp(lr=1.0, scheduler="cosine", warmup_steps=0)),
              [lbl("warmup_missing", "early_spike", "train_loss")], ["loss_plateau"]),
        LCase("warmup_missing_adam_tb_nointent", "The same no-warmup start at lr=1.0 (seed 3), TensorBoard only.",
              Recipe(**dict(no_warmup, seed=3), loggers=("tb",), **NO_FILES),
              [lbl("warmup_missing", "early_spike", "train_loss")], ["loss_plateau"]),
        LCase("lr_mismatch_hparams_csv", "hparams.yaml says lr=0.01 but configure_optimizers hard-codes 1e-3: the "
              "logged LR is 10x below the stated one (no scheduler).", Recipe(**mismatch, hparams=_hp(lr=1e-2)),
              [lbl("lr_mismatch", "start")], ["constant_lr"]),
        LCase("lr_mismatch_hparams_tb", "The same stated-vs-used LR mismatch with TensorBoardLogger and hparams.yaml.",
              Recipe(**mismatch, loggers=("tb",), hparams=_hp(lr=1e-2, optimizer="adamw")),
              [lbl("lr_mismatch", "start")], ["constant_lr"]),
    ]


__all__ = ["training_failures", "EPOCHS"]
