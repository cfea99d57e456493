"""Wall times from log line timestamps: each format, inheritance, and the segments they give."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from forensics.analyze import analyze
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.reader import read_log
from forensics.ingest.logs.timestamps import NO_ZONE, YEARLESS_BASE, LineClock

from conftest import real_runs_root


def _naive(text: str) -> float:
    """A printed zone-less time as the reader keeps it: the printed fields, read as if UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _read(path: Path):
    return read_log(FoundFile(path, path.name, "log", path.stat().st_size, 0.0))


def _series(read, tag):
    return next(series for series in read.series if series.tag == tag)


@pytest.mark.parametrize(("line", "expected"), [
    # Python logging's default asctime; mmdet 2.x (issue_mmdet_8654_resume/train.log)
    ("2022-08-29 23:03:22,363 - mmdet - INFO - Epoch [20][450/643]\tlr: 9.833e-03", "2022-08-29 23:03:22.363"),
    # nanoGPT fork (issue_nanogpt_215_fp16_nan/train.log)
    ("2023-03-22 09:30:39 iter 2920: loss 3.9883, time 1099.34ms, mfu 15.34%", "2023-03-22 09:30:39"),
    ("2020-07-17 04:08:14 | INFO | train_inner | {\"epoch\": 1}", "2020-07-17 04:08:14"),  # fairseq
    ("[2024-05-01 12:34:56] step 10 loss 0.5", "2024-05-01 12:34:56"),
    ("[2024-05-01 12:34:56,789][__main__][INFO] - step 10", "2024-05-01 12:34:56.789"),  # Hydra
    ("2023/05/01 12:34:56 - mmengine - INFO - Epoch(train) [1][10/90]", "2023-05-01 12:34:56"),
    ("05/01/2024 12:34:56 - INFO - transformers.trainer - ***** Running training *****", "2024-05-01 12:34:56"),
    ("2024-05-01T12:34:56.250 step 3", "2024-05-01 12:34:56.250"),
])
def test_each_dated_prefix_gives_the_printed_time(line, expected):
    assert LineClock().read_prefix(line) == pytest.approx(_naive(expected))


def test_a_printed_zone_is_applied():
    assert LineClock().read_prefix("2024-05-01T12:34:56+02:00 step 1") == _naive("2024-05-01 10:34:56")
    assert LineClock().read_prefix("2024-05-01T12:34:56Z step 1") == _naive("2024-05-01 12:34:56")


def test_yearless_prefixes_keep_one_arbitrary_year_and_cross_new_year():
    clock = LineClock()
    absl = clock.read_prefix("I0501 12:34:56.789012 140 train.py:10] loss 0.5")
    assert absl == pytest.approx(_naive(f"{YEARLESS_BASE}-05-01 12:34:56.789012"))
    assert clock.read_prefix("W1231 23:59:00.000000 140 train.py:10] slow") == pytest.approx(
        _naive(f"{YEARLESS_BASE}-12-31 23:59:00"))
    # mmengine's short form; after December comes the next January, not the same year's
    assert clock.read_prefix("01/01 00:01:00 - mmengine - INFO - Iter(train) [10/90]") == pytest.approx(
        _naive(f"{YEARLESS_BASE}-12-31 23:59:00") + 120)


@pytest.mark.parametrize("line", ["2024 steps done", "13/45/2024 12:00:00 x", "100 loss 0.5", "[rank0]: x",
                                  "Epoch 1 loss 0.3", "2024-02-30 12:00:00 not a date"])
def test_lines_without_a_valid_timestamp_give_none(line):
    assert LineClock().read_prefix(line) is None


def test_real_mmdet_log_carries_its_times():
    path = real_runs_root() / "issue_mmdet_8654_resume" / "train.log"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    read = _read(path)
    loss = _series(read, "loss")
    assert loss.wall_times[0] == pytest.approx(_naive("2022-08-29 23:03:22.363"))
    assert loss.wall_times[-1] == pytest.approx(_naive("2022-08-30 01:22:31.055"))
    assert NO_ZONE in read.detail and read.coverage["wall_times"] == NO_ZONE


def test_python_logging_lines_time_their_values_and_untimed_lines_inherit(tmp_path):
    path = tmp_path / "train.log"
    logger = logging.getLogger("forensics-test-train")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("Starting training: model=MLP")
        logger.info("step 1 loss 0.9 lr 1e-3")
    finally:
        logger.removeHandler(handler)
        handler.close()
    with open(path, "a") as handle:
        handle.write("step 2 loss 0.8 lr 1e-3\n")  # a bare print(): no timestamp of its own
    stamp = path.read_text().splitlines()[1].split(" - ")[0]
    loss = _series(_read(path), "loss")
    expected = _naive(stamp.replace(",", "."))
    assert loss.wall_times.tolist() == pytest.approx([expected, expected])


