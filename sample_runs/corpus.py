"""Generate the labelled corpus: real tiny PyTorch runs with one failure injected each, healthy twins,
and their ground truth in CORPUS.json.

Every case is a real training loop on CPU (`corpus_loop.py`, built from `sample_loop.py`): a real
model, optimizer and `torch.optim.lr_scheduler`, writing only the evidence kinds the case declares
(TensorBoard, stdout in one of three line styles, stderr, checkpoints). Resumed cases run their
second lifetime in a real subprocess. Ground truth (codes, onset steps, key facts) is computed from
what the loop logged (`corpus_truth.py`), never typed in.

    python sample_runs/corpus.py --out DIR [--only NAME ...] [--workers N]

Importable with `sample_runs/` on sys.path: `from corpus import CORPUS, generate_case, generate_corpus`.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from corpus_cases import FAILURES
from corpus_cases_training import HEALTHY, TRAINING_FAILURES
from corpus_loop import CaseLifetime, run_lifetime
from corpus_spec import STDOUT, TENSORBOARD, CaseSpec
from corpus_truth import (
    CONVENTIONS,
    Observed,
    chance_accuracy,
    early_loss_spikes,
    expected_codes,
    grad_spike_steps,
    plateau_fraction,
    plateau_start,
    replay_intended_lrs,
)
from generate import _torch_state_restored
from sample_scenarios import _wait_for_a_later_event_file_name

CORPUS_NAME = "CORPUS.json"
EVENT_FILE_PATTERN = "tb/events.out.tfevents.*"
CORPUS_VERSION = 1
PLATEAU_FRACTION_ALLOWED = 0.5  # loss flat for more than half the run
CORPUS: dict[str, CaseSpec] = {spec.name: spec for spec in [*FAILURES, *TRAINING_FAILURES, *HEALTHY]}


def generate_case(name: str, out_dir: Path) -> dict:
    """Train case `name` into `out_dir/name` (replacing what was there) and return its ground truth."""
    spec = CORPUS[name]
    run_dir = Path(out_dir) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    with _torch_state_restored():
        lifetimes = [run_lifetime(spec, run_dir, resuming=False)]
        if spec.crash_after_epoch is not None:
            lifetimes.append(_resume_in_subprocess(spec, run_dir))
    truth = case_truth(spec, run_dir, lifetimes)
    print(f"[corpus] {name}: {time.perf_counter() - started:.2f}s", file=sys.stderr)
    return truth


def _resume_in_subprocess(spec: CaseSpec, run_dir: Path) -> CaseLifetime:
    if TENSORBOARD in spec.sources:
        _wait_for_a_later_event_file_name(run_dir / "tb")
    command = [sys.executable, str(Path(__file__).resolve()), "--_resume-phase", spec.name, "--out", str(run_dir.parent)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"resume phase of {spec.name} failed:\n{result.stderr}")
    return CaseLifetime.from_json(result.stdout.strip().splitlines()[-1])


def generate_corpus(out_dir: Path, names: list[str] | None = None, workers: int = 2) -> dict:
    """Generate `names` (default: every case) into `out_dir`, write CORPUS.json there, return its cases.

    Cases run in `workers` spawned processes (each case pins torch to one thread); an existing
    CORPUS.json in `out_dir` keeps the entries of cases not regenerated.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(names or CORPUS)
    # Longest first (resumed cases pay for a subprocess) so the workers finish together.
    ordered = sorted(names, key=lambda name: -_cost(CORPUS[name]))
    if workers > 1 and len(names) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            truths = dict(zip(ordered, pool.map(generate_case, ordered, [out_dir] * len(ordered))))
    else:
        truths = {name: generate_case(name, out_dir) for name in ordered}
    corpus_path = out_dir / CORPUS_NAME
    existing = json.loads(corpus_path.read_text(encoding="utf-8"))["cases"] if corpus_path.exists() else {}
    cases = {name: truths.get(name, existing.get(name)) for name in CORPUS if name in truths or name in existing}
    document = {"version": CORPUS_VERSION, "conventions": CONVENTIONS, "cases": cases}
    corpus_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return cases


