"""Pull training facts out of the dict layouts checkpoints come in: plain, Lightning, HF.

Everything here works on objects `torch.load(weights_only=True)` already produced (or on plain
JSON / inert-pickle data for HF metadata); nothing opens a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forensics.ingest.optimizer_state import OptimizerState, looks_like_optimizer_state, summarise_optimizer
from forensics.ingest.tensors import is_tensor
from forensics.ingest.scheduler_state import (
    NOT_PLAIN, SchedulerState, add_param_group_hints, as_int, looks_like_scheduler_state, plain_value,
    summarise_scheduler,
)

# Usual key names, most common first. The first model key found is the one counted.
MODEL_KEYS = ("model", "model_state_dict", "state_dict", "net", "network", "ema", "model_ema")
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt", "optimizers", "optimizer_states")
SCHEDULER_KEYS = ("scheduler", "lr_scheduler", "scheduler_state_dict", "sched", "lr_schedulers",
                  "schedulers", "lr_scheduler_state_dict", "param_schedulers")
EPOCH_KEYS = ("epoch", "current_epoch")
STEP_KEYS = ("global_step", "step", "iteration", "iter")
# Lightning stores the precision plugin's state under the plugin's class name.
SCALER_KEYS = ("scaler", "grad_scaler", "amp", "scaler_state_dict", "amp_scaling_state",
               "native_amp_scaling_state", "MixedPrecision", "MixedPrecisionPlugin",
               "NativeMixedPrecisionPlugin")
RNG_KEYS = ("rng_state", "rng_states", "torch_rng_state", "cuda_rng_state", "numpy_rng_state",
            "python_rng_state", "random_state", "rng")
LIGHTNING_MARKERS = ("optimizer_states", "lr_schedulers", "loops")
# Short names that often hold something else (argparse options under "opt", an apex module under
# "amp"): when their value has the wrong shape we skip them quietly instead of reporting.
_LOOSE_KEYS = {"opt", "optim", "sched", "amp", "rng"}

# Lightning fit-loop counters: (name we report, path inside loops.fit_loop).
_LIGHTNING_COUNTERS = (
    ("batches_that_stepped", ("epoch_loop.state_dict", "_batches_that_stepped")),
    ("batches_completed", ("epoch_loop.batch_progress", "total", "completed")),
    ("epochs_completed", ("epoch_progress", "total", "completed")),
    ("optimizer_steps_automatic",
     ("epoch_loop.automatic_optimization.optim_progress", "optimizer", "step", "total", "completed")),
    ("optimizer_steps_automatic",  # Lightning 1.x nested the optimizer loop one level deeper
     ("epoch_loop.batch_loop.optimizer_loop.optim_progress", "optimizer", "step", "total", "completed")),
    ("optimizer_steps_manual", ("epoch_loop.manual_optimization.optim_step_progress", "total", "completed")),
    ("scheduler_steps", ("epoch_loop.scheduler_progress", "total", "completed")),
)
TRAINER_STATE_COUNTERS = ("global_step", "max_steps", "num_train_epochs", "epoch", "logging_steps",
                          "save_steps", "eval_steps", "train_batch_size")


@dataclass
class LayoutFacts:
    """What one loaded checkpoint object says, before weights are counted."""

    layout: str
    top_level_keys: list[str] = field(default_factory=list)
    epoch: int | None = None
    global_step: int | None = None
    optimizers: list[OptimizerState] = field(default_factory=list)
    schedulers: list[SchedulerState] = field(default_factory=list)
    rng_state_keys: list[str] = field(default_factory=list)
    has_grad_scaler: bool = False
    grad_scaler_scale: float | None = None
    model_key: str | None = None
    model_state: Any = None
    loop_counters: dict = field(default_factory=dict)
    framework_version: str | None = None
    hyper_parameters: dict | None = None
    partial: list[tuple[str, str]] = field(default_factory=list)  # (locator, what could not be read)


def read_layout(obj: Any, root_name: str) -> LayoutFacts:
    """Classify a loaded checkpoint object and extract its training facts.

    `root_name` names the object itself (the file name) for the case where the whole file is
    one optimizer / scheduler / scaler state, as in an HF checkpoint folder.
    """
    if not isinstance(obj, dict):
        return LayoutFacts(layout="unknown")
    facts = LayoutFacts(layout="plain", top_level_keys=[str(k) for k in obj])
    if obj and all(is_tensor(v) for v in obj.values()):
        facts.layout, facts.model_state, facts.model_key = "model_only", obj, None
        return facts
    if looks_like_optimizer_state(obj):
        _add_optimizers(facts, root_name, obj)
        return facts
    if looks_like_scheduler_state(obj):
        facts.schedulers.append(summarise_scheduler(obj, root_name))
        return facts
    if "scale" in obj and "growth_factor" in obj:
        facts.has_grad_scaler, facts.grad_scaler_scale = True, _scaler_scale(obj)
        return facts
    is_lightning = "pytorch-lightning_version" in obj or (
        "state_dict" in obj and any(k in obj for k in LIGHTNING_MARKERS))
    known = {*MODEL_KEYS, *OPTIMIZER_KEYS, *SCHEDULER_KEYS, *EPOCH_KEYS, *STEP_KEYS, *SCALER_KEYS, *RNG_KEYS}
    if _is_timm(obj):
        facts.layout = "timm"
    elif is_lightning:
        facts.layout = "lightning"
        facts.framework_version = _text(obj.get("pytorch-lightning_version"))
        facts.loop_counters = lightning_loop_counters(obj.get("loops"))
        hyper = plain_value(obj.get("hyper_parameters"))
        facts.hyper_parameters = _scalars_only(obj.get("hyper_parameters")) if hyper is NOT_PLAIN else hyper
    elif not any(k in known for k in obj) and not isinstance(obj.get("meta"), dict):
        facts.layout = "unknown"
        return facts
    _read_common(facts, obj)
    return facts


def _is_timm(obj: dict) -> bool:
    """timm's CheckpointSaver layout: `epoch`, `arch`, `state_dict`, `optimizer`, an int `version`
    (and `args`, `metric`, `state_dict_ema`, `amp_scaler` when used)."""
    return (all(key in obj for key in ("epoch", "arch", "state_dict", "version"))
            and isinstance(obj.get("version"), int) and isinstance(obj.get("arch"), str))


def _read_common(facts: LayoutFacts, obj: dict) -> None:
    for key in MODEL_KEYS:
        if isinstance(obj.get(key), (dict, list, tuple)) or is_tensor(obj.get(key)):
            facts.model_key, facts.model_state = key, obj[key]
            break
    for key in OPTIMIZER_KEYS:
        if key in obj:
            _add_optimizers(facts, key, obj[key])
    for key in SCHEDULER_KEYS:
        if key in obj:
            _add_schedulers(facts, key, obj[key])
    # mmengine / mmcv keep counters under "meta".
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    facts.epoch = _first_int(obj, EPOCH_KEYS)
    facts.global_step = _first_int(obj, STEP_KEYS)
    if facts.epoch is None:
        facts.epoch = _first_int(meta, EPOCH_KEYS)
    if facts.global_step is None:
        facts.global_step = _first_int(meta, STEP_KEYS)
    facts.rng_state_keys = [k for k in RNG_KEYS if obj.get(k) is not None]
    for key in SCALER_KEYS:
        if isinstance(obj.get(key), dict) and obj[key]:
            facts.has_grad_scaler = True
            facts.grad_scaler_scale = _scaler_scale(obj[key])
            break
    if facts.optimizers:
        groups = _raw_param_groups(obj)
        facts.schedulers = [add_param_group_hints(s, groups) for s in facts.schedulers]


def _add_optimizers(facts: LayoutFacts, key: str, value: Any) -> None:
    if value is None:
        return
    if looks_like_optimizer_state(value):
        entries = [(key, value)]
    elif isinstance(value, (list, tuple)):
        entries = [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    elif isinstance(value, dict) and value and all(looks_like_optimizer_state(v) for v in value.values()):
        entries = [(f"{key}.{name}", item) for name, item in value.items()]
    else:
        if key not in _LOOSE_KEYS:
            facts.partial.append((f"key {key}", f"'{key}' is present but is not an optimizer state_dict "
                                                f"({_shape(value)})"))
        return
    for entry_key, entry in entries:
        if not looks_like_optimizer_state(entry):
            facts.partial.append((f"key {entry_key}", f"'{entry_key}' is not an optimizer state_dict "
                                                      f"({_shape(entry)})"))
            continue
        summary, why = summarise_optimizer(entry, entry_key)
        if summary is None:
            facts.partial.append((f"key {entry_key}", f"optimizer state at '{entry_key}' unreadable: {why}"))
        else:
            facts.optimizers.append(summary)


def _add_schedulers(facts: LayoutFacts, key: str, value: Any) -> None:
    if value is None:
        return
    if looks_like_scheduler_state(value) or _is_scheduler_config(value):
        entries = [(key, value)]
    elif isinstance(value, (list, tuple)):
        entries = [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    elif isinstance(value, dict) and value and all(
            looks_like_scheduler_state(v) or _is_scheduler_config(v) for v in value.values()):
        entries = [(f"{key}.{name}", item) for name, item in value.items()]
    else:
        if key not in _LOOSE_KEYS:
            facts.partial.append((f"key {key}", f"'{key}' is present but is not a scheduler state_dict "
                                                f"({_shape(value)})"))
        return
    for entry_key, entry in entries:
        if _is_scheduler_config(entry):
            # A Lightning-style config dict: {"scheduler": state, "interval": "step", "frequency": 1}.
            interval = _text(entry.get("interval"))
            frequency = as_int(entry.get("frequency"))
            facts.schedulers.append(summarise_scheduler(entry["scheduler"], f"{entry_key}.scheduler",
                                                        interval, frequency))
        elif looks_like_scheduler_state(entry):
            facts.schedulers.append(summarise_scheduler(entry, entry_key))
        else:
            facts.partial.append((f"key {entry_key}", f"'{entry_key}' is not a scheduler state_dict "
                                                      f"({_shape(entry)})"))


def _is_scheduler_config(value: Any) -> bool:
    return isinstance(value, dict) and looks_like_scheduler_state(value.get("scheduler"))


def _raw_param_groups(obj: dict) -> list[dict]:
    """Param groups of the first optimizer, as saved (OneCycleLR keeps max_lr there)."""
    for key in OPTIMIZER_KEYS:
        value = obj.get(key)
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        if looks_like_optimizer_state(value) and isinstance(value["param_groups"], (list, tuple)):
            return [g for g in value["param_groups"] if isinstance(g, dict)]
    return []


def lightning_loop_counters(loops: Any) -> dict:
    """Counters from Lightning's `loops.fit_loop` progress tracking, where present."""
    fit_loop = loops.get("fit_loop") if isinstance(loops, dict) else None
    if not isinstance(fit_loop, dict):
        return {}
    counters: dict[str, int] = {}
    for name, path in _LIGHTNING_COUNTERS:
        node: Any = fit_loop
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        value = as_int(node)
        if value is not None and name not in counters:
            counters[name] = value
    return counters


