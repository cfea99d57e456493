"""Benchmark: the log reader against a bare Python loop that only reads the lines.

    python benchmarks/bench_logs.py [--lines N] [--repeats R] [--dir /tmp/forensics-bench-logs]

Writes three stdout logs in the layouts the tools print (see `write_hf_log`, `write_megatron_log`,
`write_key_value_log`), then times, each in a fresh subprocess, `read_log` on the file and a bare
`for line in f: pass` over the same file, and prints lines/s, the ratio reader/bare loop and each
process's peak RSS, medians of R runs, after a header with the date, load average, commit and
whether the C scanner is built (the figures docs/performance.md quotes). Issue 11's target is
1,000,000 lines/s per format; a format below it is marked. Not collected by pytest (benchmarks
stay out of CI).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
TARGET_LINES_PER_S = 1_000_000

# transformers' Trainer._inner_training_loop banner, as it prints it (numbers with `:,`).
HF_BANNER = """***** Running training *****
  Num examples = {examples:,}
  Num Epochs = {epochs:,}
  Instantaneous batch size per device = 8
  Total train batch size (w. parallel, distributed & accumulation) = 64
  Gradient Accumulation steps = 8
  Total optimization steps = {steps:,}
  Number of trainable parameters = 124,439,808
"""
MEGATRON_RULE = "-" * 95


def write_hf_log(path: pathlib.Path, lines: int) -> None:
    """HF Trainer's `Trainer.log` dicts, one per optimizer step, after its start-up banner.

    The dict is what transformers 4.4x prints with `logging_steps=1`: the loss rounded to 4 digits,
    grad_norm and learning_rate as full float reprs, the epoch rounded to 2 digits... every
    `logging_steps` (here 1); an eval dict every 10,000 steps.
    """
    epochs = 2
    with open(path, "w") as handle:
        handle.write(HF_BANNER.format(examples=lines * 32, epochs=epochs, steps=lines))
        for step in range(1, lines - 8):
            progress = step / lines
            loss = 2.5 * math.exp(-3 * progress) + 0.1 * math.sin(step)
            lr = 2e-05 * (1 - progress)
            grad_norm = 0.5 + abs(math.cos(step * 0.37)) * 1.7
            handle.write(f"{{'loss': {round(loss, 4)}, 'grad_norm': {grad_norm}, 'learning_rate': {lr}, "
                         f"'epoch': {round(epochs * progress, 2)}}}\n")
            if step % 10_000 == 0:
                handle.write(f"{{'eval_loss': {loss * 1.1}, 'eval_runtime': 12.3456, 'eval_samples_per_second': "
                             f"81.002, 'eval_steps_per_second': 10.125, 'epoch': {round(epochs * progress, 2)}}}\n")


def megatron_line(iteration: int, total: int, batch: int) -> str:
    """One line of Megatron-LM's `training_log` (megatron/training/training.py), with its padding."""
    loss = 11.0 * math.exp(-iteration / 50_000) + 2.0 + 0.01 * math.sin(iteration)
    lr = 3e-4 * min(1.0, iteration / 2000) * (0.1 + 0.9 * (1 - iteration / total))
    return (f" iteration {iteration:8d}/{total:8d} | consumed samples: {iteration * batch:12d} | "
            f"elapsed time per iteration (ms): {4200 + 50 * math.sin(iteration):.1f} | "
            f"throughput per GPU (TFLOP/s/GPU): {180 + 5 * math.cos(iteration):.1f} | "
            f"learning rate: {lr:.6E} | global batch size: {batch:5d} | lm loss: {loss:.6E} | "
            f"loss scale: 1.0 | grad norm: {0.8 + abs(math.sin(iteration * 0.1)):.3f} | "
            f"number of skipped iterations: {0:3d} | number of nan iterations: {0:3d} |\n")


def write_megatron_log(path: pathlib.Path, iterations: int) -> None:
    """Megatron-LM's training lines, one per iteration, and its validation block every 5,000."""
    with open(path, "w") as handle:
        for iteration in range(1, iterations + 1):
            handle.write(megatron_line(iteration, iterations, 256))
            if iteration % 5_000 == 0:
                loss = 11.0 * math.exp(-iteration / 50_000) + 2.1
                handle.write(f"{MEGATRON_RULE}\n validation loss at iteration {iteration} | lm loss value: {loss:.6E} | "
                             f"lm loss PPL: {math.exp(loss):.6E} | \n{MEGATRON_RULE}\n")


