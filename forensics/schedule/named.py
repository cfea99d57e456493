"""A schedule stated by name (`cosine_with_warmup`, `WarmupCosineLR`, timm `sched: cosine`, Megatron
`lr_decay_style: cosine`, yolov5 `lrf`...) turned into real torch schedulers, sized by the stated facts.

Names are read by the words they are made of, so `get_cosine_schedule_with_warmup`,
`cosine_with_warmup`, `warmup_cosine`, `WarmupCosine`, `CosineWarmup` and `linear_warmup` all name a
family (cosine, linear, constant, polynomial, inverse square root, step, exponential, one-cycle)
with or without a warmup. The family is replayed as `SequentialLR([LinearLR warmup, decay])` with
torch's own classes; the horizon, warmup and LRs come from `forensics.model.stated` (any source:
the same config, `trainer_state.json`, `training_args.bin`, a checkpoint, a log banner).

When a family cannot be replayed (a plateau scheduler, a log-shaped DeepSpeed warmup, no horizon
for a decaying family) the result still carries the horizon and warmup with a note saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from forensics.model.stated import Fact, StatedFacts
from forensics.schedule.hf import WARMUP_START_FACTOR
from forensics.schedule.spec import TORCH_SCHEDULERS, ScheduleSpec

# word -> family; the first family word in a name wins.
_FAMILY_WORDS = {
    "cosine": "cosine", "cos": "cosine", "cosineannealing": "cosine",
    "linear": "linear", "lineardecay": "linear",
    "constant": "constant", "fixed": "constant", "const": "constant",
    "polynomial": "polynomial", "poly": "polynomial",
    "inverse": "inverse_sqrt", "sqrt": "inverse_sqrt", "rsqrt": "inverse_sqrt", "noam": "inverse_sqrt",
    "invsqrt": "inverse_sqrt",
    "multistep": "multistep", "step": "step", "exponential": "exponential", "exp": "exponential",
    "onecycle": "onecycle", "plateau": "plateau", "reducelronplateau": "plateau", "cyclic": "cyclic",
    "tanh": "tanh", "restarts": "cosine_restarts", "wsd": "wsd",
}
_WARMUP_WORDS = {"warmup", "warm"}
_IGNORED_WORDS = {"get", "schedule", "scheduler", "lr", "with", "and", "then", "annealing", "learning", "rate"}
# DeepSpeed scheduler types: family, whether it has a warmup.
_DEEPSPEED = {"warmuplr": ("constant", True), "warmupdecaylr": ("linear", True), "warmupcosinelr": ("cosine", True),
              "onecycle": ("onecycle", False), "lrrangetest": ("lrrange", False)}
_NEEDS_HORIZON = ("cosine", "linear", "polynomial", "onecycle", "cosine_restarts")
_NO_REPLAY = {"plateau": "depends on the monitored metric", "cyclic": "needs its cycle sizes",
              "tanh": "has no torch class", "wsd": "(warmup-stable-decay) has no torch class",
              "lrrange": "is an LR range test", "cosine_restarts": "restarts are not replayed by name"}


@dataclass
class Named:
    """A named schedule sized by the stated facts: a spec to replay (or None), its units and notes."""

    name: str
    family: str | None
    spec: ScheduleSpec | None
    interval: str | None            # "step" | "epoch" (the units of `horizon` and `warmup`)
    interval_basis: str
    horizon: int | None             # in scheduler steps (`interval` units)
    warmup: int                     # in scheduler steps
    base_lr: float | None
    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    approximate: bool = False


def family_of(name: str) -> tuple[str | None, bool]:
    """(family, has a warmup) from a schedule name's words; (None, False) when no family word appears."""
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    if compact in _DEEPSPEED:
        return _DEEPSPEED[compact]
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.rsplit(".", 1)[-1])
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    if "yolov5" in words:
        return ("yolo_cosine" if "cosine" in words else "yolo_linear"), False
    warm = any(w in _WARMUP_WORDS for w in words)
    if compact.startswith("inversesqrt") or compact.startswith("invsqrt"):
        return "inverse_sqrt", warm
    if "restarts" in words:
        return "cosine_restarts", warm
    for word in words:
        if word in _IGNORED_WORDS or word in _WARMUP_WORDS:
            continue
        if word in _FAMILY_WORDS:
            return _FAMILY_WORDS[word], warm
        if word.endswith("lr") and word[:-2] in _FAMILY_WORDS:
            return _FAMILY_WORDS[word[:-2]], warm
    return None, False  # "warmup" alone does not say what follows it


