"""Labels of the Trainer cases, measured from the TensorBoard event files each lifetime wrote
(`train/learning_rate`, `train/loss`, `train/grad_norm`, `train/momentum`, `eval/accuracy`), with
trainer_state.json and metrics.jsonl where a label is about them."""

from __future__ import annotations

import math
from pathlib import Path

import torch

import frameworks_common_hf as common
import hf_runtime
from hf_cases import BASE_ARGS, CASES, HFCase


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _series(run_dir: Path, tag: str) -> list[list[tuple[int, float]]]:
    return [points for points in common.tb_series(run_dir, tag)]


def _flat(per_file: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    return [point for points in per_file for point in points]


def _reference(case: HFCase, n_steps: int) -> list[float]:
    """The LR of each 0-based optimizer step under the scheduler Trainer would build from the case's args."""
    import transformers
    args = {**BASE_ARGS, **case.args}
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=args["learning_rate"])
    warmup = args.get("warmup_steps", 0)
    warmup = math.ceil(warmup * n_steps) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    scheduler = transformers.get_scheduler(args.get("lr_scheduler_type", "linear"), optimizer,
                                           num_warmup_steps=warmup, num_training_steps=n_steps)
    lrs = []
    for _ in range(n_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def measure(code: str, case: HFCase, run_dir: Path) -> dict:
    every = {**BASE_ARGS, **case.args}["logging_steps"]
    lr_files, loss_files = _series(run_dir, "train/learning_rate"), _series(run_dir, "train/loss")
    lr, loss = _flat(lr_files), _flat(loss_files)
    first = lr[0][0]
    state = common.trainer_state(run_dir / "trainer_state.json")
    if code == "schedule_incomplete":
        peak = max(value for _, value in lr)
        return common.label(code, lr[-1][0], 2 * every,
                            f"last logged step (trainer_state global_step {state['global_step']}, max_steps "
                            f"{state['max_steps']}); its LR is {lr[-1][1] / peak:.2f}x the peak, mid-decay")
    if code == "schedule_overrun":
        onset = common.overrun_step(lr)
        return common.label(code, onset, 2 * every,
                            f"the logged LR reaches its minimum {_fmt(dict(lr)[onset])} at step {onset} (the custom "
                            f"scheduler's horizon {case.sched_kwargs['num_training_steps']}) and rises after it")
    if code == "off_by_one":
        ref = _reference(case, state["max_steps"])
        # transformers 5.x: the LR logged at step s is the one 0-based step s-1 used
        step, value = next((step, value) for step, value in lr if ref[step - 1] > 0)
        common.require(abs(value / ref[step - 1] - 1) > 0.3, "off_by_one not visible")
        return common.label(code, first, 2 * every,
                            f"the LR logged at step {step} is {_fmt(value)}, {value / ref[step - 1]:.2f}x the LR "
                            f"Trainer's own {case.args['lr_scheduler_type']} schedule gives that step (the first logged "
                            f"LR, at step {first}, is {_fmt(lr[0][1])} where that schedule has {_fmt(ref[first - 1])})")
    if code == "warmup_missing":
        early = [value for _, value in loss[: max(5, len(loss) // 10)]]
        common.require(max(early) > 5 * early[0], "warmup_missing: no early spike")
        return common.label(code, first, 2 * every,
                            f"warmup_steps=0: the first logged LR is the peak {_fmt(lr[0][1])}; the loss reaches "
                            f"{max(early) / early[0]:.1f}x its first logged value within the first 10% of the run")
    if code == "loss_plateau":
        onset = common.plateau_start(loss)
        flat = sum(1 for step, _ in loss if step >= onset) / len(loss)
        common.require(flat > 0.6, f"loss_plateau: {flat:.2f} flat")
        return common.label(code, onset, 30 + every,
                            f"first logged step whose 50-point mean loss is within 5% of the last 50 points' mean; "
                            f"{flat:.0%} of the run follows it at a constant LR")
    if code == "momentum_cycling":
        beta = _flat(_series(run_dir, "train/momentum"))
        values = [value for _, value in beta]
        common.require(max(values) - min(values) > 0.05, "no momentum cycling")
        return common.label(code, beta[0][0], 2 * every,
                            f"train/momentum (AdamW beta1) ranges {min(values):.3f}..{max(values):.3f}")
    if code == "nan_onset":
        onset = common.first_nonfinite(loss)
        what = "loss"
        if onset is None:
            grads = _flat(_series(run_dir, "train/grad_norm"))
            onset, what = common.first_nonfinite(grads), "grad_norm (the loss is filtered by logging_nan_inf_filter)"
        return common.label(code, onset, every, f"first logged non-finite {what}, at step {onset}")
    if code == "grad_explosion":
        grads = _flat(_series(run_dir, "train/grad_norm"))
        onset = common.grad_spike_step(grads)
        common.require(common.first_nonfinite(loss) is None and common.ratio(grads) > 1e3, "grad_explosion weak")
        return common.label(code, onset, 3 * every,
                            f"first logged grad_norm > 10x the median of the previous 50 ({_fmt(dict(grads)[onset])}); "
                            f"it ends {grads[-1][1] / grads[0][1]:.3g}x its first value, the loss stays finite")
    if code == "loss_divergence":
        onset, low, final = common.divergence_start(loss)
        common.require(common.first_nonfinite(loss) is None and final > 10 * low, "divergence weak")
        return common.label(code, onset, (common.DIVERGENCE_WINDOW + 2) * every,
                            f"step of the smallest 10-point mean loss ({_fmt(low)}); the loss ends at {_fmt(final)} "
                            f"({final / low:.3g}x), finite throughout")
    if code == "lr_runaway":
        onset = common.runaway_step(lr)
        growth = lr[-1][1] / lr[0][1]
        common.require(growth > 100, "runaway weak")
        return common.label(code, onset, 50 + every,
                            f"first logged step whose LR is >= 10x the first logged one; it ends {growth:.3g}x "
                            f"({_fmt(lr[0][1])} -> {_fmt(lr[-1][1])}); tolerance = one more decade of growth (1.05**47)")
    if code == "val_stuck":
        accuracy = _flat(_series(run_dir, "eval/accuracy"))
        common.require(len({value for _, value in accuracy}) == 1, "eval accuracy moves")
        return common.label(code, accuracy[0][0], 20,
                            f"eval/accuracy is {accuracy[0][1]:.4f} at all {len(accuracy)} evaluations (chance 0.125) "
                            f"while train/loss falls {loss[0][1]:.2f} -> {loss[-1][1]:.2f}")
    if code == "lr_mismatch":
        logged = dict(common.jsonl_series(run_dir / "metrics.jsonl", "lr"))
        onset = next(step for step, value in lr if step in logged and abs(value - logged[step]) > 0.1 * logged[step])
        return common.label(code, onset, 2 * every, f"first step where TB train/learning_rate ({_fmt(dict(lr)[onset])}) "
                                                    f"and metrics.jsonl lr ({_fmt(logged[onset])}) differ by >10%")
    if code in ("resume_drift", "missing_resume_state"):
        common.require(len(lr_files) == 2, "resume without a second event file")
        onset = lr_files[1][0][0]
        return common.label(code, onset, 2 * every,
                            f"first step logged by the second process (second event file); LR "
                            f"{_fmt(lr_files[0][-1][1])} before, {_fmt(lr_files[1][0][1])} after")
    raise KeyError(code)


def check_healthy(case: HFCase, run_dir: Path) -> str:
    loss_files = _series(run_dir, "train/loss")
    loss = _flat(loss_files)
    common.require(common.first_nonfinite(loss) is None, "healthy run with a non-finite loss")
    common.require(loss[-1][1] < loss[0][1], "healthy run whose loss did not fall")
    text = f"train/loss {loss[0][1]:.3f} -> {loss[-1][1]:.3f}, all finite"
    if len(loss_files) == 2:
        lr_files = _series(run_dir, "train/learning_rate")
        before, after = dict(lr_files[0]), dict(lr_files[1])
        shared = sorted(set(before) & set(after))
        common.require(shared and all(before[s] == after[s] for s in shared), "re-run steps with different LRs")
        text += f"; steps {shared[0]}-{shared[-1]} were logged by both processes with identical LRs"
    return text


def generate(name: str, run_dir: Path) -> dict:
    case = CASES[name]
    hf_runtime.run(name, run_dir)
    truth = {"healthy": not case.expected, "description": case.description, "framework": "transformers.Trainer",
             "logger": "tensorboard+stdout+trainer_state" + ("+jsonl" if case.jsonl_lr_from_args else ""),
             "intent": "stated", "expected_codes": [measure(code, case, run_dir) for code in case.expected],
             "allowed_codes": list(case.allowed), "cli_schedule": None}
    if not case.expected:
        truth["measured"] = check_healthy(case, run_dir)
    return truth
