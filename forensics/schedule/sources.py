"""Where a run states its intended schedule: the CLI, saved scheduler state, configs.

Each reader turns what it finds into a `Candidate` (a `ScheduleSpec` plus where it came from);
`forensics.schedule.intended` picks the most trustworthy one and replays it. Readers use only the
run model: scheduler states and training arguments were captured at ingest time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from forensics.errors import ForensicsError
from forensics.ingest.scheduler_state import SchedulerState
from forensics.model.run import Run
from forensics.schedule.facts import RunFacts
from forensics.schedule.hf import HF_SCHEDULES, NEEDS_TRAINING_STEPS, solve_training_steps, warmup_steps
from forensics.schedule.spec import COMPOSITES, TORCH_SCHEDULERS, ScheduleSpec, constructor_arguments, parse_spec

SOURCES = ("cli", "checkpoint", "config", "inferred")


@dataclass(frozen=True)
class ScheduleOptions:
    """What the user said on the command line (`--schedule`, `--base-lr`, ...)."""

    spec: ScheduleSpec | None = None
    base_lr: float | None = None
    steps_per_epoch: int | None = None
    interval: str | None = None  # "step" | "epoch"


def schedule_options(spec_text: str | None, base_lr: float | None = None, steps_per_epoch: int | None = None,
                     interval: str | None = None) -> ScheduleOptions | None:
    """Options from CLI text; None when nothing was given. A bad spec raises `ForensicsError` (exit 2)."""
    if spec_text is None and base_lr is None and steps_per_epoch is None and interval is None:
        return None
    if interval not in (None, "step", "epoch"):
        raise ForensicsError(f"--interval: {interval!r} is not 'step' or 'epoch'")
    spec = parse_spec(spec_text) if spec_text is not None else None
    return ScheduleOptions(spec, base_lr, steps_per_epoch, interval)


@dataclass(frozen=True)
class Candidate:
    """One source's statement of the schedule."""

    source: str
    source_detail: str
    spec: ScheduleSpec
    base_lrs: tuple[float, ...] = ()
    interval: str | None = None
    interval_basis: str = ""
    notes: tuple[str, ...] = field(default=())
    approximate: bool = False
    path: str = ""       # file that states it (for evidence), when one file does
    locator: str = ""    # key or line in that file


def from_cli(options: ScheduleOptions | None) -> Candidate | None:
    """The `--schedule` spec, when given."""
    if options is None or options.spec is None:
        return None
    base = (options.base_lr,) if options.base_lr else ()
    return Candidate("cli", f"--schedule {options.spec.text()}", options.spec, base, options.interval,
                     "--interval" if options.interval else "")


def from_checkpoints(run: Run, facts: RunFacts) -> list[Candidate]:
    """One candidate per checkpoint scheduler we can turn back into a constructor call, earliest first."""
    found = []
    hf_args = _hf_training_args(run)
    for checkpoint in run.checkpoints:
        for state in checkpoint.schedulers:
            where = f"{checkpoint.path} key {state.key}"
            built = _spec_from_state(state, run, hf_args, facts, checkpoint.trainer_state)
            if built is None:
                continue
            spec, base_lrs, notes, approximate, extra = built
            interval = state.interval if state.interval in ("step", "epoch") else None
            basis = f"Lightning interval={state.interval!r} in {where}" if interval else ""
            found.append(Candidate("checkpoint", where + extra, spec, base_lrs, interval, basis, tuple(notes),
                                   approximate))
    return found


def spec_horizon(spec: ScheduleSpec) -> int | None:
    """Scheduler steps the schedule is sized for (None when it has no end: StepLR, ExponentialLR, ...)."""
    params = spec.params
    name = spec.class_name
    if name == "OneCycleLR":
        if params.get("total_steps"):
            return int(params["total_steps"])
        if params.get("epochs") and params.get("steps_per_epoch"):
            return int(params["epochs"]) * int(params["steps_per_epoch"])
        return None
    if name == "CosineAnnealingLR":
        return int(params["T_max"]) if "T_max" in params else None
    if name in ("LinearLR", "ConstantLR", "PolynomialLR"):
        return int(params.get("total_iters", 5))
    if name == "MultiStepLR":
        return max((int(m) for m in params.get("milestones") or []), default=None)
    if name == "SequentialLR":
        milestones = params.get("milestones") or []
        tail = spec_horizon(spec.children[-1]) if spec.children else None
        return (int(milestones[-1]) + tail) if milestones and tail is not None else None
    if name == "ChainedScheduler":
        known = [h for h in (spec_horizon(child) for child in spec.children) if h is not None]
        return max(known) if known else None
    if spec.is_hf:
        total = params.get("num_training_steps")
        return int(total) if total else None
    return None


