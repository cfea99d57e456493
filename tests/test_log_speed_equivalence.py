"""The batched log reader (layouts + `_scan`) gives exactly what the per-line path gives.

Issue 11 allows the fast path only if nothing changes: the same series (tags, steps, values bit for
bit with NaN where NaN was, wall times, line numbers, step bases), the same events, the same
problems and the same coverage. The logs here are written to be awkward for a vectorised reader:
NaN/inf, 17-digit reprs, `1.0E-04` exponents, negative numbers, formats interleaved, restart
banners, tracebacks, CRLF and `\\r` redraws, non-UTF-8 bytes, over-long lines, and a block size of a
few KB so lines straddle block boundaries all the time.
"""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs import fast, lines
from forensics.ingest.logs.formats.base import to_float
from forensics.ingest.logs.reader import read_log

SMALL_BLOCK = 4096
LINE_LIMIT = 2048


def _awkward_number(rng: random.Random) -> str:
    """A number the way some training loop might print it."""
    choice = rng.random()
    if choice < 0.05:
        return rng.choice(("nan", "inf", "-inf", "NaN", "Inf", "-Inf", "NAN", "INF"))
    if choice < 0.35:
        return repr(rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12))  # 17-digit reprs, e-notation
    if choice < 0.55:
        return f"{rng.uniform(-5, 5):.6E}"  # Megatron's 1.234560E-04
    if choice < 0.7:
        return f"{rng.uniform(0, 3):.4f}"
    if choice < 0.8:
        return str(rng.randint(-10**6, 10**6))
    if choice < 0.9:
        return f"{rng.uniform(0, 1):.3e}"
    return rng.choice(("0", "0.0", "-0.0", "1.", ".5", "1e-400", "1e400", "9007199254740993", "1.0E-04"))


def _hf_line(rng: random.Random, step: int) -> str:
    if rng.random() < 0.1:
        return f"{{'loss': {_awkward_number(rng)}, 'learning_rate': {_awkward_number(rng)}, 'step': {step}}}"
    return (f"{{'loss': {_awkward_number(rng)}, 'grad_norm': {_awkward_number(rng)}, "
            f"'learning_rate': {_awkward_number(rng)}, 'epoch': {round(step / 1000, 2)}}}")


def _megatron_line(rng: random.Random, iteration: int) -> str:
    skipped = 1 if rng.random() < 0.03 else 0
    nan_iterations = 1 if rng.random() < 0.02 else 0
    return (f" iteration {iteration:8d}/{100000:8d} | consumed samples: {iteration * 256:12d} | "
            f"elapsed time per iteration (ms): {rng.uniform(4000, 4400):.1f} | "
            f"learning rate: {_awkward_number(rng)} | global batch size: {256:5d} | lm loss: {_awkward_number(rng)} | "
            f"loss scale: {rng.choice(('1.0', '65536.0', 'nan'))} | grad norm: {_awkward_number(rng)} | "
            f"number of skipped iterations: {skipped:3d} | number of nan iterations: {nan_iterations:3d} |")


def _key_value_line(rng: random.Random, step: int) -> str:
    return (f"epoch {step // 500} step {step}/5000 loss {_awkward_number(rng)} lr {_awkward_number(rng)} "
            f"grad_norm {_awkward_number(rng)}")


_INTERRUPTIONS = (
    b"",
    b"***** Running training *****",
    b"  Num examples = 1,000",
    b"Resuming training from checkpoint-400",
    b"Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\nRuntimeError: boom",
    b"[2026-01-16 07:32:24] starting iteration loop",
    b"2026-01-16 07:32:25,123 - INFO - saving checkpoint",
    b"Epoch 3:  40%|####      | 40/100 [00:10<00:15, loss=0.5]\rEpoch 3:  41%|####      | 41/100 [00:10<00:15, loss=0.4]",
    b"caf\xe9 loss 0.5 step 3",  # latin-1: not UTF-8
    b"step 7 loss 0.25 lr 1e-3\r",  # CRLF
    b"x" * 1500,  # long, within the limit
    b"loss " * 1000,  # over the limit: skipped and reported
    b"   ",
)