def from_stated(stated: StatedFacts, scheduler: Fact) -> Named | None:
    """The named schedule of `scheduler` (a stated fact {"name", "params"}) sized by the other stated facts."""
    value = scheduler.value if isinstance(scheduler.value, dict) else {"name": scheduler.value, "params": {}}
    name = str(value.get("name") or "")
    params = dict(value.get("params") or {})
    if not name or name in TORCH_SCHEDULERS or name == "cosine_with_restarts":
        return None  # torch classes and HF's restarts have their own readers
    family, warm = family_of(name)
    if family is None:
        return None
    used = [scheduler]
    base = _number(params, "lr", "max_lr", "warmup_max_lr", "peak_lr") or _fact_float(stated, "base_lr", used)
    min_lr = _number(params, "min_lr", "eta_min", "lr_min", "end_lr", "final_lr")
    if min_lr is None:
        min_lr = _fact_float(stated, "min_lr", used, allow_zero=True)
    if family in ("yolo_linear", "yolo_cosine"):
        return _yolo(name, family, params, stated, used, base)
    interval, basis, horizon, warmup = _size(stated, params, used, family)
    named = Named(name, family, None, interval, basis, horizon, warmup, base, used)
    if family in _NO_REPLAY:
        named.notes.append(f"{name} {_NO_REPLAY[family]}: it cannot be replayed here; its horizon and warmup "
                           "are still used")
        return named
    if family in _NEEDS_HORIZON and not horizon:
        named.notes.append(f"{name}: no horizon is stated (max steps, epochs with steps per epoch, or a total in its "
                           "parameters), so it cannot be replayed")
        return named
    if params.get("warmup_type") not in (None, "linear") or (family in ("constant", "linear", "cosine")
                                                           and _deepspeed(name) and "warmup_type" not in params):
        named.approximate = True
        named.notes.append(f"{name}: DeepSpeed's default log-shaped warmup is replayed as a linear one")
    start = (_number(params, "warmup_lr", "warmup_min_lr", "warmup_init_lr", "warmup_start_lr")
             or _fact_float(stated, "warmup_lr", used))
    named.spec = _torch_spec(family, params, horizon, warmup if (warm or warmup) else 0, base, min_lr, start,
                             named.notes)
    if family == "cosine" and warmup and interval == "epoch" and not params.get("warmup_prefix") and horizon \
            and named.spec is not None and named.spec.children:
        # timm's epoch cosine counts from epoch 0, not from the end of its warmup: the warmup multiplies
        # the cosine (ChainedScheduler) instead of preceding it; within 1% of the peak during the warmup.
        ramp = named.spec.children[0]
        cosine = ScheduleSpec("CosineAnnealingLR", {"T_max": int(horizon), "eta_min": float(min_lr or 0.0)})
        named.spec = ScheduleSpec("ChainedScheduler", {}, (ramp, cosine))
        named.approximate = True
        named.notes.append(f"{name}: timm-style epoch cosine (counted from epoch 0) with its warmup replayed as "
                           "ChainedScheduler([LinearLR, CosineAnnealingLR]): exact after the warmup, within 1% "
                           "of the peak LR during it")
    return named