def _spec_from_state(state: SchedulerState, run: Run, hf_args: tuple[str, dict] | None, facts: RunFacts,
                     trainer_state: dict | None):
    """(spec, base_lrs, notes, approximate, detail suffix) for a saved scheduler, or None."""
    name = state.class_name or ""
    params = state.params or {}
    base_lrs = tuple(state.base_lrs)
    notes: list[str] = []
    if name in ("LambdaLR", "LambdaLR|MultiplicativeLR") and hf_args is not None:
        return _hf_from_state(state, hf_args, trainer_state, run)
    if name not in TORCH_SCHEDULERS:
        return None
    if name == "OneCycleLR":
        built = _one_cycle(state, notes)
        approximate = bool(notes)
        return built, base_lrs, notes, approximate, ""
    if name in COMPOSITES:
        children = []
        for child in state.children:
            child_built = _spec_from_state(child, run, hf_args, facts, trainer_state)
            if child_built is None:
                return None
            children.append(child_built[0])
            base_lrs = base_lrs or child_built[1]
            notes += child_built[2]
        kept = {"milestones": params["milestones"]} if name == "SequentialLR" and "milestones" in params else {}
        return ScheduleSpec(name, kept, tuple(children)), base_lrs, notes, False, ""
    if name == "CyclicLR":
        return _cyclic(state, notes), base_lrs, notes, bool(notes), ""
    allowed = constructor_arguments(name)
    kept = {k: _tidy(v) for k, v in params.items() if k in allowed}
    if name == "CosineAnnealingWarmRestarts":
        kept.pop("T_i", None)
    return ScheduleSpec(name, kept), base_lrs, notes, False, ""


def _one_cycle(state: SchedulerState, notes: list[str]) -> ScheduleSpec:
    params = state.params
    max_lrs = params.get("max_lrs")
    div = params.get("div_factor")
    if not max_lrs:
        div = div or 25.0
        max_lrs = [lr * div for lr in state.base_lrs] or [1.0]
        notes.append(f"max_lr is not in the optimizer's param groups; taken as base_lr x div_factor {div:g}")
    built = {"max_lr": _tidy(max_lrs[0]) if len(set(max_lrs)) == 1 else [_tidy(v) for v in max_lrs],
             "total_steps": params.get("total_steps"),
             "pct_start": params.get("pct_start", 0.3),
             "anneal_strategy": params.get("_anneal_func_type", "cos")}
    if div is not None:
        built["div_factor"] = _tidy(div)
    if params.get("final_div_factor") is not None:
        built["final_div_factor"] = _tidy(params["final_div_factor"])
    elif "min_lrs" not in params:
        notes.append("final_div_factor not recoverable (no min_lr in the param groups); torch's default 1e4 used")
    built["three_phase"] = bool(params.get("three_phase", False))
    built["cycle_momentum"] = bool(params.get("cycle_momentum", True))
    return ScheduleSpec("OneCycleLR", built)


def _cyclic(state: SchedulerState, notes: list[str]) -> ScheduleSpec:
    params = state.params
    total, ratio = params.get("total_size"), params.get("step_ratio")
    up = round(total * ratio) if total and ratio else 2000
    built = {"base_lr": _tidy(state.base_lrs[0]) if state.base_lrs else 0.001,
             "max_lr": _tidy((params.get("max_lrs") or [0.006])[0]), "step_size_up": int(up),
             "step_size_down": int(total - up) if total else None, "mode": params.get("mode", "triangular"),
             "gamma": params.get("gamma", 1.0)}
    if params.get("_scale_fn_custom") is not None:
        notes.append("a custom scale_fn was used; replayed with the named mode instead")
    return ScheduleSpec("CyclicLR", built)


