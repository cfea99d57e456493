"""The log reader: streaming with bounded memory, bad bytes, long lines, ranks, events, step bases."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.lines import MAX_LINE_ENV
from forensics.ingest.logs.reader import read_log

from conftest import REPO


def _found(path: Path) -> FoundFile:
    return FoundFile(path, path.name, "log", path.stat().st_size, 0.0)


def _series(read, tag):
    return next(series for series in read.series if series.tag == tag)


def test_binary_file_named_log_is_reported_and_skipped(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"\x00\x01\x02PK\x03\x04" * 2000)
    read = read_log(_found(path))
    assert read.status == "failed" and read.series == []
    (problem,) = read.problems
    assert problem.code == "binary_log" and "train.log" in problem.message and "binary" in problem.message


def test_non_utf8_log_is_read_with_escapes_and_a_warning(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes("step 1 loss 0.5 lr 1e-3\nstep 2 loss 0.4 lr 1e-3 caf\xe9\n".encode("latin-1"))
    read = read_log(_found(path))
    assert _series(read, "loss").values.tolist() == [0.5, 0.4]
    (problem,) = read.problems
    assert problem.code == "log_not_utf8" and problem.severity == "warning" and "line 2" in problem.message
    assert problem.path == "train.log"


def test_a_10_mb_line_without_newline_is_skipped_with_file_size_and_limit(tmp_path, monkeypatch):
    path = tmp_path / "train.log"
    with open(path, "wb") as handle:
        handle.write(b"step 1 loss 0.5\n")
        handle.write(b"x" * (10 * 1024 * 1024))
    read = read_log(_found(path))
    assert _series(read, "loss").values.tolist() == [0.5]
    (problem,) = read.problems
    assert problem.code == "log_line_too_long" and problem.locator == "line 2"
    assert "10,485,760 bytes" in problem.message and "1,048,576-byte" in problem.message
    assert MAX_LINE_ENV in problem.message
    monkeypatch.setenv(MAX_LINE_ENV, str(20 * 1024 * 1024))
    assert read_log(_found(path)).problems == []


def test_tqdm_redraws_on_one_physical_line_are_each_read(tmp_path):
    path = tmp_path / "train.log"
    redraws = "".join(f"\r  {n}%|##        | {n}/391 [00:0{n}<01:40,  3.77it/s, loss=0.{700 - n}, lr=1.20e-04]"
                      for n in range(1, 6))
    path.write_text(redraws + "\n")
    read = read_log(_found(path))
    loss = _series(read, "loss")
    assert loss.steps.tolist() == [1, 2, 3, 4, 5] and loss.values.tolist() == [0.699, 0.698, 0.697, 0.696, 0.695]
    assert loss.records.tolist() == [1] * 5 and loss.step_basis == "tqdm progress counter n/391"


def test_ansi_colours_and_interleaved_rank_prefixes(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("[rank0]: \x1b[32mstep 1 loss 0.50\x1b[0m\n[rank1]: step 1 loss 0.60\n"
                    "[rank0]: step 2 loss 0.40\n[rank1]: step 2 loss nan\n")
    read = read_log(_found(path))
    assert {series.tag: series.values.tolist()[0] for series in read.series} == {"rank0/loss": 0.5, "rank1/loss": 0.6}
    assert _series(read, "rank1/loss").context == "rank1" and np.isnan(_series(read, "rank1/loss").values[1])


def test_events_resume_restart_traceback_oom_onecycle(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(textwrap.dedent("""\
        Starting training: epochs=3
        step 10 loss 0.5 lr 0.1
        Starting training: epochs=3
        Resuming from checkpoints/ckpt_epoch_5.pt (epoch 5, global_step 200)
        step 20 loss 0.4 lr 0.1
        Loss is nan, stopping training
        Traceback (most recent call last):
          File "train.py", line 308, in <module>
            scheduler.step()
        ValueError: Tried to step 60002 times. The specified number of total steps is 60000
        Traceback (most recent call last):
          File "train.py", line 12, in <module>
        torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
        """))
    read = read_log(_found(path))
    events = [(event.kind, event.line, event.step) for event in read.events]
    assert events == [("restart", 3, 10), ("resume", 4, 10), ("nan_reported", 6, 20), ("traceback", 7, 20),
                      ("onecycle_overrun", 10, 20), ("traceback", 11, 20), ("oom", 13, 20)]
    resume = read.events[1]
    assert resume.data == {"checkpoint": "checkpoints/ckpt_epoch_5.pt", "global_step": 200, "epoch": 5}
    assert read.events[3].data == {"exception": "ValueError"} and read.events[4].data == {"tried": 60002, "total": 60000}
    assert read.events[5].text.startswith("torch.OutOfMemoryError")


def test_coverage_counts_and_samples_unrecognised_metric_lines(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("step 1 loss 0.5\n\nwarming up the data loader\nmean-acc@top1 ~ 41.2 (weird)\n")
    coverage = read_log(_found(path)).coverage
    assert (coverage["lines"], coverage["blank"], coverage["recognised"], coverage["ignored"]) == (4, 1, 1, 2)
    assert coverage["formats"] == {"key_value": 1} and coverage["unrecognised_metric_like"] == 1
    assert coverage["unrecognised_samples"] == [{"line": 4, "text": "mean-acc@top1 ~ 41.2 (weird)"}]


def test_lines_without_steps_get_a_stated_basis(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("{'loss': 0.9, 'learning_rate': 1e-05, 'epoch': 0.01}\n{'loss': 0.8, 'learning_rate': 2e-05}\n"
                    "Epoch 1: Val 44.77%\n")
    read = read_log(_found(path))
    assert _series(read, "loss").steps.tolist() == [0, 1]
    assert _series(read, "loss").step_basis.startswith("position in file")
    assert "steps: " in read.detail


HF_BANNER = ("***** Running training *****\n  Num examples = 400\n  Num Epochs = 12\n"
             "  Instantaneous batch size per device = 16\n  Gradient Accumulation steps = 1\n"
             "  Total optimization steps = 300\n")


def test_hf_dicts_take_their_step_from_the_epoch_and_the_banner(tmp_path):
    """HF's own global_step: epoch 0.2 of 25 steps per epoch is step 5; the eval at epoch 1.0 is step 25."""
    path = tmp_path / "train.log"
    path.write_text(HF_BANNER + "{'loss': 0.6874, 'learning_rate': 3e-05, 'epoch': 0.2}\n"
                    "{'loss': 0.6892, 'learning_rate': 3e-05, 'epoch': 1.0}\n"
                    "{'eval_loss': 0.69, 'eval_accuracy': 0.5, 'epoch': 1.0}\n"
                    "{'loss': nan, 'learning_rate': 3e-05, 'epoch': 1.2}\n")
    read = read_log(_found(path))
    assert _series(read, "loss").steps.tolist() == [5, 25, 30]
    assert _series(read, "eval_loss").steps.tolist() == [25]
    assert _series(read, "loss").step_basis.startswith("epoch x 25 optimizer steps per epoch")
    assert read.coverage["ignored"] == 0  # the banner lines are recognised


