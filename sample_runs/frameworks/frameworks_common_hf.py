"""Shared pieces of the HF Trainer / plain-loop corpus: synthetic data, tiny models, forked lifetimes,
reading back what a run wrote, and the measurements every label is computed with.

A label is always measured from the series the run wrote (TensorBoard events, trainer_state.json,
CSV/JSONL rows, the values printed to stdout), on the step axis the run itself logs. The rules:

- departure: first logged step whose LR differs from the reference scheduler's by more than 10%.
- first non-finite: first logged step whose loss is NaN or inf.
- grad spike: first logged step whose grad norm is > 10x the median of the previous 50 finite ones (>= 10 seen).
- plateau: first logged step whose 50-point mean loss is within 5% of the last 50 points' mean.
- collapse: first logged step whose LR is <= 1e-4 of the largest LR logged up to it.
- runaway: first logged step whose LR is >= 10x the first logged LR.
- divergence: the step of the smallest 10-point running mean of the loss before the final rise.
- resume: the first step logged by the second process.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

SPIKE_WINDOW = 50
PLATEAU_WINDOW = 50
DIVERGENCE_WINDOW = 10
DEPARTURE = 0.10


# ---------------------------------------------------------------- data and models
def classification_data(n: int, seed: int, n_in: int = 16, n_classes: int = 8, label_noise: float = 0.0,
                        margin_scale: float = 3.0, blobs: bool = False):
    """Inputs with labels from a fixed random linear teacher (the same teacher for every seed); `blobs`:
    well separated Gaussian clusters instead, which a tiny MLP classifies perfectly."""
    if blobs:
        centers = torch.randn(n_classes, n_in, generator=torch.Generator().manual_seed(99)) * 4.0
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, n_classes, (n,), generator=g)
        return centers[y] + 0.5 * torch.randn(n, n_in, generator=g), y
    teacher = torch.randn(n_in, n_classes, generator=torch.Generator().manual_seed(1234)) * margin_scale
    x = torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed))
    y = (x @ teacher).argmax(1)
    if label_noise:
        g = torch.Generator().manual_seed(seed + 7)
        flip = torch.rand(n, generator=g) < label_noise
        y = torch.where(flip, torch.randint(0, n_classes, (n,), generator=g), y)
    return x, y


def regression_data(n: int, seed: int, n_in: int = 16, noise: float = 0.05):
    teacher = torch.randn(n_in, 1, generator=torch.Generator().manual_seed(4321))
    x = torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed))
    y = x @ teacher + noise * torch.randn(n, 1, generator=torch.Generator().manual_seed(seed + 1))
    return x, y


def mlp(n_in: int = 16, hidden: int = 32, n_out: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(1).float().mean())


# ---------------------------------------------------------------- lifetimes in their own process
def run_forked(target, log_path: Path | None, *args) -> int:
    """Run `target(*args)` in a forked child (its own pid, like a real restart) with stdout/stderr appended
    to `log_path`; return the child's exit code (a deliberate crash exits with 3)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if log_path is not None:
                handle = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(handle, 1)
                os.dup2(handle, 2)
                sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
                sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            target(*args)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # noqa: BLE001 - the parent reports the failure
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class Crash(SystemExit):
    """A deliberate process death (the 'node was pre-empted' of a resumed case)."""

    def __init__(self):
        super().__init__(3)


# ---------------------------------------------------------------- reading back
def event_files(run_dir: Path) -> list[Path]:
    """Event files in the order they were written (the name starts with the creation time, then pid)."""
    files = [path for path in Path(run_dir).rglob("events.out.tfevents.*")]
    return sorted(files, key=lambda path: (path.name.split(".")[3], path.stat().st_mtime))


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    series: dict[str, list[tuple[int, float]]] = {}
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.HasField("tensor") and value.tensor.float_val:
                number = value.tensor.float_val[0]
            elif value.HasField("simple_value"):
                number = value.simple_value
            else:
                continue
            series.setdefault(value.tag, []).append((int(event.step), float(number)))
    return series


