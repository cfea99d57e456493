"""Read training checkpoints safely: what step they were saved at and what the optimizer,
scheduler and weights looked like then.

Every torch file is opened with `torch.load(weights_only=True, mmap=True)` and nothing else: a
checkpoint that needs any other global is reported as `checkpoint_unsafe`, never loaded another
way. The one widening is the handful of numpy globals HF's `rng_state.pth` holds (see
`RNG_SAFE_GLOBALS`), allowed only inside our own `torch.load` calls. HF `training_args.bin` is
read by the inert opcode walker in `inert_pickle`, which imports and calls nothing.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from forensics.ingest.checkpoint_layouts import (
    LayoutFacts, read_layout, trainer_state_counters, training_args_fields,
)
from forensics.ingest.inert_pickle import InertPickleError, inert_load_file
from forensics.ingest.optimizer_state import OptimizerState, ParamGroup
from forensics.ingest.problems import InputProblem
from forensics.ingest.scheduler_state import SchedulerState, add_param_group_hints, json_float, json_safe
from forensics.ingest.weight_scan import SafetensorsError, WeightCount, count_model_state, count_safetensors

__all__ = [
    "Checkpoint", "OptimizerState", "ParamGroup", "SchedulerState", "RNG_SAFE_GLOBALS",
    "load_torch_file", "read_checkpoint_file", "read_hf_checkpoint_dir", "read_training_args",
]


def _numpy_rng_globals() -> list:
    """The globals a numpy RNG state (MT19937 key array) pickles to, and nothing else.

    Found by loading a real HF `rng_state.pth`: the numpy bit-generator state is a uint32
    `ndarray`, which pickles as `_reconstruct(ndarray, ...)` + `dtype("u4")`, and BUILD on that
    dtype needs its class `UInt32DType`. Files written under numpy 1.x name the function
    `numpy.core.multiarray._reconstruct`, under 2.x `numpy._core.multiarray._reconstruct`.
    """
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    allowed: list = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    uint32_dtype_class = type(np.dtype(np.uint32))
    if uint32_dtype_class is not np.dtype:  # numpy >= 1.25 has one class per dtype
        allowed.append(uint32_dtype_class)
    return allowed


RNG_SAFE_GLOBALS = _numpy_rng_globals()

_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+?) (?:was not an allowed global|whose module)")
_UNSAFE_OTHER = re.compile(r"(?:unrecognized function|but got) (.+?)(?:\n|$)")
_BOILERPLATE = ("Weights only load failed", "Check the documentation", "(1) In PyTorch", "(2) Alternatively",
                "In PyTorch 2.6")
_CLASS_REPR = re.compile(r"^<class '([^']+)'>$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HF_FOLDER_STEP = re.compile(r"checkpoint-(\d+)$")


@dataclass
class Checkpoint:
    """What one checkpoint file (or HF `checkpoint-N/` folder) says about the run at save time."""

    path: str
    layout: str  # "plain" | "lightning" | "timm" | "hf_checkpoint_dir" | "model_only" | "unknown"
    files: list[str]
    epoch: int | None = None
    global_step: int | None = None
    optimizers: list[OptimizerState] = field(default_factory=list)
    schedulers: list[SchedulerState] = field(default_factory=list)
    has_rng_state: bool = False
    has_grad_scaler: bool = False
    grad_scaler_scale: float | None = None
    weight_tensors: int = 0
    weight_values: int = 0
    nonfinite_weight_values: int = 0
    training_args: dict | None = None
    trainer_state: dict | None = None
    top_level_keys: list[str] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    readable: bool = True
    # Additions beyond the agreed interface:
    nonfinite_weight_tensors: int = 0    # tensors holding at least one NaN / inf
    model_key: str | None = None         # where the counted weights were ("state_dict", "model", ...)
    rng_state_keys: list[str] = field(default_factory=list)  # keys or files holding RNG state
    loop_counters: dict = field(default_factory=dict)  # Lightning fit-loop progress counters
    framework_version: str | None = None  # e.g. "pytorch-lightning_version"
    hyper_parameters: dict | None = None  # Lightning hyper_parameters (plain values only)
    epoch_fraction: float | None = None   # HF trainer_state "epoch" (e.g. 1.99)

    def to_dict(self) -> dict:
        """JSON-able form; the single source of the checkpoint's JSON keys."""
        return {
            "path": self.path,
            "layout": self.layout,
            "files": list(self.files),
            "readable": self.readable,
            "epoch": self.epoch,
            "epoch_fraction": json_float(self.epoch_fraction),
            "global_step": self.global_step,
            "optimizers": [o.to_dict() for o in self.optimizers],
            "schedulers": [s.to_dict() for s in self.schedulers],
            "has_rng_state": self.has_rng_state,
            "rng_state_keys": list(self.rng_state_keys),
            "has_grad_scaler": self.has_grad_scaler,
            "grad_scaler_scale": json_float(self.grad_scaler_scale),
            "model_key": self.model_key,
            "weight_tensors": self.weight_tensors,
            "weight_values": self.weight_values,
            "nonfinite_weight_values": self.nonfinite_weight_values,
            "nonfinite_weight_tensors": self.nonfinite_weight_tensors,
            "training_args": json_safe(self.training_args),
            "trainer_state": json_safe(self.trainer_state),
            "loop_counters": dict(self.loop_counters),
            "framework_version": self.framework_version,
            "hyper_parameters": json_safe(self.hyper_parameters),
            "top_level_keys": list(self.top_level_keys),
            "problems": [p.to_dict() for p in self.problems],
        }

    def add_weights(self, counts: WeightCount) -> None:
        """Add the totals of one weights source to this checkpoint's."""
        self.weight_tensors += counts.tensors
        self.weight_values += counts.values
        self.nonfinite_weight_values += counts.nonfinite_values
        self.nonfinite_weight_tensors += counts.nonfinite_tensors