def test_hf_banner_that_does_not_pin_the_steps_per_epoch_gives_no_epoch_axis(tmp_path):
    """max_steps=1000 with 300 steps per epoch: HF prints 4 epochs; 1000/4 = 250 disagrees with 400/16."""
    path = tmp_path / "train.log"
    path.write_text(HF_BANNER.replace("= 12", "= 4").replace("= 300", "= 1000").replace("= 400", "= 4800")
                    + "{'loss': 0.6874, 'learning_rate': 3e-05, 'epoch': 0.2}\n")
    assert _series(read_log(_found(path)), "loss").step_basis.startswith("position in file")


def test_a_million_line_log_streams_in_bounded_memory(tmp_path):
    """Read in a fresh interpreter so its peak RSS measures the read alone."""
    path = tmp_path / "big.log"
    with open(path, "w") as handle:
        for block in range(100_000):
            step = block * 10
            handle.write(f"epoch {step // 5000} step {step}/1000000 loss {0.7 - step * 1e-7:.4f} lr 1.000e-03\n")
            handle.write(f" 45%|####      | {block % 391}/391 [00:47<00:57,  3.72it/s]\n")
            handle.writelines(f"2024-01-01 12:00:00 INFO worker {i} fetched batch {step + i} in 0.0{i}s\n"
                              for i in range(8))
    script = textwrap.dedent(f"""
        import json, resource, sys, time
        from pathlib import Path
        from forensics.ingest.discovery import FoundFile
        from forensics.ingest.logs.reader import read_log
        def peak_kb():
            try:  # VmHWM: the peak resident size, which writing 5 to clear_refs resets (Linux)
                status = Path("/proc/self/status").read_text()
                return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
            except (OSError, StopIteration):
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        def current_kb():
            try:
                status = Path("/proc/self/status").read_text()
                return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            except (OSError, StopIteration):
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        path = Path({str(path)!r})
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        before = current_kb()
        started = time.perf_counter()
        read = read_log(FoundFile(path, "big.log", "log", path.stat().st_size, 0.0))
        seconds = time.perf_counter() - started
        after = peak_kb()
        print(json.dumps({{"seconds": seconds, "growth_kb": after - before, "lines": read.coverage["lines"],
                          "values": read.records}}))
    """)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    size_kb = path.stat().st_size / 1024
    print(f"1M-line log: {measured['lines'] / measured['seconds']:,.0f} lines/s, peak RSS growth "
          f"{measured['growth_kb'] / 1024:.1f} MB for a {size_kb / 1024:.0f} MB file "
          f"({time.perf_counter() - started:.1f} s with start-up)")
    assert measured["lines"] == 1_000_000 and measured["values"] == 200_000
    # 200,000 values cost a few MB of arrays; the 70 MB file itself is never held in memory
    assert measured["growth_kb"] < min(48 * 1024, size_kb / 2)