def _hf_training_args(run: Run) -> tuple[str, dict] | None:
    """(display path, arguments) of the HF training arguments, from the run's stated facts
    (`training_args.bin` in a checkpoint folder or at the top, or a TrainingArguments dump)."""
    stated = run.stated
    scheduler = next((fact for fact in stated.all("scheduler")
                      if fact.origin == "training_args" or fact.locator.endswith("lr_scheduler_type")), None)
    if scheduler is None or not isinstance(scheduler.value, dict):
        return None

    def from_args(name: str):
        return next((fact.value for fact in stated.all(name) if fact.source == scheduler.source), None)
    args = {"lr_scheduler_type": scheduler.value.get("name"),
            "lr_scheduler_kwargs": dict(scheduler.value.get("params") or {}),
            "warmup_steps": from_args("warmup_steps"), "warmup_ratio": from_args("warmup_ratio"),
            "max_steps": from_args("max_steps"), "learning_rate": from_args("base_lr")}
    return scheduler.source, args


def hf_spec_from_args(args: dict, max_steps) -> tuple[ScheduleSpec | None, list[str]]:
    name = args.get("lr_scheduler_type")
    notes: list[str] = []
    if name not in HF_SCHEDULES:
        notes.append(f"HF lr_scheduler_type {name!r} has no replay here")
        return None, notes
    params: dict = {}
    if positive(args.get("warmup_steps")):
        params["num_warmup_steps"] = args["warmup_steps"]
    if positive(args.get("warmup_ratio")):
        params["warmup_ratio"] = args["warmup_ratio"]
    kwargs = args.get("lr_scheduler_kwargs")
    if isinstance(kwargs, dict):
        params.update({k: v for k, v in kwargs.items() if k in ("num_cycles", "power", "lr_end", "timescale")})
    total = positive(max_steps)
    if total:
        params["num_training_steps"] = int(total)
        if "warmup_ratio" in params and "num_warmup_steps" not in params:
            params["num_warmup_steps"] = warmup_steps(params, int(total))
            params.pop("warmup_ratio")
    return ScheduleSpec(name, params), notes


def _hf_from_state(state: SchedulerState, hf_args: tuple[str, dict], trainer_state: dict | None, run: Run):
    args_path, args = hf_args
    max_steps = positive(args.get("max_steps"))
    horizon_from = "training_args max_steps" if max_steps else ""
    if not max_steps:
        max_steps = _trainer_state_max_steps(trainer_state, run)
        horizon_from = "trainer_state max_steps" if max_steps else ""
    spec, notes = hf_spec_from_args(args, max_steps)
    if spec is None:
        return None
    base_lrs = tuple(state.base_lrs) or ((positive(args.get("learning_rate")),) if args.get("learning_rate") else ())
    approximate = False
    if spec.class_name in NEEDS_TRAINING_STEPS and "num_training_steps" not in spec.params:
        solved, error = (None, math.inf)
        if state.last_epoch and state.last_lrs and base_lrs:
            solved, error = solve_training_steps(spec.class_name, spec.params, base_lrs[0], state.last_epoch,
                                                 state.last_lrs[0] / base_lrs[0])
        if solved is None or error > 1e-3:
            notes.append("the schedule's length (num_training_steps) is unknown: no max_steps and the saved "
                         "_last_lr does not pin it")
            return None
        spec, _ = hf_spec_from_args(args, solved)
        horizon_from = (f"num_training_steps {solved} solved from _last_lr {state.last_lrs[0]:.6g} at "
                        f"last_epoch {state.last_epoch} (mismatch {error:.1e})")
        if error > 1e-6:
            approximate = True
            notes.append(f"num_training_steps solved from the saved LR only to a relative {error:.1e}")
    detail = (f" ({state.class_name} last_epoch {state.last_epoch}) + {args_path} "
              f"lr_scheduler_type={args.get('lr_scheduler_type')!r}"
              + (f", {horizon_from}" if horizon_from else ""))
    return spec, base_lrs, notes, approximate, detail


def _trainer_state_max_steps(trainer_state: dict | None, run: Run) -> int | None:
    """max_steps of this checkpoint's trainer_state, else the one the run states (trainer_state first)."""
    if isinstance(trainer_state, dict) and positive(trainer_state.get("max_steps")):
        return int(trainer_state["max_steps"])
    fact = next((f for f in run.stated.all("max_steps") if "trainer_state" in f.origin), None)
    return int(fact.value) if fact is not None and positive(fact.value) else None


def positive(value):
    """The value when it is a positive number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return value


def _tidy(value):
    """Round float noise from derived parameters (0.01 / 0.0004 = 25.000000000000004)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.12g}")
    return value
