"""Shared pieces of the hold-out corpus generator: seeding, tiny data and models, label measurement.

Labels are measured from the series each run logged (the values written to its files), never typed in:
every ``measure_*`` function takes the logged ``[(step, value), ...]`` and returns the onset step.
"""
from __future__ import annotations

import importlib
import math
import os
import random
import statistics
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from torch import nn

torch.set_num_threads(1)


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def timm_scheduler():
    """Import ``timm.scheduler`` without running ``timm/__init__.py`` (it needs torchvision)."""
    if "timm.scheduler" in sys.modules:
        return sys.modules["timm.scheduler"]
    import importlib.util

    spec = importlib.util.find_spec("timm")
    root = Path(spec.origin).parent if spec and spec.origin else None
    if root is None:
        raise RuntimeError("timm is not installed")
    if "timm" not in sys.modules:
        pkg = types.ModuleType("timm")
        pkg.__path__ = [str(root)]
        sys.modules["timm"] = pkg
    return importlib.import_module("timm.scheduler")


# ---------------------------------------------------------------------------------------------- data
def blobs(n: int, dim: int, classes: int, seed: int, spread: float = 1.0):
    """Gaussian blobs: a learnable classification task."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 2.0
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + spread * torch.randn(n, dim, generator=g)
    return x, y


def separable(n: int, dim: int, seed: int):
    """Two far-apart clusters: validation accuracy reaches exactly 1.0."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, dim, generator=g) * 0.3
    x[:, 0] += (y.float() * 2 - 1) * 4.0
    return x, y


def mlp(dim: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, classes))


def batches(x, y, bs: int, epoch_seed: int):
    g = torch.Generator().manual_seed(epoch_seed)
    idx = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), bs):
        j = idx[i:i + bs]
        yield x[j], y[j]


def grad_norm(model: nn.Module) -> float:
    total = 0.0
    for p in model.parameters():
        if p.grad is not None:
            total += float(p.grad.detach().pow(2).sum())
    return math.sqrt(total)


