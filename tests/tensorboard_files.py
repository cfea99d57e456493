"""Event files written by real writers for the reader tests, and tensorboard's own view of them."""

from __future__ import annotations

import os
import pathlib
import struct

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

import forensics.ingest.tfrecord as tfrecord

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

