"""Name the torch LR scheduler behind a saved `state_dict` and summarise its state.

A scheduler's `state_dict()` is its `__dict__` minus the optimizer, so the set of keys names the
class. The table below was taken from torch 2.13 by constructing each class and stepping it
(`tests/test_checkpoint_reader.py::test_signature_table_matches_torch` re-derives it, so a torch
upgrade that changes a key fails there, not in the field). Keys every `LRScheduler` writes are left
out of the signatures; `verbose` is one older torch versions wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

# Written by every LRScheduler subclass; they say nothing about which one.
BASE_SCHEDULER_KEYS = frozenset({
    "base_lrs", "last_epoch", "_step_count", "_get_lr_called_within_step", "_is_initial",
    "_last_lr", "verbose",
})

# Class-specific keys of `state_dict()` in torch 2.13, minus BASE_SCHEDULER_KEYS.
SCHEDULER_SIGNATURES: dict[str, frozenset[str]] = {
    "LambdaLR": frozenset({"lr_lambdas"}),
    "MultiplicativeLR": frozenset({"lr_lambdas"}),
    "StepLR": frozenset({"step_size", "gamma"}),
    "MultiStepLR": frozenset({"milestones", "gamma"}),
    "ConstantLR": frozenset({"factor", "total_iters"}),
    "LinearLR": frozenset({"start_factor", "end_factor", "total_iters"}),
    "ExponentialLR": frozenset({"gamma"}),
    "SequentialLR": frozenset({"_milestones", "_schedulers"}),
    "PolynomialLR": frozenset({"total_iters", "power"}),
    "CosineAnnealingLR": frozenset({"T_max", "eta_min"}),
    "ChainedScheduler": frozenset({"_schedulers"}),
    "ReduceLROnPlateau": frozenset({
        "factor", "default_min_lr", "min_lrs", "patience", "cooldown", "eps", "mode_worse", "mode",
        "threshold", "threshold_mode", "best", "cooldown_counter", "num_bad_epochs"}),
    "CyclicLR": frozenset({
        "max_lrs", "total_size", "step_ratio", "mode", "gamma", "scale_mode", "cycle_momentum",
        "_scale_fn_custom"}),
    "OneCycleLR": frozenset({"total_steps", "_schedule_phases", "_anneal_func_type", "cycle_momentum"}),
    "CosineAnnealingWarmRestarts": frozenset({"T_0", "T_i", "T_mult", "eta_min", "T_cur"}),
}

# Keys saved only when the scheduler cycles momentum (`cycle_momentum=True`).
MOMENTUM_CYCLING_KEYS: dict[str, frozenset[str]] = {
    "CyclicLR": frozenset({"use_beta1", "base_momentums", "max_momentums"}),
    "OneCycleLR": frozenset({"use_beta1"}),
}

# Keys older torch versions wrote under another name (OneCycleLR kept the bound method itself).
_LEGACY_KEY_NAMES = {"anneal_func": "_anneal_func_type"}

# State that is structure, not a hyper-parameter; summarised separately.
_STRUCTURAL_KEYS = {"lr_lambdas", "_schedulers", "_schedule_phases", "_scale_fn_custom", "_milestones"}


@dataclass(frozen=True)
class SchedulerState:
    """One LR scheduler's saved state, with our best guess at its class."""

    key: str
    class_name: str | None
    identified_by: str
    last_epoch: int | None
    step_count: int | None
    base_lrs: tuple[float, ...]
    last_lrs: tuple[float, ...]
    params: dict
    interval: str | None = None
    frequency: int | None = None
    # How the class was found: "exact", "legacy", "superset", "partial", "ambiguous" or "none".
    match: str = "none"
    candidates: tuple[str, ...] = ()
    children: tuple["SchedulerState", ...] = field(default=())  # SequentialLR / ChainedScheduler parts

    def to_dict(self) -> dict:
        """JSON-able form; tuples become lists, non-finite floats become None."""
        return {
            "key": self.key,
            "class_name": self.class_name,
            "identified_by": self.identified_by,
            "match": self.match,
            "candidates": list(self.candidates),
            "last_epoch": self.last_epoch,
            "step_count": self.step_count,
            "base_lrs": [json_float(v) for v in self.base_lrs],
            "last_lrs": [json_float(v) for v in self.last_lrs],
            "params": json_safe(self.params),
            "interval": self.interval,
            "frequency": self.frequency,
            "children": [child.to_dict() for child in self.children],
        }


