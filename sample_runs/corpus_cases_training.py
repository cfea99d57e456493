"""Corpus failures of the training itself (numerics, momentum, warmup, loss and validation) and the
healthy twins. Descriptions say what the script does; the ground truth is computed at run time.
"""

from __future__ import annotations

from corpus_cases import COSINE, ONECYCLE, WARMUP_COSINE
from corpus_schedules import (
    cosine,
    exponential,
    linear_with_warmup,
    onecycle,
    reduce_on_plateau,
    step_lr,
    warmup_cosine,
    warmup_cosine_epochs,
)
from corpus_spec import CHECKPOINTS, NEVER, ON_VAL_LOSS, PER_EPOCH, STDERR, STDOUT, TENSORBOARD, CaseSpec, Expect
from sample_loop import REGRESSION

TB, OUT, ERR, CKPT = TENSORBOARD, STDOUT, STDERR, CHECKPOINTS
ONECYCLE_MOMENTUM = "OneCycleLR(max_lr=0.01, total_steps=len(loader)*epochs, pct_start=0.3)  # cycle_momentum=True"

TRAINING_FAILURES = [
    # ---- nan_onset ----------------------------------------------------------------------------
    CaseSpec(
        "nan_diverge_tb",
        "SGD(momentum=0.9) with ExponentialLR(gamma=1.05) per batch on a regression task: the LR grows until "
        "the MSE loss overflows to inf and then NaN; the loop keeps going to its planned end.",
        (TB, CKPT), (Expect("nan_onset", "first_nonfinite_loss"),), ("grad_explosion", "lr_runaway", "loss_divergence"),
        task=REGRESSION, batches_per_epoch=25, optimizer="sgd", lr=1e-3, scheduler=exponential(1.05),
        scheduler_text="ExponentialLR(gamma=1.05)",
    ),
    CaseSpec(
        "nan_spike_recover_hf",
        "Regression with one corrupt training record (inputs x25) and an LR growing 1.5% per step: the record "
        "causes loss/grad spikes the run recovers from, until a later pass diverges to inf/NaN. HF-style "
        "lines every step (loss, grad_norm, learning_rate).",
        (OUT,), (Expect("nan_onset", "first_nonfinite_loss"),), ("grad_explosion", "lr_runaway", "loss_divergence"),
        task=REGRESSION, epochs=14, batches_per_epoch=25, optimizer="sgd", lr=2e-3, scheduler=exponential(1.015),
        scheduler_text="ExponentialLR(gamma=1.015)", outlier_factor=25.0, log_style="hf", log_every=1,
    ),
    # ---- lr_runaway / loss_divergence (need no stated schedule) ------------------------------
    CaseSpec(
        "lr_runaway_clipped_tb",
        "ExponentialLR(gamma=1.05) (meant 0.95) with clip_grad_norm_(max_norm=1.0): the LR grows from 1e-3 to "
        "~190 while clipping keeps the loss finite as it climbs thousands of times above its minimum.",
        (TB,), (Expect("lr_runaway", "lr_growth", 5), Expect("loss_divergence", "loss_rise", 15)),
        ("grad_explosion", "loss_plateau"),
        task=REGRESSION, batches_per_epoch=25, optimizer="sgd", lr=1e-3, scheduler=exponential(1.05),
        scheduler_text="ExponentialLR(gamma=1.05)", clip=1.0,
    ),
    CaseSpec(
        "lr_runaway_clipped_kv",
        "The same runaway with ExponentialLR(gamma=1.06), key=value lines every 5 steps and checkpoints.",
        (OUT, CKPT), (Expect("lr_runaway", "lr_growth", 5), Expect("loss_divergence", "loss_rise", 15)),
        ("grad_explosion", "loss_plateau"),
        task=REGRESSION, batches_per_epoch=25, optimizer="sgd", lr=1e-3, scheduler=exponential(1.06),
        scheduler_text="ExponentialLR(gamma=1.06)", clip=1.0, log_every=5, checkpoint_every=5,
    ),
    # ---- grad_explosion -----------------------------------------------------------------------
    CaseSpec(
        "grad_explosion_outlier_tb",
        "One corrupt training record (inputs x1000) in a regression set, SGD with warmup + cosine and "
        "clip_grad_norm_(max_norm=1.0): each pass over the record makes that batch's grad norm thousands of "
        "times its running level while clipping keeps the loss finite.",
        (TB,), (Expect("grad_explosion", "grad_spike", 10),),
        task=REGRESSION, batches_per_epoch=25, optimizer="sgd", lr=1e-3, scheduler=warmup_cosine(40),
        scheduler_text=WARMUP_COSINE, clip=1.0, outlier_factor=1000.0,
    ),
    CaseSpec(
        "grad_explosion_outlier_kv",
        "The same corrupt record (inputs x3000), key=value lines every step and checkpoints each epoch.",
        (OUT, CKPT), (Expect("grad_explosion", "grad_spike", 10),),
        task=REGRESSION, batches_per_epoch=25, optimizer="sgd", lr=1e-3, scheduler=warmup_cosine(40),
        scheduler_text=WARMUP_COSINE, clip=1.0, outlier_factor=3000.0,
        log_every=1,
    ),
    # ---- momentum_cycling ---------------------------------------------------------------------
    CaseSpec(
        "momentum_cycling_tb",
        "OneCycleLR with the default cycle_momentum=True on AdamW: beta1 cycles 0.95 -> 0.85 -> 0.95; the script "
        "logs train/momentum from param_groups[0]['betas'][0].",
        (TB, CKPT), (Expect("momentum_cycling", "start"),),
        epochs=8, batches_per_epoch=30, scheduler=onecycle(1e-2, cycle_momentum=True),
        scheduler_text=ONECYCLE_MOMENTUM, log_momentum=True, checkpoint_every=2,
    ),
    CaseSpec(
        "momentum_cycling_ckpt",
        "OneCycleLR cycle_momentum=True on Adam, visible only in the per-epoch checkpoints' optimizer betas.",
        (CKPT,), (Expect("momentum_cycling", "start"),),
        epochs=8, batches_per_epoch=30, optimizer="adam", scheduler=onecycle(1e-2, cycle_momentum=True),
        scheduler_text=ONECYCLE_MOMENTUM,
    ),
    # ---- warmup_missing -----------------------------------------------------------------------
    CaseSpec(
        "warmup_missing_tb",
        "Adam at lr=0.3 from step 0 (cosine decay, no warmup) on a regression task: the loss jumps to several "
        "times its initial value in the first steps before settling.",
        (TB,), (Expect("warmup_missing", "start"),),
        task=REGRESSION, optimizer="adam", lr=0.3, scheduler=cosine(), scheduler_text=COSINE,
    ),
    CaseSpec(
        "warmup_missing_hf",
        "The same no-warmup start (Adam lr=0.3, seed 3), HF-style lines every step.",
        (OUT,), (Expect("warmup_missing", "start"),),
        task=REGRESSION, optimizer="adam", lr=0.3, scheduler=cosine(), scheduler_text=COSINE, log_style="hf",
        log_every=1, seed=3,
    ),
    # ---- loss_plateau -------------------------------------------------------------------------
    CaseSpec(
        "loss_plateau_tb",
        "Adam at a constant lr=0.01 (no scheduler) on an easy task with 15% label noise: the loss drops in the "
        "first ~100 steps to the noise floor and stays flat for the rest of the run.",
        (TB,), (Expect("loss_plateau", "plateau", 25),), ("constant_lr",),
        dataset="threshold", epochs=5, batches_per_epoch=120, optimizer="adam", lr=0.01, stepping=NEVER,
    ),
    CaseSpec(
        "loss_plateau_timm",
        "The same early drop then flat loss at a constant lr=0.003, timm-style lines only.",
        (OUT,), (Expect("loss_plateau", "plateau", 25),), ("constant_lr",),
        dataset="threshold", epochs=5, batches_per_epoch=120, optimizer="adam", lr=0.003, stepping=NEVER,
        log_style="timm", log_every=10,
    ),
    # ---- val_stuck ----------------------------------------------------------------------------
    CaseSpec(
        "val_stuck_ema_tb",
        "Validation runs on a model EMA whose update() is never reached (it sits in the gradient-accumulation "
        "branch, dead with accum=1): val accuracy is the initial model's, constant near chance, while the "
        "training loss falls.",
        (TB, CKPT), (Expect("val_stuck", "first_validation"),),
        scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, ema="never_updated", checkpoint_every=5,
    ),
    CaseSpec(
        "val_stuck_ema_nan_hf",
        "A zero-initialised, bias-corrected EMA that is never updated: its weights are 0/0 = NaN, so eval_loss "
        "is NaN and eval_accuracy is the share of class 0 (chance) every epoch. HF-style lines only.",
        (OUT,), (Expect("val_stuck", "first_validation"),), ("nan_onset",),
        scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, ema="zero_debias", log_style="hf", log_every=5,
    ),
]

