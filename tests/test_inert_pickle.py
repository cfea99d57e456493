"""The inert unpickler: reads values, imports nothing, calls nothing."""

from __future__ import annotations

import ast
import collections
import dataclasses
import enum
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import forensics.ingest.inert_pickle as inert_module
import forensics.ingest.inert_records as inert_records
from conftest import REPO
from forensics.ingest.checkpoint import read_training_args
from forensics.ingest.inert_pickle import InertPickleError, inert_load_file, inert_loads


def expected_plain(value):
    """What inert_loads should give for plain data: tuples and sets become lists."""
    if isinstance(value, (list, tuple)):
        return [expected_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: expected_plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return {"__bytes__": len(value)}
    return value


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(value=plain_data, protocol=st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL))
def test_plain_data_round_trips_for_every_protocol(value, protocol):
    assert inert_loads(pickle.dumps(value, protocol=protocol)) == expected_plain(value)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Settings:
    lr: float
    color: Color
    tags: list


class Slotted:
    __slots__ = ("a",)

    def __init__(self) -> None:
        self.a = 1


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_objects_become_records(protocol):
    data = inert_loads(pickle.dumps(Settings(0.1, Color.RED, ["x"]), protocol=protocol))
    assert data["__class__"] == f"{__name__}.Settings"
    assert data["state"] == {"lr": 0.1, "color": {"__class__": f"{__name__}.Color", "args": ["red"],
                                                  "value": "red"}, "tags": ["x"]}


def test_containers_and_shared_references():
    shared = [1, 2]
    ordered = collections.OrderedDict(b=1, a=2)
    data = inert_loads(pickle.dumps({"o": ordered, "s": {3}, "f": frozenset({4}), "x": shared, "y": shared,
                                     "b": bytearray(b"ab"), "slots": Slotted()}, protocol=2))
    assert data["o"] == {"b": 1, "a": 2} and list(data["o"]) == ["b", "a"]
    assert data["s"] == [3] and data["f"] == [4] and data["x"] == data["y"] == [1, 2]
    assert data["b"] == {"__bytes__": 2}
    assert data["slots"]["__class__"] == f"{__name__}.Slotted" and data["slots"]["state"] == [None, {"a": 1}]
    recursive = []
    recursive.append(recursive)
    assert inert_loads(pickle.dumps(recursive)) == ["<recursive reference>"]