# ------------------------------------------------------------------------------------------ labels
def replay(make_sched, base_lr: float, n: int, *, step_arg=None) -> list[float]:
    """LR used at optimizer steps 0..n-1 by a correctly built torch scheduler on a throwaway optimizer."""
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_sched(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def replay_timm(make_sched, base_lr: float, n: int, per_update: bool, updates_per_epoch: int = 1):
    """LR at optimizer steps 0..n-1 of a timm scheduler driven the documented way."""
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_sched(opt)
    out = []
    if per_update:
        for i in range(n):
            out.append(opt.param_groups[0]["lr"])
            sched.step_update(num_updates=i + 1)
    else:
        for i in range(n):
            out.append(opt.param_groups[0]["lr"])
            if (i + 1) % updates_per_epoch == 0:
                sched.step((i + 1) // updates_per_epoch)
    return out


def measure_departure(logged, ref, index=lambda s: s, factor: float = 2.0):
    """First logged step whose LR differs from the reference LR at ``index(step)`` by more than ``factor``."""
    for step, lr in logged:
        i = index(step)
        if i < 0 or i >= len(ref):
            continue
        r = ref[i]
        if lr <= 0 or r <= 0:
            if (lr <= 0) != (r <= 0):
                return step
            continue
        if max(lr / r, r / lr) > factor:
            return step
    return None


def measure_nonfinite(logged):
    for step, v in logged:
        if not math.isfinite(v):
            return step
    return None


def measure_lr_collapse(logged):
    peak = 0.0
    for step, lr in logged:
        if peak > 0 and lr < 1e-4 * peak:
            return step
        peak = max(peak, lr)
    return None


def measure_lr_runaway(logged):
    first = logged[0][1]
    for step, lr in logged:
        if lr >= 10 * first:
            return step
    return None


def centred_medians(logged, width: int = 11):
    half = width // 2
    vals = [v for _, v in logged]
    out = []
    for i in range(half, len(vals) - half):
        out.append((logged[i][0], statistics.median(vals[i - half:i + half + 1])))
    return out


def measure_divergence(logged):
    med = centred_medians(logged)
    lo = min(range(len(med)), key=lambda i: med[i][1])
    for step, m in med[lo + 1:]:
        if m >= 2 * med[lo][1]:
            return step
    return None


def measure_grad_spike(logged, factor: float = 100.0, window: int = 10):
    vals = [v for _, v in logged]
    for i in range(window, len(vals)):
        base = statistics.median(vals[i - window:i])
        if vals[i] > factor * base:
            return logged[i][0]
    return None


def measure_cosine_rise(logged):
    """First step after the LR's global minimum (before the end) at which the LR rises again."""
    lrs = [v for _, v in logged]
    lo = min(range(len(lrs)), key=lambda i: lrs[i])
    for i in range(lo + 1, len(lrs)):
        if lrs[i] > lrs[lo] * 1.0001 + 1e-12:
            return logged[i - 1][0]
    return None


def code(name: str, onset: int, tol: int, measured: str) -> dict:
    if onset is None:
        raise RuntimeError(f"label {name} could not be measured: the injected failure did not happen")
    return {"code": name, "onset_step": int(onset), "tolerance_steps": int(tol), "measured": measured}


def case_meta(*, healthy: bool, description: str, framework: str, logger: str, intent: str,
              expected=(), allowed=(), cli_schedule=None) -> dict:
    return {"healthy": healthy, "description": description, "framework": framework, "logger": logger,
            "intent": intent, "expected_codes": list(expected), "allowed_codes": list(allowed),
            "cli_schedule": cli_schedule}


class Tee:
    """Captures what a run prints into its own stdout log file (still shown on the console)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a", encoding="utf-8")
        self._out, self._err = sys.stdout, sys.stderr
        sys.stdout = self
        sys.stderr = self
        return self

    def write(self, s):
        self.fh.write(s)
        return len(s)

    def flush(self):
        self.fh.flush()

    def isatty(self):
        return False

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self._out, self._err
        self.fh.close()


# ------------------------------------------------------------------------------------ processes
def in_new_process(fn, *args, **kwargs):
    """Run ``fn`` in a forked child: a real new process (its own pid in event-file names)."""
    import multiprocessing
    import traceback

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(False)

    def target():
        try:
            send.send(("ok", fn(*args, **kwargs)))
        except BaseException:  # noqa: BLE001 - report any failure to the parent
            send.send(("err", traceback.format_exc()))
        finally:
            sys.stdout.flush()
            os._exit(0)

    proc = ctx.Process(target=target)
    proc.start()
    status, value = recv.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"child process failed:\n{value}")
    return value


# ----------------------------------------------------------------------------------------- logging
class RunLog:
    """What a hand-written loop logs: TensorBoard, JSON lines, CSV, print lines; remembered for labels."""

    def __init__(self, run_dir: Path, *, tb: str | None = None, jsonl: str | None = None,
                 csv: str | None = None, csv_fields=None, stdout: str | None = None, fmt=None):
        self.run_dir = run_dir
        self.series: dict[str, list] = {}
        self.tb = None
        if tb is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / tb))
        self.jsonl = open(run_dir / jsonl, "a", encoding="utf-8") if jsonl else None
        self.csv = None
        if csv:
            new = not (run_dir / csv).exists()
            self.csv = open(run_dir / csv, "a", encoding="utf-8")
            self.csv_fields = list(csv_fields)
            if new:
                self.csv.write(",".join(self.csv_fields) + "\n")
        self.stdout = open(run_dir / stdout, "a", encoding="utf-8") if stdout else None
        self.fmt = fmt

    def line(self, text: str) -> None:
        if self.stdout:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def log(self, step: int, tb_tags: dict | None = None, **vals) -> None:
        for k, v in vals.items():
            if isinstance(v, (int, float)) and k not in ("step", "epoch", "iter"):
                self.series.setdefault(k, []).append((step, float(v)))
        if self.tb is not None:
            for k, v in (tb_tags or {}).items():
                self.tb.add_scalar(k, float(vals[v] if isinstance(v, str) else v), step)
        if self.jsonl:
            import json
            rec = {"step": step}
            rec.update({k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                        for k, v in vals.items()})
            self.jsonl.write(json.dumps(rec) + "\n")
            self.jsonl.flush()
        if self.csv:
            row = {"step": step, **vals}
            self.csv.write(",".join(_csv(row.get(f, "")) for f in self.csv_fields) + "\n")
            self.csv.flush()
        if self.stdout and self.fmt:
            self.line(self.fmt(step=step, **vals))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        for fh in (self.jsonl, self.csv, self.stdout):
            if fh:
                fh.close()


def _csv(v) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return str(v)


def write_yaml(path: Path, data) -> None:
    import yaml
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def write_json(path: Path, data) -> None:
    import json
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
