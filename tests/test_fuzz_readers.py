"""Property and fuzz tests: every reader, fed random bytes or mutations of a real file, returns a
`SourceRead` and never raises; every problem names the file. Bounded: a few dozen examples each,
each example well under a second (the atheris harnesses in benchmarks/ go further, on demand)."""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensics.ingest import discovery as kinds
from forensics.ingest.discovery import FoundFile, classify
from forensics.ingest.logs.formats import FORMAT_MODULES
from forensics.ingest.logs.formats.base import docstring_examples
from forensics.ingest.registry import READERS
from forensics.ingest.source import SourceRead

from conftest import SAMPLE_RUNS

FUZZ = settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow], derandomize=True)
EVENT_FILE = next((SAMPLE_RUNS / "healthy_onecycle" / "tb").glob("*tfevents*"))
TRAIN_LOG = SAMPLE_RUNS / "healthy_onecycle" / "train.log"
PER_EXAMPLE_SECONDS = 5.0


def read_as(directory: Path, name: str, data: bytes, kind: str | None = None) -> SourceRead:
    """Write `data` as `name` under `directory`, read it with the registry's reader for its kind, check the contract."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    kind = kind or classify(path.name)
    found = FoundFile(path, name, kind, len(data), 0.0)
    started = time.perf_counter()
    read = READERS[kind](found)  # must not raise
    assert time.perf_counter() - started < PER_EXAMPLE_SECONDS
    assert isinstance(read, SourceRead) and read.path == name and read.status in ("read", "partial", "failed")
    for problem in read.problems:
        assert problem.path == name and name in problem.message, problem
    return read


def mutate(data: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    """`data` with bytes flipped/inserted/deleted at fractional positions, optionally cut."""
    buffer = bytearray(data)
    for kind, where, value in edits:
        if not buffer:
            break
        at = where % len(buffer)
        if kind == 0:
            buffer[at] ^= value or 1
        elif kind == 1:
            buffer[at:at] = bytes([value])
        else:
            del buffer[at]
    return bytes(buffer[:cut] if cut is not None else buffer)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.integers(0, 255)), max_size=8)
cuts = st.none() | st.integers(0, 2**31).map(lambda n: n)


# ---------------------------------------------------------------- event files


@FUZZ
@given(data=st.binary(max_size=4096))
def test_event_reader_random_bytes(tmp_path, data):
    read = read_as(tmp_path, "tb/events.out.tfevents.1.h.1.0", data)
    assert read.problems or data == b""


@FUZZ
@given(edits=edits, cut=cuts)
def test_event_reader_mutations_of_a_real_file(tmp_path, edits, cut):
    original = EVENT_FILE.read_bytes()[:20000]
    data = mutate(original, edits, None if cut is None else cut % (len(original) + 1))
    read = read_as(tmp_path, "tb/events.out.tfevents.1.h.1.0", data)
    assert len([p for p in read.problems if p.code in ("event_file_truncated", "event_crc_mismatch")]) <= 1


# ---------------------------------------------------------------- text logs, every format


LOG_LINES = [line for module in FORMAT_MODULES for line in docstring_examples(module.__doc__ or "")]
LOG_LINES += TRAIN_LOG.read_text().splitlines()[:50]


@FUZZ
@given(data=st.binary(max_size=4096))
def test_log_reader_random_bytes(tmp_path, data):
    read_as(tmp_path, "train.log", data)


@FUZZ
@given(lines=st.lists(st.sampled_from(LOG_LINES), min_size=1, max_size=30), edits=edits, cut=cuts)
def test_log_reader_mutated_lines_of_every_format(tmp_path, lines, edits, cut):
    data = "\n".join(lines).encode("utf-8")
    read_as(tmp_path, "stdout.txt", mutate(data, edits, None if cut is None else cut % (len(data) + 1)))


@FUZZ
@given(text=st.text(max_size=400), line=st.sampled_from(LOG_LINES))
def test_log_reader_random_text_around_real_lines(tmp_path, text, line):
    read_as(tmp_path, "run.out", f"{text}{line}\n{line}{text}\r{text}\n".encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- structured files


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=40)
history_entries = st.lists(st.dictionaries(st.sampled_from(["step", "loss", "learning_rate", "epoch", "grad_norm",
                                                            "train_runtime", "x"]), json_values, max_size=6),
                           max_size=20)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@FUZZ
@given(state=st.fixed_dictionaries({"log_history": history_entries}, optional={"global_step": json_values,
                                                                                "max_steps": json_values}))
def test_trainer_state_random_documents(tmp_path, state):
    read_as(tmp_path, "trainer_state.json", _dumps(state))


@FUZZ
@given(data=st.binary(max_size=2048), edits=edits)
def test_trainer_state_random_bytes_and_mutations(tmp_path, data, edits):
    read_as(tmp_path, "trainer_state.json", data)
    real = _dumps({"global_step": 4, "log_history": [{"step": 2, "loss": 1.0, "learning_rate": 0.1}]})
    read_as(tmp_path, "trainer_state.json", mutate(real, edits, None))


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=12) | st.floats().map(repr), max_size=6), max_size=20),
       header=st.sampled_from(["step,loss,lr", "epoch,train/loss", "key,value", "a\tb", ""]), data=st.binary(max_size=512))
def test_metric_tables_csv_tsv(tmp_path, rows, header, data):
    text = header + "\n" + "\n".join(",".join(row) for row in rows)
    read_as(tmp_path, "metrics.csv", text.encode("utf-8", "surrogatepass"))
    read_as(tmp_path, "results.tsv", text.replace(",", "\t").encode("utf-8", "surrogatepass"))
    read_as(tmp_path, "summary.csv", data)


@FUZZ
@given(records=st.lists(json_values, max_size=20), data=st.binary(max_size=512))
def test_metric_tables_jsonl(tmp_path, records, data):
    read_as(tmp_path, "metrics.jsonl", b"\n".join(_dumps(record) for record in records))
    read_as(tmp_path, "wandb-history.jsonl", data)


@FUZZ
@given(lines=st.lists(st.tuples(st.integers() | st.floats().map(repr) | st.text(max_size=8),
                                st.floats().map(repr) | st.text(max_size=8),
                                st.integers() | st.text(max_size=8)), max_size=20), data=st.binary(max_size=512))
def test_mlflow_metric_files(tmp_path, lines, data):
    text = "\n".join(" ".join(str(field) for field in line) for line in lines)
    read_as(tmp_path, "mlruns/0/abc/metrics/loss", text.encode("utf-8", "surrogatepass"), kinds.MLFLOW_METRIC)
    read_as(tmp_path, "mlruns/0/abc/metrics/train/lr", data, kinds.MLFLOW_METRIC)


@FUZZ
@given(value=json_values, data=st.binary(max_size=1024),
       name=st.sampled_from(["hparams.yaml", "config.yml", "args.json", "pyproject.toml", "setup.cfg", "opt.ini",
                             "meta_tags.csv"]))
def test_configs_random_documents_and_bytes(tmp_path, value, data, name):
    import yaml

    read_as(tmp_path, name, data, kinds.CONFIG)
    text = yaml.safe_dump(value) if name.endswith((".yaml", ".yml")) else json.dumps(value, allow_nan=True)
    read_as(tmp_path, name, text.encode("utf-8", "surrogatepass"), kinds.CONFIG)


@FUZZ
@given(edits=edits, name=st.sampled_from(["hparams.yaml", "args.json"]))
def test_configs_mutated(tmp_path, edits, name):
    config = {"optimizer": {"type": "AdamW", "lr": 3e-4}, "lr_scheduler": {"type": "OneCycleLR", "max_lr": 0.1},
              "anchors": "&a", "max_epochs": 10}
    text = ("base: &b {lr: 0.1, warmup_steps: 5}\nmodel: {<<: *b}\n" + json.dumps(config)) if name.endswith("yaml") \
        else json.dumps(config)
    read_as(tmp_path, name, mutate(text.encode(), edits, None), kinds.CONFIG)


# ---------------------------------------------------------------- checkpoints and pickles


def _checkpoint_bytes(zip_format: bool) -> bytes:
    buffer = io.BytesIO()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "global_step": 3, "epoch": 1},
               buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


CHECKPOINTS = {True: _checkpoint_bytes(True), False: _checkpoint_bytes(False)}


@settings(FUZZ, max_examples=30)
@given(zip_format=st.booleans(), edits=edits, cut=cuts)
def test_checkpoint_reader_mutated_torch_saves(tmp_path, zip_format, edits, cut):
    original = CHECKPOINTS[zip_format]
    read_as(tmp_path, "checkpoints/epoch=1.ckpt",
            mutate(original, edits, None if cut is None else cut % (len(original) + 1)))


@settings(FUZZ, max_examples=30)
@given(data=st.binary(max_size=2048))
def test_checkpoint_reader_random_bytes(tmp_path, data):
    read = read_as(tmp_path, "model.pt", data)
    assert read.status == "failed" or data


@FUZZ
@given(value=json_values, protocol=st.integers(0, 5), edits=edits, data=st.binary(max_size=512))
def test_training_args_mutated_pickles(tmp_path, value, protocol, edits, data):
    read_as(tmp_path, "training_args.bin", mutate(pickle.dumps({"learning_rate": value}, protocol=protocol), edits, None))
    read_as(tmp_path, "training_args.bin", data)


@FUZZ
@given(line=st.sampled_from(LOG_LINES), edits=edits, noise=st.text(max_size=40))
def test_every_format_parses_mutated_lines_without_raising(line, edits, noise):
    """The registry itself (not only the reader's per-line guard) never raises on a garbled line."""
    from forensics.ingest.logs.formats import parse_line

    text = mutate(line.encode(), edits, None).decode("utf-8", "backslashreplace") + noise
    result = parse_line(text)
    if result is not None:
        _, parsed = result
        assert all(isinstance(value, float) for value in parsed.values.values())
