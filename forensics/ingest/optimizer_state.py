"""Summarise a torch optimizer `state_dict()`: hyper-parameters per param group and step counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forensics.ingest.scheduler_state import NOT_PLAIN, as_int, json_float, json_safe, plain_value
from forensics.ingest.tensors import is_tensor
from forensics.ingest.weight_scan import count_nonfinite

_NAMED_GROUP_KEYS = {"params", "lr", "initial_lr", "betas", "momentum", "weight_decay", "param_names"}


@dataclass(frozen=True)
class ParamGroup:
    """One optimizer param group's hyper-parameters as saved."""

    index: int
    lr: float | None
    initial_lr: float | None
    betas: tuple[float, float] | None
    momentum: float | None
    weight_decay: float | None
    extra: dict  # other scalar hyper-parameters (max_lr, min_lr, eps, nesterov, ...)
    params: int = 0  # how many parameters the group holds

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "index": self.index,
            "lr": json_float(self.lr),
            "initial_lr": json_float(self.initial_lr),
            "betas": [json_float(b) for b in self.betas] if self.betas else None,
            "momentum": json_float(self.momentum),
            "weight_decay": json_float(self.weight_decay),
            "params": self.params,
            "extra": json_safe(self.extra),
        }


@dataclass(frozen=True)
class OptimizerState:
    """One optimizer's saved state, found at `key` in a checkpoint (or a file name)."""

    key: str
    param_groups: tuple[ParamGroup, ...]
    step_counts: tuple[int, ...]  # distinct per-parameter `step` values, sorted
    params_with_state: int
    family: str | None  # "adam" (exp_avg), "sgd_momentum" (momentum_buffer tensors), "sgd" (all None)
    state_values: int = 0            # floating values in per-parameter state (exp_avg, ...)
    nonfinite_state_values: int = 0  # of which NaN / inf

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "key": self.key,
            "param_groups": [group.to_dict() for group in self.param_groups],
            "step_counts": list(self.step_counts),
            "params_with_state": self.params_with_state,
            "family": self.family,
            "state_values": self.state_values,
            "nonfinite_state_values": self.nonfinite_state_values,
        }


def looks_like_optimizer_state(value: Any) -> bool:
    """True for a dict shaped like `optimizer.state_dict()`."""
    return isinstance(value, dict) and "param_groups" in value


def summarise_optimizer(state: dict, key: str) -> tuple[OptimizerState | None, str | None]:
    """Summarise one optimizer `state_dict()`; on a shape we cannot read return (None, why)."""
    groups = state.get("param_groups")
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        return None, f"{key}.param_groups is {type(groups).__name__}, not a list of dicts"
    per_param = state.get("state", {})
    if not isinstance(per_param, dict):
        return None, f"{key}.state is {type(per_param).__name__}, not a dict"
    steps: set[int] = set()
    params_with_state = 0
    state_values = nonfinite = 0
    has_exp_avg = has_buffer_tensor = has_buffer_none = False
    for entry in per_param.values():
        if not isinstance(entry, dict) or not entry:
            continue
        params_with_state += 1
        step = as_int(entry.get("step"))
        if step is not None:
            steps.add(step)
        has_exp_avg = has_exp_avg or "exp_avg" in entry
        buffer = entry.get("momentum_buffer", 0)
        has_buffer_tensor = has_buffer_tensor or is_tensor(buffer)
        has_buffer_none = has_buffer_none or ("momentum_buffer" in entry and buffer is None)
        for name, value in entry.items():
            if name != "step" and is_tensor(value) and value.is_floating_point():
                state_values += value.numel()
                nonfinite += count_nonfinite(value)
    family = "adam" if has_exp_avg else "sgd_momentum" if has_buffer_tensor else "sgd" if has_buffer_none else None
    return OptimizerState(
        key=key,
        param_groups=tuple(_param_group(i, g) for i, g in enumerate(groups)),
        step_counts=tuple(sorted(steps)),
        params_with_state=params_with_state,
        family=family,
        state_values=state_values,
        nonfinite_state_values=nonfinite,
    ), None


def _param_group(index: int, group: dict) -> ParamGroup:
    extra = {}
    for name, value in group.items():
        if name in _NAMED_GROUP_KEYS or not isinstance(name, str):
            continue
        plain = plain_value(value)
        if plain is not NOT_PLAIN and plain is not None:
            extra[name] = plain
    params = group.get("params")
    return ParamGroup(
        index=index,
        lr=_number(group.get("lr")),
        initial_lr=_number(group.get("initial_lr")),
        betas=_betas(group.get("betas")),
        momentum=_number(group.get("momentum")),
        weight_decay=_number(group.get("weight_decay")),
        extra=extra,
        params=len(params) if isinstance(params, (list, tuple)) else 0,
    )


def _number(value: Any) -> float | None:
    plain = plain_value(value)
    if isinstance(plain, bool) or not isinstance(plain, (int, float)):
        return None
    return float(plain)


def _betas(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    first, second = _number(value[0]), _number(value[1])
    if first is None or second is None:
        return None
    return (first, second)
