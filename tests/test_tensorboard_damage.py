"""The event-file reader on damaged files: truncated, corrupted, garbage, empty, missing, undecodable."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import forensics.ingest.tensorboard as tensorboard_reader
import forensics.ingest.tfrecord as tfrecord
from forensics.ingest.tensorboard import parse_event_file_name, read_event_file

REAL_RUNS = pathlib.Path(
    os.environ.get("FORENSICS_REAL_RUNS")
    or pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "real_runs"
)

from tensorboard_files import (assert_matches_reference, event_files, frame_starts, reference_scalars, scalar_event,
                               scalars_of, write_frames)

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


def without_frame(source: pathlib.Path, directory: pathlib.Path, start: int, length: int) -> pathlib.Path:
    """A copy of `source` with the frame at `start` cut out: what a reader should see once it skips it."""
    data = source.read_bytes()
    target = directory / f"without_{start}" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[:start] + data[start + length + 16:])
    return target


def test_bad_length_crc_keeps_records_before_the_bad_frame(torch_run, tmp_path):
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    frames = frame_starts(source)
    start, length = frames[len(frames) // 2]
    expected = reference_scalars(cut_copy(source, tmp_path, start))
    # length header byte (low and high), length CRC byte: the framing is lost from there on
    for at in (start, start + 6, start + 9):
        result = read_event_file(corrupted_copy(source, tmp_path, at), "flipped")
        assert [p.code for p in result.problems] == ["event_crc_mismatch"]
        assert result.problems[0].locator == f"byte {start}"
        assert "flipped" in result.problems[0].message
        assert_matches_reference(result, expected)


def test_one_flipped_bit_in_a_payload_costs_exactly_that_record(torch_run, tmp_path):
    """The length CRC holds, so the framing is intact: skip the record, report it, read on."""
    source = [p for p in event_files(torch_run) if p.parent == torch_run][0]
    frames = frame_starts(source)
    for index in (1, len(frames) // 3, len(frames) // 2, len(frames) - 1):
        start, length = frames[index]
        expected = reference_scalars(without_frame(source, tmp_path, start, length))
        # payload bytes (first, middle, last) and the payload CRC itself
        for at in (start + 12, start + 12 + length // 2, start + 11 + length, start + 13 + length):
            result = read_event_file(corrupted_copy(source, tmp_path, at), "flipped")
            assert [p.code for p in result.problems] == ["event_record_corrupt"], (index, at)
            assert result.problems[0].locator == f"byte {start}"
            assert "flipped" in result.problems[0].message
            assert result.records == len(frames) - 1
            assert_matches_reference(result, expected)


def test_skipped_record_names_its_tag_when_the_damaged_bytes_still_parse(tmp_path):
    payloads = [scalar_event("loss", step, step * 0.5, 1.7e9 + step) for step in range(10)]
    clean = write_frames(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    start, length = frame_starts(clean)[4]
    # the last payload byte is the float value's top byte: the record still parses
    result = read_event_file(corrupted_copy(clean, tmp_path, start + 11 + length), "x")
    assert [p.code for p in result.problems] == ["event_record_corrupt"]
    assert "tag 'loss', step 4" in result.problems[0].message
    assert result.scalars[0].steps.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]


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
            assert result.records == 4999
            steps = [step for step in range(1000, 6000) if step != 1000 + index]
            assert result.scalars[0].steps.tolist() == steps


def test_many_corrupt_records_are_each_skipped_and_reported_in_bounded_problems(tmp_path):
    payloads = [scalar_event("loss", step, 1.0, 1.7e9 + step) for step in range(3000)]
    clean = write_frames(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    frames = frame_starts(clean)
    damaged = bytearray(clean.read_bytes())
    hit = list(range(7, 3000, 97))  # 31 records, one flipped bit each
    # Each at its own (byte, bit): the folded check cannot see two identical error patterns in
    # same-length records of one cell (see frame_crc._bad_strings), which is not what this tests.
    patterns = [(n % frames[i][1], n // frames[i][1]) for n, i in enumerate(hit)]
    assert len(set(patterns)) == len(hit) and max(bit for _, bit in patterns) < 8
    for index, (byte, bit) in zip(hit, patterns):
        start, length = frames[index]
        damaged[start + 12 + byte] ^= 1 << bit
    path = tmp_path / "damaged" / clean.name
    path.parent.mkdir()
    path.write_bytes(bytes(damaged))
    result = read_event_file(path, "x")
    listed = tfrecord._CORRUPT_LISTED
    assert [p.code for p in result.problems] == ["event_record_corrupt"] * (listed + 1)
    assert [p.locator for p in result.problems[:listed]] == [f"byte {frames[i][0]}" for i in hit[:listed]]
    assert f"{len(hit) - listed} more record(s)" in result.problems[-1].message
    assert result.scalars[0].steps.tolist() == [step for step in range(3000) if step not in hit]


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