def _write_log(path: Path, kind: str, lines_wanted: int, seed: int) -> None:
    rng = random.Random(seed)
    make = {"hf": _hf_line, "megatron": _megatron_line, "key_value": _key_value_line}
    formats = list(make)
    out = bytearray()
    step = 0
    for _ in range(lines_wanted):
        step += 1
        roll = rng.random()
        if roll < 0.06:
            out += rng.choice(_INTERRUPTIONS)
        elif roll < 0.1:  # another format's line in the middle of a run
            out += make[rng.choice(formats)](rng, step).encode()
        elif roll < 0.11:
            step = max(1, step - rng.randint(1, 50))  # a restart from an earlier step
            out += make[kind](rng, step).encode()
        else:
            out += make[kind](rng, step).encode()
        out += b"\n"
    out += make[kind](rng, step + 1).encode()  # the last line without its newline
    path.write_bytes(bytes(out))


def _read(path: Path, batched: bool):
    return read_log(FoundFile(path, path.name, "log", path.stat().st_size, 0.0), batched=batched)


def _bits(column: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(column, dtype=np.float64).view(np.uint64)


def _assert_same_read(expected, actual) -> None:
    assert [(s.tag, s.context) for s in actual.series] == [(s.tag, s.context) for s in expected.series]
    for want, got in zip(expected.series, actual.series):
        assert got.step_basis == want.step_basis, want.tag
        assert np.array_equal(got.steps, want.steps), want.tag
        assert np.array_equal(got.records, want.records), want.tag
        assert np.array_equal(_bits(got.values), _bits(want.values)), want.tag
        assert np.array_equal(_bits(got.wall_times), _bits(want.wall_times)), want.tag
    assert repr(actual.events) == repr(expected.events)
    assert repr(actual.problems) == repr(expected.problems)
    assert actual.coverage == expected.coverage
    assert (actual.records, actual.detail, actual.readable) == (expected.records, expected.detail, expected.readable)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(lines, "BLOCK_BYTES", SMALL_BLOCK)
    monkeypatch.setenv("FORENSICS_MAX_LINE_BYTES", str(LINE_LIMIT))


@pytest.mark.parametrize("compiled", [True, False], ids=["with_scan", "pure_python"])
@pytest.mark.parametrize("kind", ["hf", "megatron", "key_value"])
def test_batched_read_equals_per_line_read(tmp_path, small_blocks, monkeypatch, kind, compiled):
    if compiled and fast.scan is None:
        pytest.skip("the C extension forensics.ingest.logs._scan is not built")
    if not compiled:
        monkeypatch.setattr(fast, "scan", None)
    path = tmp_path / f"{kind}.log"
    _write_log(path, kind, 3000, seed=11)
    per_line, batched = _read(path, batched=False), _read(path, batched=True)
    assert per_line.records > 5000 and per_line.events and per_line.problems  # the log is as awkward as meant
    _assert_same_read(per_line, batched)


@pytest.mark.parametrize("kind", ["hf", "megatron", "key_value"])
def test_batched_read_of_a_clean_log_takes_the_fast_path(tmp_path, small_blocks, monkeypatch, kind):
    """Clean runs really go through `_scan` (else the test above would prove nothing), same result."""
    if fast.scan is None:
        pytest.skip("the C extension forensics.ingest.logs._scan is not built")
    rng = random.Random(5)
    make = {"hf": _hf_line, "megatron": _megatron_line, "key_value": _key_value_line}[kind]
    path = tmp_path / f"{kind}.log"
    path.write_text("".join(make(rng, step) + "\n" for step in range(1, 2001)))
    scanned = []
    real_scan = fast.scan

    def counting_scan(*args):
        result = real_scan(*args)
        scanned.append(result[0])
        return result
    monkeypatch.setattr(fast, "scan", counting_scan)
    batched = _read(path, batched=True)
    assert sum(scanned) > 1500
    _assert_same_read(_read(path, batched=False), batched)


def test_values_cap_stops_both_paths_at_the_same_line(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setenv("FORENSICS_MAX_VALUES_PER_FILE", "2345")
    path = tmp_path / "megatron.log"
    _write_log(path, "megatron", 2000, seed=3)
    per_line, batched = _read(path, batched=False), _read(path, batched=True)
    assert any(problem.code == "values_cap_reached" for problem in per_line.problems)
    _assert_same_read(per_line, batched)


def _random_token(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(("nan", "NaN", "NAN", "inf", "Inf", "INF", "-nan", "+inf", "-INF"))
    sign = rng.choice(("", "", "-", "+"))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
    if roll < 0.2:
        digits = "0" * rng.randint(0, 5) + digits
    point = rng.randint(0, len(digits))
    if rng.random() < 0.3:
        mantissa = digits
    elif point == 0 and rng.random() < 0.5:
        mantissa = "." + digits
    elif point == len(digits):
        mantissa = digits + "."
    else:
        mantissa = digits[:point] + "." + digits[point:]
    if rng.random() < 0.5:
        exponent = rng.choice((rng.randint(-30, 30), rng.randint(-340, 320), rng.randint(-9, 9)))
        mantissa += rng.choice("eE") + rng.choice(("", "+")) * (exponent >= 0) + f"{exponent:0{rng.randint(1, 3)}d}"
    return sign + mantissa


def _scan_tokens(tokens: list[str], kind: bytes) -> np.ndarray:
    data = "".join(token + "\n" for token in tokens).encode("ascii")
    count, end, values, _ = fast.scan(data, 0, (b"", b""), kind, 1 << 40, 1 << 20)
    assert (count, end) == (len(tokens), len(data))
    return np.frombuffer(values, dtype=np.float64)


def test_c_conversion_equals_python_float_bit_for_bit():
    if fast.scan is None:
        pytest.skip("the C extension forensics.ingest.logs._scan is not built")
    rng = random.Random(20260104)
    tokens = [_random_token(rng) for _ in range(60_000)]
    # 17-digit reprs of random doubles, their neighbours, and the halfway cases between them
    for _ in range(20_000):
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(63)))[0]
        if math.isfinite(value):
            tokens += [repr(value), f"{value:.17e}", f"{value:.25e}", f"{value:.16E}"]
    tokens += ["2.2250738585072011e-308", "4.9e-324", "1.7976931348623157e308", "1.7976931348623159e308",
               "9007199254740993", "9007199254740992.5", "0.1", "1e22", "1e23", "123456789012345678901234567890",
               "1e0000001", "0e999999999", "1.0E-04"]
    got = _scan_tokens(tokens, b"f")
    want = np.array([to_float(token) for token in tokens], dtype=np.float64)
    wrong = np.flatnonzero(got.view(np.uint64) != want.view(np.uint64))
    assert not len(wrong), [(tokens[i], got[i], want[i]) for i in wrong[:5]]


def test_c_conversion_of_steps_and_counters_equals_python():
    if fast.scan is None:
        pytest.skip("the C extension forensics.ingest.logs._scan is not built")
    rng = random.Random(7)
    plain = [str(rng.randint(0, 10 ** rng.randint(1, 15) - 1)) for _ in range(5000)]
    decimals = plain + [token + "." + str(rng.randint(0, 999)) for token in plain[:1000]] + [".5", "3."]
    assert np.array_equal(_scan_tokens(plain, b"d"), np.array([float(token) for token in plain]))
    assert np.array_equal(_scan_tokens(decimals, b"u").view(np.uint64),
                          np.array([float(token) for token in decimals]).view(np.uint64))