def looks_like_scheduler_state(value: Any) -> bool:
    """True for a dict that a torch (or torch-like) LR scheduler's `state_dict()` would produce."""
    if not isinstance(value, dict):
        return False
    keys = {k for k in value if isinstance(k, str)}
    if keys & {"last_epoch", "_last_lr", "base_lrs", "_schedulers"}:
        return True
    return SCHEDULER_SIGNATURES["ReduceLROnPlateau"] <= keys


def identify_scheduler(keys: set[str]) -> tuple[str | None, str, str, tuple[str, ...]]:
    """Return (class_name, identified_by, match, candidates) for a scheduler state's key set."""
    observed = {_LEGACY_KEY_NAMES.get(k, k) for k in keys} - BASE_SCHEDULER_KEYS
    renamed = sorted(k for k in keys if k in _LEGACY_KEY_NAMES)
    exact = tuple(name for name, sig in SCHEDULER_SIGNATURES.items()
                  if sig == observed - MOMENTUM_CYCLING_KEYS.get(name, frozenset()))
    listed = ", ".join(sorted(observed)) or "(only base LRScheduler keys)"
    if len(exact) == 1:
        how = f"keys {listed}"
        if renamed:
            how += f" ({', '.join(renamed)} is the pre-2.2 name)"
            return exact[0], how, "legacy", exact
        return exact[0], how, "exact", exact
    if len(exact) > 1:
        joined = "|".join(exact)
        return joined, f"keys {listed}: {' and '.join(exact)} save identical state", "ambiguous", exact
    within = [(name, sig) for name, sig in SCHEDULER_SIGNATURES.items() if sig and sig <= observed]
    if within:
        widest = max(len(sig) for _, sig in within)
        best = tuple(name for name, sig in within if len(sig) == widest)
        extra = sorted(observed - SCHEDULER_SIGNATURES[best[0]])
        how = (f"keys of {'|'.join(best)} plus {', '.join(extra)}"
               " (a subclass, or a torch version with other keys)")
        return "|".join(best), how, "superset" if len(best) == 1 else "ambiguous", best
    # Older torch wrote a few keys fewer (ReduceLROnPlateau had no default_min_lr): accept a
    # class when most of its distinctive keys are present and nothing else comes close.
    overlap = sorted(((len(sig & observed) / len(sig), name) for name, sig in SCHEDULER_SIGNATURES.items()
                      if len(sig) >= 3), reverse=True)
    if overlap and overlap[0][0] >= 0.75 and (len(overlap) == 1 or overlap[1][0] < overlap[0][0]):
        name = overlap[0][1]
        missing = sorted(SCHEDULER_SIGNATURES[name] - observed)
        return name, f"most keys of {name}; missing {', '.join(missing)} (another torch version?)", \
            "partial", (name,)
    return None, f"no torch scheduler saves keys {listed}", "none", ()


def summarise_scheduler(state: dict, key: str, interval: str | None = None,
                        frequency: int | None = None) -> SchedulerState:
    """Summarise one scheduler `state_dict()` found at `key` (never raises on odd content)."""
    keys = {k for k in state if isinstance(k, str)}
    class_name, identified_by, match, candidates = identify_scheduler(keys)
    if "lr_lambdas" in keys:
        identified_by += f"; lr_lambdas saved as {_describe_lambdas(state.get('lr_lambdas'))}"
    params: dict[str, Any] = {}
    for name, value in state.items():
        if not isinstance(name, str) or name in BASE_SCHEDULER_KEYS or name in _STRUCTURAL_KEYS:
            continue
        plain = plain_value(value)
        if plain is not NOT_PLAIN:
            params[name] = plain
    if isinstance(params.get("milestones"), dict):
        # MultiStepLR keeps a Counter {milestone: times}; a sorted list reads better.
        params["milestones"] = sorted(int(float(m)) for m, n in params["milestones"].items()
                                      for _ in range(int(n)))
    if "_milestones" in state:
        params["milestones"] = plain_value(state["_milestones"])
    if "_schedule_phases" in state:
        params.update(_one_cycle_phases(state["_schedule_phases"], state.get("total_steps")))
    children = ()
    if isinstance(state.get("_schedulers"), (list, tuple)):
        children = tuple(summarise_scheduler(child, f"{key}._schedulers[{i}]")
                         for i, child in enumerate(state["_schedulers"]) if isinstance(child, dict))
        params["schedulers"] = [child.class_name for child in children]
    return SchedulerState(
        key=key, class_name=class_name, identified_by=identified_by,
        last_epoch=as_int(state.get("last_epoch")), step_count=as_int(state.get("_step_count")),
        base_lrs=float_tuple(state.get("base_lrs")), last_lrs=float_tuple(state.get("_last_lr")),
        params=params, interval=interval, frequency=frequency, match=match,
        candidates=candidates, children=children,
    )


