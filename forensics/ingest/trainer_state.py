"""HuggingFace `trainer_state.json`: `log_history` as series keyed by `step`, the counters as intent.

Each `log_history` entry is one logging event at `step`; every numeric key but `step`/`epoch`
becomes a series under its own name (`learning_rate`, `loss`, `grad_norm`, `eval_loss`, ...), with
the entry's index as the record (`log_history[i]` in evidence). The end-of-training summary entry
(`train_runtime`, `train_loss` = the mean over the run) is not a series. `global_step`,
`max_steps`, `num_train_epochs`, `logging_steps`, `eval_steps`, `save_steps` and
`train_batch_size` go to the config as stated intent.
"""

from __future__ import annotations

import numpy as np

from forensics.ingest.config_intent import bounded, normalise
from forensics.ingest.discovery import FoundFile
from forensics.ingest.limits import MAX_TRAINER_STATE_BYTES, MAX_VALUES_PER_FILE, values_cap_message
from forensics.ingest.logs.formats.base import to_number
from forensics.ingest.problems import InputProblem
from forensics.ingest.safe_parse import ParseLimit, load_json
from forensics.ingest.source import SourceRead, TaggedSeries

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SUMMARY_KEYS = ("train_runtime", "total_flos")
_NOT_SERIES = ("step", "epoch")
_COUNTERS = ("global_step", "max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps",
             "train_batch_size", "epoch", "best_metric", "best_model_checkpoint")


def read_trainer_state(found: FoundFile) -> SourceRead:
    """The log history as series, the run's counters as config."""
    limit = MAX_TRAINER_STATE_BYTES.value()
    if found.size_bytes > limit:
        message = (f"{found.display_path}: {found.size_bytes:,} bytes, over the {limit:,}-byte limit; not parsed "
                   f"({MAX_TRAINER_STATE_BYTES.hint()})")
        return _failed(found, "trainer_state_too_large", message)
    try:
        # log_history entries are flat; only the nesting guard of the parser itself is needed here.
        state = load_json(found.path.read_text(encoding="utf-8", errors="backslashreplace"), check_depth=False)
    except ParseLimit as error:
        return _failed(found, "trainer_state_nesting_too_deep", f"{found.display_path}: {error}; not parsed")
    except (OSError, ValueError) as error:
        return _failed(found, "trainer_state_unparsable", f"{found.display_path}: not readable JSON ({error})")
    if not isinstance(state, dict):
        return _failed(found, "trainer_state_unparsable", f"{found.display_path}: not a JSON object")
    history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    columns: dict[str, tuple[list, list, list]] = {}
    problems = []
    cap, taken, capped = MAX_VALUES_PER_FILE.value(), 0, None
    for index, entry in enumerate(history):
        step = to_number(entry.get("step")) if isinstance(entry, dict) else None
        if step is None or not _INT64_MIN <= step <= _INT64_MAX:  # NaN, inf and absurd steps fail both
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
            taken += 1
        if taken >= cap:
            capped = InputProblem("values_cap_reached", found.display_path,
                                  values_cap_message(found.display_path, f"log_history[{index}]", cap),
                                  locator=f"log_history[{index}]")
            break
    series = [TaggedSeries(key, np.array(steps, dtype="int64"), np.array(values, dtype="float64"),
                           np.full(len(steps), np.nan), np.array(records, dtype="int64"), step_basis="logged")
              for key, (steps, values, records) in columns.items()]
    config = _stated_counters(state)
    values_read = sum(len(item.steps) for item in series)
    detail = (f"log_history: {len(history)} entries, {values_read} values in {len(series)} series; "
              f"global_step {state.get('global_step')}, max_steps {state.get('max_steps')}")
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=values_read,
                      detail=detail, problems=problems[:20] + ([capped] if capped else []), series=series, config=config,
                      coverage={"entries": len(history), "entries_without_step": len(problems),
                                "step_basis": {item.tag: "logged" for item in series}})


def _stated_counters(state: dict) -> dict:
    """The counters as they are (`global_step`, `max_steps`, ...) plus the normalised intent keys
    (`epochs`, `batch_size`, `steps_per_epoch`, `found_at`) that `forensics.model.stated` reads."""
    counters = {key: state[key] for key in _COUNTERS if key in state}
    intent = normalise({key: value for key, value in counters.items() if key != "epoch"})
    intent.pop("raw", None)
    config = {**counters, **intent}
    found_at = dict(config.get("found_at") or {})
    steps, epoch = to_number(state.get("global_step")), to_number(state.get("epoch"))
    if steps and epoch and epoch > 0 and steps > 0:
        # HF's epoch is fractional (global_step / optimizer steps per epoch), so the ratio is the epoch length.
        ratio = steps / epoch
        if round(ratio) >= 1 and abs(ratio - round(ratio)) <= 0.01 * ratio:
            config["steps_per_epoch"] = int(round(ratio))
            found_at["steps_per_epoch"] = f"global_step {int(steps)} / epoch {epoch:g}"
    if found_at:
        config["found_at"] = found_at
    config["raw"] = bounded({key: value for key, value in state.items() if key != "log_history"})
    return config


def _failed(found: FoundFile, code: str, message: str) -> SourceRead:
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                      detail=message.split(": ", 1)[-1], problems=[InputProblem(code, found.display_path, message)])
