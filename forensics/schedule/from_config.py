"""Schedules the run's files state: one `Candidate` per stated scheduler, sized by the stated facts.

Everything comes from `run.stated` (`forensics.model.stated`): the scheduler's name and parameters
from whichever file named it, its horizon, warmup and LRs from any file that states them (the
scheduler's own parameters first). Four shapes of name:

- HF Trainer names from `training_args.bin` / a TrainingArguments dump (`lr_scheduler_type`):
  replayed as transformers builds them (`forensics.schedule.hf`), horizon from `max_steps`
  (trainer_state.json first);
- torch class names (`CosineAnnealingLR`, `class_path: torch.optim.lr_scheduler.OneCycleLR`):
  their constructor arguments as stated;
- an mmengine `param_scheduler` list (warmup `LinearLR` + main scheduler with `begin`/`end`,
  `by_epoch`): a `SequentialLR`;
- any other name (`cosine_with_warmup`, `WarmupCosineLR`, timm `sched: cosine`, Megatron
  `lr_decay_style`, fairseq `inverse_sqrt`, yolov5 `lrf`): `forensics.schedule.named`.

A name that cannot be replayed gives no candidate but a note (`unreplayable_notes`).
"""

from __future__ import annotations

from forensics.model.run import Run
from forensics.model.stated import Fact, StatedFacts
from forensics.schedule import named
from forensics.schedule.hf import HF_SCHEDULES
from forensics.schedule.sources import Candidate, hf_spec_from_args, positive
from forensics.schedule.spec import COMPOSITES, TORCH_SCHEDULERS, ScheduleSpec, constructor_arguments

_HF_ORIGINS = ("training_args", "trainer_state", "checkpoint trainer_state")


def from_configs(run: Run) -> tuple[list[Candidate], list[str]]:
    """(candidates best first, notes on stated schedules that could not be replayed)."""
    stated = run.stated
    found: list[Candidate] = []
    notes: list[str] = []
    chain = stated.get("scheduler_chain")
    if chain is not None:
        candidate = _chain(stated, chain, notes)
        if candidate is not None:
            found.append(candidate)
    for fact in stated.all("scheduler"):
        if chain is not None and fact.source == chain.source:
            continue  # the chain's last element, already read with its warmup
        candidate = _candidate(stated, fact, notes)
        if candidate is not None:
            found.append(candidate)
    return found, notes


def _candidate(stated: StatedFacts, fact: Fact, notes: list[str]) -> Candidate | None:
    value = fact.value if isinstance(fact.value, dict) else {"name": str(fact.value), "params": {}}
    name = str(value.get("name") or "").rsplit(".", 1)[-1]
    params = dict(value.get("params") or {})
    base = positive(params.get("lr")) or _base_lr(stated)
    is_hf_source = fact.origin in _HF_ORIGINS or fact.locator.endswith("lr_scheduler_type")
    if name in HF_SCHEDULES and (is_hf_source or name == "cosine_with_restarts"):
        return _hf(stated, fact, name, params, base, notes)
    if name in TORCH_SCHEDULERS and name not in COMPOSITES:
        return _torch(stated, fact, name, params, base)
    result = named.from_stated(stated, fact)
    if result is None:
        if name in HF_SCHEDULES:
            return _hf(stated, fact, name, params, base, notes)
        return None
    if result.spec is None:
        notes.extend(f"{fact.where()}: {note}" for note in result.notes)
        return None
    interval = result.interval
    basis = f"{fact.where()}: {result.name} {result.interval_basis}" if interval else ""
    lr = result.base_lr or base
    return Candidate("config", f"{fact.where()} {name!r}" + _used(result.facts, fact), result.spec,
                     (lr,) if lr else (), interval, basis, tuple(result.notes), result.approximate,
                     fact.source, fact.locator)


def _hf(stated: StatedFacts, fact: Fact, name: str, params: dict, base, notes: list[str]) -> Candidate | None:
    used: list[Fact] = []
    horizon = stated.horizon()
    total = positive(params.get("num_training_steps") or params.get("total_steps"))
    if not total and horizon:
        total, used = horizon[0], list(horizon[2])
    warmup = stated.get("warmup_steps")
    ratio = stated.get("warmup_ratio")
    args = {"lr_scheduler_type": name, "lr_scheduler_kwargs": params,
            "warmup_steps": params.get("num_warmup_steps") or params.get("warmup_steps") or (warmup.value if warmup else None),
            "warmup_ratio": params.get("warmup_ratio") or (ratio.value if ratio else None)}
    used += [f for f in (warmup, ratio) if f is not None]
    spec, hf_notes = hf_spec_from_args(args, total)
    if spec is None:
        notes.extend(f"{fact.where()}: {note}" for note in hf_notes)
        return None
    return Candidate("config", f"{fact.where()} lr_scheduler_type={name!r}" + _used(used, fact), spec,
                     (base,) if base else (), "step", "HF Trainer steps its scheduler per optimizer step",
                     tuple(hf_notes), path=fact.source, locator=fact.locator)