def trainer_state_counters(state: Any) -> dict:
    """The counters of an HF `trainer_state.json` (never its log_history)."""
    if not isinstance(state, dict):
        return {}
    return {k: state[k] for k in TRAINER_STATE_COUNTERS
            if k in state and (state[k] is None or isinstance(state[k], (int, float)))}


def training_args_fields(record: Any) -> dict | None:
    """Flatten an inert-pickle `TrainingArguments` record into {field: plain value}.

    Enums (`SchedulerType("cosine")`) become their value; fields holding other objects are kept
    only when they are plain data all the way down.
    """
    if not isinstance(record, dict) or "__class__" not in record:
        return None
    state = record.get("state")
    if isinstance(state, list) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]  # (dict, slots) state form
    if not isinstance(state, dict):
        return None
    fields: dict[str, Any] = {"__class__": record["__class__"]}
    for name, value in state.items():
        plain = _record_value(value)
        if plain is not NOT_PLAIN:
            fields[name] = plain
    return fields


def _record_value(value: Any) -> Any:
    if isinstance(value, dict) and "__class__" in value:
        return value["value"] if "value" in value else NOT_PLAIN
    if isinstance(value, dict) and any(str(k).startswith("__") for k in value):
        return NOT_PLAIN
    if isinstance(value, list):
        items = [_record_value(v) for v in value]
        return NOT_PLAIN if any(v is NOT_PLAIN for v in items) else items
    if isinstance(value, dict):
        items = {k: _record_value(v) for k, v in value.items()}
        return NOT_PLAIN if any(v is NOT_PLAIN for v in items.values()) else items
    return value


def _scaler_scale(state: dict) -> float | None:
    scale = state.get("scale", state.get("loss_scale"))
    if scale is None:
        # apex amp: {"loss_scaler0": {"loss_scale": 65536.0, ...}, ...}
        inner = next((v for v in state.values() if isinstance(v, dict) and "loss_scale" in v), None)
        scale = inner.get("loss_scale") if inner else None
    plain = plain_value(scale)
    return float(plain) if isinstance(plain, (int, float)) and not isinstance(plain, bool) else None


def _first_int(obj: dict, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = as_int(obj.get(key))
        if value is not None:
            return value
    return None


def _scalars_only(value: Any) -> dict | None:
    if not isinstance(value, dict):
        return None
    kept = {str(k): plain_value(v) for k, v in value.items()}
    return {k: v for k, v in kept.items() if v is not NOT_PLAIN}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:6])
        return f"a dict with keys {keys}" + (", ..." if len(value) > 6 else "")
    return f"a {type(value).__name__}"
