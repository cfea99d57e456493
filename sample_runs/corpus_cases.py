"""The corpus: every injected failure (with at least two source mixes where that makes sense) and the
healthy twins. Descriptions say what the script does; the ground truth is computed at run time.
"""

from __future__ import annotations

from corpus_schedules import (
    cosine,
    cosine_over_epochs,
    exponential,
    lambda_warmup_cosine,
    linear_with_warmup,
    onecycle,
    step_lr,
    warmup_cosine,
)
from corpus_spec import (
    BEFORE_OPTIMIZER,
    CHECKPOINTS,
    NEVER,
    PER_EPOCH,
    PRESTEP,
    SCHEDULER_NOT_RESTORED,
    STALE_CHECKPOINT,
    STDERR,
    STDOUT,
    STEP_COUNTER_RESET,
    TENSORBOARD,
    CaseSpec,
    Expect,
)
TB, OUT, ERR, CKPT = TENSORBOARD, STDOUT, STDERR, CHECKPOINTS
ONECYCLE = "OneCycleLR(max_lr=0.01, total_steps=len(loader)*epochs, pct_start=0.3, cycle_momentum=False)"
WARMUP_COSINE = "SequentialLR([LinearLR(start_factor=0.01, total_iters=40), CosineAnnealingLR(T_max=total-40)], [40])"
COSINE = "CosineAnnealingLR(T_max=len(loader)*epochs)"
LAMBDA_WARMUP = "LambdaLR(lambda s: (s+1)/20 if s < 20 else cosine to 0 at len(loader)*epochs)"

PER_EPOCH_ALLOWED = ("constant_lr", "schedule_incomplete")