def _torch(stated: StatedFacts, fact: Fact, name: str, params: dict, base) -> Candidate | None:
    allowed = constructor_arguments(name)
    spec = ScheduleSpec(name, {k: v for k, v in params.items() if k in allowed})
    unknown = sorted(set(params) - set(allowed) - {"interval", "frequency", "monitor", "lr", "by_epoch", "begin",
                                                    "end", "convert_to_iter_based"})
    notes = [f"ignored unknown {name} arguments {unknown}"] if unknown else []
    interval, basis = _stated_interval(stated, params)
    return Candidate("config", f"{fact.where()} {name}", spec, (base,) if base else (), interval, basis, tuple(notes),
                     path=fact.source, locator=fact.locator)


def _chain(stated: StatedFacts, chain: Fact, notes: list[str]) -> Candidate | None:
    """mmengine `param_scheduler = [LinearLR(begin=0, end=W, by_epoch=False), CosineAnnealingLR(...)]`."""
    parts = [item for item in chain.value if isinstance(item, dict)]
    per_epoch = stated.int_value("steps_per_epoch")
    children, milestones = [], []
    epoch_based = {bool((p.get("params") or {}).get("by_epoch", True)) for p in parts}
    to_steps = per_epoch if epoch_based == {True, False} else 1
    if epoch_based == {True, False} and not per_epoch:
        notes.append(f"{chain.where()}: mixes per-iteration and per-epoch schedulers and the steps per epoch are "
                     "unknown, so it cannot be replayed")
        return None
    for index, part in enumerate(parts):
        name = str(part.get("name") or "").rsplit(".", 1)[-1]
        params = dict(part.get("params") or {})
        if name not in TORCH_SCHEDULERS or name in COMPOSITES:
            notes.append(f"{chain.where()}: {name} is not a torch scheduler; the chain cannot be replayed")
            return None
        scale = to_steps if params.get("by_epoch", True) else 1
        begin, end = params.get("begin", 0), params.get("end")
        allowed = constructor_arguments(name)
        kept = {k: v for k, v in params.items() if k in allowed}
        span = (end - begin) * scale if isinstance(end, int) and isinstance(begin, int) and end > begin else None
        if name in ("LinearLR", "ConstantLR", "PolynomialLR") and span and "total_iters" not in kept:
            kept["total_iters"] = span
        if name == "CosineAnnealingLR":
            kept["T_max"] = int(kept["T_max"]) * scale if isinstance(kept.get("T_max"), int) else span
        if index < len(parts) - 1:
            if not span:
                notes.append(f"{chain.where()}: {name} has no end, so the chain cannot be replayed")
                return None
            milestones.append(begin * scale + span)
        children.append(ScheduleSpec(name, kept))
    if len(children) < 2:
        return None
    interval = "epoch" if epoch_based == {True} else "step"
    spec = ScheduleSpec("SequentialLR", {"milestones": milestones}, tuple(children))
    base = _base_lr(stated)
    return Candidate("config", f"{chain.where()} param_scheduler", spec, (base,) if base else (), interval,
                     f"by_epoch in {chain.where()}", path=chain.source, locator=chain.locator)


def _stated_interval(stated: StatedFacts, params: dict) -> tuple[str | None, str]:
    if params.get("interval") in ("step", "epoch"):
        return params["interval"], "interval stated with the scheduler"
    if isinstance(params.get("by_epoch"), bool):
        return ("epoch" if params["by_epoch"] else "step"), "by_epoch stated with the scheduler"
    fact = stated.get("interval")
    if fact is not None:
        return fact.value, f"interval={fact.value!r} ({fact.where()})"
    return None, ""


def _base_lr(stated: StatedFacts) -> float | None:
    return positive(stated.value("base_lr"))


def _used(facts: list[Fact], named_by: Fact) -> str:
    others, seen = [], set()
    for fact in facts:
        if fact is not None and fact is not named_by and id(fact) not in seen:
            seen.add(id(fact))
            others.append(fact)
    if not others:
        return ""
    return "; " + ", ".join(f"{f.name}={f.value} ({f.where()})" for f in others[:5])
