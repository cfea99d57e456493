"""`transformers.Trainer` cases: a tiny PreTrainedModel built from its config, synthetic data, real
TrainingArguments, real checkpoint-N/ folders, TensorBoard via report_to, stdout (dict lines, tqdm bars)
in train.log. Failures are injected the ways users inject them: a scheduler passed through `optimizers=`,
a callback, a Trainer subclass, files removed from a checkpoint before resuming. Labels come from the
run's own TensorBoard event files (one per process lifetime)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import frameworks_common_hf as common


@dataclass
class HFCase:
    description: str
    args: dict                                   # TrainingArguments beyond the shared defaults
    expected: list = field(default_factory=list)
    allowed: list = field(default_factory=list)
    task: str = "classification"                 # classification | regression | blobs | noisy
    n_train: int = 320
    scheduler: str | None = None                 # a scheduler passed through optimizers=(...)
    sched_kwargs: dict = field(default_factory=dict)
    crash_at: int | None = None                  # global step at which the first process dies
    before_resume: str | None = None             # correct | weights_only | no_rng
    stop_after_epochs: int | None = None
    grad_hook: tuple | None = None               # (start step, factor per step)
    stale_eval: bool = False
    log_momentum: bool = False
    jsonl_lr_from_args: bool = False
    tb_dir: str | None = "tb_logs"               # TENSORBOARD_LOGGING_DIR; None: Trainer's default runs/<date>_<host>
    verbose: bool = True


BASE_ARGS = dict(per_device_train_batch_size=16, num_train_epochs=6, learning_rate=3e-3, logging_steps=5,
                 save_steps=60, save_total_limit=2, report_to=["tensorboard"], use_cpu=True, seed=0,
                 data_seed=0, dataloader_num_workers=0, eval_strategy="no", max_grad_norm=1.0,
                 logging_nan_inf_filter=False, disable_tqdm=False)
EVAL = dict(eval_strategy="epoch", per_device_eval_batch_size=128)

CASES: dict[str, HFCase] = {
    # ---------------------------------------------------------------- healthy twins
    "hf_healthy_cosine_warmup": HFCase(
        "Trainer with lr_scheduler_type=cosine, warmup_steps=12 over 120 steps: the LR decays to ~0 and the run "
        "finishes; eval each epoch.", dict(lr_scheduler_type="cosine", warmup_steps=12, **EVAL)),
    "hf_healthy_constant": HFCase(
        "Trainer with lr_scheduler_type=constant on purpose at 1e-3; the loss keeps improving.",
        dict(lr_scheduler_type="constant", learning_rate=1e-3), tb_dir=None),
    "hf_healthy_constant_with_warmup": HFCase(
        "constant_with_warmup (10 steps) then a flat LR, as configured.",
        dict(lr_scheduler_type="constant_with_warmup", warmup_steps=10, learning_rate=2e-3, **EVAL)),
    "hf_healthy_resume_rerun": HFCase(
        "Linear warmup/decay; the process dies at step 75 after checkpoint-60 and is restarted with "
        "resume_from_checkpoint=True: steps 61-75 are trained again with identical LRs, a second event file.",
        dict(lr_scheduler_type="linear", warmup_steps=0.1, save_steps=30), crash_at=75, before_resume="correct"),
    "hf_healthy_accum": HFCase(
        "gradient_accumulation_steps=4 with batch 8, cosine over the 100 optimizer steps Trainer computes: done right.",
        dict(per_device_train_batch_size=8, gradient_accumulation_steps=4, num_train_epochs=10,
             lr_scheduler_type="cosine", warmup_steps=5, logging_steps=2, save_steps=50)),
    "hf_healthy_saturated_top5": HFCase(
        "Well separated classes: eval accuracy and top-5 reach 1.0 in the first epoch and stay (converged).",
        dict(lr_scheduler_type="linear", **EVAL), task="blobs"),
    # ---------------------------------------------------------------- schedule_incomplete
    "hf_incomplete_max_steps_accum": HFCase(
        "max_steps = len(loader)*epochs = 480 ignoring gradient_accumulation_steps=4, and an epoch-budget callback "
        "stops training after 6 epochs: trainer_state says max_steps 480 at global_step 120, the cosine LR ends "
        "near its peak.", dict(per_device_train_batch_size=4, gradient_accumulation_steps=4, max_steps=480,
                               lr_scheduler_type="cosine", warmup_steps=10), ["schedule_incomplete"], [],
        stop_after_epochs=6),
    "hf_incomplete_custom_sched_accum": HFCase(
        "get_cosine_schedule_with_warmup(num_training_steps=len(train_dataloader)*epochs) passed via optimizers= "
        "with gradient_accumulation_steps=4: 80 of 320 scheduler steps are taken.",
        dict(per_device_train_batch_size=4, gradient_accumulation_steps=4, num_train_epochs=4,
             lr_scheduler_type="cosine", warmup_steps=10, logging_steps=2, save_steps=40),
        ["schedule_incomplete"], [], scheduler="cosine", sched_kwargs={"num_warmup_steps": 10,
                                                                       "num_training_steps": 320}),
    # ---------------------------------------------------------------- schedule_overrun / off_by_one
    "hf_overrun_stale_horizon": HFCase(
        "get_cosine_schedule_with_warmup sized for 60 steps (a stale num_train_epochs=3) passed to a 120-step run: "
        "past step 60 HF's cosine lambda climbs back to the peak.",
        dict(lr_scheduler_type="cosine", warmup_steps=6), ["schedule_overrun"], ["schedule_too_fast"],
        scheduler="cosine", sched_kwargs={"num_warmup_steps": 6, "num_training_steps": 60}),
    "hf_off_by_one_prestepped": HFCase(
        "A custom get_linear_schedule_with_warmup stepped once before trainer.train(): every LR is the next step's "
        "(the first logged warmup LR is 2x).", dict(lr_scheduler_type="linear", warmup_steps=20, logging_steps=1),
        ["off_by_one"], [], scheduler="linear_prestepped",
        sched_kwargs={"num_warmup_steps": 20, "num_training_steps": 120}),
    # ---------------------------------------------------------------- warmup / plateau / momentum
    "hf_warmup_missing": HFCase(
        "Regression head, AdamW lr=0.5, cosine with warmup_steps=0: the loss jumps far above its start in the "
        "first steps.", dict(lr_scheduler_type="cosine", warmup_steps=0, learning_rate=0.5, logging_steps=1,
                             max_grad_norm=0.0), ["warmup_missing"], [], task="regression"),
    "hf_loss_plateau": HFCase(
        "Constant lr on labels with 60% noise: the loss reaches the noise floor early and stays flat.",
        dict(lr_scheduler_type="constant", learning_rate=1e-2, logging_steps=2, per_device_train_batch_size=32,
             num_train_epochs=5), ["loss_plateau"], ["constant_lr"], task="noisy", n_train=1280),
    "hf_momentum_cycling": HFCase(
        "optimizers=(AdamW, OneCycleLR(cycle_momentum=True)): beta1 cycles 0.95 -> 0.85 -> 0.95; a Trainer.log "
        "override adds 'momentum'; optimizer.pt in each checkpoint has the betas.",
        dict(lr_scheduler_type="linear"), ["momentum_cycling"], [], scheduler="onecycle_momentum", log_momentum=True),
    # ---------------------------------------------------------------- numerics
    "hf_nan_huge_lr": HFCase(
        "Regression with optim='sgd' at learning_rate=2.5 (meant 2.5e-3), constant: the loss overflows to inf/NaN; "
        "logging_nan_inf_filter=False, logged every step.",
        dict(optim="sgd", learning_rate=2.5, lr_scheduler_type="constant", logging_steps=1, max_grad_norm=0.0,
             num_train_epochs=2, save_steps=20), ["nan_onset"], ["loss_divergence", "grad_explosion", "warmup_missing"],
        task="regression"),
    "hf_nan_filtered_grad_norm": HFCase(
        "The same overflow with Trainer's default logging_nan_inf_filter=True: the logged loss stays finite "
        "(stale average) but grad_norm is NaN on every line from the overflow on.",
        dict(optim="sgd", learning_rate=2.5, lr_scheduler_type="constant", logging_steps=1, max_grad_norm=0.0,
             num_train_epochs=2, save_steps=20, logging_nan_inf_filter=True), ["nan_onset"],
        ["loss_divergence", "grad_explosion", "warmup_missing"], task="regression"),
    "hf_grad_explosion_hook": HFCase(
        "A gradient hook scales every gradient by 1.3**n from step 60; max_grad_norm=1.0 keeps updates sane: "
        "Trainer's logged grad_norm (before clipping) grows by orders of magnitude, the loss stays finite.",
        dict(lr_scheduler_type="cosine", warmup_steps=6, logging_steps=2), ["grad_explosion"], [],
        grad_hook=(60, 1.3)),
    "hf_runaway_lambda": HFCase(
        "optimizers=(AdamW, LambdaLR(lambda s: 1.05**s)) (meant 0.95**s) with max_grad_norm=1.0: the LR grows "
        "from 1e-3 by ~300x.", dict(learning_rate=1e-3), ["lr_runaway"],
        ["loss_divergence", "grad_explosion", "nan_onset"], scheduler="exp_growth", tb_dir=None),
    # ---------------------------------------------------------------- progress / sources
    "hf_val_stuck_stale_eval": HFCase(
        "A Trainer subclass evaluates a copy of the model taken at init (never refreshed): eval accuracy is the "
        "untrained model's at every epoch while the training loss falls.",
        dict(lr_scheduler_type="linear", **EVAL), ["val_stuck"], [], stale_eval=True),
    "hf_lr_mismatch_jsonl": HFCase(
        "A user callback writes metrics.jsonl with lr = args.learning_rate (the configured peak) while Trainer's "
        "TensorBoard logs the warmup+cosine LR.", dict(lr_scheduler_type="cosine", warmup_steps=20),
        ["lr_mismatch"], [], jsonl_lr_from_args=True),
    # ---------------------------------------------------------------- resume
    "hf_resume_weights_only": HFCase(
        "The process dies at step 70; a sync script copied only model.safetensors/config.json of checkpoint-60, "
        "so resume_from_checkpoint builds a fresh optimizer and scheduler: the warmup repeats from step 61.",
        dict(lr_scheduler_type="cosine", warmup_steps=20, save_steps=30), ["resume_drift"],
        ["missing_resume_state", "schedule_incomplete"], crash_at=70, before_resume="weights_only"),
    "hf_missing_rng_state": HFCase(
        "The process dies at step 60 before that step's save; the restart resumes from checkpoint-30, whose "
        "rng_state.pth was lost: the LR continues correctly, but the data order is not restored (Trainer warns).", dict(lr_scheduler_type="linear", warmup_steps=10, save_steps=30),
        ["missing_resume_state"], [], crash_at=60, before_resume="no_rng"),
}


def _datasets(case: HFCase):
    if case.task == "regression":
        x, y = common.regression_data(case.n_train, 0)
        vx, vy = common.regression_data(128, 100)
    else:
        kwargs = {"blobs": case.task == "blobs", "label_noise": 0.6 if case.task == "noisy" else 0.0}
        x, y = common.classification_data(case.n_train, 0, **kwargs)
        vx, vy = common.classification_data(256, 100, blobs=kwargs["blobs"])
    return _Rows(x, y), _Rows(vx, vy)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"x": self.x[index], "labels": self.y[index]}


def _metrics(prediction):
    logits, labels = torch.tensor(prediction.predictions), torch.tensor(prediction.label_ids)
    return {"accuracy": common.topk_accuracy(logits, labels, 1), "top5": common.topk_accuracy(logits, labels, 5)}
