"""Benchmark: read_event_file against a bare frame walk, tensorboard's loader and tbparse.

    python benchmarks/bench_event_reader.py [--events N] [--small-events M]

Writes a scalar event file of N events (torch SummaryWriter's byte layout, plus a few records
only protobuf can decode) and a smaller one of M events for the slow readers, then times each
reader in a fresh subprocess and reports its peak RSS. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import resource
import struct
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TAGS = ["train/loss", "train/lr", "val/accuracy", "grad_norm", "throughput/samples_per_sec"]


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _unusual_records() -> list[bytes]:
    """Records off the fast path: a histogram, a tensor scalar, a long tag, a negative step."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.util import tensor_util

    histogram = event_pb2.Event(wall_time=1.7e9, step=1)
    histogram.summary.value.add(tag="weights", histo=summary_pb2.HistogramProto(
        min=0, max=1, num=3, bucket_limit=[0.5, 1.0], bucket=[1, 2]))
    tensor = event_pb2.Event(wall_time=1.7e9, step=2)
    tensor.summary.value.add(tag="tf2/loss", tensor=tensor_util.make_tensor_proto(np.float32(0.5)))
    long_tag = event_pb2.Event(wall_time=1.7e9, step=3)
    long_tag.summary.value.add(tag="t" * 200, simple_value=1.0)
    negative = event_pb2.Event(wall_time=1.7e9, step=-1)
    negative.summary.value.add(tag="train/loss", simple_value=1.0)
    return [e.SerializeToString() for e in (histogram, tensor, long_tag, negative)]


def _file_version() -> bytes:
    from tensorboard.compat.proto import event_pb2

    return event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()