HEALTHY = [
    CaseSpec(
        "healthy_onecycle_tb",
        "AdamW + OneCycleLR stepped once per batch after optimizer.step(); finishes the schedule.",
        (TB, CKPT), scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, checkpoint_every=5,
    ),
    CaseSpec(
        "healthy_onecycle_timm",
        "The same correct per-batch OneCycleLR, timm-style lines only.",
        (OUT,), epochs=8, batches_per_epoch=50, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE,
        log_style="timm", log_every=10,
    ),
    CaseSpec(
        "healthy_warmup_cosine_per_epoch",
        "An epoch-interval recipe stepped per epoch on purpose: LinearLR over 2 epochs then "
        "CosineAnnealingLR(T_max=epochs-2), both counted in epochs. TB and HF-style lines.",
        (TB, OUT), epochs=12, batches_per_epoch=25, lr=3e-3, scheduler=warmup_cosine_epochs(2),
        scheduler_text="SequentialLR([LinearLR(start_factor=0.1, total_iters=2), CosineAnnealingLR(T_max=epochs-2)], [2])",
        intended_interval="epoch", stepping=PER_EPOCH, log_style="hf", log_every=5,
    ),
    CaseSpec(
        "healthy_steplr_per_epoch",
        "SGD + StepLR(step_size=4 epochs, gamma=0.5) stepped per epoch: the LR halves at epochs 4 and 8.",
        (OUT,), epochs=12, batches_per_epoch=25, optimizer="sgd", lr=0.05, scheduler=step_lr(4, 0.5),
        scheduler_text="StepLR(step_size=4, gamma=0.5)", intended_interval="epoch", stepping=PER_EPOCH,
    ),
    CaseSpec(
        "healthy_resume_tb",
        "Warmup+cosine per batch; the process dies after 5 epochs and the restart restores model, optimizer, "
        "scheduler, RNG and global_step: the LR continues exactly where it stopped.",
        (TB, CKPT), lr=3e-3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE, crash_after_epoch=5,
    ),
    CaseSpec(
        "healthy_resume_kv",
        "A correct OneCycleLR resume after 4 of 8 epochs, key=value lines and checkpoints every 2 epochs.",
        (OUT, CKPT), epochs=8, batches_per_epoch=30, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE,
        crash_after_epoch=4, checkpoint_every=2,
    ),
    CaseSpec(
        "healthy_constant_lr",
        "Adam at a constant lr=0.001 on purpose (no scheduler); the loss keeps improving to the end.",
        (TB, OUT), epochs=20, batches_per_epoch=25, optimizer="adam", lr=1e-3, stepping=NEVER,
    ),
    CaseSpec(
        "healthy_reduce_on_plateau",
        "ReduceLROnPlateau(factor=0.5, patience=1) stepped with the validation loss each epoch; it reduces.",
        (TB, CKPT), epochs=15, batches_per_epoch=20, optimizer="adam", lr=1e-2, scheduler=reduce_on_plateau(0.5, 1),
        scheduler_text="ReduceLROnPlateau(mode='min', factor=0.5, patience=1)", intended_interval="epoch",
        stepping=ON_VAL_LOSS, checkpoint_every=5,
    ),
    CaseSpec(
        "healthy_amp_skip",
        "float16 autocast with torch.amp.GradScaler('cpu', init_scale=2**24, backoff_factor=2**-8): the first "
        "step's float16 gradients overflow, GradScaler skips optimizer.step() and cuts the scale to 2**16, and torch "
        "warns that lr_scheduler.step() ran before optimizer.step(). Harmless: TB's train/loss_scale shows the skip.",
        (TB, ERR, CKPT), scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, amp_init_scale=2.0**24, amp_backoff=2.0**-8,
        checkpoint_every=5,
    ),
    CaseSpec(
        "healthy_grad_accum",
        "Gradient accumulation over 4 batches done right: OneCycleLR total_steps = ceil(len(loader)/4)*epochs, "
        "stepped with the optimizer. HF-style lines and checkpoints.",
        (OUT, CKPT), accum=4, scheduler=onecycle(1e-2), scheduler_text="OneCycleLR(max_lr=0.01, total_steps=ceil(len(loader)/4)*epochs)",
        log_style="hf", log_every=2, checkpoint_every=5,
    ),
    CaseSpec(
        "healthy_hf_next_lr",
        "Correct linear warmup/decay, but the log's learning_rate is scheduler.get_last_lr() read after "
        "scheduler.step() (HF Trainer before its 2025 fix): the logged LR is the next step's. Not a bug in training.",
        (OUT,), lr=3e-3, scheduler=linear_with_warmup(0.1), scheduler_text="get_linear_schedule_with_warmup(10%)",
        log_style="hf", log_every=5, lr_logged="next",
    ),
    CaseSpec(
        "healthy_warmup_regression",
        "The warmup_missing twin done right: Adam peak lr=0.3 on regression after a 40-step linear warmup.",
        (TB,), task=REGRESSION, optimizer="adam", lr=0.3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE,
    ),
]