def _size(stated: StatedFacts, params: dict, used: list[Fact], family: str) -> tuple[str | None, str, int | None, int]:
    """(interval, why, horizon, warmup) in one unit: optimizer steps when a step count is stated, else epochs."""
    total = _number(params, "total_steps", "total_num_steps", "num_training_steps", "max_steps", "t_total",
                    "decay_steps", "total_iters", "max_update")
    if total is None:
        for name in ("decay_steps", "max_steps"):
            fact = stated.get(name)
            if fact is not None and stated.int_value(name):
                total = int(fact.value)
                used.append(fact)
                break
    warmup_steps = _number(params, "warmup_steps", "num_warmup_steps", "warmup_num_steps", "warmup_iters",
                           "warmup_updates", "warmup")
    if warmup_steps is None:
        warmup_steps = _fact_int(stated, "warmup_steps", used)
    ratio = _number(params, "warmup_ratio", "pct_start") or _fact_float(stated, "warmup_ratio", used)
    epochs = _number(params, "epochs", "num_epochs", "t_initial") or _fact_int(stated, "epochs", used)
    warmup_epochs = _number(params, "warmup_epochs", "warmup_t") or _fact_int(stated, "warmup_epochs", used)
    per_epoch = stated.int_value("steps_per_epoch")
    interval_fact = stated.get("interval")
    by_epoch = stated.value("by_epoch")
    if total is None and epochs and (warmup_epochs or interval_fact and interval_fact.value == "epoch"
                                     or by_epoch is True or not per_epoch):
        warmup = int(warmup_epochs or (round(ratio * epochs) if ratio else 0))
        return "epoch", f"sized in epochs (epochs={epochs})", int(epochs), warmup
    if total is None and epochs and per_epoch:
        used.append(stated.get("steps_per_epoch"))
        total = int(epochs) * per_epoch
    if total is None:
        return None, "", None, int(warmup_steps or 0)
    warmup = warmup_steps
    if not warmup and ratio:
        warmup = int(-(-ratio * total // 1))  # ceil, as HF's get_warmup_steps
    if not warmup and warmup_epochs and per_epoch:
        warmup = int(warmup_epochs) * per_epoch
    return "step", f"sized in optimizer steps (total {total})", int(total), int(warmup or 0)


def _torch_spec(family: str, params: dict, horizon: int | None, warmup: int, base: float | None,
                min_lr: float | None, start: float | None, notes: list[str]) -> ScheduleSpec | None:
    base_lr = base or 1.0
    end_factor = (min_lr or 0.0) / base_lr if base else 0.0
    decay_len = (horizon - warmup) if horizon else None
    if decay_len is not None and decay_len <= 0:
        notes.append(f"the warmup ({warmup}) is as long as the horizon ({horizon})")
        decay_len = None
    if family == "cosine":
        decay = ScheduleSpec("CosineAnnealingLR", {"T_max": decay_len, "eta_min": float(min_lr or 0.0)})
    elif family == "linear":
        decay = ScheduleSpec("LinearLR", {"start_factor": 1.0, "end_factor": end_factor, "total_iters": decay_len})
    elif family == "polynomial":
        decay = ScheduleSpec("PolynomialLR", {"total_iters": decay_len, "power": float(params.get("power", 1.0))})
        if min_lr:
            notes.append("torch's PolynomialLR decays to 0; the stated end LR is not replayed")
    elif family == "constant":
        decay = ScheduleSpec("ConstantLR", {"factor": 1.0, "total_iters": 0})
    elif family == "inverse_sqrt":
        return ScheduleSpec("inverse_sqrt", {"num_warmup_steps": warmup} if warmup else {})
    elif family == "exponential":
        gamma = _number(params, "gamma", "decay_rate")
        if not gamma:
            notes.append("an exponential schedule without a stated gamma cannot be replayed")
            return None
        decay = ScheduleSpec("ExponentialLR", {"gamma": float(gamma)})
    elif family in ("step", "multistep"):
        gamma = _number(params, "gamma", "decay_rate") or 0.1
        milestones = params.get("milestones") or params.get("decay_milestones")
        size = _number(params, "step_size", "decay_epochs", "decay_t")
        if isinstance(milestones, list) and milestones:
            decay = ScheduleSpec("MultiStepLR", {"milestones": [int(m) for m in milestones], "gamma": float(gamma)})
        elif size:
            decay = ScheduleSpec("StepLR", {"step_size": int(size), "gamma": float(gamma)})
        else:
            notes.append("a step schedule without its step size or milestones cannot be replayed")
            return None
    elif family == "onecycle":
        pct = params.get("pct_start") or (warmup / horizon if warmup and horizon else 0.3)
        return ScheduleSpec("OneCycleLR", {"max_lr": base_lr, "total_steps": int(horizon), "pct_start": float(pct)})
    else:
        return None
    if not warmup:
        return decay
    factor = max((start or 0.0) / base_lr, WARMUP_START_FACTOR) if base else WARMUP_START_FACTOR
    ramp = ScheduleSpec("LinearLR", {"start_factor": float(min(factor, 1.0)), "end_factor": 1.0,
                                     "total_iters": int(warmup)})
    return ScheduleSpec("SequentialLR", {"milestones": [int(warmup)]}, (ramp, decay))


def _yolo(name: str, family: str, params: dict, stated: StatedFacts, used: list[Fact], base) -> Named:
    """yolov5's epoch lambdas are torch classes: linear `(1 - x/E)(1 - lrf) + lrf`, cosine to lr0 * lrf."""
    lrf = _number(params, "lrf")
    epochs = _fact_int(stated, "epochs", used)
    named = Named(name, family, None, "epoch", "yolov5 steps its LambdaLR once per epoch", epochs,
                  0, base, used)
    if not lrf or not epochs:
        named.notes.append(f"{name}: needs lrf and epochs to be replayed")
        return named
    if family == "yolo_linear":
        named.spec = ScheduleSpec("LinearLR", {"start_factor": 1.0, "end_factor": float(lrf), "total_iters": epochs})
    else:
        named.spec = ScheduleSpec("CosineAnnealingLR", {"T_max": epochs, "eta_min": float(lrf) * (base or 1.0)})
    warmup = _fact_int(stated, "warmup_epochs", used)
    if warmup:
        named.notes.append(f"yolov5's per-batch warmup over the first {warmup} epochs (bias LR falling from "
                           "warmup_bias_lr) is not part of the replay")
    return named


def _deepspeed(name: str) -> bool:
    return re.sub(r"[^a-z0-9]", "", name.lower()) in _DEEPSPEED


def _number(params: dict, *keys: str):
    for key in keys:
        value = params.get(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0:
            return value
    return None


def _fact_int(stated: StatedFacts, name: str, used: list[Fact]) -> int | None:
    value = stated.int_value(name)
    if value:
        used.append(stated.get(name))
    return value


def _fact_float(stated: StatedFacts, name: str, used: list[Fact], allow_zero: bool = False) -> float | None:
    fact = stated.get(name)
    if fact is None or isinstance(fact.value, bool) or not isinstance(fact.value, (int, float)):
        return None
    if fact.value > 0 or (allow_zero and fact.value == 0):
        used.append(fact)
        return float(fact.value)
    return None