def write_event_file(path: pathlib.Path, events: int) -> None:
    """N scalar events in SummaryWriter's add_scalar layout, a file_version first, a few others."""
    import crc32c

    from forensics.ingest.tfrecord import encode_frame, mask_crc

    tag_tails = []
    for tag in TAGS:
        value_field = b"\x0a" + bytes([len(tag)]) + tag.encode() + b"\x15"
        tag_tails.append(b"\x2a" + bytes([len(value_field) + 6, 0x0a, len(value_field) + 4])
                         + value_field)
    header_cache: dict[int, bytes] = {}
    pack_double, pack_float = struct.Struct("<d").pack, struct.Struct("<f").pack
    unusual = _unusual_records()
    with open(path, "wb") as stream:
        frames = [encode_frame(_file_version())]
        for index in range(events):
            step = index // len(TAGS)
            payload = (b"\x09" + pack_double(1.7e9 + index * 0.01)
                       + (b"\x10" + _varint(step) if step else b"")
                       + tag_tails[index % len(TAGS)] + pack_float(1.0 / (1 + index)))
            header = header_cache.get(len(payload))
            if header is None:
                length = struct.pack("<Q", len(payload))
                header = header_cache[len(payload)] = length + struct.pack(
                    "<I", mask_crc(crc32c.crc32c(length)))
            frames.append(header + payload + struct.pack("<I", mask_crc(crc32c.crc32c(payload))))
            if index % (events // len(unusual) + 1) == 0:
                frames.append(encode_frame(unusual[(index // (events // len(unusual) + 1)) % 4]))
            if len(frames) >= 100_000:
                stream.write(b"".join(frames))
                frames = []
        stream.write(b"".join(frames))


# ------------------------------------------------------------------ readers (run in a child)


def read_forensics(path: str) -> int:
    from forensics.ingest.tensorboard import read_event_file

    result = read_event_file(pathlib.Path(path), "bench")
    assert not result.problems, result.problems
    return sum(len(series.steps) for series in result.scalars)


def read_walk(path: str) -> int:
    """The bare frame walk: read lengths and skip payloads; no CRC, no decoding."""
    unpack, count, pos = struct.Struct("<Q").unpack_from, 0, 0
    data = pathlib.Path(path).read_bytes()
    while pos + 16 <= len(data):
        pos += unpack(data, pos)[0] + 16
        count += 1
    return count


def read_event_file_loader(path: str) -> int:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return sum(
        1 for event in EventFileLoader(path).Load()
        for value in event.summary.value if value.WhichOneof("value") == "simple_value"
    )


def read_tbparse(path: str) -> int:
    from tbparse import SummaryReader

    return len(SummaryReader(path).scalars)


READERS = {"forensics": read_forensics, "frame_walk": read_walk,
           "EventFileLoader": read_event_file_loader, "tbparse": read_tbparse}
# Imported before the clock starts, so the times compare reading, not start-up.
READER_IMPORTS = {"forensics": ["forensics.ingest.tensorboard"], "frame_walk": [],
                  "EventFileLoader": ["tensorboard.backend.event_processing.event_file_loader"],
                  "tbparse": ["tbparse"]}


def peak_rss_mb() -> float:
    """This process's peak RSS. ru_maxrss survives exec (it would report the parent's peak),
    so prefer the kernel's per-process high-water mark."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(reader: str, path: str) -> None:
    for module in READER_IMPORTS[reader]:
        importlib.import_module(module)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    scalars = READERS[reader](path)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "scalars": scalars, "peak_mb": peak_rss_mb(),
                      "baseline_mb": baseline}))


def measure(reader: str, path: pathlib.Path) -> dict:
    """Time one reader in a fresh interpreter, so imports and peak RSS are its own."""
    completed = subprocess.run([sys.executable, __file__, "--child", reader, str(path)],
                               capture_output=True, text=True, check=False)
    if completed.returncode:
        return {"error": completed.stderr.strip().splitlines()[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--small-events", type=int, default=400_000,
                        help="events in the file for the slow readers (tbparse, EventFileLoader)")
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(*args.child)
        return
    try:
        import tbparse  # noqa: F401
        slow_readers = ["EventFileLoader", "tbparse"]
    except ImportError:
        slow_readers = ["EventFileLoader"]
        print("tbparse not importable: skipping it (pip install tbparse)")
    with tempfile.TemporaryDirectory() as directory:
        files = {}
        for label, events in (("big", args.events), ("small", min(args.small_events, args.events))):
            path = pathlib.Path(directory) / label / "events.out.tfevents.1700000000.bench.1.0"
            path.parent.mkdir()
            started = time.perf_counter()
            write_event_file(path, events)
            print(f"wrote {events:,} events ({path.stat().st_size / 1e6:.0f} MB) "
                  f"in {time.perf_counter() - started:.1f} s")
            files[label] = (path, events)
        rows = []
        plan = [("forensics", "big"), ("frame_walk", "big"), ("forensics", "small")]
        plan += [(reader, "small") for reader in slow_readers]
        for reader, label in plan:
            path, events = files[label]
            rows.append((reader, events, measure(reader, path)))
    report(rows)


def report(rows: list[tuple[str, int, dict]]) -> None:
    tbparse_rate = next((events / r["seconds"] for name, events, r in rows
                         if name == "tbparse" and "seconds" in r), None)
    print(f"\n{'reader':<16}{'events':>11}{'seconds':>9}{'events/s':>12}{'peak RSS MB':>13}"
          f"{'(start)':>9}{'x tbparse':>11}")
    for name, events, result in rows:
        if "error" in result:
            print(f"{name:<16}{events:>11,}  failed: {result['error']}")
            continue
        rate = events / result["seconds"]
        ratio = f"{rate / tbparse_rate:>10.1f}x" if tbparse_rate else f"{'n/a':>11}"
        print(f"{name:<16}{events:>11,}{result['seconds']:>9.2f}{rate:>12,.0f}"
              f"{result['peak_mb']:>13.0f}{result['baseline_mb']:>9.0f}{ratio}")
    big = max(events for _, events, _ in rows)
    tbparse_events = next((events for name, events, _ in rows if name == "tbparse"), big)
    if tbparse_rate and tbparse_events < big:
        print(f"\ntbparse extrapolated to {big:,} events: ~{big / tbparse_rate:.0f} s "
              "(measured on the small file; ratios compare events/s).")
    print("peak RSS is the child's high-water mark (VmHWM: interpreter and imports included); "
          "'(start)' is the same figure just before reading.")


if __name__ == "__main__":
    main()
