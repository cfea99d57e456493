"""Hold-out cases: transformers 5.x ``Trainer`` runs (checkpoint-N, trainer_state.json, training_args.bin,
TensorBoard through report_to, captured stdout). transformers 5.x logs at ``step: s`` the LR step s-1 used."""
from __future__ import annotations

import logging
import math

import torch

import holdout_common as c

SEQ, VOCAB, N, BS = 12, 40, 256, 16


def _model(seed, num_labels=3):
    from transformers import BertConfig, BertForSequenceClassification
    c.seed_all(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16, num_labels=num_labels, type_vocab_size=1)
    if num_labels == 1:
        cfg.problem_type = "regression"
    return BertForSequenceClassification(cfg)


class _DS(torch.utils.data.Dataset):
    def __init__(self, seed, regression=False, poison_at=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(1, VOCAB, (N, SEQ), generator=g)
        if regression:
            self.y = (self.x[:, :3].float().mean(1) / VOCAB).unsqueeze(1)
            if poison_at is not None:
                self.y[poison_at] = float("inf")  # log(0) from a bad preprocessing step
        else:
            self.y = (self.x[:, 0] + self.x[:, 1]) % 3

    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def _args(run, **kw):
    from transformers import TrainingArguments
    base = dict(output_dir=str(run), per_device_train_batch_size=BS, num_train_epochs=6, learning_rate=5e-3,
                lr_scheduler_type="cosine", warmup_steps=10, logging_steps=2, save_steps=48,
                save_total_limit=1, report_to=["tensorboard"], use_cpu=True, seed=7, disable_tqdm=True,
                dataloader_num_workers=0)
    base.update(kw)
    return TrainingArguments(**base)


class _Preempted(Exception):
    pass


def _train(run, seed, args_kw, *, kill_at=None, resume=False, optimizers=None, regression=False,
           poison_at=None, save_state=True):
    """One process of an HF script; returns [(step, lr, loss)] it logged."""
    from transformers import Trainer, TrainerCallback
    import transformers

    logged = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "learning_rate" in logs:
                logged.append((state.global_step, float(logs["learning_rate"]), float(logs.get("loss", "nan"))))

        def on_step_end(self, args, state, control, **kw):
            if kill_at is not None and state.global_step >= kill_at:
                raise _Preempted()

    with c.Tee(run / "train.log") as tee:
        tlog = transformers.utils.logging.get_logger("transformers")
        handler = logging.StreamHandler(tee)
        handler.setFormatter(logging.Formatter("[%(levelname)s|%(filename)s:%(lineno)d] %(message)s"))
        transformers.utils.logging.set_verbosity_info()
        tlog.addHandler(handler)
        try:
            model = _model(seed, 1 if regression else 3)
            opts = optimizers(model) if optimizers else (None, None)
            trainer = Trainer(model=model, args=_args(run, **args_kw),
                              train_dataset=_DS(seed, regression, poison_at), callbacks=[Record()],
                              optimizers=opts)
            try:
                trainer.train(resume_from_checkpoint=True if resume else None)
                if save_state:
                    trainer.save_state()
            except _Preempted:
                print("Received SIGTERM: job preempted", flush=True)
        finally:
            tlog.removeHandler(handler)
            transformers.utils.logging.set_verbosity_warning()
    return logged


def _ref(kind, n, warm, peak, total):
    from transformers import get_scheduler
    return c.replay(lambda o: get_scheduler(kind, o, num_warmup_steps=warm, num_training_steps=total), peak, n)


HF_INDEX = (lambda s: s - 1)
HF_NOTE = " (transformers 5.x: the LR logged at step s is the LR step s-1 used)"


def resume_full_checkpoint(run):
    keep = {"save_total_limit": 2}
    first = c.in_new_process(_train, run, 61, keep, kill_at=54)
    second = c.in_new_process(_train, run, 61, keep, resume=True)
    ref = _ref("cosine", 96, 10, 5e-3, 96)
    assert c.measure_departure([(s, lr) for s, lr, _ in first + second], ref, HF_INDEX, 1.001) is None
    return c.case_meta(
        healthy=True, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="Trainer preempted at step 54, resumed with resume_from_checkpoint from checkpoint-48 "
                    "(optimizer, scheduler, RNG restored): steps 50-54 are logged twice with the same LR.")


def resume_save_only_model(run):
    keep = {"save_only_model": True, "save_total_limit": 2}
    first = c.in_new_process(_train, run, 62, keep, kill_at=54)
    second = c.in_new_process(_train, run, 62, keep, resume=True)
    ref = _ref("cosine", 96, 10, 5e-3, 96)
    onset = c.measure_departure([(s, lr) for s, lr, _ in second], ref, HF_INDEX)
    return c.case_meta(
        healthy=False, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="save_only_model=True checkpoints hold weights only; resume_from_checkpoint skips to "
                    "step 48 with a fresh optimizer and scheduler, the warmup starting over.",
        expected=[c.code("missing_resume_state", second[0][0], 4, "first step logged by the resumed process; "
                         "checkpoint-48 has no optimizer.pt/scheduler.pt"),
                  c.code("resume_drift", onset, 4, "first step of the resumed process whose LR is >2x off the "
                         "stated cosine (warmup 10, 96 steps) replayed with get_scheduler" + HF_NOTE)],
        allowed=["lr_mismatch", "warmup_missing", "schedule_incomplete"])


def no_warmup_high_lr(run):
    logged = _train(run, 63, {"learning_rate": 0.3, "warmup_steps": 0, "lr_scheduler_type": "linear",
                              "num_train_epochs": 4, "max_grad_norm": 1e9, "save_steps": 1000})
    losses = [l for _, _, l in logged]
    early = max(losses[:8])
    assert early > 1.5 * losses[0], (early, losses[0])
    return c.case_meta(
        healthy=False, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="Trainer with learning_rate 0.3, warmup_steps 0 and no effective clipping: full LR from "
                    f"step 1 and the loss jumps to {early:.2f} (from {losses[0]:.2f}) in the first steps.",
        expected=[c.code("warmup_missing", logged[0][0], 4, "first logged step: LR already at its peak; "
                         "loss rises above 1.5x its first value within 16 steps")],
        allowed=["grad_explosion", "loss_divergence", "loss_plateau"])


def accumulation_sized_right(run):
    logged = _train(run, 64, {"gradient_accumulation_steps": 4, "warmup_steps": 0.1, "num_train_epochs": 12,
                              "logging_steps": 1, "save_steps": 24, "learning_rate": 3e-3})
    steps = logged[-1][0]
    assert steps == 48 and logged[-1][1] < 0.01 * max(lr for _, lr, _ in logged)
    return c.case_meta(
        healthy=True, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="gradient_accumulation_steps 4 with cosine and warmup_steps 0.1 (a ratio); Trainer sizes the "
                    "schedule to 48 optimizer steps and it finishes on the last one.")


def custom_schedule_ignores_accumulation(run):
    from transformers import get_cosine_schedule_with_warmup
    epochs, accum = 12, 4
    micro = N // BS
    total = epochs * micro  # the bug: micro-batches, not optimizer steps
    c.write_json(run / "run_config.json", {"model": "bert-tiny", "learning_rate": 3e-3, "epochs": epochs,
                                           "per_device_batch_size": BS, "gradient_accumulation_steps": accum,
                                           "lr_schedule": "cosine_with_warmup", "warmup_steps": 10,
                                           "num_training_steps": total})

    def optimizers(model):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        return opt, get_cosine_schedule_with_warmup(opt, 10, total)
    logged = _train(run, 65, {"gradient_accumulation_steps": accum, "num_train_epochs": epochs,
                              "logging_steps": 1, "save_steps": 24, "learning_rate": 3e-3},
                    optimizers=optimizers)
    peak = max(lr for _, lr, _ in logged)
    assert logged[-1][0] == total // accum and logged[-1][1] > 0.5 * peak
    return c.case_meta(
        healthy=False, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="Custom get_cosine_schedule_with_warmup(num_training_steps=epochs x micro-batches = 192) "
                    f"passed to Trainer with gradient_accumulation_steps 4: the run ends at step 48 with the "
                    f"LR at {logged[-1][1] / peak:.2f}x its peak.",
        expected=[c.code("schedule_incomplete", logged[-1][0], 4, "last logged step; run_config.json states "
                         "num_training_steps 192 with gradient_accumulation_steps 4")],
        allowed=[])


def nan_from_inf_label(run):
    logged = _train(run, 66, {"logging_nan_inf_filter": False, "num_train_epochs": 4, "save_steps": 1000,
                              "learning_rate": 3e-3}, regression=True, poison_at=77)
    series = [(s, l) for s, _, l in logged]
    return c.case_meta(
        healthy=False, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="Regression Trainer whose sample 77 has an inf label (log of 0): the loss is inf/NaN "
                    "when it is drawn and the weights are NaN from then on.",
        expected=[c.code("nan_onset", c.measure_nonfinite(series), 4, "first non-finite loss in "
                         "trainer_state.json log_history")],
        allowed=["grad_explosion"])


def constant_intended(run):
    logged = _train(run, 67, {"lr_scheduler_type": "constant", "warmup_steps": 0, "learning_rate": 1e-3,
                              "num_train_epochs": 5, "save_steps": 40})
    assert len({lr for _, lr, _ in logged}) == 1
    return c.case_meta(
        healthy=True, framework="transformers.Trainer", logger="tensorboard+trainer_state+stdout",
        intent="stated",
        description="Trainer with lr_scheduler_type constant at 1e-3 (intended, in training_args.bin); "
                    "loss falls.")


CASES = {
    "hf_resume_full_checkpoint": resume_full_checkpoint,
    "hf_resume_save_only_model": resume_save_only_model,
    "hf_no_warmup_lr_0p3": no_warmup_high_lr,
    "hf_accum4_cosine_sized_right": accumulation_sized_right,
    "hf_custom_cosine_ignores_accum": custom_schedule_ignores_accumulation,
    "hf_regression_inf_label_nan": nan_from_inf_label,
    "hf_constant_lr_intended": constant_intended,
}
