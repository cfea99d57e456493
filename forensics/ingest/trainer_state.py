"""HuggingFace `trainer_state.json`: `log_history` as series keyed by `step`, the counters as intent.

Each `log_history` entry is one logging event at `step`; every numeric key but `step`/`epoch`
becomes a series under its own name (`learning_rate`, `loss`, `grad_norm`, `eval_loss`, ...), with
the entry's index as the record (`log_history[i]` in evidence). The end-of-training summary entry
(`train_runtime`, `train_loss` = the mean over the run) is not a series. `global_step`,
`max_steps`, `num_train_epochs`, `logging_steps`, `eval_steps`, `save_steps` and
`train_batch_size` go to the config as stated intent.
"""

from __future__ import annotations

import json

import numpy as np

from forensics.ingest.config_intent import bounded
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.formats.base import to_number
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import SourceRead, TaggedSeries

MAX_TRAINER_STATE_BYTES = 256 * 1024 * 1024
_SUMMARY_KEYS = ("train_runtime", "total_flos")
_NOT_SERIES = ("step", "epoch")
_COUNTERS = ("global_step", "max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps",
             "train_batch_size", "epoch", "best_metric", "best_model_checkpoint")


def read_trainer_state(found: FoundFile) -> SourceRead:
    """The log history as series, the run's counters as config."""
    if found.size_bytes > MAX_TRAINER_STATE_BYTES:
        message = (f"{found.display_path}: {found.size_bytes:,} bytes, over the {MAX_TRAINER_STATE_BYTES:,}-byte limit "
                   "(forensics.ingest.trainer_state.MAX_TRAINER_STATE_BYTES); not parsed")
        return _failed(found, "trainer_state_too_large", message)
    try:
        state = json.loads(found.path.read_text(encoding="utf-8", errors="backslashreplace"))
    except (OSError, ValueError) as error:
        return _failed(found, "trainer_state_unparsable", f"{found.display_path}: not readable JSON ({error})")
    if not isinstance(state, dict):
        return _failed(found, "trainer_state_unparsable", f"{found.display_path}: not a JSON object")
    history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    columns: dict[str, tuple[list, list, list]] = {}
    problems = []
    for index, entry in enumerate(history):
        step = to_number(entry.get("step")) if isinstance(entry, dict) else None
        if step is None or step != step:
            problems.append(InputProblem("trainer_state_entry_without_step", found.display_path,
                                         f"{found.display_path}: log_history[{index}] has no step; skipped",
                                         locator=f"log_history[{index}]", severity="info"))
            continue
        if any(key in entry for key in _SUMMARY_KEYS):
            continue
        for key, raw in entry.items():
            value = to_number(raw)
            if key in _NOT_SERIES or value is None:
                continue
            steps, values, records = columns.setdefault(key, ([], [], []))
            steps.append(int(step))
            values.append(value)
            records.append(index)
    series = [TaggedSeries(key, np.array(steps, dtype="int64"), np.array(values, dtype="float64"),
                           np.full(len(steps), np.nan), np.array(records, dtype="int64"), step_basis="logged")
              for key, (steps, values, records) in columns.items()]
    config = {key: state[key] for key in _COUNTERS if key in state}
    if "num_train_epochs" in config:
        config["epochs"] = config["num_train_epochs"]
    config["raw"] = bounded({key: value for key, value in state.items() if key != "log_history"})
    values_read = sum(len(item.steps) for item in series)
    detail = (f"log_history: {len(history)} entries, {values_read} values in {len(series)} series; "
              f"global_step {state.get('global_step')}, max_steps {state.get('max_steps')}")
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=values_read,
                      detail=detail, problems=problems[:20], series=series, config=config,
                      coverage={"entries": len(history), "entries_without_step": len(problems),
                                "step_basis": {item.tag: "logged" for item in series}})


def _failed(found: FoundFile, code: str, message: str) -> SourceRead:
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                      detail=message.split(": ", 1)[-1], problems=[InputProblem(code, found.display_path, message)])