def tb_series(run_dir: Path, tag: str) -> list[list[tuple[int, float]]]:
    """One list per event file (one per process lifetime) of (step, value) for `tag`."""
    return [read_scalars(path).get(tag, []) for path in event_files(run_dir)]


def csv_series(path: Path, column: str, step_column: str = "step") -> list[tuple[int, float]]:
    with open(path, newline="") as handle:
        return [(int(row[step_column]), float(row[column])) for row in csv.DictReader(handle)
                if row.get(column) not in (None, "")]


def jsonl_series(path: Path, key: str, step_key: str = "step") -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [(int(row[step_key]), float(row[key])) for row in rows if key in row]


def trainer_state(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- measurements
def departure_step(actual: list[tuple[int, float]], reference) -> int | None:
    """First logged step whose LR leaves `reference(step)` by more than 10% (relative to the reference,
    or to the reference's peak where the reference is near 0)."""
    peak = max(abs(reference(step)) for step, _ in actual) or 1.0
    for step, lr in actual:
        ref = reference(step)
        if abs(lr - ref) > DEPARTURE * max(abs(ref), 1e-3 * peak):
            return step
    return None


def first_nonfinite(points: list[tuple[int, float]]) -> int | None:
    return next((step for step, value in points if not math.isfinite(value)), None)


def grad_spike_step(points: list[tuple[int, float]]) -> int | None:
    finite: list[float] = []
    for step, value in points:
        if len(finite) >= 10 and math.isfinite(value) and value > 10 * statistics.median(finite[-SPIKE_WINDOW:]):
            return step
        if math.isfinite(value):
            finite.append(value)
    return None


def plateau_start(points: list[tuple[int, float]], window: int = PLATEAU_WINDOW) -> int | None:
    values = [value for _, value in points]
    if len(values) < 2 * window:
        return None
    final = statistics.fmean(values[-window:])
    for index in range(len(values) - window + 1):
        if abs(statistics.fmean(values[index:index + window]) - final) <= 0.05 * abs(final):
            return points[index][0]
    return None


def collapse_step(points: list[tuple[int, float]], threshold: float = 1.001e-4) -> int | None:
    """`threshold` sits a hair above 1e-4 so that a decay landing exactly on 1e-4 (StepLR gamma 0.1) is not
    decided by the last bit of a float."""
    peak = 0.0
    for step, lr in points:
        peak = max(peak, lr)
        if peak > 0 and lr <= threshold * peak:
            return step
    return None


def runaway_step(points: list[tuple[int, float]]) -> int | None:
    first = points[0][1]
    return next((step for step, lr in points if first > 0 and lr >= 10 * first), None)


def divergence_start(points: list[tuple[int, float]], window: int = DIVERGENCE_WINDOW) -> tuple[int, float, float]:
    """(step of the smallest running mean, that mean, the final running mean)."""
    values = [value for _, value in points]
    means = [statistics.fmean(values[index:index + window]) for index in range(len(values) - window + 1)]
    best = min(range(len(means)), key=means.__getitem__)
    return points[best][0], means[best], means[-1]


def overrun_step(points: list[tuple[int, float]]) -> int | None:
    """The logged step where a decaying LR turns and rises again (the scheduler's horizon)."""
    falling = False
    for (step, a), (_, b) in zip(points, points[1:]):
        if b < a:
            falling = True
        elif falling and b > a:
            return step
    return None


def ratio(points: list[tuple[int, float]]) -> float:
    values = [value for _, value in points if math.isfinite(value)]
    return max(values) / max(min(values), 1e-300)


def label(code: str, onset: int, tolerance: int, measured: str, end_step: int | None = None) -> dict:
    entry = {"code": code, "onset_step": int(onset), "tolerance_steps": int(tolerance), "measured": measured}
    if end_step is not None:
        entry["end_step"] = int(end_step)
    return entry


def require(condition: bool, message: str) -> None:
    """A generated run that does not show what its case is about is a generator bug, never a label."""
    if not condition:
        raise AssertionError(message)
