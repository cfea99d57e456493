"""Hostile files, one each: a 100 MB line, JSON nested 100,000 deep, a YAML alias bomb, NUL bytes,
invalid UTF-8, empty files. Each gives a clear warning naming the file, in bounded time and memory
(measured in a fresh process, so the peak RSS is the read's own), and each documented cap says so
in the report when it is hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forensics.ingest import discovery as kinds
from forensics.ingest.discovery import FoundFile, classify
from forensics.ingest.limits import (ALL_CAPS, MAX_CONFIG_BYTES, MAX_LINE_BYTES, MAX_NESTING_DEPTH,
                                     MAX_VALUES_PER_FILE, MAX_YAML_NODES)
from forensics.ingest.registry import READERS

from conftest import REPO, SAMPLE_RUNS

# Peak RSS of the read alone: Linux's high-water mark (VmHWM) is reset after the imports
# (`5` > /proc/self/clear_refs), then compared with the RSS before the read.
_MEASURE = """
import json, sys, time
from pathlib import Path
from forensics.ingest.discovery import FoundFile
from forensics.ingest.registry import READERS
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
path, name, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status("VmRSS")
started = time.perf_counter()
read = READERS[kind](FoundFile(path, name, kind, path.stat().st_size, 0.0))
seconds = time.perf_counter() - started
growth = (status("VmHWM") - before) / 1024
print(json.dumps({"seconds": seconds, "rss_growth_mb": growth, "status": read.status, "records": read.records,
                  "problems": [[p.code, p.message] for p in read.problems]}))
