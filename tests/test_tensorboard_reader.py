"""The event-file reader against real writers (torch SummaryWriter, tensorboard's own writer,
Keras files from real runs) and against tensorboard's own loader."""

from __future__ import annotations

import math
import os
import pathlib
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

import forensics.ingest.tensorboard as tensorboard_reader
import forensics.ingest.tfrecord as tfrecord
from forensics.ingest.tensorboard import parse_event_file_name, read_event_file

REAL_RUNS = pathlib.Path(
    os.environ.get("FORENSICS_REAL_RUNS")
    or pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "real_runs"
)


# ---------------------------------------------------------------- reference and helpers


def reference_scalars(path: pathlib.Path) -> list[tuple]:
    """(tag, step, value repr, wall time) in file order, read with tensorboard's own loader."""
    found, plugins = [], {}
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name:
                plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number = float(value.simple_value)
            elif (kind == "tensor" and plugins.get(value.tag, "scalars") == "scalars"
                  and not value.tensor.tensor_shape.dim):
                array = tensor_util.make_ndarray(value.tensor)
                if array.dtype.kind not in "fiu":
                    continue
                number = float(array.item())
            else:
                continue
            found.append((value.tag, event.step, repr(number), event.wall_time))
    return found


def scalars_of(result) -> list[tuple]:
    """The reader's scalars as (tag, step, value repr, wall time), series by series."""
    return [
        (series.tag, int(step), repr(float(value)), float(wall))
        for series in result.scalars
        for step, value, wall in zip(series.steps, series.values, series.wall_times)
    ]


def assert_matches_reference(result, reference: list[tuple]) -> None:
    mine = scalars_of(result)
    assert sorted(mine) == sorted(reference)  # same multiset (NaN compared by repr)
    for series in result.scalars:  # and the same order within every tag
        assert [row for row in mine if row[0] == series.tag] == [
            row for row in reference if row[0] == series.tag]
    tags_in_order = list(dict.fromkeys(row[0] for row in reference))
    assert [series.tag for series in result.scalars] == tags_in_order


def frame_starts(path: pathlib.Path) -> list[tuple[int, int]]:
    """(start, payload length) of every frame, walked independently of the reader."""
    data, frames, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        frames.append((pos, length))
        pos += length + 16
    return frames


def scalar_event(tag: str, step: int, value: float, wall_time: float) -> bytes:
    event = event_pb2.Event(wall_time=wall_time, step=step)
    event.summary.value.add(tag=tag, simple_value=value)
    return event.SerializeToString()


def write_frames(path: pathlib.Path, payloads: list[bytes]) -> pathlib.Path:
    path.write_bytes(b"".join(tfrecord.encode_frame(payload) for payload in payloads))
    return path


def event_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """Event files in creation order: SummaryWriter names end in a process-wide counter (.9 < .10)."""
    def creation_order(path: pathlib.Path):
        parts = path.name.split(".")
        counter = next((int(part) for part in reversed(parts) if part.isdigit()), 0)
        return (str(path.parent), int(parts[3]) if parts[3].isdigit() else 0, counter)
    return sorted((p for p in directory.rglob("*") if "tfevents" in p.name and p.is_file()), key=creation_order)


# ---------------------------------------------------------------- real files written here


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory) -> pathlib.Path:
    """A run dir written by torch's SummaryWriter: mixed tags, odd steps, two writers."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path_factory.mktemp("torch_run")
    writer = SummaryWriter(str(run_dir))
    for step in range(300):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("train/lr", 0.1 * 0.99**step, step)
        if step % 50 == 0:
            writer.add_histogram("weights", np.random.default_rng(step).normal(size=100), step)
            writer.add_scalars("grad", {"norm": step * 0.5, "max": step * 2.0}, step)
    for step, value in [(5, float("nan")), (3, float("inf")), (3, float("-inf")), (3, -0.0),
                        (2**31 + 7, 1e-30), (2**40, 3.0), (2**60, 4.0), (-5, 5.0), (0, 0.0)]:
        writer.add_scalar("odd/steps", value, step)  # out of order, repeated, huge, negative
    writer.add_scalar("a" * 150, 1.5, 1)  # a tag too long for the one-byte-length layout
    writer.add_scalar("unicode/ünï", 2.5, 2, walltime=0.0)
    writer.add_text("notes", "not a scalar", 1)
    writer.close()
    second = SummaryWriter(str(run_dir))  # a second writer in the same dir (a resumed run)
    for step in range(250, 320):
        second.add_scalar("train/loss", 2.0 / (step + 1), step)
    second.close()
    return run_dir


@pytest.fixture(scope="module")
def tensor_run(tmp_path_factory) -> pathlib.Path:
    """Tensor-encoded scalars (TF2 style) written with tensorboard's own EventFileWriter."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = tmp_path_factory.mktemp("tensor_run")
    writer = EventFileWriter(str(run_dir))
    scalars_plugin = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    other_plugin = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="custom_plugin"))
    cases = [("loss", np.float32), ("accuracy", np.float64), ("count", np.int64),
             ("small", np.int32), ("half", np.float16), ("not_scalars", np.float32)]
    for step in range(40):
        values = []
        for tag, dtype in cases:
            plugin = other_plugin if tag == "not_scalars" else scalars_plugin
            metadata = plugin if step == 0 else None  # TF2 writes metadata once per tag
            values.append(summary_pb2.Summary.Value(
                tag=tag, metadata=metadata,
                tensor=tensor_util.make_tensor_proto(dtype(step * 1.5 - 3))))
        values.append(summary_pb2.Summary.Value(  # vector: not a scalar
            tag="vector", tensor=tensor_util.make_tensor_proto(np.arange(3, dtype=np.float32))))
        writer.add_event(event_pb2.Event(wall_time=1.7e9 + step, step=step,
                                         summary=summary_pb2.Summary(value=values)))
    writer.close()
    return run_dir


