"""Benchmark: the closed-form schedule replay against torch's scheduler stepped once per step.

    python benchmarks/bench_replay.py [--steps N] [--stepped-steps M] [--repeats R]

For each scheduler class (one representative spec each) it times `forensics.schedule.replay` of
N steps (the closed form; default 1,000,000) and the step-by-step torch replay of M steps
(default 100,000) in the same process, medians of R runs after one untimed first call (also printed), and extrapolates the stepped figure
to N steps linearly (its cost is one `scheduler.step()` per step; the printed per-step cost is
what is measured). It also times, in fresh interpreters, constructing a real `torch.optim.SGD`
(which imports `torch._dynamo`) against the bare optimizer the stepped replay now uses, and
importing `forensics.schedule.replay` and the `forensics analyze` command module.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from forensics.schedule import parse_spec  # noqa: E402
from forensics.schedule.replay import CLOSED_FORM, replay, stepped_replay  # noqa: E402

CASES = {
    "StepLR": "StepLR(step_size=30000, gamma=0.5)",
    "MultiStepLR": "MultiStepLR(milestones=[300000, 600000, 900000], gamma=0.1)",
    "ConstantLR": "ConstantLR(factor=0.25, total_iters=5000)",
    "LinearLR": "LinearLR(start_factor=1.0, end_factor=0.0, total_iters=1000000)",
    "ExponentialLR": "ExponentialLR(gamma=0.999995)",
    "PolynomialLR": "PolynomialLR(total_iters=1000000, power=2.0)",
    "CosineAnnealingLR": "CosineAnnealingLR(T_max=1000000)",
    "CosineAnnealingLR eta_min": "CosineAnnealingLR(T_max=1000000, eta_min=1e-6)",
    "CosineAnnealingLR past T_max": "CosineAnnealingLR(T_max=400000, eta_min=1e-6)",
    "CosineAnnealingWarmRestarts": "CosineAnnealingWarmRestarts(T_0=10000, T_mult=2, eta_min=1e-6)",
    "OneCycleLR cos": "OneCycleLR(max_lr=3e-3, total_steps=1000000, pct_start=0.1)",
    "OneCycleLR linear 3-phase": "OneCycleLR(max_lr=3e-3, total_steps=1000000, anneal_strategy='linear', three_phase=True)",
    "CyclicLR triangular2": "CyclicLR(base_lr=1e-4, max_lr=3e-3, step_size_up=2000, mode='triangular2')",
    "CyclicLR exp_range": "CyclicLR(base_lr=1e-4, max_lr=3e-3, step_size_up=2000, mode='exp_range', gamma=0.99999)",
    "SequentialLR warmup+cosine": "SequentialLR([LinearLR(start_factor=1e-12, total_iters=2000), "
                                  "CosineAnnealingLR(T_max=998000, eta_min=1e-6)], milestones=[2000])",
    "ChainedScheduler linear*cosine": "ChainedScheduler([LinearLR(start_factor=0.01, total_iters=5000), "
                                      "CosineAnnealingLR(T_max=1000000, eta_min=1e-6)])",
    "HF linear (LinearLR pair)": "linear(num_warmup_steps=10000, num_training_steps=1000000)",
    "HF cosine_with_restarts (LambdaLR)": "cosine_with_restarts(num_warmup_steps=10000, num_training_steps=1000000, "
                                          "num_cycles=4)",
    "HF inverse_sqrt (LambdaLR)": "inverse_sqrt(num_warmup_steps=4000)",
}
BASE_LRS = [3e-3]


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fresh_interpreter_seconds(code: str, repeats: int) -> float:
    """Median wall time of `python -c code` (the code prints its own timing)."""
    times = []
    for _ in range(repeats):
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout
        times.append(float(output.split()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--stepped-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; medians of {args.repeats}")
    print(f"{'class':36} {'closed form':>12} {'first call':>11} {'torch stepped':>14} {'µs/step':>8} {'ratio':>7}")
    print(f"{'':36} {f'{args.steps:,} steps':>12} {'':>11} {f'{args.steps:,} (extrap.)':>14}")
    worst = 0.0
    for name, text in CASES.items():
        spec = parse_spec(text)
        started = time.perf_counter()
        result = replay(spec, BASE_LRS, args.steps)
        first = time.perf_counter() - started
        assert result.method == CLOSED_FORM, name
        closed = _median_seconds(lambda: replay(spec, BASE_LRS, args.steps), args.repeats)
        stepped = _median_seconds(lambda: stepped_replay(spec, BASE_LRS, args.stepped_steps), args.repeats)
        per_step = stepped / args.stepped_steps
        extrapolated = per_step * args.steps
        worst = max(worst, closed)
        print(f"{name:36} {closed:11.3f}s {first:10.3f}s {extrapolated:13.2f}s {per_step * 1e6:8.2f} "
              f"{extrapolated / closed:6.0f}x")
    print(f"slowest closed form (median): {worst:.3f}s for {args.steps:,} steps (target <= 0.5 s); "
          "'first call' is the same replay run once before the timed ones (cold memory)")

    sgd = _fresh_interpreter_seconds(
        "import time, torch; t = time.perf_counter(); "
        "torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1); print(time.perf_counter() - t)", args.repeats)
    bare = _fresh_interpreter_seconds(
        "import time, torch; from forensics.schedule.replay import _throwaway_optimizer; "
        "t = time.perf_counter(); _throwaway_optimizer([0.1]); print(time.perf_counter() - t)", args.repeats)
    print(f"first optimizer in a process: torch.optim.SGD {sgd:.3f}s (imports torch._dynamo), "
          f"the replay's bare Optimizer {bare:.4f}s")
    torch_alone = _fresh_interpreter_seconds(
        "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)", args.repeats)
    print(f"import torch alone: {torch_alone:.2f}s")
    for module in ("forensics.schedule.replay", "forensics.cli.analyze"):
        seconds = _fresh_interpreter_seconds(
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)", args.repeats)
        loaded = subprocess.run([sys.executable, "-c", f"import sys, {module}; print('torch' in sys.modules, "
                                 "'torch._dynamo' in sys.modules)"], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split()
        print(f"import {module}: {seconds:.2f}s (torch imported: {loaded[0]}, torch._dynamo: {loaded[1]})")

if __name__ == "__main__":
    main()
