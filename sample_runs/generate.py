"""Generate the sample training runs and their ground truth (MANIFEST.json).

Every run is a real, tiny PyTorch training loop on CPU (see `sample_loop.py` and
`sample_scenarios.py`): a real model, optimizer and `torch.optim.lr_scheduler`, logged to
TensorBoard, `train.log` and `torch.save` checkpoints the way training scripts do. The ground truth
in the manifest is computed from what the loop logged, never typed in.

    python sample_runs/generate.py [--out DIR] [--only NAME ...]

Importable: `from generate import generate_run, RUNS` with `sample_runs/` on `sys.path`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

from sample_loop import CLASSIFICATION, REGRESSION
from sample_scenarios import (
    ONECYCLE_MAX_LR,
    SCHEDULER_NOT_RESTORED,
    STEP_COUNTER_RESET,
    RunSpec,
    resume_phase,
    train_divergence,
    train_onecycle,
    train_resumed,
)

SAMPLE_RUNS_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "MANIFEST.json"
CONVENTIONS = {
    "step": "global_step = 0-based index of the optimizer step; train/* is logged at the step just done",
    "train/lr": "optimizer.param_groups[0]['lr'] read before scheduler.step(): the LR that step used",
    "train/grad_norm": "clip_grad_norm_(params, max_norm=inf): measured, never clipped",
    "val/*": "logged once per epoch at the epoch's last global_step",
    "train.log": "'epoch E step S/T ...' lines every log_every steps; S is the TB step, T the planned total",
    "checkpoint": "checkpoints/ckpt_epoch_{E}.pt after E epochs; keys epoch=E, global_step=steps done",
}


def _onecycle_text(steps: int) -> str:
    return f"OneCycleLR(max_lr={ONECYCLE_MAX_LR}, total_steps={steps}, pct_start=0.3, cycle_momentum=False)"


_RUN_LIST = [
    (
        RunSpec(
            name="healthy_onecycle",
            description="AdamW + OneCycleLR stepped once per batch after optimizer.step(); finishes the schedule.",
            task=CLASSIFICATION,
            optimizer="AdamW(lr=0.01, weight_decay=0.01)",
            scheduler=_onecycle_text(12 * 50),
            stepping="per_batch",
            epochs=12,
            steps_per_epoch=50,
            checkpoint_every=3,
            log_every=10,
            expected_codes=(),
            allowed_codes=(),
        ),
        train_onecycle,
    ),
    (
        RunSpec(
            name="stuck_lr_onecycle_per_epoch",
            description=(
                "The incident: OneCycleLR built for epochs*batches steps but scheduler.step() called once per "
                "epoch, so 12 of 2400 scheduled steps happen and the LR stays near max_lr/25 all run."
            ),
            task=CLASSIFICATION,
            optimizer="AdamW(lr=0.01, weight_decay=0.01)",
            scheduler=_onecycle_text(12 * 200),
            stepping="per_epoch",
            epochs=12,
            steps_per_epoch=200,
            checkpoint_every=3,
            log_every=20,
            expected_codes=("constant_lr", "per_epoch_stepping", "schedule_incomplete"),
            allowed_codes=(),
        ),
        train_onecycle,
    ),
    (
        RunSpec(
            name="resume_scheduler_reset",
            description=(
                "Warmup+cosine per batch; process 1 trains 5 epochs and dies; process 2 restores model, optimizer, "
                "epoch and global_step but builds a fresh scheduler without load_state_dict, so warmup repeats "
                "from the resume step and the cosine never reaches its end."
            ),
            task=CLASSIFICATION,
            optimizer="AdamW(lr=0.003, weight_decay=0.01)",
            scheduler=(
                "SequentialLR([LinearLR(start_factor=0.01, total_iters=40), CosineAnnealingLR(T_max=360)], "
                "milestones=[40])"
            ),
            stepping="per_batch",
            epochs=10,
            steps_per_epoch=40,
            checkpoint_every=1,
            log_every=10,
            expected_codes=("resume_drift",),
            allowed_codes=("schedule_incomplete",),
            crash_after_epoch=5,
            resume_bug=SCHEDULER_NOT_RESTORED,
        ),
        train_resumed,
    ),
    (
        RunSpec(
            name="nan_divergence",
            description=(
                "SGD(momentum=0.9) with ExponentialLR(gamma=1.05) per batch on a regression task: the LR grows "
                "until the MSE loss overflows to inf and then NaN; the loop keeps going to its planned end."
            ),
            task=REGRESSION,
            optimizer="SGD(lr=0.001, momentum=0.9)",
            scheduler="ExponentialLR(gamma=1.05)",
            stepping="per_batch",
            epochs=10,
            steps_per_epoch=25,
            checkpoint_every=1,
            log_every=5,
            expected_codes=("nan_onset",),
            allowed_codes=(),
        ),
        train_divergence,
    ),
    (
        RunSpec(
            name="resume_start_epoch_reset",
            description=(
                "Cosine per batch; process 1 trains 4 epochs and dies; process 2 restores model, optimizer and "
                "scheduler but a leftover 'start_epoch = 0' resets epoch and global_step, so TB steps rewind to 0, "
                "all epochs run again, early checkpoints are overwritten and the cosine runs past T_max."
            ),
            task=CLASSIFICATION,
            optimizer="AdamW(lr=0.003, weight_decay=0.01)",
            scheduler="CosineAnnealingLR(T_max=240)",
            stepping="per_batch",
            epochs=8,
            steps_per_epoch=30,
            checkpoint_every=2,
            log_every=10,
            expected_codes=("resume_drift",),
            allowed_codes=("schedule_incomplete",),
            crash_after_epoch=4,
            resume_bug=STEP_COUNTER_RESET,
        ),
        train_resumed,
    ),
]
RUNS: dict[str, RunSpec] = {spec.name: spec for spec, _ in _RUN_LIST}
_TRAINERS = {spec.name: train for spec, train in _RUN_LIST}


@contextlib.contextmanager
def _torch_state_restored() -> Iterator[None]:
    """Generation pins threads, determinism and the RNG; give the importing process its settings back."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng_state)


