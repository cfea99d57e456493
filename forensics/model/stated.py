"""What a run states about itself: one normalised set of facts, each with where it was found.

Every source that can say how long a run was meant to be, how its LR was meant to move or how
its optimizer steps relate to its batches contributes here, in one vocabulary:

- configs (YAML/JSON/TOML/INI, Lightning `hparams.yaml`, yolov5 `opt.yaml`/`hyp.yaml`, MLflow
  params), already normalised by `forensics.ingest.config_intent` (with `found_at` key paths);
- HF `training_args.bin` (top-level or inside `checkpoint-N/`) and `trainer_state.json`;
- checkpoint hyper-parameters (Lightning `hyper_parameters`) and saved schedulers (Lightning
  `lr_schedulers` `interval` / `frequency`), and the checkpoints' own `global_step`;
- log banners (HF Trainer's `Num Epochs`, `Gradient Accumulation steps`, `Total optimization
  steps`), captured by the log reader as `stated_fact` events with their line.

Facts: max_steps (total optimizer steps), decay_steps, epochs, steps_per_epoch,
gradient_accumulation_steps, world_size, warmup_steps / warmup_ratio / warmup_epochs, base_lr,
min_lr, warmup_lr, scheduler (name + params), interval, frequency, global_step, batch sizes.
Checks and the schedule code ask `run.stated` (a `StatedFacts`), never the configs themselves.
Precedence when sources disagree: what the framework recorded while it ran (trainer_state,
training_args, checkpoints, banners) before what a config file asked for; disagreements are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from forensics.ingest.config_intent import normalise
from forensics.ingest.logs.formats.hf_dict import STATED_FACT_EVENT
from forensics.ingest.logs.steps import steps_per_epoch

if TYPE_CHECKING:
    from forensics.model.run import Run

FACT_NAMES = ("max_steps", "decay_steps", "epochs", "steps_per_epoch", "gradient_accumulation_steps",
              "world_size", "warmup_steps", "warmup_ratio", "warmup_epochs", "base_lr", "min_lr", "warmup_lr",
              "decay_epochs", "cooldown_epochs", "scheduler", "scheduler_chain", "interval", "frequency", "by_epoch",
              "global_step", "batch_size", "total_batch_size", "num_examples")
# Most trustworthy first: counters the framework wrote while running, then what a config asked for.
ORIGINS = ("trainer_state", "checkpoint trainer_state", "training_args", "checkpoint", "checkpoint hyper_parameters",
           "log banner", "config")
# HF banner facts (forensics.ingest.logs.formats.hf_dict) -> fact names.
BANNER_FACTS = {"num_epochs": "epochs", "total_optimization_steps": "max_steps",
                "num_update_steps_per_epoch": "steps_per_epoch",
                "gradient_accumulation_steps": "gradient_accumulation_steps", "total_batch_size": "total_batch_size",
                "per_device_batch_size": "batch_size", "num_examples": "num_examples"}
# HF training arguments that mean "not set".
_UNSET = {"max_steps": (-1, 0), "warmup_steps": (0,), "warmup_ratio": (0, 0.0)}


@dataclass(frozen=True)
class Fact:
    """One stated value and where it was found."""

    name: str
    value: Any
    source: str         # display path of the file (or checkpoint folder)
    locator: str        # "config key trainer.max_epochs", "line 12", "ckpt key lr_schedulers[0].interval"
    origin: str         # one of ORIGINS

    def where(self) -> str:
        """`trainer_state.json key max_steps`: file and locator in words, for messages."""
        return f"{self.source} {self.locator}"

    def to_dict(self) -> dict:
        from forensics.ingest.scheduler_state import json_safe
        return {"name": self.name, "value": json_safe(self.value), "source": self.source, "locator": self.locator,
                "origin": self.origin}


@dataclass(frozen=True)
class StatedFacts:
    """Every fact every source states, best first per name."""

    facts: tuple[Fact, ...] = ()
    _by_name: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        for fact in sorted(self.facts, key=lambda f: ORIGINS.index(f.origin)):
            self._by_name.setdefault(fact.name, []).append(fact)

    def get(self, name: str) -> Fact | None:
        """The most trustworthy statement of `name`, or None."""
        found = self._by_name.get(name)
        return found[0] if found else None

    def value(self, name: str, default: Any = None) -> Any:
        fact = self.get(name)
        return fact.value if fact is not None else default

    def all(self, name: str) -> list[Fact]:
        """Every statement of `name`, best first."""
        return list(self._by_name.get(name, ()))

    def int_value(self, name: str) -> int | None:
        value = self.value(name)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None

    def disagreements(self, name: str) -> list[Fact]:
        """Statements of `name` whose value differs from the chosen one."""
        chosen = self.get(name)
        return [fact for fact in self.all(name)[1:] if chosen is not None and fact.value != chosen.value]

    def horizon(self) -> tuple[int, str, list[Fact]] | None:
        """The optimizer steps the run was sized for: (steps, how, facts used), or None.

        A stated decay horizon or total-steps counter wins; else epochs x steps per epoch.
        """
        for name in ("max_steps", "decay_steps"):
            fact = self.get(name)
            if fact is not None and self.int_value(name):
                return int(fact.value), f"{name}={fact.value} ({fact.where()})", [fact]
        epochs, per_epoch = self.get("epochs"), self.get("steps_per_epoch")
        if epochs is not None and per_epoch is not None and self.int_value("epochs") and self.int_value("steps_per_epoch"):
            steps = int(epochs.value) * int(per_epoch.value)
            return steps, (f"epochs={epochs.value} ({epochs.where()}) x steps_per_epoch={per_epoch.value} "
                           f"({per_epoch.where()})"), [epochs, per_epoch]
        return None

    def to_dict(self) -> dict:
        """JSON form: the chosen fact per name, and the disagreeing statements."""
        chosen = {name: facts[0].to_dict() for name, facts in self._by_name.items()}
        disagreeing = {name: [f.to_dict() for f in self.disagreements(name)] for name in self._by_name
                       if self.disagreements(name)}
        return {"facts": chosen, "disagreements": disagreeing}


def collect(run: Run) -> StatedFacts:
    """Gather the stated facts from the run model (never from files)."""
    facts: list[Fact] = []
    for path, config in run.configs.items():
        if not isinstance(config, dict):
            continue
        source = run.source(path)
        kind = source.kind if source is not None else ""
        if kind == "trainer_state":
            facts += _from_intent(path, config, "trainer_state", "key")
        elif "found_at" in config or "raw" in config:
            facts += _from_intent(path, config, "config", "config key")
        else:  # HF training_args.bin fields, or a plain dict handed over as is
            facts += _from_intent(path, _normalised(config, path), "training_args", "field")
    for checkpoint in reversed(run.checkpoints):  # latest first: its counters are the run's last word
        facts += _from_checkpoint(checkpoint)
    for event in run.events:
        if event.kind == STATED_FACT_EVENT:
            name = BANNER_FACTS.get(str(event.data.get("fact")))
            value = event.data.get("value")
            if name and isinstance(value, int) and value > 0:
                facts.append(Fact(name, value, event.source, f"line {event.line}", "log banner"))
    facts += _derived(facts)
    return StatedFacts(tuple(facts))


def _normalised(config: dict, path: str) -> dict:
    framework = "yolov5" if PurePosixPath(path).name.lower() in ("opt.yaml", "hyp.yaml") else None
    return normalise({k: v for k, v in config.items() if not str(k).startswith("__")}, framework)


def _from_intent(path: str, intent: dict, origin: str, locator_word: str) -> list[Fact]:
    """Facts from a normalised intent dict (`config_intent.normalise` output, HF keys kept as they are)."""
    found_at = intent.get("found_at") or {}
    facts = []
    for name in FACT_NAMES:
        value = intent.get(name)
        if value is None or value in _UNSET.get(name, ()) or (isinstance(value, bool) and name != "by_epoch"):
            continue
        if name == "epochs" and origin == "training_args" and (intent.get("max_steps") or 0) > 0:
            continue  # HF ignores num_train_epochs when max_steps is set
        where = found_at.get(name, name)
        if where.startswith("global_step "):
            locator = f"keys {where}"
        else:
            locator = f"{locator_word}{'' if locator_word.endswith('.') else ' '}{where}"
        facts.append(Fact(name, value, path, locator, origin))
    # HF TrainingArguments keep their own names next to the normalised ones.
    hf_type = intent.get("lr_scheduler_type")
    if isinstance(hf_type, str):  # HF's name with its lr_scheduler_kwargs, in place of the bare name
        facts = [f for f in facts if f.name != "scheduler"]
        facts.append(Fact("scheduler", {"name": hf_type, "params": dict(intent.get("lr_scheduler_kwargs") or {})},
                          path, f"{locator_word} lr_scheduler_type", origin))
    return facts


def _from_checkpoint(checkpoint) -> list[Fact]:
    facts: list[Fact] = []
    path = checkpoint.path
    if checkpoint.global_step:
        facts.append(Fact("global_step", int(checkpoint.global_step), path, "ckpt global_step", "checkpoint"))
    fraction = checkpoint.epoch_fraction
    if checkpoint.global_step and fraction and fraction > 0:
        ratio = checkpoint.global_step / fraction
        if round(ratio) >= 1 and abs(ratio - round(ratio)) <= 0.01 * ratio:
            facts.append(Fact("steps_per_epoch", int(round(ratio)), path,
                              f"ckpt global_step {checkpoint.global_step} / epoch {fraction:g}", "checkpoint"))
    if checkpoint.trainer_state:
        where = next((f for f in checkpoint.files if f.endswith("trainer_state.json")), path)
        facts += _from_intent(where, _normalised(checkpoint.trainer_state, where), "checkpoint trainer_state", "key")
    if checkpoint.training_args:
        where = next((f for f in checkpoint.files if f.endswith("training_args.bin")), path)
        facts += _from_intent(where, _normalised(checkpoint.training_args, where), "training_args", "field")
    if checkpoint.hyper_parameters:
        facts += _from_intent(path, _normalised(checkpoint.hyper_parameters, path), "checkpoint hyper_parameters",
                              "ckpt key hyper_parameters.")
    for state in checkpoint.schedulers:
        if state.interval in ("step", "epoch"):
            facts.append(Fact("interval", state.interval, path, f"ckpt key {state.key}.interval", "checkpoint"))
        if state.frequency and state.frequency > 0:
            facts.append(Fact("frequency", int(state.frequency), path, f"ckpt key {state.key}.frequency", "checkpoint"))
    return facts


def _derived(facts: list[Fact]) -> list[Fact]:
    """Steps per epoch from a banner's total optimization steps over its epochs, when they divide."""
    derived = []
    for source in dict.fromkeys(fact.source for fact in facts if fact.origin == "log banner"):
        banner: dict[str, Fact] = {}
        for fact in facts:  # the first banner of a file is the training one (evaluation prints "Num examples" too)
            if fact.origin == "log banner" and fact.source == source:
                banner.setdefault(fact.name, fact)
        if "steps_per_epoch" in banner:
            continue
        counters = {raw: banner[name].value for raw, name in BANNER_FACTS.items() if name in banner}
        per_epoch = steps_per_epoch(counters)
        if per_epoch:
            total, epochs = banner["max_steps"], banner["epochs"]
            derived.append(Fact("steps_per_epoch", per_epoch, source, f"{total.locator} / {epochs.locator} "
                                "(Total optimization steps / Num Epochs)", "log banner"))
    return derived
