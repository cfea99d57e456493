"""Benchmark: `forensics analyze` of a whole 1,000,000-step run, end to end, against references.

    python benchmarks/bench_end_to_end.py [--steps 1000000 100000] [--repeats 3] [--dir DIR]

Generates, for each length N (default 1,000,000 and 100,000 steps), one run: an event file of
4 x N scalars in torch SummaryWriter's byte layout (plus a file_version and a few records only
protobuf decodes), an HF Trainer dict log of ~N lines and a Megatron-LM log of N + 600 lines
(the writers of benchmarks/bench_logs.py). Then times, each as a whole process (`forensics
analyze RUN -o report.html -q`, wall clock and the child's own peak RSS from wait4), medians of
R runs interleaved with the references measured in the same run:

- the bare frame walk of the run's event file (read the file, follow the length fields, no CRC,
  no decoding: the floor for anything that reads every record);
- `forensics.read_scalars`, tbparse's `SummaryReader(...).scalars`, tensorboard's
  `EventAccumulator` (all scalars kept) and its `EventFileLoader` on the event file of the
  shortest run (the slow ones would take minutes on the long one).

Prints each figure, the ratios and whether the targets hold: the longest run end to end in
<= 10x its frame walk and <= 1 GiB peak RSS, cost linear in the run's length. Not collected
by pytest (benchmarks stay out of CI).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = pathlib.Path(__file__).resolve().parent
for entry in (REPO, BENCHMARKS):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

TARGET_FRAME_WALK_RATIO = 10.0
TARGET_PEAK_RSS_MB = 1024.0
EVENT_NAME = "events.out.tfevents.1700000000.bench.4242.0"
PARTS = {"events": "tb/" + EVENT_NAME, "hf": "hf_trainer.log", "megatron": "megatron.log"}


# ------------------------------------------------------------------ the run


def write_event_file(path: pathlib.Path, steps: int) -> None:
    """4 scalars per step, one record each, as SummaryWriter.add_scalar writes them, plus a few others."""
    from bench_event_reader import _unusual_records
    from bench_report import write_scalars

    from forensics.ingest.tfrecord import encode_frame

    rng = np.random.default_rng(steps)
    step = np.arange(1, steps + 1)
    progress = step / steps
    # the Megatron log's schedule: 2,000 warm-up steps, then linear decay to 10%
    lr = 3e-4 * np.minimum(1.0, step / 2000) * (0.1 + 0.9 * (1 - progress))
    loss = 11.0 * np.exp(-step / 50_000) + 2.0 + rng.normal(0, 0.02, steps)
    grad_norm = 0.8 + np.abs(rng.normal(0, 0.3, steps))
    throughput = 250 + rng.normal(0, 5, steps)
    write_scalars(path, step, {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                               "train/samples_per_sec": throughput}, 1.7e9)
    with open(path, "ab") as stream:  # records only protobuf decodes: a histogram, a tensor, ...
        stream.write(b"".join(encode_frame(record) for record in _unusual_records()))


def write_run(root: pathlib.Path, steps: int) -> dict[str, pathlib.Path]:
    """The run of `steps` steps under root/run, and one run dir per part holding only that part."""
    from bench_logs import write_hf_log, write_megatron_log

    whole = root / "run"
    writers = {"events": write_event_file, "hf": write_hf_log, "megatron": write_megatron_log}
    for part, relative in PARTS.items():
        target = whole / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            writers[part](target.with_suffix(".tmp"), steps)
            target.with_suffix(".tmp").rename(target)
            print(f"  wrote {relative} for {steps:,} steps ({target.stat().st_size / 1e6:.0f} MB) "
                  f"in {time.perf_counter() - started:.0f} s", flush=True)
        alone = root / part / relative
        if not alone.exists():  # a hard link: the part alone, without a second copy on disk
            alone.parent.mkdir(parents=True, exist_ok=True)
            os.link(target, alone)
    return {"run": whole, **{part: root / part for part in PARTS}}


# ------------------------------------------------------------------ measuring a whole process

_REFERENCES = {
    "frame_walk": """
        import struct, sys
        unpack, count, pos = struct.Struct("<Q").unpack_from, 0, 0
        data = open(sys.argv[1], "rb").read()
        while pos + 16 <= len(data):
            pos += unpack(data, pos)[0] + 16
            count += 1
    """,
    "read_scalars": """
        import sys, forensics
        frame = forensics.read_scalars(sys.argv[1])
    """,
    "tbparse": """
        import sys
        from tbparse import SummaryReader
        frame = SummaryReader(sys.argv[1]).scalars
    """,
    "EventAccumulator": """
        import sys
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
        accumulator.Reload()
        count = sum(len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"])
    """,
    "EventFileLoader": """
        import sys
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        count = sum(1 for event in EventFileLoader(sys.argv[1]).Load() for value in event.summary.value)
    """,
}


def run_process(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one whole child process; its own peak, from wait4."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        error = child.stderr.read().decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(command)} failed: {error[-1] if error else child.returncode}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def analyze_command(run_dir: pathlib.Path, report: pathlib.Path) -> list[str]:
    return [str(pathlib.Path(sys.executable).with_name("forensics")), "analyze", str(run_dir),
            "-o", str(report), "-q"]


def reference_command(name: str, path: pathlib.Path) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(_REFERENCES[name]), str(path)]


def median_of(command: list[str], repeats: int) -> dict:
    runs = [run_process(command) for _ in range(repeats)]
    return {"seconds": statistics.median(s for s, _ in runs), "peak_mb": statistics.median(m for _, m in runs),
            "all": [round(s, 2) for s, _ in runs]}


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=pathlib.Path, help="keep the generated runs here (reused next time)")
    parser.add_argument("--only", choices=["run", *PARTS], action="append",
                        help="analyse only these scenarios (default: the whole run and each part alone)")
    parser.add_argument("--no-references", action="store_true", help="skip tbparse, EventAccumulator, ...")
    args = parser.parse_args()
    work = args.dir or pathlib.Path(tempfile.mkdtemp(prefix="bench-end-to-end-"))
    reports = pathlib.Path(tempfile.mkdtemp(prefix="bench-end-to-end-reports-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"runs in {work}", flush=True)
    try:
        runs = {steps: write_run(work / f"steps_{steps}", steps) for steps in sorted(args.steps)}
        results = measure_all(runs, args, reports)
    finally:
        shutil.rmtree(reports, ignore_errors=True)
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return print_results(results, runs)


def measure_all(runs: dict[int, dict[str, pathlib.Path]], args, reports: pathlib.Path) -> dict:
    scenarios = args.only or ["run", *PARTS]
    shortest = min(runs)
    references = ["frame_walk", "read_scalars"]
    slow = [] if args.no_references else ["tbparse", "EventAccumulator", "EventFileLoader"]
    if "tbparse" in slow:
        try:
            import tbparse  # noqa: F401
        except ImportError:
            print("tbparse not importable: skipped (pip install tbparse)")
            slow.remove("tbparse")
    results: dict = {}
    for steps, dirs in sorted(runs.items(), reverse=True):
        event_file = dirs["run"] / PARTS["events"]
        for repeat in range(args.repeats):  # interleaved: a burst of load from elsewhere hits all alike
            plan = [(f"analyze {name}", analyze_command(dirs[name], reports / f"{name}.html")) for name in scenarios]
            plan += [(name, reference_command(name, event_file)) for name in references]
            if steps == shortest:
                plan += [(name, reference_command(name, event_file)) for name in slow if repeat == 0]
            for label, command in plan:
                seconds, peak = run_process(command)
                results.setdefault((steps, label), []).append((seconds, peak))
                print(f"  {steps:>9,} steps  {label:<20} {seconds:7.2f} s {peak:7.0f} MB", flush=True)
    return results


def print_results(results: dict, runs: dict) -> int:
    def median(steps, label, index=0):
        values = [run[index] for run in results.get((steps, label), [])]
        return statistics.median(values) if values else None

    longest, shortest = max(runs), min(runs)
    print(f"\n{'steps':>10} {'what':<22} {'runs':>4} {'median s':>9} {'x walk':>7} {'peak RSS MB':>12}")
    for (steps, label), values in sorted(results.items(), key=lambda item: (-item[0][0], item[0][1])):
        walk = median(steps, "frame_walk")
        seconds = median(steps, label)
        ratio = f"{seconds / walk:7.1f}" if walk else f"{'':>7}"
        print(f"{steps:>10,} {label:<22} {len(values):>4} {seconds:>9.2f} {ratio} {median(steps, label, 1):>12.0f}")
    failed = 0
    whole = median(longest, "analyze run")
    if whole is not None:
        walk, peak = median(longest, "frame_walk"), median(longest, "analyze run", 1)
        ok_ratio, ok_rss = whole / walk <= TARGET_FRAME_WALK_RATIO, peak <= TARGET_PEAK_RSS_MB
        print(f"\ntarget: {longest:,}-step run end to end <= {TARGET_FRAME_WALK_RATIO:.0f}x its frame walk: "
              f"{whole:.2f} s / {walk:.2f} s = {whole / walk:.1f}x  {'met' if ok_ratio else 'NOT MET'}")
        print(f"target: peak RSS <= {TARGET_PEAK_RSS_MB:.0f} MB: {peak:.0f} MB  {'met' if ok_rss else 'NOT MET'}")
        failed += (not ok_ratio) + (not ok_rss)
        small = median(shortest, "analyze run")
        if small is not None and shortest < longest:
            factor = longest / shortest
            grows = whole / small
            # Fixed costs (interpreter, imports, the report's template) make a short run relatively
            # dear, so linear means growing by at most the length factor, not exactly by it.
            ok_linear = grows <= factor * 1.1
            print(f"target: cost linear in length: {longest:,} vs {shortest:,} steps ({factor:.0f}x longer) "
                  f"costs {grows:.1f}x  {'met' if ok_linear else 'NOT MET'}")
            failed += not ok_linear
    tbparse, ours = median(shortest, "tbparse"), median(shortest, "read_scalars")
    if tbparse and ours:
        print(f"read_scalars vs tbparse on the {shortest:,}-step event file: {ours:.2f} s vs {tbparse:.2f} s "
              f"({tbparse / ours:.0f}x faster)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
