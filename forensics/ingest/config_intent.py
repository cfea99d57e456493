"""Normalise a parsed config (YAML, JSON, hparams, MLflow params) into the intent the checks use.

Whatever the framework calls them, the same few facts say what the run meant to do: optimizer,
scheduler (name and parameters), epochs, batch size, gradient accumulation, warmup, max steps and
base LR. `normalise` finds them by key name anywhere in the (nested) config and returns a flat
dict with those keys plus `found_at` (key -> dotted path where it was found, for evidence).
Walks are bounded by a node budget, so a YAML alias bomb cannot make them explode.
"""

from __future__ import annotations

NODE_BUDGET = 5000
RAW_LIMITS = {"depth": 6, "items": 50, "string": 500, "nodes": 2000}

# normalised key -> config key names (lowercase), in order of preference. The vocabularies: HF
# TrainingArguments / trainer_state.json, timm, Lightning, Megatron, DeepSpeed, mmengine, fairseq, yolov5.
_KEYS = {
    "optimizer": ("optimizer", "optim", "opt", "optimizer_name", "optimizer_type"),
    "scheduler": ("lr_scheduler", "scheduler", "lr_scheduler_type", "sched", "lr_policy", "param_scheduler",
                  "scheduler_name", "lr_schedule", "lr_decay_style", "decay_style", "lr_scheduler_name"),
    "epochs": ("epochs", "num_epochs", "max_epochs", "num_train_epochs", "n_epochs", "total_epochs", "max_epoch",
               "max_epoch_num"),
    "batch_size": ("batch_size", "per_device_train_batch_size", "train_batch_size", "batch", "bs",
                   "samples_per_gpu", "batch_size_per_gpu", "micro_batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum_steps",
                                    "accumulation_steps", "grad_accum", "update_freq", "accumulate",
                                    "accum_steps", "gradient_accumulation", "accum_iter", "grad_accumulation_steps"),
    "warmup_steps": ("warmup_steps", "warmup_iters", "num_warmup_steps", "warmup_updates", "lr_warmup_steps",
                     "lr_warmup_iters", "warmup_num_steps", "warmup_step"),
    "warmup_epochs": ("warmup_epochs", "warmup_epoch", "lr_warmup_epochs"),
    "warmup_ratio": ("warmup_ratio", "warmup_proportion", "pct_start", "lr_warmup_fraction", "warmup_fraction"),
    "max_steps": ("max_steps", "max_iters", "total_steps", "train_steps", "max_update", "num_training_steps",
                  "max_iterations", "train_iters", "total_num_steps", "max_train_steps", "num_train_steps",
                  "total_training_steps", "max_num_steps"),
    # A decay horizon stated apart from the run length (Megatron lr_decay_iters; DeepSpeed/timm decay).
    "decay_steps": ("lr_decay_iters", "lr_decay_steps", "decay_steps", "decay_iters"),
    "decay_epochs": ("decay_epochs", "lr_decay_epochs"),
    "cooldown_epochs": ("cooldown_epochs",),
    "steps_per_epoch": ("steps_per_epoch", "iters_per_epoch", "num_update_steps_per_epoch", "batches_per_epoch"),
    "world_size": ("world_size", "_n_gpu", "n_gpu", "num_processes", "num_gpus", "ngpus", "gpus", "devices",
                   "distributed_world_size", "nproc_per_node"),
    "base_lr": ("lr", "learning_rate", "base_lr", "lr0", "max_lr", "init_lr", "initial_lr", "peak_lr",
                "warmup_max_lr"),
    "min_lr": ("min_lr", "eta_min", "lr_min", "min_learning_rate", "end_lr", "final_lr", "lr_end"),
    "warmup_lr": ("warmup_lr", "warmup_init_lr", "warmup_start_lr", "warmup_min_lr", "warmup_lr_init"),
    "interval": ("interval",),
    "frequency": ("frequency",),
    "by_epoch": ("by_epoch",),
    "global_step": ("global_step",),
}
_NAME_KEYS = ("type", "name", "class_path", "class", "_target_", "scheduler")
_PARAM_KEYS = ("init_args", "params", "kwargs", "args")
_HF_ARGUMENT_KEYS = ("lr_scheduler_type", "learning_rate", "warmup_steps", "warmup_ratio", "max_steps",
                     "num_train_epochs", "lr_scheduler_kwargs", "gradient_accumulation_steps",
                     "per_device_train_batch_size")