def all_files(torch_run, tensor_run) -> list[pathlib.Path]:
    return event_files(torch_run) + event_files(tensor_run)


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


# ---------------------------------------------------------------- 2. truncation


def cut_copy(source: pathlib.Path, directory: pathlib.Path, size: int) -> pathlib.Path:
    target = directory / f"cut_{size}" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes()[:size])
    return target


def test_truncated_file_keeps_every_record_before_the_cut(torch_run, tmp_path):
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    frames = frame_starts(source)
    for start, length in frames[-2:]:
        complete = cut_copy(source, tmp_path, start)
        expected = reference_scalars(complete)
        for cut in (start + 1, start + 8, start + 11, start + 12, start + 12 + length // 2,
                    start + 12 + length, start + 14 + length):
            result = read_event_file(cut_copy(source, tmp_path, cut), "cut")
            assert [p.code for p in result.problems] == ["event_file_truncated"]
            assert result.problems[0].locator == f"byte {start}"
            assert "cut" in result.problems[0].message and "kept" in result.problems[0].message
            assert_matches_reference(result, expected)
            assert result.bytes_read == start


def test_cut_at_every_byte_offset_of_the_last_two_records(torch_run, tmp_path):
    """A writer killed anywhere in its last two records: everything before the cut, exactly one warning."""
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    data = source.read_bytes()
    frames = frame_starts(source)
    target = tmp_path / source.name
    for index, (start, length) in enumerate(frames[-2:]):
        expected = reference_scalars(cut_copy(source, tmp_path / "whole", start))
        end = start + length + 16  # header 12 + payload + payload CRC 4
        for cut in range(start + 1, end):
            target.write_bytes(data[:cut])
            result = read_event_file(target, "cut")
            assert [p.code for p in result.problems] == ["event_file_truncated"], (index, cut)
            assert result.problems[0].locator == f"byte {start}" and "cut" in result.problems[0].message
            assert result.bytes_read == start and result.records == len(frames) - 2 + index
            assert_matches_reference(result, expected)
        target.write_bytes(data[:end])  # a cut exactly at a record boundary is a complete file
        assert read_event_file(target, "cut").problems == []


# ---------------------------------------------------------------- 3. bad CRC