def generate_run(name: str, out_dir: Path) -> dict:
    """Train run `name` into `out_dir/name` (replacing what was there) and return its ground truth."""
    spec = RUNS[name]
    run_dir = Path(out_dir) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with _torch_state_restored():
        lifetimes, truths = _TRAINERS[name](spec, run_dir)
    return _ground_truth(spec, run_dir, lifetimes, truths)


def _ground_truth(spec: RunSpec, run_dir: Path, lifetimes: list, truths: dict) -> dict:
    lr_points = [point for lifetime in lifetimes for point in lifetime.scalars["train/lr"]]
    losses = [value for lifetime in lifetimes for _, value in lifetime.scalars["train/loss"]]
    tags: dict[str, int] = {}
    for lifetime in lifetimes:
        for tag, points in lifetime.scalars.items():
            tags[tag] = tags.get(tag, 0) + len(points)
    last = lifetimes[-1].scalars
    entry = {
        "description": spec.description,
        "task": spec.task,
        "optimizer": spec.optimizer,
        "scheduler": spec.scheduler,
        "stepping": spec.stepping,
        "epochs": spec.epochs,
        "steps_per_epoch": spec.steps_per_epoch,
        "planned_optimizer_steps": spec.planned_steps,
        "total_optimizer_steps": len(lr_points),
        "process_lifetimes": len(lifetimes),
        "expected_codes": list(spec.expected_codes),
        "allowed_codes": list(spec.allowed_codes),
        "event_files": len(list((run_dir / "tb").glob("events.out.tfevents.*"))),
        "tags": tags,
        "lifetimes": [
            {
                "first_step": lifetime.scalars["train/lr"][0][0],
                "last_step": lifetime.scalars["train/lr"][-1][0],
                "optimizer_steps": len(lifetime.scalars["train/lr"]),
                "resumed_from": lifetime.resumed_from,
            }
            for lifetime in lifetimes
        ],
        "checkpoints": [checkpoint for lifetime in lifetimes for checkpoint in lifetime.checkpoints],
        "train_loss_first_epoch_mean": _finite_mean(losses[: spec.steps_per_epoch]),
        "train_loss_last_epoch_mean": _finite_mean(losses[-spec.steps_per_epoch :]),
        "final_val_loss": _finite_or_none(last["val/loss"][-1][1]),
        "final_val_accuracy": last["val/accuracy"][-1][1] if "val/accuracy" in last else None,
        **truths,
        "conventions": CONVENTIONS,
    }
    return entry


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finite_mean(values: list[float]) -> float | None:
    """Mean of the values, or None when any is inf/NaN (JSON has no NaN, and the mean means nothing)."""
    return sum(values) / len(values) if all(math.isfinite(value) for value in values) else None


def generate(out_dir: Path, names: list[str] | None = None) -> dict:
    """Generate `names` (default: all runs) into `out_dir` and merge their truths into its MANIFEST.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    for name in names or list(RUNS):
        manifest[name] = generate_run(name, out_dir)
    ordered = {name: manifest[name] for name in RUNS if name in manifest}
    manifest_path.write_text(json.dumps(ordered, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return ordered


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; `--_resume-phase` is the restarted process of a resumed run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_RUNS_DIR, help="folder to write the runs into")
    parser.add_argument("--only", nargs="+", choices=list(RUNS), metavar="NAME", help="generate only these runs")
    parser.add_argument("--_resume-phase", dest="resume_phase", choices=list(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume_phase:
        lifetime = resume_phase(RUNS[args.resume_phase], args.out / args.resume_phase)
        print(lifetime.to_json())  # the parent reads the last stdout line
        return 0
    started = time.perf_counter()
    manifest = generate(args.out, args.only)
    for name, truth in manifest.items():
        if not args.only or name in args.only:
            print(f"{name}: {truth['total_optimizer_steps']} optimizer steps, {truth['event_files']} event file(s)")
    print(f"wrote {args.out / MANIFEST_NAME} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
