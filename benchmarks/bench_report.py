"""Benchmark: size and load time of the HTML report of a 1,000,000-step run (budget: < 1.5 MB, < 2 s).

    python benchmarks/bench_report.py [--steps N] [--keep DIR]

Writes a run of N optimizer steps (two event files: a process that crashes at 60% and a resumed one,
each with train/lr (OneCycle), train/loss (noisy, with spikes and a NaN tail) and train/grad_norm),
plus two real torch checkpoints, analyses it, renders the HTML report, and opens it in headless
Chromium (/usr/bin/chromium + /usr/bin/chromedriver via selenium) to time the load. Prints the
numbers. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import pathlib
import struct
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SIZE_BUDGET = 1_500_000
LOAD_BUDGET = 2.0


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def write_scalars(path: pathlib.Path, steps: np.ndarray, series: dict[str, np.ndarray], wall_start: float) -> None:
    """An event file in SummaryWriter's add_scalar layout: a file_version record, then one record per value."""
    import crc32c
    from tensorboard.compat.proto import event_pb2

    from forensics.ingest.tfrecord import encode_frame, mask_crc

    tails = {}
    for tag in series:
        value_field = b"\x0a" + bytes([len(tag)]) + tag.encode() + b"\x15"
        tails[tag] = b"\x2a" + bytes([len(value_field) + 6, 0x0a, len(value_field) + 4]) + value_field
    pack_double, pack_float, pack_length = struct.Struct("<d").pack, struct.Struct("<f").pack, struct.Struct("<Q").pack
    headers: dict[int, bytes] = {}
    version = event_pb2.Event(wall_time=wall_start, file_version="brain.Event:2").SerializeToString()
    with open(path, "wb") as stream:
        frames = [encode_frame(version)]
        for index, step in enumerate(steps.tolist()):
            wall = pack_double(wall_start + index * 0.05)
            step_field = b"\x10" + _varint(step) if step else b""
            for tag, values in series.items():
                payload = b"\x09" + wall + step_field + tails[tag] + pack_float(values[index])
                header = headers.get(len(payload))
                if header is None:
                    length = pack_length(len(payload))
                    header = headers[len(payload)] = length + struct.pack("<I", mask_crc(crc32c.crc32c(length)))
                frames.append(header + payload + struct.pack("<I", mask_crc(crc32c.crc32c(payload))))
            if len(frames) >= 200_000:
                stream.write(b"".join(frames))
                frames = []
        stream.write(b"".join(frames))


def write_run(root: pathlib.Path, total: int) -> None:
    """Two process lifetimes (crash at 60%, resume from the last checkpoint) and two checkpoints."""
    import torch

    rng = np.random.default_rng(0)
    steps = np.arange(total)
    progress = steps / total
    lr = np.where(progress < 0.3, 4e-4 + (1e-2 - 4e-4) * progress / 0.3,
                  1e-2 * (0.5 + 0.5 * np.cos(np.pi * (progress - 0.3) / 0.7)) + 1e-7)
    loss = 2.5 * np.exp(-3 * progress) + 0.2 + rng.normal(0, 0.05, total)
    spikes = rng.choice(total, 30, replace=False)
    loss[spikes] += rng.uniform(2, 6, 30)
    loss[int(total * 0.97):] = np.nan  # divergence at the end
    grad_norm = np.abs(rng.normal(1.0, 0.2, total)) + 0.05 * loss
    crash, resume = int(total * 0.6), int(total * 0.55)  # resumed from an earlier checkpoint: rewinds
    (root / "tb").mkdir(parents=True)
    first = slice(0, crash)
    second = slice(resume, total)
    for index, (part, wall) in enumerate(((first, 1.7e9), (second, 1.7e9 + crash * 0.05 + 600))):
        write_scalars(root / "tb" / f"events.out.tfevents.{int(wall)}.bench.{100 + index}.0", steps[part],
                      {"train/lr": lr[part], "train/loss": loss[part], "train/grad_norm": grad_norm[part]}, wall)
    model = torch.nn.Linear(8, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=total)
    (root / "checkpoints").mkdir()
    for step in (resume, int(total * 0.9)):
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": {**scheduler.state_dict(), "last_epoch": step}, "global_step": step, "epoch": step // 1000}
        torch.save(state, root / "checkpoints" / f"ckpt_step_{step}.pt")


def browser_load_seconds(report: pathlib.Path) -> tuple[float, float]:
    """(navigation start to load event end, wall time until every chart is interactive) in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chromium-')}", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get("about:blank")
        started = time.perf_counter()
        driver.get(report.as_uri())  # returns after the load event
        while driver.execute_script("return document.querySelectorAll('figure.chart:not(.enhanced)').length"):
            time.sleep(0.01)
        interactive = time.perf_counter() - started
        load_end = driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
        return load_end / 1000, interactive
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keep", type=pathlib.Path, help="write the run and report here instead of a temp dir")
    args = parser.parse_args()

    from forensics.analyze import analyze
    from forensics.render import render_html

    work = args.keep or pathlib.Path(tempfile.mkdtemp(prefix="bench-report-"))
    run_dir = work / f"run_{args.steps}"
    started = time.perf_counter()
    write_run(run_dir, args.steps)
    print(f"wrote a {args.steps:,}-step run in {time.perf_counter() - started:.1f} s: {run_dir}")
    started = time.perf_counter()
    report = analyze(run_dir)
    analysed = time.perf_counter() - started
    started = time.perf_counter()
    html = render_html(report)
    rendered = time.perf_counter() - started
    target = work / "report.html"
    target.write_text(html, encoding="utf-8")
    size = target.stat().st_size
    load, interactive = browser_load_seconds(target)
    print(f"analyse {analysed:.2f} s, render {rendered:.2f} s")
    print(f"report size   {size:,} bytes   (budget {SIZE_BUDGET:,})   {'OK' if size < SIZE_BUDGET else 'OVER'}")
    print(f"load event    {load:.3f} s       (budget {LOAD_BUDGET} s)   {'OK' if load < LOAD_BUDGET else 'OVER'}")
    print(f"charts ready  {interactive:.3f} s       (budget {LOAD_BUDGET} s)   {'OK' if interactive < LOAD_BUDGET else 'OVER'}")
    print(f"findings: {', '.join(f.code for f in report.findings) or 'none'}; segments: {len(report.segments)}; "
          f"report: {target}")
    return 0 if size < SIZE_BUDGET and load < LOAD_BUDGET and interactive < LOAD_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
