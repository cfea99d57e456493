"""`forensics.read_scalars` / `read_log_scalars`: the readers as DataFrames, checked against tensorboard's own."""

from __future__ import annotations

import math
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import forensics
from tensorboard_files import (event_files, frame_starts, reference_scalars, scalar_event, tensor_run,  # noqa: F401
                               torch_run, write_frames)


def accumulator_rows(path: pathlib.Path) -> list[tuple]:
    """(tag, step, value repr, wall time) of every simple_value scalar, by tensorboard's EventAccumulator."""
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    accumulator.Reload()
    return [(tag, event.step, repr(float(event.value)), event.wall_time)
            for tag in accumulator.Tags()["scalars"] for event in accumulator.Scalars(tag)]


def frame_rows(frame: pd.DataFrame) -> list[tuple]:
    return [(str(tag), int(step), repr(float(value)), float(wall))
            for tag, step, value, wall in zip(frame.tag, frame.step, frame.value, frame.wall_time)]


def test_columns_and_dtypes(torch_run):
    frame = forensics.read_scalars(torch_run)
    assert list(frame.columns) == ["tag", "step", "value", "wall_time", "file"]
    assert [str(t) for t in frame.dtypes] == ["category", "int64", "float64", "float64", "category"]


def test_each_file_matches_event_accumulator(torch_run):
    files = event_files(torch_run)
    assert len(files) >= 4  # two writers plus add_scalars' per-tag folders
    for path in files:
        frame = forensics.read_scalars(path)
        assert set(frame.file) <= {path.name}
        expected = accumulator_rows(path)
        assert expected and sorted(frame_rows(frame)) == sorted(expected)
        for tag in set(row[0] for row in expected):  # and each tag's values in file order
            assert [r for r in frame_rows(frame) if r[0] == tag] == [r for r in expected if r[0] == tag]


def test_a_directory_holds_every_file_with_its_relative_path(torch_run):
    frame = forensics.read_scalars(torch_run)
    files = event_files(torch_run)
    names = sorted(path.relative_to(torch_run).as_posix() for path in files)
    assert list(frame.file.cat.categories) == names and sorted(set(frame.file)) == names
    for path in files:
        own = frame[frame.file == path.relative_to(torch_run).as_posix()]
        assert frame_rows(own) == frame_rows(forensics.read_scalars(path))
    assert len(frame) == sum(len(accumulator_rows(path)) for path in files)
    assert frame.step.max() == 2**60 and frame.step.min() == -5  # huge and negative steps kept
    odd = frame[frame.tag == "odd/steps"]
    assert math.isnan(odd.value.iloc[0]) and np.isinf(odd.value).sum() == 2


def test_tensor_scalars_match_tensorboards_loader(tensor_run):
    for path in event_files(tensor_run):
        rows = frame_rows(forensics.read_scalars(path))
        assert sorted(rows) == sorted(reference_scalars(path))


def test_a_large_generated_file_matches_event_accumulator(tmp_path):
    # Several chunks of the fast path (2 MB each) and tags interleaved as a training loop writes them.
    tags = ["train/loss", "train/lr", "grad_norm"]
    payloads = [scalar_event(tags[i % 3], i // 3, 1.0 / (i + 1), 1.7e9 + i * 0.25) for i in range(150_000)]
    path = write_frames(tmp_path / "events.out.tfevents.1700000000.host.1.0", payloads)
    assert path.stat().st_size > 3 * (2 << 20)
    frame = forensics.read_scalars(path)
    expected = accumulator_rows(path)
    assert len(frame) == len(expected) == 150_000
    assert frame_rows(frame) == sorted(expected, key=lambda row: tags.index(row[0]))


def test_damaged_files_give_warnings_naming_them_and_the_rest_is_read(torch_run, tmp_path):
    run = tmp_path / "run"
    good = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    (run / "good").mkdir(parents=True)
    (run / "good" / good.name).write_bytes(good.read_bytes())
    data = good.read_bytes()
    (run / "cut").mkdir()
    cut_at = frame_starts(good)[-3][0]
    (run / "cut" / good.name).write_bytes(data[: cut_at + 7])  # writer killed mid-record
    (tmp_path / "boundary").mkdir()
    (tmp_path / "boundary" / good.name).write_bytes(data[:cut_at])
    flipped = bytearray(data)
    start, length = frame_starts(good)[10]
    flipped[start + 12 + length // 2] ^= 1
    (run / "flipped").mkdir()
    (run / "flipped" / good.name).write_bytes(bytes(flipped))
    (run / "events.out.tfevents.garbage").write_bytes(b"\x00\x01 not an event file at all")
    with pytest.warns(forensics.ForensicsInputWarning) as caught:
        frame = forensics.read_scalars(run)
    messages = [str(w.message) for w in caught]
    assert any(f"cut/{good.name}" in m and "ends in the middle of a record" in m for m in messages)
    assert any(f"flipped/{good.name}" in m and f"byte {start}" in m for m in messages)
    assert any("events.out.tfevents.garbage" in m for m in messages)
    whole = len(forensics.read_scalars(good))
    counts = frame.file.value_counts()
    assert counts[f"good/{good.name}"] == whole
    assert counts[f"flipped/{good.name}"] == whole - 1  # one flipped bit costs one record
    assert counts[f"cut/{good.name}"] == len(accumulator_rows(tmp_path / "boundary" / good.name)) < whole


def test_missing_path_raises_and_empty_directory_is_an_empty_frame(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        forensics.read_scalars(tmp_path / "nowhere")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = forensics.read_scalars(tmp_path)
    assert frame.empty and list(frame.columns) == ["tag", "step", "value", "wall_time", "file"]
    assert frame.step.dtype == np.int64


def test_log_scalars_of_a_key_value_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step=10 loss=0.5 lr=0.001\nstep=20 loss=0.25 lr=0.002\nsaving checkpoint\n"
                   "step=30 loss=nan lr=0.003\n")
    frame = forensics.read_log_scalars(log)
    assert list(frame.columns) == ["tag", "step", "value", "line", "file"]
    rows = {(str(t), int(s), int(n)): v for t, s, v, n in zip(frame.tag, frame.step, frame.value, frame.line)}
    assert set(rows) == {("loss", 10, 1), ("loss", 20, 2), ("loss", 30, 4),
                         ("lr", 10, 1), ("lr", 20, 2), ("lr", 30, 4)}
    assert rows[("lr", 20, 2)] == 0.002 and math.isnan(rows[("loss", 30, 4)])
    assert set(frame.file) == {"train.log"}


def test_log_scalars_of_a_directory_of_hf_logs_and_a_binary_one(tmp_path):
    (tmp_path / "a").mkdir()
    lines = [f"{{'loss': {1.0 / (i + 1)!r}, 'learning_rate': {1e-3 * i!r}, 'epoch': {i / 100!r}}}"
             for i in range(1, 201)]
    (tmp_path / "a" / "stdout.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.log").write_bytes(b"\x00\xff" * 500)
    with pytest.warns(forensics.ForensicsInputWarning, match="b.log"):
        frame = forensics.read_log_scalars(tmp_path)
    ours = frame[frame.file == "a/stdout.log"]
    loss = ours[ours.tag == "loss"]
    assert loss.line.tolist() == list(range(1, 201))
    assert loss.value.tolist() == [1.0 / (i + 1) for i in range(1, 201)]
    assert ours[ours.tag == "learning_rate"].value.tolist() == [1e-3 * i for i in range(1, 201)]