def load_torch_file(path: Path, display_path: str) -> tuple[Any, list[InputProblem]]:
    """`torch.load` with weights_only=True (and mmap where the format allows); never raises.

    Returns (object, []) or (None, [problem]).
    """
    import torch  # here, not at module level: a run without checkpoints never pays torch's import (~2 s)

    try:
        # torch warns on stderr about odd pickle protocols in damaged files; the file's problem is
        # reported below instead, so the terminal summary stays readable.
        with torch.serialization.safe_globals(RNG_SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True), []
            except RuntimeError as err:
                if "mmap can only be used" not in str(err):
                    raise
                # Legacy (pre-zip) torch.save files cannot be memory-mapped; still weights_only.
                return torch.load(path, map_location="cpu", weights_only=True), []
    except OSError as err:
        return None, [InputProblem("file_unreadable", display_path,
                                   f"{display_path}: cannot read: {err.strerror or err}")]
    except pickle.UnpicklingError as err:
        refused = _refused_globals(path, str(err))
        if refused:
            names = ", ".join(f"'{name}'" for name in refused)
            which = "which is" if len(refused) == 1 else "which are"
            noun = "global" if len(refused) == 1 else "globals"
            return None, [InputProblem(
                "checkpoint_unsafe", display_path,
                f"{display_path}: needs {noun} {names} {which} not allowed; not loaded another way")]
        return None, [_unreadable(display_path, err)]
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ValueError, ...
        return None, [_unreadable(display_path, err)]


def _refused_globals(path: Path, message: str) -> list[str]:
    found = _UNSAFE_GLOBAL.findall(message) or [_CLASS_REPR.sub(r"\1", m.strip())
                                                 for m in _UNSAFE_OTHER.findall(message)]
    if not found:
        return []
    import torch

    try:
        # Lists every refused global of a zip checkpoint by reading opcodes only; inside the same
        # allow-list as the load, so the numpy RNG globals are not reported.
        with torch.serialization.safe_globals(RNG_SAFE_GLOBALS):
            listed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - legacy format or unreadable: keep what the message said
        listed = []
    return sorted(set(found) | set(listed))


def _unreadable(display_path: str, err: BaseException) -> InputProblem:
    return InputProblem("checkpoint_unreadable", display_path,
                        f"{display_path}: torch could not read it: {torch_message(err)}")


def torch_message(err: BaseException) -> str:
    """One informative line from a torch.load exception (they run to a paragraph)."""
    text = _ANSI.sub("", str(err))
    if "WeightsUnpickler error:" in text:
        tail = text.split("WeightsUnpickler error:", 1)[1].strip()
        text = f"not a torch file the weights-only unpickler accepts ({tail.splitlines()[0].strip()})" \
            if tail else text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(_BOILERPLATE)]
    line = lines[0] if lines else ""
    line = line.split(". This is an internal", 1)[0]
    if not line:
        line = "file is empty or ends early" if isinstance(err, EOFError) else "no message"
    return f"{type(err).__name__}: {line[:240]}"


