"""The intended LR schedule of a run: which source stated it, and the LR it gives at every step.

`resolve_intended(run, options)` is called by `forensics.analyze` after the run model is built; the
result sits on `run.intended_schedule` for the checks (which never open files) and is summarised
in the report's `intended_schedule`. Sources, most trustworthy first: the CLI `--schedule`, the
scheduler state saved in checkpoints, configs, and last, a fit to the logged LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from forensics.ingest.scheduler_state import json_float, json_safe
from forensics.model import aliases
from forensics.model.run import Run
from forensics.schedule.facts import RunFacts, run_facts
from forensics.schedule.infer import (
    clean_series,
    confidence_from_residual,
    fit_families,
)
from forensics.schedule.replay import MAX_REPLAY_STEPS, replay
from forensics.schedule.sources import (
    Candidate,
    ScheduleOptions,
    from_checkpoints,
    from_cli,
    spec_horizon,
)
from forensics.schedule.from_config import from_configs
from forensics.schedule.spec import ScheduleSpec

CHART_POINTS = 200
# Confidence in a declared source (the run said so itself); lowered when the replay is approximate.
_DECLARED_CONFIDENCE = {"cli": 1.0, "checkpoint": 0.95, "config": 0.85}


@dataclass(frozen=True, eq=False)
class IntendedSchedule:
    """The schedule a run was meant to follow, with its expected LR at optimizer steps 0..len-1."""

    source: str                 # "cli" | "checkpoint" | "config" | "inferred"
    source_detail: str          # e.g. "checkpoints/ckpt_epoch_3.pt key scheduler"
    spec: str                   # constructor-like text, parseable by --schedule
    class_name: str
    params: dict
    interval: str               # "step" | "epoch": what one scheduler step is
    interval_basis: str         # why we think so
    steps_per_epoch: int | None
    horizon: int | None         # optimizer steps the schedule is sized for (None: no end, e.g. ExponentialLR)
    base_lrs: tuple[float, ...]
    confidence: float
    residual: float | None      # inferred only: RMS of (replayed - logged) / peak logged LR
    approximate: bool
    notes: tuple[str, ...]
    disagreements: tuple[str, ...]
    replayed_as: str            # the torch construction that produced the expected LR
    steps: np.ndarray = field(repr=False)          # 0..N-1
    expected_lrs: np.ndarray = field(repr=False)   # (groups, N); NaN where torch refused to step
    source_path: str = ""       # the file that states the schedule, when one does (for evidence)
    source_locator: str = ""    # its key or line

    @property
    def expected_lr(self) -> np.ndarray:
        """Expected LR of param group 0 at `steps`."""
        return self.expected_lrs[0]

    def expected_at(self, steps, group: int = 0) -> np.ndarray:
        """Expected LR at (possibly fractional, floored) optimizer steps; NaN outside the replay."""
        where = np.floor(np.asarray(steps, dtype=np.float64))
        values = self.expected_lrs[min(group, len(self.expected_lrs) - 1)]
        inside = (where >= 0) & (where < len(values))
        out = np.full(where.shape, np.nan)
        out[inside] = values[where[inside].astype(np.int64)]
        return out

    def key_points(self) -> dict:
        """Start, peak and end (at the horizon, or the last replayed step) of group 0."""
        values = self.expected_lr
        finite = np.flatnonzero(np.isfinite(values))
        if not len(finite):
            return {"start": None, "peak": None, "end": None}
        end_index = min(self.horizon, len(values) - 1) if self.horizon else int(finite[-1])
        end_index = int(finite[finite <= end_index][-1]) if np.any(finite <= end_index) else int(finite[-1])
        peak_index = int(finite[np.argmax(values[finite])])
        return {"start": _point(int(finite[0]), values), "peak": _point(peak_index, values),
                "end": _point(end_index, values)}

    def to_dict(self) -> dict:
        """JSON form: the facts, key points and up to ~200 sampled [step, lr] points (never the full arrays)."""
        return {
            "source": self.source, "source_detail": self.source_detail, "spec": self.spec,
            "class_name": self.class_name, "params": json_safe(self.params), "interval": self.interval,
            "interval_basis": self.interval_basis, "steps_per_epoch": self.steps_per_epoch, "horizon": self.horizon,
            "base_lrs": [json_float(v) for v in self.base_lrs], "confidence": round(self.confidence, 3),
            "residual": json_float(self.residual), "approximate": self.approximate, "notes": list(self.notes),
            "disagreements": list(self.disagreements), "replayed_as": self.replayed_as,
            "key_points": self.key_points(), "points": self.sampled_points(),
        }

    def sampled_points(self, count: int = CHART_POINTS) -> list[list]:
        """[[step, lr], ...] of group 0 at evenly spaced steps plus the peak (NaN steps left out)."""
        values = self.expected_lr
        if not len(values):
            return []
        chosen = set(np.linspace(0, len(values) - 1, min(count, len(values))).astype(int).tolist())
        if np.any(np.isfinite(values)):
            chosen.add(int(np.nanargmax(values)))
        return [[int(i), float(values[i])] for i in sorted(chosen) if math.isfinite(values[i])]


def resolve_intended(run: Run, options: ScheduleOptions | None = None) -> IntendedSchedule | None:
    """The intended schedule from the most trustworthy source, replayed with torch; None when nothing is known."""
    facts = run_facts(run)
    cli = from_cli(options)
    configured, config_notes = from_configs(run)
    declared = ([cli] if cli else []) + from_checkpoints(run, facts) + configured
    notes = _unreplayable_notes(run, declared) + config_notes
    for chosen in declared:
        if chosen.source == "cli":  # the user's own spec: a refusal is theirs to see (exit 2)
            return _build(chosen, declared, run, facts, options, notes)
        try:
            return _build(chosen, declared, run, facts, options, notes)
        except Exception as error:  # noqa: BLE001 - odd saved values must not cost the analysis
            notes.append(f"{chosen.source} {chosen.source_detail}: could not replay {chosen.spec.text()} "
                         f"({type(error).__name__}: {error})")
    try:
        return _infer(run, facts, options, notes)
    except Exception:  # noqa: BLE001 - inference is best effort; checks then say a schedule is unknown
        return None


def _build(chosen: Candidate, declared: list[Candidate], run: Run, facts: RunFacts,
           options: ScheduleOptions | None, notes: list[str], residual: float | None = None,
           confidence: float | None = None) -> IntendedSchedule:
    notes = list(notes) + list(chosen.notes)
    spe = (options.steps_per_epoch if options and options.steps_per_epoch else None) or facts.steps_per_epoch
    interval, basis = _interval(chosen, facts, run)
    if options and options.interval:
        interval, basis = options.interval, "--interval"
    if interval == "epoch" and not spe:
        spe, estimate_note = _estimated_steps_per_epoch(facts)
        if estimate_note:
            notes.append(estimate_note)
    if interval == "epoch" and not spe:
        notes.append("epoch-interval schedule but steps per epoch unknown (give --steps-per-epoch); "
                     "one scheduler step per optimizer step assumed")
    base_lrs, base_note = _base_lrs(chosen, run, facts, options)
    if base_note:
        notes.append(base_note)
    units = spec_horizon(chosen.spec)
    horizon = units * (spe or 1) if units is not None and interval == "epoch" else units
    length = max(horizon or 0, (facts.last_step or 0) + 1, facts.planned_steps or 0) + 1
    replayed = replay(chosen.spec, list(base_lrs), min(length, MAX_REPLAY_STEPS + 1), interval, spe)
    notes += replayed.notes
    approximate = chosen.approximate or any("MAX_REPLAY_STEPS" in note for note in replayed.notes)
    if confidence is None:
        confidence = _DECLARED_CONFIDENCE[chosen.source] * (0.75 if approximate else 1.0)
    steps = np.arange(replayed.lrs.shape[1], dtype=np.int64)
    return IntendedSchedule(
        source=chosen.source, source_detail=_detail(chosen, declared), spec=chosen.spec.text(),
        class_name=chosen.spec.class_name, params=_flat_params(chosen.spec), interval=interval,
        interval_basis=basis, steps_per_epoch=spe, horizon=horizon, base_lrs=tuple(base_lrs),
        confidence=confidence, residual=residual, approximate=approximate, notes=tuple(notes),
        disagreements=tuple(_disagreements(chosen, declared)), replayed_as=replayed.used, steps=steps,
        expected_lrs=replayed.lrs, source_path=chosen.path, source_locator=chosen.locator)


def _infer(run: Run, facts: RunFacts, options: ScheduleOptions | None, notes: list[str]) -> IntendedSchedule | None:
    lr = run.series(aliases.LR, group=0)
    if len(lr) and lr["source"].nunique() > 1:  # one source: mixing a float32 TB tag and a rounded log line
        lr = lr[lr["source"] == lr["source"].value_counts().idxmax()]
    steps, values = clean_series(lr["step"].to_numpy(), lr["value"].to_numpy())
    fits = fit_families(steps, values)
    if not fits:
        return None
    best = fits[0]
    source = str(lr["source"].iloc[0]) if len(lr) else "?"
    tag = str(lr["tag"].iloc[0]) if len(lr) else "?"
    runner_up = f"; next best {fits[1].family} (fit error {fits[1].nrmse:.2g})" if len(fits) > 1 else ""
    candidate = Candidate("inferred", f"fit to {tag} in {source} ({len(steps)} points): {best.family}{runner_up}",
                          best.spec, (best.base_lr,), "step", "fitted on the logged steps")
    draft = _build(candidate, [candidate], run, facts, None, notes, residual=0.0, confidence=0.0)
    expected = draft.expected_at(steps)
    valid = np.isfinite(expected)
    peak = float(np.max(np.abs(values))) or 1.0
    residual = float(np.sqrt(np.mean(((expected[valid] - values[valid]) / peak) ** 2))) if valid.any() else math.inf
    confidence = confidence_from_residual(residual, int(valid.sum())) if math.isfinite(residual) else 0.0
    extra = ("inferred from the logged LR itself: it describes what the run did and cannot reveal a schedule "
             "that was never applied",)
    return _replace(draft, residual=residual, confidence=confidence, notes=draft.notes + extra)


def _replace(schedule: IntendedSchedule, **changes) -> IntendedSchedule:
    from dataclasses import replace
    return replace(schedule, **changes)


def _interval(chosen: Candidate, facts: RunFacts, run: Run) -> tuple[str, str]:
    if chosen.interval in ("step", "epoch"):
        return chosen.interval, chosen.interval_basis
    spec = chosen.spec
    if spec.class_name in ("OneCycleLR", "CyclicLR") or spec.is_hf:
        return "step", f"{spec.class_name} is a per-optimizer-step schedule"
    units = spec_horizon(spec)
    if units and facts.planned_steps and facts.epochs and units > 0:
        by_steps = abs(math.log(units / facts.planned_steps))
        by_epochs = abs(math.log(units / facts.epochs))
        if by_steps <= by_epochs:
            return "step", f"its horizon {units} is nearer the run's {facts.planned_steps} optimizer steps " \
                           f"than its {facts.epochs} epochs"
        return "epoch", f"its horizon {units} is nearer the run's {facts.epochs} epochs " \
                        f"than its {facts.planned_steps} optimizer steps"
    for checkpoint in run.checkpoints:
        for state in checkpoint.schedulers:
            last, step, epoch = state.last_epoch, checkpoint.global_step, checkpoint.epoch
            if last and step and epoch and step != epoch:
                if abs(last - step) <= abs(last - epoch):
                    return "step", f"{checkpoint.path}: scheduler last_epoch {last} tracks global_step {step}"
                return "epoch", f"{checkpoint.path}: scheduler last_epoch {last} tracks epoch {epoch}"
    return "step", "assumed (nothing says otherwise)"


def _estimated_steps_per_epoch(facts: RunFacts) -> tuple[int | None, str | None]:
    """Steps per epoch as the run's optimizer steps over its stated epochs, when they divide evenly.

    Only when the epochs are stated (a config, trainer_state, a banner), not counted from checkpoints,
    and the run took a whole number (2 or more) of steps per stated epoch.
    """
    if not (facts.epochs and facts.planned_steps and facts.epochs_basis.startswith("epochs=")):
        return None, None
    if facts.planned_steps % facts.epochs or facts.planned_steps // facts.epochs < 2:
        return None, None
    spe = facts.planned_steps // facts.epochs
    return spe, (f"steps per epoch {spe} estimated as the run's {facts.planned_steps} optimizer steps over its "
                 f"{facts.epochs} stated epochs ({facts.epochs_basis}); give --steps-per-epoch to set it")


def _base_lrs(chosen: Candidate, run: Run, facts: RunFacts,
              options: ScheduleOptions | None) -> tuple[tuple[float, ...], str | None]:
    if options and options.base_lr and chosen.source == "cli":
        return (options.base_lr,), None
    if chosen.base_lrs:
        return tuple(chosen.base_lrs), None
    for checkpoint in run.checkpoints:
        for optimizer in checkpoint.optimizers:
            initial = [g.initial_lr for g in optimizer.param_groups]
            if initial and all(v is not None for v in initial):
                return tuple(initial), f"base LR from {checkpoint.path} {optimizer.key} initial_lr"
    if facts.first_lr:
        return (facts.first_lr,), "base LR taken from the first logged LR (give --base-lr to set it)"
    return (1.0,), "base LR unknown: expected values are multipliers of it (give --base-lr)"


def _detail(chosen: Candidate, declared: list[Candidate]) -> str:
    same = [c for c in declared if c is not chosen and c.source == chosen.source and _agree(c.spec, chosen.spec)]
    if chosen.source == "checkpoint" and same:
        return f"{chosen.source_detail} (same schedule in {len(same) + 1} checkpoints)"
    return chosen.source_detail


def _disagreements(chosen: Candidate, declared: list[Candidate]) -> list[str]:
    said = []
    seen = set()
    for other in declared:
        if other is chosen or _agree(other.spec, chosen.spec) or other.spec.text() in seen:
            continue
        seen.add(other.spec.text())
        said.append(f"{other.source} ({other.source_detail}) says {other.spec.text()}")
    return said


def _agree(a: ScheduleSpec, b: ScheduleSpec) -> bool:
    """Same class and no argument stated by both with different values (children compared alike)."""
    if a.class_name != b.class_name or len(a.children) != len(b.children):
        return False
    for name in set(a.params) & set(b.params):
        x, y = a.params[name], b.params[name]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if not math.isclose(float(x), float(y), rel_tol=1e-6):
                return False
        elif x != y:
            return False
    return all(_agree(c, d) for c, d in zip(a.children, b.children))


def _flat_params(spec: ScheduleSpec) -> dict:
    params = dict(spec.params)
    if spec.children:
        params["schedulers"] = [{"class_name": c.class_name, "params": _flat_params(c)} for c in spec.children]
    return params


def _unreplayable_notes(run: Run, declared: list[Candidate]) -> list[str]:
    names = {state.class_name for checkpoint in run.checkpoints for state in checkpoint.schedulers}
    if any("lr_scheduler_type" in candidate.source_detail for candidate in declared):
        names = {name for name in names if not (name or "").startswith("LambdaLR")}  # replayed as HF's schedule
    return [f"checkpoints hold a {name} scheduler, which cannot be replayed (it depends on a function or a metric)"
            for name in sorted(n for n in names if n and n.split("|")[0] in ("ReduceLROnPlateau", "LambdaLR",
                                                                             "MultiplicativeLR"))]


def _point(index: int, values: np.ndarray) -> dict:
    return {"step": index, "lr": float(values[index])}
