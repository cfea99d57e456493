"""Benchmark: runs per second of `forensics sweep` over many small runs, per executor, and the incremental pass.

    python benchmarks/bench_sweep.py [--runs 1000] [--repeat 1] [--dir /tmp/forensics-bench-sweep] [--formats html,json]

Generates N small runs (a stdout log of 200 steps each, in four kinds: cosine and healthy, NaN from
mid-run, a constant LR, an LR that runs away), then times, each in a fresh output folder:
`--jobs 1`, `--jobs 2`, `--executor dask` on a LocalCluster of 2 workers (cluster start included),
and the second, incremental pass over the `--jobs 2` output (every run unchanged, so every entry is
reused). Prints runs/s for each (the median over --repeat) and the ratios between them, as measured
in this one process on this machine. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KINDS = ("healthy", "nan", "constant", "runaway")
STEPS = 200


def write_small_run(run_dir: Path, kind: str, seed: int) -> None:
    """One small log-only run of `kind`; `seed` varies the numbers so no two runs are the same file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(STEPS):
        lr = {"healthy": 0.05 * (1 + math.cos(math.pi * step / STEPS)), "nan": 0.05, "constant": 0.05,
              "runaway": 1e-3 * 1.05 ** step}[kind]
        loss = 2.3 * math.exp(-step / 80) + 0.2 + (seed % 97) / 1e4
        if kind == "nan" and step >= STEPS // 2:
            loss = math.nan
        lines.append(f"step {step} loss {loss:.5f} lr {lr:.6e}\n")
    (run_dir / "train.log").write_text("".join(lines))


def generate(root: Path, runs: int) -> None:
    """`runs` small runs in groups of 100 under `root` (replaced)."""
    if root.exists():
        shutil.rmtree(root)
    for number in range(runs):
        write_small_run(root / f"team{number // 100:02d}" / f"run{number:04d}", KINDS[number % len(KINDS)], number)


def timed_sweep(root: Path, out: Path, formats: tuple[str, ...], fresh: bool, **options) -> tuple[float, dict]:
    from forensics.sweep import SweepOptions, sweep

    if fresh and out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    result = sweep(root, out, formats=formats, options=SweepOptions(**options))
    seconds = time.perf_counter() - started
    return seconds, {"totals": result.totals(), "reused": result.reused, "runs": len(result.entries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="timings per configuration (the median is printed)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/forensics-bench-sweep"))
    parser.add_argument("--formats", default="html,json")
    parser.add_argument("--skip-jobs1", action="store_true", help="leave out the slowest configuration")
    args = parser.parse_args()
    formats = tuple(args.formats.split(","))
    root = args.dir / "runs"
    generate(root, args.runs)
    print(f"{args.runs} runs generated under {root}; formats {','.join(formats)}; "
          f"load average before: {', '.join(f'{value:.2f}' for value in os.getloadavg())}; {os.cpu_count()} CPUs")
    configurations = [] if args.skip_jobs1 else [("--jobs 1", dict(jobs=1))]
    configurations += [("--jobs 2", dict(jobs=2)), ("dask, 2 workers", dict(jobs=2, executor="dask"))]
    rates: dict[str, float] = {}
    for name, options in configurations:
        times = []
        for _ in range(args.repeat):
            seconds, summary = timed_sweep(root, args.dir / "out" / name.replace(" ", "_").replace(",", ""),
                                           formats, fresh=True, use_cache=True, **options)
            assert summary["runs"] == args.runs and summary["reused"] == 0, summary
            times.append(seconds)
        rates[name] = args.runs / statistics.median(times)
        print(f"{name:<22} {rates[name]:8.2f} runs/s  (median of {len(times)}: "
              f"{', '.join(f'{t:.1f}' for t in times)} s)  {summary['totals']}", flush=True)
    incremental_out = args.dir / "out" / "--jobs_2"
    times = []
    for _ in range(args.repeat):
        seconds, summary = timed_sweep(root, incremental_out, formats, fresh=False, jobs=2)
        assert summary["reused"] == args.runs, summary  # the second pass re-analyses none
        times.append(seconds)
    rates["incremental"] = args.runs / statistics.median(times)
    print(f"{'incremental 2nd pass':<22} {rates['incremental']:8.2f} runs/s  (median of {len(times)}: "
          f"{', '.join(f'{t:.2f}' for t in times)} s)  all {summary['reused']} reused", flush=True)
    print("ratios:")
    if "--jobs 1" in rates:
        print(f"  --jobs 2 / --jobs 1            {rates['--jobs 2'] / rates['--jobs 1']:.2f}x")
        print(f"  dask 2 workers / --jobs 1      {rates['dask, 2 workers'] / rates['--jobs 1']:.2f}x")
    print(f"  dask 2 workers / --jobs 2      {rates['dask, 2 workers'] / rates['--jobs 2']:.2f}x")
    print(f"  incremental / --jobs 2         {rates['incremental'] / rates['--jobs 2']:.1f}x")
    print(f"load average after: {', '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