def read_checkpoint_file(path: Path, display_path: str) -> Checkpoint:
    """Read one checkpoint file (`.pt`, `.pth`, `.ckpt`, `.bin`, `.safetensors`); never raises."""
    checkpoint = Checkpoint(path=display_path, layout="unknown", files=[display_path])
    if path.suffix == ".safetensors":
        _add_safetensors(checkpoint, path, display_path)
        checkpoint.layout = "model_only" if checkpoint.readable else "unknown"
        return checkpoint
    obj, problems = load_torch_file(path, display_path)
    checkpoint.problems.extend(problems)
    if problems:
        checkpoint.readable = False
        return checkpoint
    facts = read_layout(obj, path.name)
    _apply_facts(checkpoint, facts, display_path)
    return checkpoint


def _apply_facts(checkpoint: Checkpoint, facts: LayoutFacts, display_path: str) -> None:
    checkpoint.layout = facts.layout
    checkpoint.top_level_keys = facts.top_level_keys
    checkpoint.epoch = facts.epoch
    checkpoint.global_step = facts.global_step
    checkpoint.optimizers = facts.optimizers
    checkpoint.schedulers = facts.schedulers
    checkpoint.rng_state_keys = facts.rng_state_keys
    checkpoint.has_rng_state = bool(facts.rng_state_keys)
    checkpoint.has_grad_scaler = facts.has_grad_scaler
    checkpoint.grad_scaler_scale = facts.grad_scaler_scale
    checkpoint.model_key = facts.model_key
    checkpoint.loop_counters = facts.loop_counters
    checkpoint.framework_version = facts.framework_version
    checkpoint.hyper_parameters = facts.hyper_parameters
    if facts.model_state is not None:
        checkpoint.add_weights(count_model_state(facts.model_state))
    for locator, message in facts.partial:
        checkpoint.problems.append(InputProblem("checkpoint_partial", display_path,
                                                f"{display_path}: {message}", locator=locator))


def _add_safetensors(checkpoint: Checkpoint, path: Path, display_path: str) -> None:
    try:
        checkpoint.add_weights(count_safetensors(path))
    except OSError as err:
        checkpoint.readable = False
        checkpoint.problems.append(InputProblem("file_unreadable", display_path,
                                                f"{display_path}: cannot read: {err.strerror or err}"))
    except SafetensorsError as err:
        checkpoint.readable = False
        checkpoint.problems.append(InputProblem("checkpoint_unreadable", display_path,
                                                f"{display_path}: not a safetensors file: {err}"))


def read_training_args(path: Path, display_path: str) -> tuple[dict | None, list[InputProblem]]:
    """HF `training_args.bin` as a flat dict of plain values, read without importing anything."""
    try:
        record = inert_load_file(path)
    except OSError as err:
        return None, [InputProblem("file_unreadable", display_path,
                                   f"{display_path}: cannot read: {err.strerror or err}")]
    except InertPickleError as err:
        return None, [InputProblem("checkpoint_unreadable", display_path,
                                   f"{display_path}: not a readable pickle: {err}")]
    fields = training_args_fields(record)
    if fields is None:
        kind = record.get("__class__") if isinstance(record, dict) else type(record).__name__
        return None, [InputProblem("checkpoint_partial", display_path,
                                   f"{display_path}: holds {kind}, not a TrainingArguments object")]
    return fields, []


# HF Trainer folder members, by role.
_HF_OPTIMIZER = "optimizer.pt"
_HF_SCHEDULER = "scheduler.pt"
_HF_SCALER = "scaler.pt"
_HF_TRAINER_STATE = "trainer_state.json"
_HF_TRAINING_ARGS = "training_args.bin"
_HF_WEIGHTS = re.compile(r"(pytorch_model|model|adapter_model)(-\d+-of-\d+)?\.(bin|safetensors)$")
_HF_RNG = re.compile(r"rng_state(_\d+)?\.pth$")