def add_param_group_hints(scheduler: SchedulerState, param_groups: list[dict]) -> SchedulerState:
    """Fill OneCycleLR's peak/floor LRs from the optimizer's param groups, where torch keeps them.

    OneCycleLR does not save `max_lr` in its own state; it writes `max_lr`, `min_lr` and
    `initial_lr` into every param group instead.
    """
    if scheduler.class_name != "OneCycleLR" or not param_groups:
        return scheduler
    params = dict(scheduler.params)
    for group_key, name in (("max_lr", "max_lrs"), ("min_lr", "min_lrs"), ("initial_lr", "initial_lrs")):
        values = [g.get(group_key) for g in param_groups]
        if all(isinstance(v, (int, float)) for v in values):
            params[name] = [float(v) for v in values]
    if "max_lrs" in params:
        params["max_lrs_source"] = "optimizer param_groups"
        if params.get("initial_lrs") and all(params["initial_lrs"]):
            params["div_factor"] = params["max_lrs"][0] / params["initial_lrs"][0]
        if params.get("min_lrs") and params.get("initial_lrs") and all(params["min_lrs"]):
            params["final_div_factor"] = params["initial_lrs"][0] / params["min_lrs"][0]
    return replace(scheduler, params=params)


def _one_cycle_phases(phases: Any, total_steps: Any) -> dict:
    """Recover OneCycleLR's pct_start / three_phase from its saved phase table."""
    if not isinstance(phases, (list, tuple)) or not phases or not isinstance(phases[0], dict):
        return {}
    found: dict[str, Any] = {"three_phase": len(phases) == 3,
                             "phase_end_steps": [plain_value(p.get("end_step")) for p in phases]}
    first_end = phases[0].get("end_step")
    if isinstance(first_end, (int, float)) and isinstance(total_steps, int) and total_steps > 0:
        # torch sets phase 1's end_step to pct_start * total_steps - 1.
        found["pct_start"] = round((float(first_end) + 1) / total_steps, 6)
    return found


def _describe_lambdas(lambdas: Any) -> str:
    if not isinstance(lambdas, (list, tuple)):
        return "something other than a list"
    kinds = ["None (a function)" if item is None else
             "{} (an object without attributes, e.g. functools.partial as HF builds)"
             if item == {} else "an object's attributes" for item in lambdas]
    unique = sorted(set(kinds))
    return f"{len(lambdas)} entries: {'; '.join(unique)}" if unique else "an empty list"


class _NotPlain:
    """Marks a value that is not plain data (a tensor with many values, a callable, ...)."""


NOT_PLAIN = _NotPlain()


def plain_value(value: Any, depth: int = 0) -> Any:
    """Return `value` as JSON-able plain data, or `NOT_PLAIN` when it is not plain (tensors, callables)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if depth > 6:
        return NOT_PLAIN
    if hasattr(value, "numel") and hasattr(value, "item"):  # torch tensors: only one-value ones
        try:
            return value.item() if value.numel() == 1 else NOT_PLAIN
        except (RuntimeError, ValueError):  # meta tensors have no value
            return NOT_PLAIN
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [plain_value(item, depth + 1) for item in value]
        return NOT_PLAIN if any(item is NOT_PLAIN for item in items) else items
    if isinstance(value, dict):
        items = {str(k): plain_value(v, depth + 1) for k, v in value.items()}
        return NOT_PLAIN if any(item is NOT_PLAIN for item in items.values()) else items
    return NOT_PLAIN


def as_int(value: Any) -> int | None:
    """An int from an int, a whole float or a one-element tensor; None otherwise."""
    if isinstance(value, bool):
        return None
    if hasattr(value, "numel") and hasattr(value, "item"):
        value = plain_value(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def float_tuple(value: Any) -> tuple[float, ...]:
    """The numbers of a list/tuple as floats; () when it is not a list of numbers."""
    if not isinstance(value, (list, tuple)):
        return ()
    numbers = []
    for item in value:
        plain = plain_value(item)
        if isinstance(plain, bool) or not isinstance(plain, (int, float)):
            return ()
        numbers.append(float(plain))
    return tuple(numbers)


def json_float(value: float | None) -> float | None:
    """NaN and infinities have no JSON spelling; they become None."""
    if value is None or not math.isfinite(value):
        return None
    return value


def json_safe(value: Any) -> Any:
    """Deep copy of plain data with tuples as lists and non-finite floats as None."""
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value