def normalise(config: dict, framework: str | None = None) -> dict:
    """The intent dict: normalised keys found in `config`, `found_at`, and a bounded copy under `raw`."""
    intent: dict = {}
    found_at: dict[str, str] = {}
    for path, key, value in _walk(config):
        for name, spellings in _KEYS.items():
            if name in intent or key.lower() not in spellings:
                continue
            if name == "warmup_steps" and isinstance(value, float) and 0 < value < 1:
                name = "warmup_ratio"  # transformers 5 takes a warmup_steps below 1 as a ratio
                if name in intent:
                    continue
            normalised = _scheduler(value) if name == "scheduler" else _scalar(name, value)
            if name == "scheduler" and isinstance(value, list) and normalised is not None:
                chain = [_scheduler(item) for item in value[:10] if isinstance(item, dict)]
                if len(chain) > 1 and all(chain):
                    intent["scheduler_chain"] = chain  # mmengine param_scheduler: warmup + main, in order
                    found_at["scheduler_chain"] = path
            if normalised is not None:
                intent[name] = normalised
                found_at[name] = path
    if framework == "yolov5" or ("lr0" in config and "lrf" in config and "scheduler" not in intent):
        intent["scheduler"] = {"name": "yolov5_" + ("cosine" if config.get("cos_lr") else "linear"),
                               "params": {"lrf": config.get("lrf", (config.get("hyp") or {}).get("lrf"))}}
        found_at["scheduler"] = "cos_lr, lrf"
    if "lr_scheduler_type" in config:  # an HF TrainingArguments dump: keep its own keys for the HF replay
        intent.update({key: config[key] for key in _HF_ARGUMENT_KEYS if key in config})
        warmup = config.get("warmup_steps")
        if isinstance(warmup, float) and 0 < warmup < 1:  # transformers 5: a ratio given as warmup_steps
            intent.pop("warmup_steps")
            intent.setdefault("warmup_ratio", warmup)
    if intent:
        intent["found_at"] = found_at
    intent["raw"] = bounded(config)
    return intent


def bounded(value, depth: int = 0, budget: list[int] | None = None):
    """A copy of `value` cut to RAW_LIMITS (depth, items per container, string length, total nodes)."""
    budget = budget if budget is not None else [RAW_LIMITS["nodes"]]
    budget[0] -= 1
    if budget[0] < 0:
        return "…"
    if isinstance(value, dict):
        if depth >= RAW_LIMITS["depth"]:
            return f"<{len(value)} keys>"
        items = list(value.items())[:RAW_LIMITS["items"]]
        result = {str(key): bounded(item, depth + 1, budget) for key, item in items}
        if len(value) > RAW_LIMITS["items"]:
            result["…"] = f"{len(value) - RAW_LIMITS['items']} more keys"
        return result
    if isinstance(value, (list, tuple)):
        if depth >= RAW_LIMITS["depth"]:
            return f"<{len(value)} items>"
        return [bounded(item, depth + 1, budget) for item in list(value)[:RAW_LIMITS["items"]]]
    if isinstance(value, str):
        return value if len(value) <= RAW_LIMITS["string"] else value[:RAW_LIMITS["string"]] + "…"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:RAW_LIMITS["string"]]


def _walk(config, path: str = "", budget: list[int] | None = None):
    """(dotted path, key, value) for every key in nested dicts/lists, breadth before depth, bounded."""
    budget = budget if budget is not None else [NODE_BUDGET]
    if not isinstance(config, dict):
        return
    children = []
    for key, value in config.items():
        budget[0] -= 1
        if budget[0] < 0:
            return
        where = f"{path}.{key}" if path else str(key)
        yield where, str(key), value
        if isinstance(value, dict):
            children.append((where, value))
        elif isinstance(value, list):
            children += [(f"{where}[{i}]", item) for i, item in enumerate(value[:20]) if isinstance(item, dict)]
    for where, child in children:
        yield from _walk(child, where, budget)


_FLOATS = ("base_lr", "warmup_ratio", "min_lr", "warmup_lr")


def _scalar(name: str, value):
    if name == "optimizer":
        if isinstance(value, dict):
            found = next((value[key] for key in _NAME_KEYS if isinstance(value.get(key), str)), None)
            return found.rsplit(".", 1)[-1] if found else None
        return value if isinstance(value, str) and value else None
    if name == "interval":
        return value if value in ("step", "epoch") else None
    if name == "by_epoch":
        return value if isinstance(value, bool) else None
    if isinstance(value, list) and len(value) >= 1 and name in ("gradient_accumulation_steps", "base_lr"):
        value = value[0]  # fairseq's update_freq and lr are lists per epoch
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value) if name in _FLOATS else int(value)
            except ValueError:
                return None
        else:
            return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if name == "min_lr":
        return float(value) if value >= 0 else None
    if name in _FLOATS:
        return float(value) if value > 0 else None
    return int(value) if value > 0 and float(value).is_integer() else None


def _scheduler(value):
    """{"name": ..., "params": {...}} from a string, a {type/name/class_path: ..., ...} dict, or a list."""
    if isinstance(value, str) and value:
        return {"name": value, "params": {}}
    if isinstance(value, list) and value and isinstance(value[-1], dict):  # mmengine param_scheduler list
        return _scheduler(value[-1])
    if isinstance(value, dict):
        name = next((value[key] for key in _NAME_KEYS if isinstance(value.get(key), str)), None)
        if name is None:
            return None
        params = next((value[key] for key in _PARAM_KEYS if isinstance(value.get(key), dict)), None)
        if params is None:
            params = {key: item for key, item in value.items() if key not in _NAME_KEYS
                      and isinstance(item, (int, float, str, list)) and not isinstance(item, bool)}
        return {"name": name.rsplit(".", 1)[-1], "params": bounded(params)}
    return None