"""

BILLION_LAUGHS = "\n".join(
    [': &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'.join(["a", ""])]
    + [f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]" for previous, name in zip("abcdefgh", "bcdefghi")]
    + ["lr: 0.1", "optimizer: AdamW"]) + "\n"


def measure(path: Path, name: str, kind: str | None = None) -> dict:
    """Read one file in a fresh interpreter: seconds, peak-RSS growth in MB, status, problems."""
    completed = subprocess.run([sys.executable, "-c", _MEASURE, str(path), name, kind or classify(path.name)],
                               capture_output=True, text=True, timeout=120, cwd=REPO, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"{name}: {result['seconds']:.2f} s, peak RSS +{result['rss_growth_mb']:.0f} MB, {result['problems']}")
    return result


def read(path: Path, kind: str | None = None):
    name = path.name
    return READERS[kind or classify(name)](FoundFile(path, name, kind or classify(name), path.stat().st_size, 0.0))


def codes(source_read) -> list[str]:
    return [problem.code for problem in source_read.problems]


def test_a_100_mb_line_without_newline_streams_in_bounded_time_and_memory(tmp_path):
    path = tmp_path / "train.log"
    chunk = b"loss=0.5 " * (1024 * 1024 // 9)
    with open(path, "wb") as handle:
        handle.write(b"step 1 loss 0.9 lr 0.1\n")
        for _ in range(100 * 1024 * 1024 // len(chunk) + 1):  # streamed from a generator, never held whole
            handle.write(chunk)
        handle.write(b"\nstep 2 loss 0.8 lr 0.1\n")
    result = measure(path, "train.log")
    assert result["seconds"] < 5 and result["rss_growth_mb"] < 16  # measured: 0.07 s, +3 MB
    [[code, message]] = result["problems"]
    assert code == "log_line_too_long" and "train.log: line 2 is 105,9" in message
    assert f"{MAX_LINE_BYTES.default:,}-byte" in message and MAX_LINE_BYTES.env in message
    assert result["records"] == 4  # the lines on either side are still read


@pytest.mark.parametrize("name", ["config.json", "trainer_state.json", "metrics.jsonl", "train.log", "config.yaml",
                                  "config.toml"])
def test_nesting_100_000_deep_is_a_warning_not_a_recursion_error(tmp_path, name):
    depth = 100_000
    if name.endswith(".toml"):
        document = "a = " + "[" * depth + "]" * depth
    elif name.endswith(".yaml"):
        document = "a: " + "[" * depth + "]" * depth
    else:
        document = '{"step": 1, "loss": 0.5, "x": ' + "[" * depth + "]" * depth + "}"  # 200 kB, under the line cap
    extra = '\n{"step": 2, "loss": 0.5}\n' if name.endswith(("jsonl", ".log")) else ""
    path = tmp_path / name
    path.write_text(document + extra)
    result = measure(path, name)
    assert result["seconds"] < 5 and result["rss_growth_mb"] < 32  # measured: < 0.2 s, +1 MB
    [[code, message]] = result["problems"]
    assert name in message
    if name.endswith((".json", ".yaml", ".toml")):
        assert code.endswith("nesting_too_deep") and MAX_NESTING_DEPTH.env in message and result["status"] == "failed"
    else:  # one bad line of a stream: the next line is still read
        assert code in ("jsonl_lines_unparsed", "log_lines_unparsable") and result["records"] == 1


def test_yaml_billion_laughs_is_refused_in_bounded_time_and_memory(tmp_path):
    path = tmp_path / "hparams.yaml"
    path.write_text(BILLION_LAUGHS)
    result = measure(path, "hparams.yaml")
    assert result["seconds"] < 2 and result["rss_growth_mb"] < 16  # measured: < 0.01 s, +0 MB
    [[code, message]] = result["problems"]
    assert code == "config_yaml_alias_bomb" and "hparams.yaml" in message and MAX_YAML_NODES.env in message


def test_yaml_self_reference_and_ordinary_anchors(tmp_path):
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    assert codes(read(tmp_path / "loop.yaml")) == ["config_yaml_recursive_alias"]
    (tmp_path / "ok.yaml").write_text("base: &base {lr: 0.1, warmup_steps: 5}\ntrain: {<<: *base, max_epochs: 3}\n")
    ok = read(tmp_path / "ok.yaml")
    assert ok.problems == [] and ok.config["base_lr"] == 0.1 and ok.config["epochs"] == 3


@pytest.mark.parametrize("name, kind", [("train.log", None), ("metrics.csv", None), ("metrics.jsonl", None),
                                        ("loss", kinds.MLFLOW_METRIC)])
def test_nul_bytes_are_binary_not_text(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(b"step,loss\n1,0.5\x00\x00\x00\n" * 10)
    result = read(path, kind)
    assert result.status == "failed" and len(result.problems) == 1
    assert result.problems[0].code.startswith("binary_") and "NUL bytes" in result.problems[0].message


@pytest.mark.parametrize("name", ["train.log", "metrics.jsonl", "config.yaml", "config.json", "trainer_state.json",
                                  "metrics.csv"])
def test_invalid_utf8_is_read_or_reported_never_raised(tmp_path, name):
    path = tmp_path / name
    good = {".log": b"step 1 loss 0.5\n", ".jsonl": b'{"step": 1, "loss": 0.5}\n', ".csv": b"step,loss\n1,0.5\n"}
    path.write_bytes(good.get(path.suffix, b"") + b"\xff\xfe\xc3( lr \xe2\x82 0.1\n" + good.get(path.suffix, b""))
    result = read(path)
    assert all(name in problem.message for problem in result.problems)
    if path.suffix == ".log":
        assert "log_not_utf8" in codes(result) and result.records == 2


@pytest.mark.parametrize("name, kind", [("events.out.tfevents.1.h.1.0", None), ("train.log", None),
                                        ("metrics.csv", None), ("metrics.jsonl", None), ("config.yaml", None),
                                        ("config.json", None), ("trainer_state.json", None), ("model.pt", None),
                                        ("training_args.bin", None), ("loss", kinds.MLFLOW_METRIC)])
def test_empty_files_never_raise(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(b"")
    result = read(path, kind)
    assert result.records == 0 and all(name in problem.message for problem in result.problems)


# ---------------------------------------------------------------- caps say so when hit


@pytest.mark.parametrize("name, kind, content", [
    ("train.log", None, "".join(f"step {i} loss {1 / (i + 1)}\n" for i in range(50))),
    ("metrics.csv", None, "step,loss\n" + "".join(f"{i},{i}\n" for i in range(50))),
    ("metrics.jsonl", None, "".join(json.dumps({"step": i, "loss": i}) + "\n" for i in range(50))),
    ("loss", kinds.MLFLOW_METRIC, "".join(f"1000 {i} {i}\n" for i in range(50))),
    ("trainer_state.json", None, json.dumps({"log_history": [{"step": i, "loss": i} for i in range(50)]})),
])
def test_values_cap_is_reported_with_file_place_and_option(tmp_path, monkeypatch, name, kind, content):
    monkeypatch.setenv(MAX_VALUES_PER_FILE.env, "10")
    path = tmp_path / name
    path.write_text(content)
    result = read(path, kind)
    assert result.records == 10
    [problem] = [p for p in result.problems if p.code == "values_cap_reached"]
    assert name in problem.message and "10 values" in problem.message and MAX_VALUES_PER_FILE.env in problem.message


def test_values_cap_on_an_event_file(tmp_path, monkeypatch):
    (event_file,) = (SAMPLE_RUNS / "healthy_onecycle" / "tb").glob("*tfevents*")
    monkeypatch.setenv(MAX_VALUES_PER_FILE.env, "25")
    result = read(event_file)
    assert [p.code for p in result.problems] == ["values_cap_reached"]
    assert "25 values or records" in result.problems[0].message and result.problems[0].locator.startswith("byte ")


def test_config_size_cap_and_its_override(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\n" + "# padding\n" * 200)
    monkeypatch.setenv(MAX_CONFIG_BYTES.env, "100")
    [problem] = read(path).problems
    assert problem.code == "config_too_large" and "100-byte limit" in problem.message
    assert MAX_CONFIG_BYTES.env in problem.message
    monkeypatch.setenv(MAX_CONFIG_BYTES.env, "1_000_000")
    assert read(path).config["base_lr"] == 0.1


def test_every_cap_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for cap in ALL_CAPS:
        assert cap.env in readme and f"{cap.default:,}" in readme.replace("_", ","), cap


def test_caps_read_from_the_environment_ignore_garbage(monkeypatch):
    monkeypatch.setenv(MAX_LINE_BYTES.env, "lots")
    assert MAX_LINE_BYTES.value() == MAX_LINE_BYTES.default
    monkeypatch.setenv(MAX_LINE_BYTES.env, "2048")
    assert MAX_LINE_BYTES.value() == 2048
    assert os.environ[MAX_LINE_BYTES.env] == "2048"