class Payload:
    """Pickles to a call with a side effect; `inert_loads` must never make it."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_reduce_only_produces_records(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payloads = {
        "system": Payload(os.system, f"touch {marker}"),
        "eval": Payload(eval, f"open({str(marker)!r}, 'w')"),
        "popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "open": Payload(open, str(marker), "w"),
    }
    data = inert_loads(pickle.dumps(payloads, protocol=protocol))
    assert not marker.exists()
    assert data["system"]["__class__"] in ("posix.system", "os.system", "nt.system")
    assert data["system"]["args"] == [f"touch {marker}"]
    assert data["eval"]["__class__"] == "builtins.eval"
    assert data["popen"]["__class__"] == "subprocess.Popen"
    assert data["open"]["__class__"] in ("io.open", "builtins.open")


def test_raw_opcodes_global_reduce(tmp_path):
    marker = tmp_path / "pwned"
    # Protocol 0 by hand: GLOBAL 'os system', MARK, string, TUPLE, REDUCE, STOP.
    raw = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    assert inert_loads(raw) == {"__class__": "os.system", "args": [f"touch {marker}"],
                                "value": f"touch {marker}"}
    assert not marker.exists()


@pytest.mark.parametrize("module", [inert_module, inert_records])
def test_modules_import_nothing_that_could_load(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "_compat_pickle", "io", "pickletools", "warnings", "zipfile", "dataclasses",
                        "pathlib", "typing", "forensics.ingest.inert_records"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"__import__", "eval", "exec", "getattr", "importlib", "pickle", "codecs"}


def test_malformed_input_raises_inert_error():
    for data in (b"", b"\x80\x04garbage", pickle.dumps({"a": 1})[:-3], b"\xff\xff"):
        with pytest.raises(InertPickleError):
            inert_loads(data)


def test_out_of_band_buffers_are_refused():
    buffers = []
    data = pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=buffers.append)
    with pytest.raises(InertPickleError, match="NEXT_BUFFER"):
        inert_loads(data)


def test_exponential_expansion_is_bounded():
    nested = [0]
    for _ in range(40):
        nested = [nested, nested]  # 2**40 leaves, a few hundred bytes pickled
    with pytest.raises(InertPickleError, match="expands"):
        inert_loads(pickle.dumps(nested))


def test_size_limit(tmp_path):
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps(list(range(1000))))
    with pytest.raises(InertPickleError, match="limit"):
        inert_load_file(path, max_bytes=100)


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_files_give_tensor_records(tmp_path, zip_format):
    path = tmp_path / "training_args.bin"
    torch.save({"lr": 0.1, "weights": torch.ones(2, 3)}, path, _use_new_zipfile_serialization=zip_format)
    data = inert_load_file(path)
    assert data["lr"] == 0.1
    assert data["weights"]["__class__"] == "torch.Tensor"
    assert data["weights"]["kwargs"] == {"storage": "torch.FloatStorage", "shape": [2, 3]}


def test_non_training_args_pickle_is_partial(tmp_path):
    path = tmp_path / "training_args.bin"
    torch.save({"lr": 0.1}, path)
    args, [problem] = read_training_args(path, "training_args.bin")
    assert args is None and problem.code == "checkpoint_partial"


def test_real_training_args_imports_nothing(real_run):
    path = real_run("hf_tinyllama_lora_sft") / "training_args.bin"
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from forensics.ingest.checkpoint import read_training_args\n"
        f"args, problems = read_training_args(Path({str(path)!r}), 'training_args.bin')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'trl', 'accelerate'))\n"
        "print(json.dumps({'args': args, 'problems': len(problems), 'loaded': loaded}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True)
    out = json.loads(result.stdout)
    assert out["loaded"] == [] and out["problems"] == 0
    args = out["args"]
    assert args["__class__"] == "trl.trainer.sft_config.SFTConfig"
    assert args["learning_rate"] == 1e-05 and args["lr_scheduler_type"] == "cosine"
    assert (args["warmup_ratio"], args["warmup_steps"], args["max_steps"]) == (0.02, 0, -1)
    assert (args["num_train_epochs"], args["gradient_accumulation_steps"]) == (2, 8)
    assert (args["per_device_train_batch_size"], args["weight_decay"]) == (2, 0.2)
    assert (args["adam_beta1"], args["adam_beta2"], args["optim"]) == (0.9, 0.999, "adamw_torch")
    assert (args["logging_steps"], args["save_steps"], args["seed"]) == (15, 200, 42)
    assert (args["fp16"], args["bf16"], args["lr_scheduler_kwargs"]) == (True, False, {})


@settings(max_examples=300, deadline=None)
@given(value=plain_data, protocol=st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL),
       cut=st.integers(min_value=0, max_value=400), noise=st.binary(min_size=1, max_size=4),
       at=st.integers(min_value=0, max_value=400))
def test_damaged_pickles_raise_only_inert_errors(value, protocol, cut, noise, at):
    data = bytearray(pickle.dumps([value, Settings(0.1, Color.RED, [value])], protocol=protocol))
    at %= len(data)
    data[at:at + len(noise)] = noise
    for damaged in (bytes(data), bytes(data[: cut % len(data)])):
        try:
            inert_loads(damaged)
        except InertPickleError:
            pass


def test_codec_names_from_the_pickle_are_not_looked_up():
    # encode("x", "rot13") would make Python import encodings.rot13; we keep a record instead.
    data = inert_loads(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")
    assert data["__class__"] == "_codecs.encode" and data["args"] == ["x", "rot13"]
    assert inert_loads(b"c_codecs\nencode\n(Vab\nVlatin1\ntR.") == {"__bytes__": 2}