def read_hf_checkpoint_dir(path: Path, display_path: str) -> Checkpoint:
    """Read an HF Trainer `checkpoint-N/` folder; never raises."""
    checkpoint = Checkpoint(path=display_path, layout="hf_checkpoint_dir", files=[])
    try:
        names = sorted(entry.name for entry in path.iterdir() if entry.is_file())
    except OSError as err:
        checkpoint.readable = False
        checkpoint.problems.append(InputProblem("file_unreadable", display_path,
                                                f"{display_path}: cannot list folder: {err.strerror or err}"))
        return checkpoint
    loaded_any = False
    raw_param_groups: list[dict] = []
    for name in names:
        member, member_display = path / name, f"{display_path}/{name}"
        if name == _HF_TRAINER_STATE:
            loaded_any |= _read_trainer_state(checkpoint, member, member_display)
        elif name == _HF_TRAINING_ARGS:
            checkpoint.files.append(member_display)
            checkpoint.training_args, problems = read_training_args(member, member_display)
            checkpoint.problems.extend(problems)
            loaded_any |= checkpoint.training_args is not None
        elif name.endswith(".safetensors") and _HF_WEIGHTS.match(name):
            checkpoint.files.append(member_display)
            problems_before = len(checkpoint.problems)
            _add_safetensors(checkpoint, member, member_display)
            loaded_any |= len(checkpoint.problems) == problems_before
        elif name in (_HF_OPTIMIZER, _HF_SCHEDULER, _HF_SCALER) or _HF_RNG.match(name) or _HF_WEIGHTS.match(name):
            checkpoint.files.append(member_display)
            obj, problems = load_torch_file(member, member_display)
            checkpoint.problems.extend(problems)
            if problems:
                continue
            loaded_any = True
            if _HF_RNG.match(name):
                checkpoint.rng_state_keys.append(name)
                continue
            facts = read_layout(obj, name)
            if name == _HF_OPTIMIZER and isinstance(obj, dict):
                raw_param_groups = [g for g in obj.get("param_groups", []) if isinstance(g, dict)]
            checkpoint.optimizers.extend(facts.optimizers)
            checkpoint.schedulers.extend(facts.schedulers)
            if name == _HF_SCALER:
                checkpoint.has_grad_scaler = facts.has_grad_scaler
                checkpoint.grad_scaler_scale = facts.grad_scaler_scale
            if facts.model_state is not None:
                checkpoint.add_weights(count_model_state(facts.model_state))
            for locator, message in facts.partial:
                checkpoint.problems.append(InputProblem("checkpoint_partial", member_display,
                                                        f"{member_display}: {message}", locator=locator))
    checkpoint.has_rng_state = bool(checkpoint.rng_state_keys)
    checkpoint.schedulers = [_hf_scheduler(add_param_group_hints(s, raw_param_groups))
                             for s in checkpoint.schedulers]
    if checkpoint.global_step is None:
        match = _HF_FOLDER_STEP.search(path.name)
        checkpoint.global_step = int(match.group(1)) if match else None
    checkpoint.readable = loaded_any
    return checkpoint


def _hf_scheduler(scheduler: SchedulerState) -> SchedulerState:
    """HF Trainer builds every `lr_lambdas` schedule with LambdaLR, which settles that ambiguity."""
    if scheduler.candidates != ("LambdaLR", "MultiplicativeLR"):
        return scheduler
    return replace(scheduler, class_name="LambdaLR", match="context",
                   identified_by=scheduler.identified_by
                   + "; in an HF Trainer folder, where get_scheduler builds LambdaLR")


def _read_trainer_state(checkpoint: Checkpoint, member: Path, member_display: str) -> bool:
    checkpoint.files.append(member_display)
    try:
        state = json.loads(member.read_text(encoding="utf-8", errors="backslashreplace"))
    except OSError as err:
        checkpoint.problems.append(InputProblem("file_unreadable", member_display,
                                                f"{member_display}: cannot read: {err.strerror or err}"))
        return False
    except json.JSONDecodeError as err:
        checkpoint.problems.append(InputProblem(
            "checkpoint_partial", member_display,
            f"{member_display}: not valid JSON ({err.msg} at line {err.lineno})", locator=f"line {err.lineno}"))
        return False
    counters = trainer_state_counters(state)
    checkpoint.trainer_state = counters
    step = counters.get("global_step")
    if isinstance(step, int) and not isinstance(step, bool):
        checkpoint.global_step = step
    epoch = counters.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
        checkpoint.epoch_fraction = float(epoch)
        checkpoint.epoch = int(epoch) if float(epoch).is_integer() else None
    return True
