"""The event-file reader against real writers (torch SummaryWriter, tensorboard's own writer,
Keras files from real runs) and against tensorboard's own loader."""

from __future__ import annotations

import math
import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2

import forensics.ingest.tensorboard as tensorboard_reader
from forensics.ingest.tensorboard import read_event_file


from tensorboard_files import (REAL_RUNS, all_files, assert_matches_reference, event_files, frame_starts, reference_scalars,
                               scalar_event, scalars_of, write_frames)

# ---------------------------------------------------------------- 1. cross-check


def test_torch_and_tensor_files_match_tensorboard_loader(torch_run, tensor_run):
    files = all_files(torch_run, tensor_run)
    assert len(event_files(torch_run)) >= 4  # two writers + add_scalars subdirectories
    for path in files:
        result = read_event_file(path, path.name)
        assert result.problems == []
        assert_matches_reference(result, reference_scalars(path))
        assert result.records == len(frame_starts(path))
        assert result.bytes_read == path.stat().st_size
    tensor = read_event_file(*[(p, p.name) for p in event_files(tensor_run)][0])
    by_tag = {series.tag: series for series in tensor.scalars}
    assert set(by_tag) == {"loss", "accuracy", "count", "small", "half"}
    assert by_tag["count"].encoding == "tensor" and by_tag["count"].values[3] == 1.0  # int64(1.5)
    assert len(by_tag["loss"].steps) == 40


def test_torch_file_details(torch_run):
    main_file = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    result = read_event_file(main_file, "events")
    by_tag = {series.tag: series for series in result.scalars}
    odd = by_tag["odd/steps"]
    assert odd.steps.tolist() == [5, 3, 3, 3, 2**31 + 7, 2**40, 2**60, -5, 0]
    assert math.isnan(odd.values[0]) and odd.values[1] == math.inf and odd.values[2] == -math.inf
    assert odd.steps.dtype == np.int64 and odd.values.dtype == np.float64
    assert odd.wall_times.dtype == np.float64 and odd.encoding == "simple_value"
    assert len(by_tag["train/loss"].steps) == 300
    assert by_tag["unicode/ünï"].wall_times.tolist() == [0.0]
    assert "weights" not in by_tag and "notes" not in by_tag
    assert result.first_wall_time <= result.last_wall_time


@pytest.mark.skipif(not REAL_RUNS.is_dir(), reason="real runs not available")
def test_real_run_files_match_tensorboard_loader():
    files = event_files(REAL_RUNS)
    assert files
    for path in files:
        result = read_event_file(path, str(path.relative_to(REAL_RUNS)))
        assert result.problems == []
        assert_matches_reference(result, reference_scalars(path))


@pytest.mark.skipif(not REAL_RUNS.is_dir(), reason="real runs not available")
def test_keras_tensor_scalars():
    keras = REAL_RUNS / "keras_tf2_mnist_sgd"
    if not keras.is_dir():
        pytest.skip("keras run not available")
    validation = read_event_file(event_files(keras / "validation")[0], "validation")
    by_tag = {series.tag: series for series in validation.scalars}
    assert by_tag["epoch_loss"].encoding == "tensor"
    assert by_tag["epoch_loss"].steps.tolist() == list(range(10))
    train = read_event_file(event_files(keras / "train")[0], "train")
    assert {series.tag for series in train.scalars} == {"epoch_loss", "epoch_accuracy"}
    assert train.host == "e-bnbobg-5l77j-0" and train.pid == 61366


# ---------------------------------------------------------------- 6. fast path == slow path


def test_fast_and_slow_paths_agree(torch_run, tensor_run, monkeypatch):
    files = all_files(torch_run, tensor_run)
    if REAL_RUNS.is_dir():
        files += event_files(REAL_RUNS)
    for path in files:
        fast = read_event_file(path, "x")
        monkeypatch.setattr(tensorboard_reader, "_USE_FAST_PATH", False)
        slow = read_event_file(path, "x")
        monkeypatch.setattr(tensorboard_reader, "_USE_FAST_PATH", True)
        assert [s.tag for s in fast.scalars] == [s.tag for s in slow.scalars]
        for a, b in zip(fast.scalars, slow.scalars):
            assert a.encoding == b.encoding
            for column in ("steps", "values", "wall_times"):
                x, y = getattr(a, column), getattr(b, column)
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
        assert (fast.records, fast.first_wall_time, fast.last_wall_time, fast.bytes_read) == (
            slow.records, slow.first_wall_time, slow.last_wall_time, slow.bytes_read)


# ---------------------------------------------------------------- 7. property


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["loss", "lr", "a/b", "ü", "", "x" * 119, "y" * 120]),
        st.integers(-(2**63), 2**63 - 1) | st.integers(0, 2**20),
        st.floats(width=32, allow_nan=True, allow_infinity=True),
        st.floats(0, 2e9, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=50, deadline=None)
@given(events=events_strategy)
def test_property_every_scalar_comes_back_in_order(events):
    payloads = [event_pb2.Event(file_version="brain.Event:2").SerializeToString()]
    payloads += [scalar_event(*event) for event in events]
    with tempfile.TemporaryDirectory() as directory:
        path = write_frames(pathlib.Path(directory) / "events.out.tfevents.1.h.2.0", payloads)
        result = read_event_file(path, "prop")
        reference = reference_scalars(path)
    assert result.problems == [] and result.records == len(payloads)
    assert_matches_reference(result, reference)
    expected = [(tag, step, repr(float(np.float32(value))), wall)
                for tag, step, value, wall in events]
    assert sorted(scalars_of(result)) == sorted(expected)