def corrupted_copy(source: pathlib.Path, directory: pathlib.Path, at: int) -> pathlib.Path:
    data = bytearray(source.read_bytes())
    data[at] ^= 0x20
    target = directory / f"flip_{at}" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def test_crc_mismatch_keeps_records_before_the_bad_frame(torch_run, tmp_path):
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    frames = frame_starts(source)
    start, length = frames[len(frames) // 2]
    expected = reference_scalars(cut_copy(source, tmp_path, start))
    # payload byte, length header byte (low and high), length CRC byte, payload CRC byte
    for at in (start + 12 + length // 2, start, start + 6, start + 9, start + 13 + length):
        result = read_event_file(corrupted_copy(source, tmp_path, at), "flipped")
        assert [p.code for p in result.problems] == ["event_crc_mismatch"]
        assert result.problems[0].locator == f"byte {start}"
        assert_matches_reference(result, expected)


def test_bulk_crc_finds_the_exact_bad_record(tmp_path, monkeypatch):
    # 5000 records of one length exercise the folded (XOR) check; small chunks add carry-over.
    payloads = [scalar_event("loss", 1000 + i, i * 0.5, 1.7e9 + i) for i in range(5000)]
    clean = write_frames(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    frames = frame_starts(clean)
    for chunk_bytes in (None, 4096):
        monkeypatch.setattr(tfrecord, "CHUNK_BYTES", chunk_bytes or (32 << 20))
        assert read_event_file(clean, "clean").problems == []
        for index in (0, 1, 2500, 4999):
            start, length = frames[index]
            result = read_event_file(corrupted_copy(clean, tmp_path, start + 12 + length - 1), "x")
            assert [p.locator for p in result.problems] == [f"byte {start}"]
            assert result.records == index
            steps = result.scalars[0].steps if result.scalars else np.zeros(0)
            assert steps.tolist() == list(range(1000, 1000 + index))


def test_bulk_crc_needs_no_per_record_calls_on_a_clean_file(tmp_path, monkeypatch):
    # A false alarm in the folded check would fall back to one CRC call per record: still
    # correct, but the bulk check would be doing nothing. Count the real CRC calls.
    payloads = [scalar_event("loss", 1000 + i, i * 0.5, 1.7e9 + i) for i in range(4999)]
    path = write_frames(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    calls = []
    real_crc = tfrecord.crc32c.crc32c
    monkeypatch.setattr(tfrecord.crc32c, "crc32c", lambda data: calls.append(1) or real_crc(data))
    assert read_event_file(path, "clean").problems == []
    assert len(calls) <= 4 * tfrecord._CRC_CELLS


def test_summary_writer_scalars_take_the_fast_path(torch_run, monkeypatch):
    slow_records = []
    real_decode = tensorboard_reader._ScalarCollector._decode_slow
    monkeypatch.setattr(tensorboard_reader._ScalarCollector, "_decode_slow",
                        lambda self, chunk, index, rows: slow_records.append(index)
                        or real_decode(self, chunk, index, rows))
    second_writer = [p for p in event_files(torch_run) if p.parent == torch_run][1]
    result = read_event_file(second_writer, "x")
    assert result.records == 71 and slow_records == [0]  # only the file_version record


def test_small_chunks_give_the_same_result(torch_run, monkeypatch):
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    whole = scalars_of(read_event_file(source, "x"))
    for chunk_bytes in (64, 1000, 4096):  # 64 is smaller than most frames: the buffer must grow
        monkeypatch.setattr(tfrecord, "CHUNK_BYTES", chunk_bytes)
        result = read_event_file(source, "x")
        assert result.problems == [] and scalars_of(result) == whole


# ---------------------------------------------------------------- 4. garbage, empty, missing


def test_empty_file_is_zero_records_and_no_problem(tmp_path):
    empty = tmp_path / "events.out.tfevents.1.host.1.0"
    empty.write_bytes(b"")
    result = read_event_file(empty, "empty")
    assert (result.records, result.scalars, result.problems, result.bytes_read) == (0, [], [], 0)
    assert result.first_wall_time is None and result.last_wall_time is None


@pytest.mark.parametrize("size", [3, 11, 12, 100, 5000])
def test_random_bytes_are_a_problem_not_a_crash(tmp_path, size):
    garbage = tmp_path / "events.out.tfevents.garbage"
    garbage.write_bytes(np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes())
    result = read_event_file(garbage, "garbage")
    assert len(result.problems) == 1
    assert result.problems[0].code in {"event_crc_mismatch", "event_file_truncated"}
    assert result.problems[0].locator == "byte 0" and result.scalars == []


def test_missing_file_and_directory_are_unreadable(tmp_path):
    for path in (tmp_path / "events.out.tfevents.missing", tmp_path):
        result = read_event_file(path, "where")
        assert [p.code for p in result.problems] == ["file_unreadable"]
        assert "where" in result.problems[0].message and result.scalars == []


def test_undecodable_record_is_skipped_and_reading_goes_on(tmp_path):
    bad_utf8 = scalar_event("ab", 7, 1.0, 5.0).replace(b"ab", b"a\xff")  # fast-path layout
    payloads = [scalar_event("loss", 1, 1.0, 1.0), b"\xff\xff\xff", bad_utf8,
                scalar_event("loss", 2, 2.0, 2.0)]
    path = write_frames(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    for fast in (True, False):
        tensorboard_reader._USE_FAST_PATH = fast
        try:
            result = read_event_file(path, "bad")
        finally:
            tensorboard_reader._USE_FAST_PATH = True
        assert [p.code for p in result.problems] == ["event_record_undecodable"]
        assert "2 record(s)" in result.problems[0].message
        assert result.problems[0].locator == f"byte {frame_starts(path)[1][0]}"
        assert result.records == 4 and result.scalars[0].steps.tolist() == [1, 2]


# ---------------------------------------------------------------- 5. file names


@pytest.mark.parametrize("name, host, pid", [
    ("events.out.tfevents.1670903056.mike-Laptop.3423.0", "mike-Laptop", 3423),
    ("events.out.tfevents.1700000000.node-1.example.com.12.0.v2", "node-1.example.com", 12),
    ("events.out.tfevents.1700000000.10.0.0.5.123.4", "10.0.0.5", 123),
    ("events.out.tfevents.1700000000.gpu7.99.1.profile-empty", "gpu7", 99),
    ("events.out.tfevents.1700000000.gpu7.99.1_suffix", "gpu7", 99),
    ("events.out.tfevents.1700000000", None, None),
    ("results.csv", None, None),
])
def test_host_and_pid_from_file_name(name, host, pid):
    assert parse_event_file_name(name) == (host, pid)


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
