"""Run one `HFCase` (each process lifetime a forked child writing train.log) and measure its labels from the
TensorBoard event files Trainer wrote."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch

import frameworks_common_hf as common
from hf_cases import BASE_ARGS, CASES, HFCase, _datasets, _metrics
from hf_model import TinyConfig, TinyModel


def _build_scheduler(case: HFCase, optimizer):
    import transformers
    kind, kwargs = case.scheduler, case.sched_kwargs
    if kind == "cosine":
        return transformers.get_cosine_schedule_with_warmup(optimizer, **kwargs)
    if kind == "linear_prestepped":
        scheduler = transformers.get_linear_schedule_with_warmup(optimizer, **kwargs)
        scheduler.step()
        return scheduler
    if kind == "onecycle_momentum":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.defaults["lr"], total_steps=120)
    if kind == "exp_growth":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.05 ** step)
    raise ValueError(kind)


def _trainer_class(case: HFCase):
    from transformers import Trainer

    class CaseTrainer(Trainer):
        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            if case.stale_eval:
                model = self.stale_copy
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

        def log(self, logs, start_time=None):
            if case.log_momentum and "loss" in logs:
                logs["momentum"] = self.optimizer.param_groups[0]["betas"][0]
            super().log(logs, start_time)

    return CaseTrainer


def _callbacks(case: HFCase, run_dir: Path, resuming: bool):
    from transformers import TrainerCallback
    from transformers.integrations import TensorBoardCallback

    class CaseCallback(TrainerCallback):
        def __init__(self):
            self.trainer = None

        def on_step_begin(self, args, state, control, **kwargs):
            if case.grad_hook and state.global_step >= case.grad_hook[0]:
                SCALE["value"] = case.grad_hook[1] ** (state.global_step - case.grad_hook[0] + 1)

        def on_step_end(self, args, state, control, **kwargs):
            if not resuming and case.crash_at is not None and state.global_step == case.crash_at:
                for callback in self.trainer.callback_handler.callbacks:
                    if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                        callback.tb_writer.flush()
                print(f"\nKilled: preempted at step {state.global_step}", flush=True)
                raise common.Crash()

        def on_epoch_end(self, args, state, control, **kwargs):
            if case.stop_after_epochs is not None and round(state.epoch) >= case.stop_after_epochs:
                control.should_training_stop = True
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if case.jsonl_lr_from_args and logs and "loss" in logs:
                with open(run_dir / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps({"step": state.global_step, "loss": logs["loss"],
                                             "lr": args.learning_rate}) + "\n")

    return CaseCallback()


SCALE = {"value": 1.0}


def lifetime(case: HFCase, run_dir: Path, resuming: bool) -> None:
    import transformers
    from transformers import TrainingArguments

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_info() if case.verbose else transformers.logging.set_verbosity_warning()
    if case.tb_dir:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / case.tb_dir)
    transformers.set_seed(0)
    train, evaluation = _datasets(case)
    problem = "regression" if case.task == "regression" else "classification"
    model = TinyModel(TinyConfig(n_out=1 if problem == "regression" else 8, problem=problem))
    if case.grad_hook:
        for param in model.parameters():
            param.register_hook(lambda grad: grad * SCALE["value"])
    args = TrainingArguments(output_dir=str(run_dir), **{**BASE_ARGS, **case.args})
    optimizers = (None, None)
    if case.scheduler:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        optimizers = (optimizer, _build_scheduler(case, optimizer))
    callback = _callbacks(case, run_dir, resuming)
    trainer = _trainer_class(case)(model=model, args=args, train_dataset=train,
                                   eval_dataset=evaluation if args.eval_strategy != "no" else None,
                                   compute_metrics=_metrics if problem == "classification" else None,
                                   optimizers=optimizers, callbacks=[callback])
    callback.trainer = trainer
    trainer.stale_copy = copy.deepcopy(model) if case.stale_eval else None
    trainer.train(resume_from_checkpoint=True if resuming else None)
    trainer.save_state()


def _prepare_resume(case: HFCase, run_dir: Path) -> None:
    newest = max(run_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    if case.before_resume == "weights_only":
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (newest / name).unlink()
    elif case.before_resume == "no_rng":
        (newest / "rng_state.pth").unlink()


def run(name: str, run_dir: Path) -> None:
    case = CASES[name]
    log = run_dir / "train.log"
    code = common.run_forked(lifetime, log, case, run_dir, False)
    if case.crash_at is None:
        common.require(code == 0, f"{name}: exit {code}; see {log}")
        return
    common.require(code == 3, f"{name}: first lifetime exit {code}; see {log}")
    _prepare_resume(case, run_dir)
    time.sleep(1.1)
    code = common.run_forked(lifetime, log, case, run_dir, True)
    common.require(code == 0, f"{name}: resumed lifetime exit {code}; see {log}")