def test_no_time_is_inherited_across_a_restart_banner(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("Starting training: seed=0\n"
                    "2024-05-01 10:00:00,000 - INFO - step 1 loss 0.9\n"
                    "step 2 loss 0.8\n"
                    "Starting training: seed=0\n"
                    "step 3 loss 0.7\n"
                    "2024-05-01 16:00:00,000 - INFO - step 4 loss 0.6\n")
    wall_times = _series(_read(path), "loss").wall_times
    first = _naive("2024-05-01 10:00:00")
    assert wall_times[:2].tolist() == [first, first]
    assert np.isnan(wall_times[2]) and wall_times[3] == first + 6 * 3600


def test_json_lines_take_epoch_seconds_but_not_seconds_per_iteration(tmp_path):
    path = tmp_path / "metrics.log"
    path.write_text('{"loss": 0.9, "_step": 1, "_timestamp": 1714566896.5}\n'
                    '{"loss": 0.8, "step": 2, "time": 0.4306}\n')
    read = _read(path)
    assert _series(read, "loss").wall_times.tolist() == [1714566896.5, 1714566896.5]
    assert _series(read, "time").values.tolist() == [0.4306]


def _timed_log(lines_per_step: dict[int, str]) -> str:
    return "".join(f"{stamp} - INFO - step {step} loss {1.0 / (step + 1):.4f} lr 1e-3\n"
                   for step, stamp in lines_per_step.items())


def _stamps(start: datetime, steps, seconds_per_step: float, pause_at: int | None = None, pause: float = 0.0):
    stamps, moment = {}, start.timestamp()
    for step in steps:
        moment += seconds_per_step + (pause if step == pause_at else 0.0)
        stamps[step] = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S,000")
    return stamps


START = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


def test_log_only_run_with_a_six_hour_silence_has_a_gap(tmp_path):
    (tmp_path / "train.log").write_text(_timed_log(_stamps(START, range(200), 2.0, pause_at=120, pause=6 * 3600)))
    segments = analyze(tmp_path).segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [("start", 0, 119), ("gap", 120, 199)]
    assert "nothing logged for 21602 s" in segments[1].reason


def test_timed_log_restart_banner_is_still_a_restart(tmp_path):
    first = _timed_log(_stamps(START, range(100, 111), 2.0))
    second = _timed_log(_stamps(datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc), range(120, 131), 2.0))
    banner = "Starting training: model=MLP epochs=8 seed=0\n"
    (tmp_path / "train.log").write_text(banner + first + banner + "Resuming from ckpt_epoch_4.pt (global_step 120)\n"
                                        + second)
    segments = analyze(tmp_path).segments
    assert [(s.kind, s.start_step, s.end_step) for s in segments] == [("start", 100, 110), ("restart", 120, 130)]
    assert "train.log line 13" in segments[1].reason and segments[1].start_wall_time is not None


def _event_file(folder: Path, steps, start: datetime, seconds_per_step: float) -> None:
    writer = SummaryWriter(log_dir=str(folder))
    for step in steps:
        writer.add_scalar("train/loss", 1.0 / (step + 1), step, walltime=start.timestamp() + seconds_per_step * (step + 1))
    writer.close()


def test_log_on_local_time_is_aligned_with_utc_event_files(tmp_path):
    """The log's machine is on UTC+2: unaligned, its times would sit two hours after the event files'."""
    _event_file(tmp_path / "tb", range(200), START, 2.0)
    local = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)  # 08:00 UTC printed as 10:00 local
    (tmp_path / "train.log").write_text(_timed_log(_stamps(local, range(200), 2.0)))
    report = analyze(tmp_path)
    assert [s.kind for s in report.segments] == ["start"]
    (log,) = [source for source in report.sources if source.path == "train.log"]
    assert "shifted by -7200 s" in log.detail


def test_log_sharing_no_step_with_event_files_is_kept_out_of_gap_detection(tmp_path):
    _event_file(tmp_path / "tb", range(100), START, 2.0)
    later = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)
    (tmp_path / "train.log").write_text(_timed_log(_stamps(later, range(1000, 1100), 2.0)))
    report = analyze(tmp_path)
    assert [s.kind for s in report.segments] == ["start"]
    (log,) = [source for source in report.sources if source.path == "train.log"]
    assert "log wall times not used (no step logged in both" in log.detail