FAILURES = [
    # ---- per_epoch_stepping -------------------------------------------------------------------
    CaseSpec(
        "per_epoch_onecycle_tb",
        "OneCycleLR sized in steps (400) but scheduler.step() called once per epoch: 10 of 400 steps taken, "
        "the LR is a staircase near max_lr/25 changing only at epoch boundaries.",
        (TB, CKPT), (Expect("per_epoch_stepping", "start"),), PER_EPOCH_ALLOWED,
        scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, stepping=PER_EPOCH, checkpoint_every=5,
    ),
    CaseSpec(
        "per_epoch_warmup_cosine_hf",
        "Warmup (40 steps) + cosine sized in optimizer steps, stepped per epoch: 12 epochs take 12 warmup "
        "steps, so the LR climbs a staircase and never reaches its peak. HF-style dict log lines only.",
        (OUT,), (Expect("per_epoch_stepping", "start"),), ("schedule_incomplete",),
        epochs=12, batches_per_epoch=25, lr=3e-3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE,
        stepping=PER_EPOCH, log_style="hf", log_every=5,
        # HF-style lines state no schedule and the staircase alone is what a per-epoch schedule does on
        # purpose too (healthy_warmup_cosine_per_epoch), so the user states the per-step intent.
        cli_schedule={"schedule": "SequentialLR([LinearLR(start_factor=0.01, total_iters=40), "
                                  "CosineAnnealingLR(T_max=260)], milestones=[40])", "base_lr": 3e-3, "interval": "step"},
    ),
    CaseSpec(
        "per_epoch_onecycle_timm",
        "OneCycleLR sized in steps stepped per epoch (the incident), timm-style log lines and checkpoints.",
        (OUT, CKPT), (Expect("per_epoch_stepping", "start"),), PER_EPOCH_ALLOWED,
        epochs=8, batches_per_epoch=50, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, stepping=PER_EPOCH,
        log_style="timm", log_every=10, checkpoint_every=2,
    ),
    # ---- constant_lr --------------------------------------------------------------------------
    CaseSpec(
        "constant_lr_never_stepped_tb",
        "OneCycleLR created but scheduler.step() never called: the LR stays at max_lr/25 for the whole run.",
        (TB,), (Expect("constant_lr", "start"),), ("schedule_incomplete",),
        epochs=8, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, stepping=NEVER,
        cli_schedule={"schedule": "OneCycleLR(max_lr=0.01, total_steps=320, pct_start=0.3, cycle_momentum=False)"},
    ),
    CaseSpec(
        "constant_lr_huge_horizon_kv",
        "CosineAnnealingLR(T_max=len(train_dataset)*epochs) (samples, not batches) stepped per epoch: 10 of "
        "4800 steps taken, the LR stays within 0.01% of its start. key=value log lines and checkpoints.",
        (OUT, CKPT), (Expect("constant_lr", "start"),), ("per_epoch_stepping", "schedule_incomplete"),
        batches_per_epoch=30, optimizer="adam", lr=1e-3, scheduler=cosine(per_sample=True),
        scheduler_text="CosineAnnealingLR(T_max=len(train_dataset)*epochs)", intended=cosine(),
        stepping=PER_EPOCH, checkpoint_every=5,
    ),
    # ---- schedule_too_fast --------------------------------------------------------------------
    CaseSpec(
        "too_fast_cosine_tb",
        "CosineAnnealingLR(T_max=epochs=10) meant per epoch but stepped per batch: the LR reaches 0 at step 10 "
        "and then oscillates with a 20-step period.",
        (TB, CKPT), (Expect("schedule_too_fast", "departure", 1),), ("schedule_overrun",),
        optimizer="sgd", lr=0.05, scheduler=cosine_over_epochs(), scheduler_text="CosineAnnealingLR(T_max=epochs)",
        intended_interval="epoch", checkpoint_every=5,
    ),
    CaseSpec(
        "too_fast_steplr_kv",
        "StepLR(step_size=30, gamma=0.1) meant as 'every 30 epochs' but stepped per batch: the LR drops 10x "
        "every 30 steps (first drop inside epoch 0) and is below 1e-10 by epoch 9. key=value log lines only.",
        (OUT,), (Expect("schedule_too_fast", "departure", 1),), ("constant_lr", "lr_collapse"),
        epochs=35, batches_per_epoch=36, optimizer="sgd", lr=0.05, scheduler=step_lr(30),
        scheduler_text="StepLR(step_size=30, gamma=0.1)", intended_interval="epoch",
        cli_schedule={"schedule": "StepLR(step_size=30, gamma=0.1)", "interval": "epoch", "steps_per_epoch": 36},
    ),
    # ---- lr_collapse (no stated schedule: the LR alone is the evidence) ------------------------
    CaseSpec(
        "lr_collapse_steplr_hf",
        "StepLR(step_size=30, gamma=0.1) meant per epoch but stepped per batch, HF-style log lines only and no "
        "config: the LR falls 10x every 30 steps, below 1e-20 by step 600, while training goes on.",
        (OUT,), (Expect("lr_collapse", "lr_collapse", 1),), ("loss_plateau", "constant_lr"),
        epochs=20, batches_per_epoch=36, optimizer="sgd", lr=0.1, scheduler=step_lr(30),
        scheduler_text="StepLR(step_size=30, gamma=0.1)", intended_interval="epoch", log_style="hf", log_every=1,
    ),
    CaseSpec(
        "lr_collapse_exponential_tb",
        "ExponentialLR(gamma=0.9) meant per epoch but stepped per batch, TensorBoard only: the LR falls below "
        "1e-4 of its start within 90 steps and keeps falling for the rest of the run.",
        (TB,), (Expect("lr_collapse", "lr_collapse", 1),), ("loss_plateau", "constant_lr"),
        epochs=12, batches_per_epoch=40, optimizer="adamw", lr=3e-3, scheduler=exponential(0.9),
        scheduler_text="ExponentialLR(gamma=0.9)", intended_interval="epoch",
    ),
    # ---- schedule_overrun ---------------------------------------------------------------------
    CaseSpec(
        "overrun_cosine_tb",
        "CosineAnnealingLR(T_max=8 epochs of steps) from a stale config while the run trains 12 epochs: the "
        "LR reaches 0 at T_max and rises again for the last third of the run.",
        (TB,), (Expect("schedule_overrun", "horizon", 1),),
        epochs=12, batches_per_epoch=25, lr=3e-3, scheduler=cosine(t_max_epochs=8),
        scheduler_text="CosineAnnealingLR(T_max=8*len(loader))",
    ),
    CaseSpec(
        "overrun_cosine_hf",
        "The same stale-config cosine overrun, seen through HF-style log lines and checkpoints.",
        (OUT, CKPT), (Expect("schedule_overrun", "horizon", 1),),
        epochs=12, batches_per_epoch=25, lr=3e-3, scheduler=cosine(t_max_epochs=8),
        scheduler_text="CosineAnnealingLR(T_max=8*len(loader))", log_style="hf", log_every=5, checkpoint_every=4,
    ),
    CaseSpec(
        "overrun_onecycle_error_kv",
        "OneCycleLR(total_steps=epochs*(len(dataset)//batch_size)) but the loader keeps a last partial batch: "
        "one extra step per epoch, and in the last epoch torch raises 'Tried to step ... total steps is ...'; "
        "the traceback ends train.log. key=value lines and checkpoints.",
        (OUT, CKPT), (Expect("schedule_overrun", "horizon"),),
        epochs=6, extra_samples=8, scheduler=onecycle(1e-2, sized="full_batches"),
        scheduler_text="OneCycleLR(max_lr=0.01, total_steps=epochs*(len(dataset)//batch_size))",
        intended=onecycle(1e-2),
    ),
    CaseSpec(
        "overrun_onecycle_error_tb",
        "The same OneCycleLR 'Tried to step' crash, with TensorBoard scalars and the traceback in stderr.log.",
        (TB, ERR), (Expect("schedule_overrun", "horizon"),),
        epochs=6, extra_samples=8, scheduler=onecycle(1e-2, sized="full_batches"),
        scheduler_text="OneCycleLR(max_lr=0.01, total_steps=epochs*(len(dataset)//batch_size))",
        intended=onecycle(1e-2),
    ),
    # ---- schedule_incomplete ------------------------------------------------------------------
    CaseSpec(
        "incomplete_accum_onecycle_tb",
        "Gradient accumulation over 4 batches, but OneCycleLR total_steps = len(loader)*epochs: the run does "
        "100 optimizer steps of a 400-step schedule and ends still warming up (k = 4).",
        (TB, CKPT), (Expect("schedule_incomplete", "last_step"),),
        accum=4, scheduler=onecycle(1e-2, sized="batches"), scheduler_text=ONECYCLE, intended=onecycle(1e-2),
        checkpoint_every=5,
    ),
    CaseSpec(
        "incomplete_accum_linear_hf",
        "HF-style linear warmup/decay sized with len(loader)*epochs while accumulating 8 batches per step: the "
        "run ends at 1/8 of the schedule with the LR near its peak (k = 8). HF-style lines only.",
        (OUT,), (Expect("schedule_incomplete", "last_step"),),
        epochs=10, batches_per_epoch=80, accum=8, lr=3e-3, scheduler=linear_with_warmup(0.1, sized="batches"),
        scheduler_text="get_linear_schedule_with_warmup(num_warmup_steps=10%, num_training_steps=len(loader)*epochs)",
        intended=linear_with_warmup(0.1), log_style="hf", log_every=2,
        cli_schedule={"schedule": "linear(num_warmup_steps=80, num_training_steps=800)", "base_lr": 3e-3},
    ),
    # ---- off_by_one ---------------------------------------------------------------------------
    CaseSpec(
        "off_by_one_step_order_tb",
        "scheduler.step() called before optimizer.step() every batch: each step uses the next step's LR (the "
        "first LR is 2x the intended (s+1)/20 warmup); torch's warning is in stderr.log.",
        (TB, ERR), (Expect("off_by_one", "start"),),
        epochs=8, batches_per_epoch=30, lr=3e-3, scheduler=lambda_warmup_cosine(20), scheduler_text=LAMBDA_WARMUP,
        stepping=BEFORE_OPTIMIZER,
    ),
    CaseSpec(
        "off_by_one_prestepped_timm",
        "A stray scheduler.step() right after building the scheduler: the whole schedule is shifted one step "
        "early, the first LR is 2x intended; torch's warning is in train.log (stderr merged). timm-style lines.",
        (OUT, CKPT), (Expect("off_by_one", "start"),),
        epochs=8, batches_per_epoch=30, lr=3e-3, scheduler=lambda_warmup_cosine(20), scheduler_text=LAMBDA_WARMUP,
        stepping=PRESTEP, log_style="timm", log_every=5, checkpoint_every=4,
    ),
    # ---- resume_drift -------------------------------------------------------------------------
    CaseSpec(
        "resume_scheduler_reset_tb",
        "Warmup+cosine per batch; the process dies after 5 epochs; the restart restores model, optimizer, epoch "
        "and global_step but builds a fresh scheduler without load_state_dict, so warmup repeats.",
        (TB, CKPT), (Expect("resume_drift", "resume"),), ("schedule_incomplete",),
        lr=3e-3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE, crash_after_epoch=5,
        resume_bug=SCHEDULER_NOT_RESTORED,
    ),
    CaseSpec(
        "resume_scheduler_reset_timm",
        "The same scheduler reset on resume, seen through timm-style lines and checkpoints.",
        (OUT, CKPT), (Expect("resume_drift", "resume"),), ("schedule_incomplete",),
        lr=3e-3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE, crash_after_epoch=5,
        resume_bug=SCHEDULER_NOT_RESTORED, log_style="timm", log_every=10,
    ),
    CaseSpec(
        "resume_step_reset_kv",
        "Cosine per batch; after the crash at epoch 4 everything is restored but a leftover 'start_epoch = 0' "
        "rewinds epoch and global_step: steps restart at 0, all 8 epochs run again, the cosine overruns T_max.",
        (OUT, CKPT), (Expect("resume_drift", "resume"),), ("schedule_overrun", "schedule_incomplete"),
        epochs=8, batches_per_epoch=30, lr=3e-3, scheduler=cosine(), scheduler_text=COSINE,
        checkpoint_every=2, crash_after_epoch=4, resume_bug=STEP_COUNTER_RESET,
    ),
    CaseSpec(
        "resume_stale_checkpoint_hf",
        "Checkpoints every epoch; after the crash at epoch 11 the script resumes from sorted(glob)[-1], which is "
        "ckpt_epoch_9.pt (name order): two epochs are trained again. TB, HF-style lines and checkpoints.",
        (TB, OUT, CKPT), (Expect("resume_drift", "resume"),),
        epochs=14, batches_per_epoch=20, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, crash_after_epoch=11,
        resume_bug=STALE_CHECKPOINT, log_style="hf", log_every=5,
    ),
    # ---- missing_resume_state -----------------------------------------------------------------
    CaseSpec(
        "missing_state_scheduler_tb",
        "Checkpoints carry no scheduler state; the restart fast-forwards a fresh OneCycleLR global_step times "
        "(so the LR is right, and torch warns about stepping before the optimizer).",
        (TB, CKPT), (Expect("missing_resume_state", "resume"),),
        epochs=8, batches_per_epoch=30, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, crash_after_epoch=4,
        checkpoint_omits=("scheduler",),
    ),
    CaseSpec(
        "missing_state_global_step_kv",
        "Checkpoints carry no global_step; the restart derives it as epoch*len(loader). key=value lines.",
        (OUT, CKPT), (Expect("missing_resume_state", "resume"),),
        batches_per_epoch=25, lr=3e-3, scheduler=warmup_cosine(40), scheduler_text=WARMUP_COSINE,
        crash_after_epoch=5, checkpoint_omits=("global_step",),
    ),
    CaseSpec(
        "missing_state_optimizer_tb",
        "Checkpoints carry no optimizer state: AdamW's moments restart at resume, and the first resumed step "
        "runs at the fresh scheduler's initial LR until scheduler.step() rewrites it (torch behaviour).",
        (TB, CKPT), (Expect("missing_resume_state", "resume"),), ("resume_drift",),
        epochs=8, batches_per_epoch=30, lr=3e-3, scheduler=cosine(), scheduler_text=COSINE,
        crash_after_epoch=4, checkpoint_omits=("optimizer",),
    ),
    CaseSpec(
        "missing_state_rng_hf",
        "Checkpoints carry no RNG state: the resumed process reshuffles from the seed, so the data order of "
        "epoch 0 repeats. HF-style lines and checkpoints.",
        (OUT, CKPT), (Expect("missing_resume_state", "resume"),),
        epochs=8, batches_per_epoch=30, scheduler=onecycle(1e-2), scheduler_text=ONECYCLE, crash_after_epoch=4,
        checkpoint_omits=("rng_state",), log_style="hf", log_every=5,
    ),
]
