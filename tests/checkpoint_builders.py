"""Checkpoints written by real (tiny) torch training loops, in the layouts people save.

Shared by the checkpoint reader tests; nothing here is mocked: every state_dict comes from a real
optimizer / scheduler / GradScaler after real `step()` calls.
"""

from __future__ import annotations

import functools
import json
import random
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler


def train(steps: int, optimizer_factory, scheduler_factory=None, scaler=None):
    """A real tiny regression loop; returns (model, optimizer, scheduler, scaler)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = optimizer_factory(model.parameters())
    scheduler = scheduler_factory(optimizer) if scheduler_factory else None
    inputs, targets = torch.randn(16, 4), torch.randn(16, 2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(inputs), targets)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return model, optimizer, scheduler, scaler


def assert_json_clean(checkpoint) -> None:
    json.dumps(checkpoint.to_dict(), allow_nan=False)


def lightning_shaped_checkpoint(steps: int = 8) -> tuple[dict, torch.optim.Optimizer, object]:
    """The dict Lightning 2.x writes, assembled from real state_dicts under Lightning's key names."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    model, optimizer, scheduler, scaler = train(
        steps, lambda p: torch.optim.AdamW(p, lr=3e-4),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=1e-6), scaler)
    progress = {"total": {"ready": steps, "completed": steps, "started": steps, "processed": steps},
                "current": {"ready": 4, "completed": 4, "started": 4, "processed": 4}, "is_last_batch": True}
    checkpoint = {
        "epoch": 1, "global_step": steps, "pytorch-lightning_version": "2.1.1",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "loops": {"fit_loop": {
            "state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": steps},
            "epoch_loop.batch_progress": progress,
            "epoch_loop.scheduler_progress": {"total": {"ready": steps, "completed": steps},
                                              "current": {"ready": 4, "completed": 4}},
            "epoch_loop.automatic_optimization.optim_progress": {"optimizer": {
                "step": {"total": {"ready": steps, "completed": steps}, "current": {"ready": 4, "completed": 4}}}},
            "epoch_progress": {"total": {"ready": 2, "completed": 1, "started": 2, "processed": 2},
                               "current": {"ready": 2, "completed": 1, "started": 2, "processed": 2}},
        }},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "",
                                                            "kth_value": torch.tensor(float("inf"))}},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        "MixedPrecision": scaler.state_dict(),
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 3e-4, "batch_size": 16, "layers": [4, 2]},
    }
    return checkpoint, optimizer, scheduler


class SchedulerType(str, Enum):
    LINEAR = "linear"


@dataclass
class LocalTrainingArguments:
    """Stands in for transformers.TrainingArguments (a dataclass holding enums)."""

    learning_rate: float = 5e-5
    lr_scheduler_type: SchedulerType = SchedulerType.LINEAR
    warmup_steps: int = 2
    max_steps: int = 10
    seed: int = 42
    fp16: bool = False


def linear_warmup(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """Same shape as HF's _get_linear_schedule_with_warmup_lr_lambda."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The safetensors layout: u64 LE header length, JSON header, raw little-endian data."""
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, tensor in tensors.items():
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def make_hf_checkpoint_dir(root: Path, steps: int = 6, trainer_state: bool = True) -> Path:
    folder = root / f"checkpoint-{steps}"
    folder.mkdir(parents=True)
    lr_lambda = functools.partial(linear_warmup, num_warmup_steps=2, num_training_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    model, optimizer, scheduler, scaler = train(
        steps, lambda p: torch.optim.AdamW(p, lr=5e-5, weight_decay=0.0),
        lambda o: lr_scheduler.LambdaLR(o, lr_lambda), scaler)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    torch.save(scaler.state_dict(), folder / "scaler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                "cpu": torch.random.get_rng_state()}, folder / "rng_state.pth")
    torch.save(LocalTrainingArguments(), folder / "training_args.bin")
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    weights["weight"][0, 1] = float("nan")
    weights["bias_bf16"] = torch.tensor([1.0, float("inf"), 2.0], dtype=torch.bfloat16)
    weights["position_ids"] = torch.arange(4)
    write_safetensors(folder / "model.safetensors", weights)
    if trainer_state:
        (folder / "trainer_state.json").write_text(json.dumps({
            "global_step": steps, "max_steps": 10, "num_train_epochs": 2, "epoch": 1.2,
            "logging_steps": 1, "save_steps": steps, "best_metric": None,
            "log_history": [{"step": i, "loss": 1.0, "learning_rate": 1e-5} for i in range(1, steps + 1)]}))
    return folder
