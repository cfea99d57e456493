"""The timm.scheduler cases of the framework corpus and how their labels are measured.

12 epochs of 20 updates (320 samples, batch 16) unless a case says otherwise; a Train: line every 5
updates and at the last update of an epoch. Builders take (optimizer, updates_per_epoch, timm.scheduler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from frameworks_common_pl import (
    collapse_step,
    constant_start,
    departure_step,
    departure_window,
    divergence_onset,
    expect,
    first_grad_spike,
    first_nonfinite,
    log_interval,
    plateau_start,
    replay_timm,
    runaway_step,
)
from timm_runs import TRecipe, run_timm

EPOCHS = 12
ARGS = {"model": "tinymlp", "opt": "adamw", "lr": 0.01, "sched": "cosine", "epochs": EPOCHS, "warmup_epochs": 2,
        "warmup_lr": 1e-5, "min_lr": 1e-5, "decay_epochs": 90, "decay_rate": 0.1, "cooldown_epochs": 0,
        "sched_on_updates": False, "grad_accum_steps": 1, "batch_size": 16, "log_interval": 5, "seed": 0}


def cosine_epochs(o, upe, ts):
    return ts.CosineLRScheduler(o, t_initial=EPOCHS, lr_min=1e-5, warmup_t=2, warmup_lr_init=1e-5)


def cosine_updates(o, upe, ts):
    return ts.CosineLRScheduler(o, t_initial=EPOCHS * upe, lr_min=1e-5, warmup_t=2 * upe, warmup_lr_init=1e-5,
                                t_in_epochs=False)


def cosine_updates_in_epoch_mode(o, upe, ts):
    return ts.CosineLRScheduler(o, t_initial=EPOCHS * upe, lr_min=1e-5, warmup_t=2 * upe, warmup_lr_init=1e-5)


def cosine_updates_accum_blind(o, upe, ts):
    """t_initial counted in loader batches (epochs * len(loader)) while 4 batches make one update."""
    return ts.CosineLRScheduler(o, t_initial=EPOCHS * upe * 4, lr_min=1e-5, warmup_t=2 * upe, warmup_lr_init=1e-5,
                                t_in_epochs=False)


@dataclass
class TCase:
    name: str
    description: str
    recipe: TRecipe
    labels: list[tuple[str, str]] = field(default_factory=list)   # (code, rule)
    allowed: list[str] = field(default_factory=list)
    reference: Callable | None = None
    reference_per_update: bool = False
    framework: str = "timm"

    @property
    def healthy(self) -> bool:
        return not self.labels


def _args(**changes) -> dict:
    return {**ARGS, **changes}


PER_UPDATE_ARGS = _args(sched_on_updates=True)
STEP_ARGS = _args(sched="step", decay_epochs=3, decay_rate=0.1, warmup_epochs=0)

TIMM_CASES = [
    TCase("timm_healthy_warmup_cosine_epoch", "CosineLRScheduler(t_initial=12, warmup_t=2) stepped with "
          "step(epoch + 1) as timm's train.py does; finishes at lr_min. train.log, summary.csv, args.yaml.",
          TRecipe(cosine_epochs, args=_args())),
    TCase("timm_healthy_cosine_updates_tb", "CosineLRScheduler sized in updates (t_in_epochs=False) with "
          "step_update(num_updates) after every update, done right; TensorBoard + train.log.",
          TRecipe(cosine_updates, per_update=True, tb=True, args=PER_UPDATE_ARGS)),
    TCase("timm_healthy_top5_saturated", "10-class task: Acc@5 is 100 from the first epochs while Acc@1 keeps "
          "rising; warmup+cosine per epoch; summary.csv and train.log.",
          TRecipe(cosine_epochs, args=_args(), label_noise=0.1, seed=3)),
    TCase("timm_healthy_resume", "Warmup+cosine per update; the job stops after 6 of 12 epochs and resumes from "
          "last.pth.tar with model and optimizer state and step_update(start_epoch * updates_per_epoch).",
          TRecipe(cosine_updates, per_update=True, stop_after_epoch=6, resume="correct", args=PER_UPDATE_ARGS)),
    TCase("timm_healthy_step_epoch_nointent", "StepLRScheduler(decay_t=4, decay_rate=0.5) stepped per epoch on "
          "purpose; train.log only, no args.yaml or summary.",
          TRecipe(lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=4, decay_rate=0.5), summary=False)),
    TCase("timm_per_epoch_cosine_sized_in_updates", "CosineLRScheduler sized in updates (t_initial=240, warmup_t=40) "
          "but left in epoch mode and driven by step(epoch + 1) only: the warmup climbs one update per epoch.",
          TRecipe(cosine_updates_in_epoch_mode, args=PER_UPDATE_ARGS),
          [("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "loss_plateau", "warmup_missing"],
          cosine_updates, True),
    TCase("timm_per_epoch_cosine_sized_in_updates_tb_nointent", "The same per-epoch staircase, TensorBoard + "
          "train.log, no args.yaml or summary.", TRecipe(cosine_updates_in_epoch_mode, tb=True, summary=False),
          [("per_epoch_stepping", "departure")], ["constant_lr", "schedule_incomplete", "loss_plateau", "warmup_missing"],
          cosine_updates, True),
    TCase("timm_constant_step_update_never_called", "t_in_epochs=False scheduler, but the loop only calls "
          "step(epoch + 1), which ignores it: the LR stays at warmup_lr 1e-5 all run (args.yaml says cosine).",
          TRecipe(cosine_updates, args=PER_UPDATE_ARGS), [("constant_lr", "departure")],
          ["loss_plateau", "warmup_missing", "lr_mismatch", "schedule_incomplete"], cosine_updates, True),
    TCase("timm_constant_step_update_never_called_tb_nointent", "The same never-updated per-update scheduler, "
          "TensorBoard + train.log, nothing states the schedule.",
          TRecipe(cosine_updates, tb=True, summary=False), [("constant_lr", "departure")],
          ["loss_plateau", "warmup_missing", "schedule_incomplete"], cosine_updates, True),
    TCase("timm_too_fast_steplr_updates", "StepLRScheduler(decay_t=3, decay_rate=0.1) meant in epochs with "
          "t_in_epochs=False and step_update per update: 0.01 -> ~1e-82.",
          TRecipe(lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=3, decay_rate=0.1, t_in_epochs=False),
                  per_update=True, args=STEP_ARGS),
          [("schedule_too_fast", "departure"), ("lr_collapse", "collapse")], ["constant_lr", "loss_plateau"],
          lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=3, decay_rate=0.1), False),
    TCase("timm_too_fast_cosine_updates_tb_nointent", "CosineLRScheduler(t_initial=12 epochs, lr_min=0, "
          "t_in_epochs=False) stepped per update: LR 0 after 12 updates and for the rest of the run; TB + train.log.",
          TRecipe(lambda o, upe, ts: ts.CosineLRScheduler(o, t_initial=EPOCHS, t_in_epochs=False), per_update=True,
                  tb=True, summary=False),
          [("schedule_too_fast", "departure"), ("lr_collapse", "collapse")], ["constant_lr", "loss_plateau"],
          lambda o, upe, ts: ts.CosineLRScheduler(o, t_initial=EPOCHS), False),
    TCase("timm_runaway_step_decay_rate", "StepLRScheduler(decay_t=1, decay_rate=2.0) (meant 0.5) per epoch on Adam "
          "with clipping on a regression task: LR 1e-3 -> 2 over 12 epochs, the MSE climbs far above its minimum.",
          TRecipe(lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=1, decay_rate=2.0), opt="adam", lr=1e-3, clip=1.0,
                  task="regression",
                  args=_args(sched="step", lr=1e-3, decay_epochs=1, decay_rate=2.0, warmup_epochs=0)),
          [("lr_runaway", "runaway"), ("loss_divergence", "divergence")], ["loss_plateau", "grad_explosion"],
          lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=1, decay_rate=0.5), False),
    TCase("timm_incomplete_accum_tb", "grad_accum_steps=4 but t_initial = epochs * len(loader) (batches, not "
          "updates): 60 updates of a 240-update cosine, the LR ends near its peak.",
          TRecipe(cosine_updates_accum_blind, per_update=True, grad_accum=4, tb=True,
                  args=_args(sched_on_updates=True, grad_accum_steps=4)),
          [("schedule_incomplete", "last_step")], ["warmup_missing"], cosine_updates, True),
    TCase("timm_incomplete_accum_stdout", "The same accumulation-blind horizon, train.log + summary.csv + args.yaml.",
          TRecipe(cosine_updates_accum_blind, per_update=True, grad_accum=4,
                  args=_args(sched_on_updates=True, grad_accum_steps=4)),
          [("schedule_incomplete", "last_step")], ["warmup_missing"], cosine_updates, True),
    TCase("timm_overrun_cycle_limit_tb", "CosineLRScheduler(t_initial=8, cycle_limit=2) from a stale config while "
          "the run trains 12 epochs: at epoch 8 the cosine starts a second, unplanned cycle back at the peak.",
          TRecipe(lambda o, upe, ts: ts.CosineLRScheduler(o, t_initial=8, lr_min=1e-5, cycle_limit=2), tb=True,
                  args=_args(epochs=EPOCHS, warmup_epochs=0)),
          [("schedule_overrun", "trough")], ["schedule_too_fast"], cosine_epochs, False),
    TCase("timm_overrun_cycle_limit_nointent", "The same second cosine cycle, train.log only.",
          TRecipe(lambda o, upe, ts: ts.CosineLRScheduler(o, t_initial=8, lr_min=1e-5, cycle_limit=2), summary=False),
          [("schedule_overrun", "trough")], ["schedule_too_fast"], cosine_epochs, False),
    TCase("timm_nan_huge_lr", "SGD(momentum=0.9) at lr=2.0 on a regression task: 'Loss: nan' within the first "
          "epochs; timm keeps training.",
          TRecipe(cosine_epochs, task="regression", opt="sgd", lr=2.0, args=_args(opt="sgd", lr=2.0)),
          [("nan_onset", "nonfinite")], ["loss_divergence", "grad_explosion", "loss_plateau", "val_stuck",
                                         "warmup_missing"]),
    TCase("timm_grad_explosion_tb", "From update 100 inputs arrive x1000; clip_grad_norm_(1.0) keeps the loss finite "
          "while train/grad_norm jumps ~1000x; TensorBoard + train.log.",
          TRecipe(cosine_epochs, blowup_step=100, clip=1.0, tb=True, args=_args(clip_grad=1.0)),
          [("grad_explosion", "grad_spike")], ["loss_divergence", "loss_plateau", "val_stuck", "nan_onset"]),
    TCase("timm_plateau_constant", "StepLRScheduler(decay_t=1000) = a constant lr=3e-3 with 40% label noise: the "
          "loss reaches its floor early and stays flat; 20 epochs.",
          TRecipe(lambda o, upe, ts: ts.StepLRScheduler(o, decay_t=1000), lr=3e-3, label_noise=0.4, epochs=20,
                  args=_args(sched="step", decay_epochs=1000, lr=3e-3, epochs=20, warmup_epochs=0)),
          [("loss_plateau", "plateau")], ["constant_lr", "val_stuck"]),
    TCase("timm_val_stuck_ema", "--model-ema on, but model_ema.update() is never called: 'Test (EMA)' lines and "
          "summary.csv eval_top1 stay at the untrained copy's accuracy while the training loss falls.",
          TRecipe(cosine_epochs, ema_never_updated=True, args=_args(model_ema=True)),
          [("val_stuck", "first_val")]),
    TCase("timm_resume_num_updates_reset", "Per-update warmup+cosine; after the resume at epoch 6 the loop counts "
          "num_updates from this process's start: the warmup repeats while the epoch count continues.",
          TRecipe(cosine_updates, per_update=True, stop_after_epoch=6, resume="num_updates_reset", args=PER_UPDATE_ARGS),
          [("resume_drift", "resume")], ["schedule_incomplete", "lr_mismatch", "missing_resume_state"], cosine_updates, True),
    TCase("timm_resume_num_updates_reset_tb", "The same num_updates reset on resume, TensorBoard + train.log.",
          TRecipe(cosine_updates, per_update=True, stop_after_epoch=6, resume="num_updates_reset", tb=True,
                  args=PER_UPDATE_ARGS),
          [("resume_drift", "resume")], ["schedule_incomplete", "lr_mismatch", "missing_resume_state"], cosine_updates, True),
    TCase("timm_missing_state_no_optimizer", "Checkpoints saved without optimizer state (last.pth.tar has epoch and "
          "state_dict only): the resume at epoch 6 restarts AdamW's moments; the scheduler is re-stepped correctly.",
          TRecipe(cosine_epochs, stop_after_epoch=6, resume="no_optimizer", keep_optimizer=False, args=_args()),
          [("missing_resume_state", "resume")], ["resume_drift"]),
    TCase("timm_missing_state_no_optimizer_tb", "The same optimizer-less checkpoint resume at epoch 6 with per-update "
          "stepping, TensorBoard + train.log.",
          TRecipe(cosine_updates, per_update=True, stop_after_epoch=6, resume="no_optimizer", keep_optimizer=False,
                  tb=True, args=PER_UPDATE_ARGS),
          [("missing_resume_state", "resume")], ["resume_drift"]),
    TCase("timm_off_by_one_step_epoch", "The loop calls lr_scheduler.step(epoch) instead of step(epoch + 1) after "
          "each epoch: every epoch runs at the previous epoch's LR (epoch 1 repeats warmup_lr).",
          TRecipe(cosine_epochs, args=_args(), extra_epoch_offset=0),
          [("off_by_one", "departure")], ["warmup_missing", "schedule_incomplete"], cosine_epochs, False),
    TCase("timm_off_by_one_step_epoch_tb_nointent", "The same one-epoch lag from step(epoch), TensorBoard + "
          "train.log, no args.yaml.", TRecipe(cosine_epochs, tb=True, summary=False, extra_epoch_offset=0),
          [("off_by_one", "departure")], ["warmup_missing", "schedule_incomplete"], cosine_epochs, False),
    TCase("timm_lr_mismatch_args", "args.yaml says lr=0.01 but the script builds the optimizer with a hard-coded "
          "1e-3, so every LR the scheduler derives is 10x below the stated one.",
          TRecipe(cosine_epochs, code_lr=1e-3, args=_args()), [("lr_mismatch", "start")], ["warmup_missing"]),
    TCase("timm_lr_mismatch_args_tb", "The same stated-vs-built LR mismatch with per-update stepping, TensorBoard.",
          TRecipe(cosine_updates, per_update=True, code_lr=1e-3, tb=True, args=PER_UPDATE_ARGS),
          [("lr_mismatch", "start")], ["warmup_missing"]),
]


def _series(log, what: str) -> list[tuple[int, float]]:
    """What the Train: lines (and TB scalars) show: values at the logged steps only."""
    logged = set(log.logged_steps)
    index = {"lr": 1, "loss": 2, "grad_norm": 3}[what]
    return [(u[0], u[index]) for u in log.updates if u[0] in logged]


def _measure(case: TCase, log, code: str, rule: str) -> dict:
    recipe = case.recipe
    lr = _series(log, "lr")
    if rule == "departure":
        reference = replay_timm(lambda o: case.reference(o, recipe.updates_per_epoch, _ts()), recipe.lr,
                                recipe.epochs, recipe.updates_per_epoch, case.reference_per_update)
        driven = "step_update per update" if case.reference_per_update else "step(epoch + 1)"
        if code == "constant_lr":
            return expect(code, constant_start(lr), log_interval(lr),
                          f"first Train: line from which the LR stays within 0.1% of its final value; the reference "
                          f"timm scheduler ({driven}) leaves it by >10% at step {departure_step(lr, reference)}")
        onset, window = departure_window(lr, reference)
        return expect(code, onset, max(window, log_interval(lr)),
                      "first logged LR (Train: lines) differing by >10% from the correctly driven reference timm "
                      f"scheduler ({driven}); tolerance reaches back to the first >1% difference")
    if rule == "collapse":
        return expect(code, collapse_step(lr), log_interval(lr), "first logged LR <= 1e-4 of the highest before it")
    if rule == "runaway":
        onset = runaway_step(lr)
        further = next((s for s, v in lr if v > 30 * lr[0][1]), lr[-1][0])
        return expect(code, onset, max(log_interval(lr), further - onset),
                      "first logged LR above 10x the first; tolerance reaches the step it exceeds 30x")
    if rule == "divergence":
        loss = _series(log, "loss")
        onset, width = divergence_onset(loss, window=4)
        return expect(code, onset, max(width, log_interval(loss)),
                      "end of the lowest 4-line mean Train: loss; tolerance reaches the first mean 2x that minimum")
    if rule == "last_step":
        return expect(code, log.logged_steps[-1], 1, "last update with a Train: line")
    if rule == "trough":
        peak = max(v for _, v in lr)
        trough = next(s for (s, v), (_, nxt) in zip(lr, lr[1:]) if v < 0.1 * peak and nxt > v)
        return expect(code, trough, log_interval(lr) + 1, "last logged LR before the cosine rises again")
    if rule == "nonfinite":
        loss = _series(log, "loss")
        return expect(code, first_nonfinite(loss), log_interval(loss), "first Train: line with a non-finite loss")
    if rule == "grad_spike":
        norms = _series(log, "grad_norm")
        return expect(code, first_grad_spike(norms), log_interval(norms),
                      "first logged train/grad_norm above 10x the median of the earlier values")
    if rule == "plateau":
        loss = _series(log, "loss")
        return expect(code, plateau_start(loss, window=8), 25 + log_interval(loss),
                      "first logged step whose trailing 8-line mean loss is within 5% of the final 8 lines' mean; "
                      "tolerance 25 steps + logging interval")
    if rule == "first_val":
        if len({round(top1, 4) for _, top1, _ in log.evals}) != 1:
            raise AssertionError(f"{case.name}: EMA eval not frozen")
        return expect(code, log.evals[0][0], 1, f"step of the first evaluation (end of epoch 0); eval_top1 is "
                      f"{log.evals[0][1]:.1f} every epoch")
    if rule == "resume":
        return expect(code, log.resume_step, 1, "first update of the resumed process")
    if rule == "start":
        peak = max(v for _, v in lr)
        if not peak < 0.2 * recipe.lr:
            raise AssertionError(f"{case.name}: the LR does not stay far below the stated lr")
        return expect(code, lr[0][0], log_interval(lr), f"first Train: line; the highest logged LR {peak:.3g} is "
                      f"{recipe.lr / peak:.0f}x below args.yaml lr {recipe.lr:g}")
    raise KeyError(rule)


def _ts():
    from frameworks_common_pl import load_timm_scheduler
    return load_timm_scheduler()


def generate_timm_case(case: TCase, out: Path) -> dict:
    """Run one timm case into out/name and return its CORPUS.json entry."""
    log = run_timm(case.recipe, out / case.name)
    if case.healthy and not all(abs(u[2]) < 1e6 for u in log.updates):
        raise AssertionError(f"healthy case {case.name} logged a non-finite or huge loss")
    loggers = ["stdout"] + (["tensorboard"] if case.recipe.tb else []) + (["csv"] if case.recipe.summary else [])
    return {
        "healthy": case.healthy,
        "description": case.description,
        "framework": case.framework,
        "logger": "+".join(loggers),
        "intent": "stated" if case.recipe.args is not None else "none",
        "expected_codes": [_measure(case, log, code, rule) for code, rule in case.labels],
        "allowed_codes": case.allowed,
        "cli_schedule": None,
    }
