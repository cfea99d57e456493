"""Generate the Lightning + timm part of the framework corpus and its measured labels (CORPUS.json).

    .venv/bin/python sample_runs/frameworks/lightning_corpus.py --out sample_runs/framework_corpus/lightning [--only NAME ...]

Each case is a real run (PyTorch Lightning 2.x fits, or timm.scheduler-driven loops in timm's
train-script style). Every label is measured from what the run logged: schedule onsets by replaying the
correctly built reference scheduler, NaN onsets from the first non-finite logged loss, resume steps from
the first step the resumed fit logged. A case whose rule finds nothing stops the generator.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from frameworks_common_pl import (  # noqa: E402
    CONVENTIONS,
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
    replay_torch,
    runaway_step,
)
from lightning_cases import LCase, healthy, schedule_failures  # noqa: E402
from lightning_cases_training import training_failures  # noqa: E402
from lightning_plain_loops import PLAIN_CASES, generate_plain_case  # noqa: E402
from lightning_runs import FitRecord, fit_case  # noqa: E402
from timm_cases import TIMM_CASES, generate_timm_case  # noqa: E402

COMMAND = ".venv/bin/python sample_runs/frameworks/lightning_corpus.py --out sample_runs/framework_corpus/lightning"
CASE_BYTES_LIMIT = 300_000


def lightning_cases() -> list[LCase]:
    return [*healthy(), *schedule_failures(), *training_failures()]


class Logged:
    """The series one Lightning case logged, all fits concatenated in logging order."""

    def __init__(self, records: list[FitRecord]) -> None:
        self.records = records
        self.rows = [row for record in records for row in record.rows]

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(step, metrics[key]) for step, metrics in self.rows if key in metrics]

    def keys(self) -> set[str]:
        return {key for _, metrics in self.rows for key in metrics}

    def lr_key(self) -> str:
        keys = sorted(k for k in self.keys() if k.startswith("lr-") and not k.endswith("-momentum"))
        return keys[0] if keys else "lr"

    def momentum_key(self) -> str:
        return next(k for k in sorted(self.keys()) if k.endswith("-momentum"))


def _measure(case: LCase, logged: Logged, label) -> dict:
    """One expected_codes entry for `label`, measured from the logged series."""
    recipe = case.recipe
    lr = logged.series(logged.lr_key())
    rule = label.rule
    if rule == "departure":
        steps = max(step for step, _ in lr) + 1
        per_epoch = recipe.steps_per_epoch if case.reference_interval == "epoch" else None
        reference = replay_torch(lambda o: case.reference(o, recipe.steps_per_epoch), recipe.lr, steps, per_epoch)
        onset, window = departure_window(lr, reference)
        return expect(label.code, onset, max(window, log_interval(lr)),
                      f"first step whose logged {logged.lr_key()} differs by >10% from the correctly built reference "
                      f"scheduler replayed {'per epoch' if per_epoch else 'per step'}; tolerance reaches back to the "
                      "first >1% difference (at least the LR logging interval)")
    if rule == "constant":
        reference = replay_torch(lambda o: case.reference(o, recipe.steps_per_epoch), recipe.lr, lr[-1][0] + 1)
        return expect(label.code, constant_start(lr), log_interval(lr),
                      f"first logged {logged.lr_key()} from which the LR stays within 0.1% of its final value "
                      f"{lr[-1][1]:g}; the correctly built scheduler would leave it by >10% at step "
                      f"{departure_step(lr, reference)}")
    if rule == "nonfinite":
        keys = label.key.split("|")
        onsets = [(first_nonfinite(logged.series(key)), key) for key in keys]
        onset, key = min((o, k) for o, k in onsets if o is not None)
        return expect(label.code, onset, log_interval(logged.series(key)),
                      f"first logged non-finite {key} (any of {keys}); tolerance = logging interval")
    if rule == "grad_spike":
        points = logged.series(label.key)
        return expect(label.code, first_grad_spike(points), log_interval(points),
                      f"first logged {label.key} above 10x the median of the earlier finite values")
    if rule == "collapse":
        return expect(label.code, collapse_step(lr), log_interval(lr),
                      f"first step whose logged {logged.lr_key()} is <= 1e-4 of the highest LR logged before it")
    if rule == "runaway":
        onset = runaway_step(lr)
        further = next((s for s, v in lr if v > 30 * lr[0][1]), lr[-1][0])
        return expect(label.code, onset, max(log_interval(lr), further - onset),
                      f"first step whose logged {logged.lr_key()} exceeds 10x the first logged LR; tolerance reaches "
                      "the step it exceeds 30x")
    if rule == "divergence":
        points = logged.series(label.key or "train_loss")
        onset, width = divergence_onset(points)
        return expect(label.code, onset, max(width, log_interval(points)),
                      "end of the lowest 10-value mean train_loss; tolerance reaches the first mean 2x that minimum; "
                      f"final loss {points[-1][1]:.3g} vs minimum {min(v for _, v in points):.3g}")
    if rule == "plateau":
        points = logged.series(label.key)
        window = max(8, 40 // log_interval(points))  # 40 steps, whatever the logging interval
        return expect(label.code, plateau_start(points, window), 25 + log_interval(points),
                      f"first step whose trailing {window}-value (40-step) mean train_loss is within 5% of the final "
                      "window's mean; tolerance 25 steps + logging interval")
    if rule == "first_val":
        points = logged.series(label.key)
        if len({round(v, 6) for _, v in points}) != 1:
            raise AssertionError(f"{case.name}: {label.key} is not frozen: {points}")
        return expect(label.code, points[0][0], 1, f"step of the first logged {label.key}; every epoch logs "
                      f"the same value {points[0][1]:.4f}")
    if rule == "resume":
        first = min(step for step, _ in logged.records[1].rows)
        text = f"first step logged by the resumed fit ({Path(logged.records[1].log_dir).name})"
        if case.reference is not None:
            reference = replay_torch(lambda o: case.reference(o, recipe.steps_per_epoch), recipe.lr, lr[-1][0] + 1)
            departed = departure_step([p for p in lr if p[0] >= first], reference)
            text += f"; the logged LR leaves the reference schedule by >10% at step {departed}"
        return expect(label.code, first, 1, text)
    if rule == "last_step":
        points = logged.series("train_loss")
        return expect(label.code, points[-1][0], log_interval(points), "last logged train_loss step")
    if rule == "trough":
        peak = max(v for _, v in lr)
        trough = next(s for (s, v), (_, nxt) in zip(lr, lr[1:]) if v < 0.1 * peak and nxt > v)
        return expect(label.code, trough, log_interval(lr) + 1,
                      f"logged {logged.lr_key()} reaches its minimum and rises from the next step")
    if rule == "momentum":
        points = logged.series(logged.momentum_key())
        onset = next(s for s, v in points if abs(v - 0.9) > 0.009)
        return expect(label.code, onset, log_interval(points),
                      f"first logged {logged.momentum_key()} differing from the optimizer's beta1 0.9 by >1%")
    if rule == "early_spike":
        points = logged.series(label.key)
        horizon = max(2, len(points) // 20)  # the first 5% of the run
        spikes = [step for step, value in points[1:horizon] if value > 2 * points[0][1]]
        if not spikes:
            raise AssertionError(f"{case.name}: no early loss spike")
        peak = max(value for _, value in points[:horizon])
        return expect(label.code, points[0][0], spikes[0],
                      f"no warmup from the first step; the loss exceeds 2x its first value ({points[0][1]:.3g}) at "
                      f"step {spikes[0]} and peaks at {peak:.3g} within the first 5% of steps; tolerance reaches that "
                      "first spike")
    if rule == "start":
        return expect(label.code, lr[0][0], log_interval(lr),
                      f"first logged {logged.lr_key()} {lr[0][1]:g} vs the stated lr {recipe.lr:g}")
    raise KeyError(rule)


def _intent(case: LCase) -> str:
    return "none" if case.recipe.hparams is None and not case.recipe.checkpoint else "stated"


def _logger_name(case: LCase) -> str:
    names = {"csv": "csv", "tb": "tensorboard"}
    loggers = [names[x] for x in case.recipe.loggers] + (["stdout"] if case.recipe.progress_log else [])
    return "+".join(loggers)


def generate_lightning_case(case: LCase, out: Path) -> dict:
    """Run one Lightning case into out/name and return its CORPUS.json entry."""
    records = fit_case(case.recipe, out / case.name)
    logged = Logged(records)
    losses = [v for k in ("train_loss", "g_loss", "d_loss") for _, v in logged.series(k)]
    if case.healthy and not all(v == v and abs(v) < 1e6 for v in losses):
        raise AssertionError(f"healthy case {case.name} logged a non-finite or huge loss")
    return {
        "healthy": case.healthy,
        "description": case.description,
        "framework": case.framework,
        "logger": _logger_name(case),
        "intent": _intent(case),
        "expected_codes": [_measure(case, logged, label) for label in case.labels],
        "allowed_codes": case.allowed,
        "cli_schedule": None,
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def generate(out: Path, only: list[str] | None = None, keep_going: bool = False) -> dict:
    """Generate every case (or `only` those) and write CORPUS.json (merged with the existing entries)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "CORPUS.json"
    cases = json.loads(manifest_path.read_text())["cases"] if only and manifest_path.exists() else {}
    if not only:
        for stale in [p for p in out.iterdir() if p.is_dir()]:
            shutil.rmtree(stale)
    jobs = [(c.name, lambda d, c=c: generate_lightning_case(c, d)) for c in lightning_cases()]
    jobs += [(c.name, lambda d, c=c: generate_timm_case(c, d)) for c in TIMM_CASES]
    jobs += [(c.name, lambda d, c=c: generate_plain_case(c, d)) for c in PLAIN_CASES]
    names, failed = [name for name, _ in jobs], []
    if len(set(names)) != len(names):
        raise AssertionError("duplicate case names")
    for name, job in jobs:
        if only and name not in only:
            continue
        if (out / name).exists():
            shutil.rmtree(out / name)
        started = time.perf_counter()
        try:
            cases[name] = job(out)
        except Exception:  # noqa: BLE001 - with --keep-going, report and generate the rest
            if not keep_going:
                raise
            traceback.print_exc()
            failed.append(name)
            continue
        size = _size(out / name)
        if size > CASE_BYTES_LIMIT:
            raise AssertionError(f"{name} is {size} bytes (limit {CASE_BYTES_LIMIT})")
        print(f"[framework corpus] {name}: {time.perf_counter() - started:.1f}s, {size // 1024} KB", file=sys.stderr)
        manifest = _write_manifest(manifest_path, cases)
    if failed:
        raise SystemExit(f"failed cases: {' '.join(failed)}")
    return _write_manifest(manifest_path, cases)


def _write_manifest(path: Path, cases: dict) -> dict:
    """Written after every case, so a failing case keeps the ones before it."""
    manifest = {"generator": COMMAND, "conventions": CONVENTIONS, "cases": dict(sorted(cases.items()))}
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--keep-going", action="store_true", help="report a failing case and generate the rest")
    options = parser.parse_args()
    generate(options.out, options.only, options.keep_going)


if __name__ == "__main__":
    main()