def _cost(spec: CaseSpec) -> float:
    return spec.epochs * spec.batches_per_epoch + (3000 if spec.crash_after_epoch else 0)


# ---- ground truth -----------------------------------------------------------------------------


def case_truth(spec: CaseSpec, run_dir: Path, lifetimes: list[CaseLifetime]) -> dict:
    """The CORPUS.json entry of one case: ground truth, sources and key facts from the loop's record."""
    observed = Observed(spec, run_dir, lifetimes)
    facts = _facts(observed)
    allowed = list(spec.allowed)
    expected = expected_codes(observed)
    flat = facts["loss_plateau_fraction"]
    if not spec.healthy and flat is not None and flat > PLATEAU_FRACTION_ALLOWED:
        # A failure that leaves the loss flat (an LR stuck low) shows a real plateau too.
        if "loss_plateau" not in allowed and all(entry["code"] != "loss_plateau" for entry in expected):
            allowed.append("loss_plateau")
    return {
        "description": spec.description,
        "healthy": spec.healthy,
        "expected_codes": expected,
        "allowed_codes": allowed,
        "sources": list(spec.sources),
        "log_style": spec.log_style if STDOUT in spec.sources else None,
        "cli_schedule": spec.cli_schedule,
        "files": _files(run_dir),
        "facts": facts,
    }


def _facts(observed: Observed) -> dict:
    spec, plan, lifetimes = observed.spec, observed.spec.plan(), observed.lifetimes
    used = observed.lr_used
    lrs = [lr for _, lr in used]
    peak_step, peak = max(used, key=lambda point: point[1])
    intended = observed.intended
    common = [(lr, intended[step]) for step, lr in used if step < len(intended)]
    tags: dict[str, int] = {}
    for life in lifetimes:
        for tag, points in life.scalars.items():
            tags[tag] = tags.get(tag, 0) + len(points)
    losses = [value for _, value in observed.losses]
    spe = plan.optimizer_steps_per_epoch
    accuracies = [value for _, value in observed.series("val/accuracy")]
    checkpoints = [record for life in lifetimes for record in life.checkpoints]
    changes, off_boundary = _lr_changes(lifetimes, spe)
    return {
        "task": spec.task,
        "optimizer": f"{spec.optimizer}(lr={spec.lr})",
        "scheduler": spec.scheduler_text,
        "scheduler_class": lifetimes[-1].extras["scheduler_class"],
        "scheduler_state_at_end": lifetimes[-1].extras["scheduler_state"],
        "stepping": spec.stepping,
        "intended_interval": spec.intended_interval,
        "accum": spec.accum,
        "epochs": spec.epochs,
        "batches_per_epoch": plan.batches_per_epoch,
        "optimizer_steps_per_epoch": spe,
        "planned_optimizer_steps": plan.total_optimizer_steps,
        "total_optimizer_steps": len(used),
        "process_lifetimes": len(lifetimes),
        "lifetimes": [
            {
                "first_step": life.extras["lr_used"][0][0],
                "last_step": life.extras["lr_used"][-1][0],
                "optimizer_steps": len(life.extras["lr_used"]),
                "resumed_from": life.resumed_from,
            }
            for life in lifetimes
        ],
        "event_files": len(list((observed.run_dir / "tb").glob("events.out.tfevents.*"))),
        "tags": tags,
        "lr_logging_offset": 1 if spec.lr_logged == "next" else 0,
        "lr_at_start": lrs[0],
        "lr_at_end": lrs[-1],
        "lr_peak": peak,
        "lr_peak_step": peak_step,
        "lr_min": min(lrs),
        "lr_changes": changes,
        "lr_changes_off_epoch_boundary": off_boundary,
        "intended_lr_at_start": intended[0],
        "intended_lr_at_planned_end": _replay_end(observed),
        "max_lr_ratio_to_intended": max((max(a, b) / min(a, b) for a, b in common if min(a, b) > 0), default=None),
        "steps_lr_differs_from_intended": sum(1 for a, b in common if abs(a - b) > 1e-9 * max(abs(a), abs(b))),
        "warnings": [line for life in lifetimes for text in life.extras["stderr"] for line in _warning_lines(text)],
        "error_text": next((life.extras["error_text"] for life in lifetimes if life.extras["error_text"]), None),
        "amp_skipped_steps": [step for life in lifetimes for step in life.extras["skipped_steps"]],
        "train_loss_first_epoch_mean": _finite_mean(losses[:spe]),
        "train_loss_last_epoch_mean": _finite_mean(losses[-spe:]),
        "first_nonfinite_loss_step": next((step for step, v in observed.losses if not math.isfinite(v)), None),
        "grad_norm_spike_steps": grad_spike_steps(observed.grad_norms)[:20],
        "early_loss_spike_steps": early_loss_spikes(observed.losses),
        "loss_plateau_start_step": plateau_start(observed.losses),
        "loss_plateau_fraction": plateau_fraction(observed.losses),
        "final_val_loss": _finite_or_none(observed.val_losses[-1]),
        "val_accuracy_first": accuracies[0] if accuracies else None,
        "val_accuracy_final": accuracies[-1] if accuracies else None,
        "val_accuracy_distinct_values": len(set(accuracies)),
        "chance_accuracy": chance_accuracy(spec),
        "checkpoints": checkpoints,
        "resume_step": observed.resume_step,
        "resumed_from": lifetimes[-1].resumed_from,
    }