def write_key_value_log(path: pathlib.Path, lines: int) -> None:
    """A hand-written loop's `print(f"epoch {e} step {s}/{n} loss {l:.4f} lr {lr:.3e} grad_norm {g:.2f}")`."""
    per_epoch = 10_000
    with open(path, "w") as handle:
        for step in range(lines):
            loss = 2.3 * math.exp(-step / 200_000) + 0.2 + 0.01 * math.sin(step)
            lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / lines))
            handle.write(f"epoch {step // per_epoch} step {step}/{lines} loss {loss:.4f} lr {lr:.3e} "
                         f"grad_norm {0.3 + abs(math.sin(step * 0.01)):.2f}\n")


_READER = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path

    def status_kb(field):
        try:
            text = Path("/proc/self/status").read_text()
            return int(next(line.split()[1] for line in text.splitlines() if line.startswith(field)))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "reader":
        from forensics.ingest.discovery import FoundFile
        from forensics.ingest.logs.reader import read_log
    before_kb = status_kb("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "reader":
        read = read_log(FoundFile(path, path.name, "log", path.stat().st_size, 0.0))
        lines, values = read.coverage["lines"], read.records
    else:  # the reference: a bare loop that only reads the lines
        lines, values = 0, 0
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({"seconds": seconds, "cpu": cpu, "lines": lines, "values": values,
                      "peak_rss_mb": status_kb("VmHWM") / 1024, "growth_mb": (status_kb("VmHWM") - before_kb) / 1024}))
""")


def _measure(path: pathlib.Path, mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _READER, str(path), mode], capture_output=True, text=True,
                            cwd=REPO, check=True)
    return json.loads(result.stdout)


def _header() -> str:
    """When, on what load and at which commit the figures were measured."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    one, five, fifteen = os.getloadavg()
    scanner = "built" if importlib.util.find_spec("forensics.ingest.logs._scan") else "NOT built (per-line path)"
    return (f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} | load average {one:.2f} {five:.2f} "
            f"{fifteen:.2f} on {os.cpu_count()} CPUs | commit {commit.strip() or '?'} | C scanner {scanner}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=pathlib.Path, default=pathlib.Path("/tmp/forensics-bench-logs"))
    parser.add_argument("--only", choices=("hf", "megatron", "key_value"), action="append")
    options = parser.parse_args()
    options.dir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))  # find_spec of the scanner as the reader's subprocess sees it
    print(_header())
    scenarios = {"hf": ("hf_trainer.log", write_hf_log), "megatron": ("megatron.log", write_megatron_log),
                 "key_value": ("key_value.log", write_key_value_log)}
    print(f"{'log':<10} {'lines':>10} {'MB':>5} {'values':>11} | {'reader s':>8} {'cpu s':>6} {'lines/s':>10} | "
          f"{'bare s':>6} {'lines/s':>10} | {'ratio':>5} | {'peak RSS MB':>11} {'growth MB':>9} {'bare RSS':>8} | target")
    for name in options.only or scenarios:
        file_name, write = scenarios[name]
        path = options.dir / f"{options.lines}-{file_name}"
        if not path.exists():
            write(path.with_suffix(".tmp"), options.lines)
            path.with_suffix(".tmp").rename(path)
        reader, bare = [], []
        for _ in range(options.repeats):  # interleaved, so a burst of load hits both alike
            reader.append(_measure(path, "reader"))
            bare.append(_measure(path, "bare"))

        def median(runs, key):
            return statistics.median(run[key] for run in runs)
        lines, reader_s, bare_s = reader[0]["lines"], median(reader, "seconds"), median(bare, "seconds")
        print(f"{name:<10} {lines:>10,} {path.stat().st_size / 1e6:>5.0f} {reader[0]['values']:>11,} | "
              f"{reader_s:>8.2f} {median(reader, 'cpu'):>6.2f} {lines / reader_s:>10,.0f} | "
              f"{bare_s:>6.2f} {lines / bare_s:>10,.0f} | {reader_s / bare_s:>5.1f} | "
              f"{median(reader, 'peak_rss_mb'):>11.0f} {median(reader, 'growth_mb'):>9.0f} "
              f"{median(bare, 'peak_rss_mb'):>8.0f} | "
              f"{'ok' if lines / reader_s >= TARGET_LINES_PER_S else 'BELOW 1M lines/s'}")
    print(f"medians of {options.repeats} run(s); ratio = reader seconds / bare-loop seconds")


if __name__ == "__main__":
    main()