def _files(run_dir: Path) -> list[str]:
    """The files the case wrote; event file names (time, host, pid) are shown as `tb/events.out.tfevents.*`."""
    names = []
    for path in run_dir.rglob("*"):
        if path.is_file():
            relative = path.relative_to(run_dir).as_posix()
            names.append(EVENT_FILE_PATTERN if relative.startswith("tb/events.out.tfevents.") else relative)
    return sorted(names)


def _replay_end(observed: Observed) -> float:
    planned = observed.spec.plan().total_optimizer_steps
    return replay_intended_lrs(observed.spec, planned, observed.val_losses)[-1]


def _lr_changes(lifetimes: list[CaseLifetime], steps_per_epoch: int) -> tuple[int, int]:
    """(LR changes between consecutive steps, of which not at an epoch boundary), within each lifetime."""
    changes = off_boundary = 0
    for life in lifetimes:
        points = life.extras["lr_used"]
        for (_, before), (step, lr) in zip(points, points[1:]):
            if lr != before:
                changes += 1
                off_boundary += step % steps_per_epoch != 0
    return changes, off_boundary


def _warning_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "Warning: " in line or line.startswith("ValueError: ")]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finite_mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values and all(math.isfinite(v) for v in values) else None


# ---- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; `--_resume-phase` is the restarted process of a resumed case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the corpus into")
    parser.add_argument("--only", nargs="+", choices=list(CORPUS), metavar="NAME", help="generate only these cases")
    parser.add_argument("--workers", type=int, default=2, help="parallel case processes (default 2)")
    parser.add_argument("--_resume-phase", dest="resume_phase", choices=list(CORPUS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume_phase:
        lifetime = run_lifetime(CORPUS[args.resume_phase], args.out / args.resume_phase, resuming=True)
        print(lifetime.to_json())  # the parent reads the last stdout line
        return 0
    started = time.perf_counter()
    cases = generate_corpus(args.out, args.only, args.workers)
    for name, truth in cases.items():
        if args.only and name not in args.only:
            continue
        codes = ", ".join(f"{c['code']}@{c['onset_step']}" for c in truth["expected_codes"]) or "healthy"
        print(f"{name:34s} {truth['facts']['total_optimizer_steps']:5d} steps  {'+'.join(truth['sources']):32s} {codes}")
    print(f"wrote {args.out / CORPUS_NAME}: {len(cases)} cases in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
