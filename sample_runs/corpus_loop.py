"""One process lifetime of a corpus case's training script: a real tiny PyTorch loop.

Built from `sample_loop.py`'s pieces (data, model, determinism, RunLogger) with the knobs the corpus
needs: where `scheduler.step()` sits, gradient accumulation, clipping, float16 autocast with a real
`torch.amp.GradScaler("cpu")`, a broken EMA evaluated instead of the model, a corrupt sample,
checkpoints that omit keys, and the resume bugs of real scripts. Torch's own warnings and errors are
caught the way a terminal would show them (`warnings.formatwarning`, `traceback.format_exc`) and
written to the case's stderr (or merged into train.log).
"""

from __future__ import annotations

import copy
import json
import math
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from corpus_logs import CaseLogger
from corpus_spec import (
    BEFORE_OPTIMIZER,
    CHECKPOINTS,
    ON_VAL_LOSS,
    PER_BATCH,
    PER_EPOCH,
    PRESTEP,
    SCHEDULER_NOT_RESTORED,
    STALE_CHECKPOINT,
    STEP_COUNTER_RESET,
    CaseSpec,
    Plan,
)
from sample_loop import (
    BATCH_SIZE,
    CLASSIFICATION,
    FEATURES,
    MEASURE_ONLY_MAX_NORM,
    VAL_SIZE,
    Data,
    describe_model,
    linear_dataset,
    make_deterministic,
    make_model,
    model_is_finite,
    xor_dataset,
)
from sample_scenarios import Lifetime

EMA_DECAY = 0.999
THRESHOLD_LABEL_NOISE = 0.15
ONECYCLE_OVERRUN_MESSAGE = "Tried to step"  # the start of torch's OneCycleLR ValueError


@dataclass
class CaseLifetime(Lifetime):
    """A `Lifetime` plus what the corpus needs besides scalars and checkpoints (warnings, errors...)."""

    extras: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise for the parent process (NaN and inf survive as JSON's NaN/Infinity)."""
        payload = {"scalars": self.scalars, "checkpoints": self.checkpoints, "resumed_from": self.resumed_from}
        return json.dumps({**payload, "extras": self.extras})

    @classmethod
    def from_json(cls, text: str) -> CaseLifetime:
        """Read what `to_json` wrote."""
        base = Lifetime.from_json(text)
        return cls(base.scalars, base.checkpoints, base.resumed_from, json.loads(text)["extras"])


def threshold_dataset(samples: int, seed: int) -> TensorDataset:
    """An easy noisy classification set: label = x0 > 0 with THRESHOLD_LABEL_NOISE flipped.

    A model learns the threshold within an epoch and then sits at the label-noise floor: a plateau.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(samples, FEATURES, generator=generator) * 2 - 1
    labels = (inputs[:, 0] > 0).long()
    flipped = torch.rand(samples, generator=generator) < THRESHOLD_LABEL_NOISE
    return TensorDataset(inputs, torch.where(flipped, 1 - labels, labels))


def dataset_function(spec: CaseSpec):  # noqa: ANN201
    """The function that builds the case's train and validation sets."""
    if spec.dataset == "threshold":
        return threshold_dataset
    return xor_dataset if spec.task == CLASSIFICATION else linear_dataset


def make_case_data(spec: CaseSpec) -> Data:
    """The case's data. The loader shuffles from the global RNG, so a checkpoint's RNG state matters."""
    dataset = dataset_function(spec)
    inputs, targets = dataset(spec.sample_count, spec.seed).tensors
    if spec.outlier_factor is not None:
        inputs = inputs.clone()
        inputs[len(inputs) // 2] *= spec.outlier_factor  # one corrupt record in the training set
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=BATCH_SIZE, shuffle=True)
    return Data(spec.task, loader, *dataset(VAL_SIZE, spec.seed + 1).tensors)


def make_optimizer(spec: CaseSpec, params) -> torch.optim.Optimizer:  # noqa: ANN001
    """The optimizer the script builds: AdamW (weight decay 0.01), Adam, or SGD with momentum 0.9."""
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.01)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}")


def momentum_of(optimizer: torch.optim.Optimizer) -> float:
    """beta1 for Adam-family optimizers, `momentum` for SGD: what OneCycleLR cycles."""
    group = optimizer.param_groups[0]
    return float(group["betas"][0]) if "betas" in group else float(group.get("momentum", 0.0))


class BrokenEma:
    """A model EMA as scripts write it; the loop never reaches `update`, so it stays at its start.

    `never_updated` evaluates a copy of the initial model; `zero_debias` keeps zero-initialised
    shadows debiased by 1 - decay**updates, which is 0/0 = NaN while updates == 0.
    """

    def __init__(self, model: torch.nn.Module, mode: str) -> None:
        self.mode = mode
        self.module = copy.deepcopy(model)
        self.updates = 0
        self.shadow = {key: torch.zeros_like(value) for key, value in model.state_dict().items()}

    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's weights into the average (never reached in the corpus's scripts)."""
        self.updates += 1
        with torch.no_grad():
            for key, value in model.state_dict().items():
                self.shadow[key].mul_(EMA_DECAY).add_(value, alpha=1 - EMA_DECAY)

    def eval_model(self) -> torch.nn.Module:
        """The model validation runs on."""
        if self.mode == "zero_debias":
            correction = 1 - EMA_DECAY**self.updates
            self.module.load_state_dict({key: value / correction for key, value in self.shadow.items()})
        return self.module

    def state_dict(self) -> dict:
        """What the checkpoint stores for the EMA."""
        return {"module": self.module.state_dict(), "updates": self.updates}


@dataclass
class Script:
    """Everything one lifetime's loop holds."""

    spec: CaseSpec
    plan: Plan
    data: Data
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    scaler: torch.amp.GradScaler | None
    ema: BrokenEma | None
    logger: CaseLogger
    checkpoints: list[dict] = field(default_factory=list)
    lr_used: list[list[float]] = field(default_factory=list)  # [step, lr] the optimizer step used
    skipped_steps: list[int] = field(default_factory=list)  # GradScaler found inf/NaN and skipped

    def __post_init__(self) -> None:
        self.loss_fn = self.data.make_loss_fn()


def build_script(spec: CaseSpec, run_dir: Path, resuming: bool) -> Script:
    """What the script does at start-up, in every process (the scheduler-reset bug builds it later)."""
    make_deterministic(spec.seed)
    data = make_case_data(spec)
    plan = spec.plan()
    if len(data.train_loader) != plan.batches_per_epoch:
        raise AssertionError(f"{spec.name}: loader has {len(data.train_loader)} batches, plan {plan}")
    model = make_model(spec.task)
    optimizer = make_optimizer(spec, model.parameters())
    rebuilt_later = resuming and spec.resume_bug == SCHEDULER_NOT_RESTORED
    scheduler = spec.scheduler(optimizer, plan) if spec.scheduler and not rebuilt_later else None
    scaler = None
    if spec.amp_init_scale:
        scaler = torch.amp.GradScaler("cpu", init_scale=spec.amp_init_scale, backoff_factor=spec.amp_backoff)
    ema = BrokenEma(model, spec.ema) if spec.ema else None
    logger = CaseLogger(spec, run_dir, plan)
    return Script(spec, plan, data, model, optimizer, scheduler, scaler, ema, logger)


def run_lifetime(spec: CaseSpec, run_dir: Path, resuming: bool) -> CaseLifetime:
    """Run one process lifetime: from scratch (until the crash, if any) or resumed to the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # Python's default: each warning once per location
        script = build_script(spec, run_dir, resuming)
        warnings.showwarning = script.logger.show_warning
        script.logger.banner(describe_model(script.model))
        start_epoch, global_step, resumed_from = 0, 0, None
        if resuming:
            start_epoch, global_step, resumed_from = _resume(script, run_dir)
        elif spec.stepping == PRESTEP:
            script.scheduler.step()  # the bug: a stray step right after construction
        end_epoch = spec.crash_after_epoch if spec.crash_after_epoch and not resuming else spec.epochs
        error_text = None
        try:
            _train(script, start_epoch, end_epoch, global_step)
        except ValueError as error:
            if ONECYCLE_OVERRUN_MESSAGE not in str(error):
                raise
            error_text = str(error)  # the script dies with this traceback
            script.logger.stderr(traceback.format_exc())
    script.logger.close()
    extras = {
        "lr_used": script.lr_used,
        "skipped_steps": script.skipped_steps,
        "stderr": script.logger.stderr_texts,
        "error_text": error_text,
        "scheduler_state": _plain_state(script.scheduler),
        "scheduler_class": type(script.scheduler).__name__ if script.scheduler is not None else None,
    }
    return CaseLifetime(script.logger.scalars, script.checkpoints, resumed_from, extras)


def _resume(script: Script, run_dir: Path) -> tuple[int, int, str]:
    spec, plan = script.spec, script.plan
    paths = list((run_dir / "checkpoints").glob("ckpt_epoch_*.pt"))
    if spec.resume_bug == STALE_CHECKPOINT:
        path = sorted(paths)[-1]  # the bug: name order, so ckpt_epoch_9 sorts after ckpt_epoch_10
    else:
        path = max(paths, key=lambda candidate: int(candidate.stem.split("_")[-1]))
    checkpoint = torch.load(path, weights_only=True)
    script.model.load_state_dict(checkpoint["model"])
    if "optimizer" in checkpoint:
        script.optimizer.load_state_dict(checkpoint["optimizer"])
    if "rng_state" in checkpoint:
        torch.set_rng_state(checkpoint["rng_state"])
    start_epoch = checkpoint["epoch"]
    # Without a saved global_step the script derives it from the epoch, as many do.
    global_step = checkpoint.get("global_step", start_epoch * plan.optimizer_steps_per_epoch)
    if spec.resume_bug == SCHEDULER_NOT_RESTORED:
        # The bug (as in sample_scenarios): a fresh scheduler after the optimizer load, no load_state_dict.
        script.scheduler = spec.scheduler(script.optimizer, plan)
    elif script.scheduler is not None:
        if "scheduler" in checkpoint:
            script.scheduler.load_state_dict(checkpoint["scheduler"])
        else:
            for _ in range(global_step):  # no saved state: fast-forward a fresh scheduler
                script.scheduler.step()
    if script.scaler is not None and "scaler" in checkpoint:
        script.scaler.load_state_dict(checkpoint["scaler"])
    relative = path.relative_to(run_dir).as_posix()
    script.logger.resumed(relative, checkpoint["epoch"], checkpoint.get("global_step"))
    if spec.resume_bug == STEP_COUNTER_RESET:
        start_epoch, global_step = 0, 0  # the bug: a leftover reset after the resume logic
    return start_epoch, global_step, relative


def _train(script: Script, start_epoch: int, end_epoch: int, global_step: int) -> int:
    spec, plan = script.spec, script.plan
    for epoch in range(start_epoch, end_epoch):
        script.model.train()
        micro_losses: list[float] = []
        for batch_index, (inputs, targets) in enumerate(script.data.train_loader):
            with torch.autocast("cpu", dtype=torch.float16, enabled=script.scaler is not None):
                loss = script.loss_fn(script.model(inputs).float(), targets)
            scaled = loss / spec.accum
            (script.scaler.scale(scaled) if script.scaler else scaled).backward()
            micro_losses.append(loss.item())
            if (batch_index + 1) % spec.accum and batch_index + 1 != plan.batches_per_epoch:
                if script.ema is not None:
                    script.ema.update(script.model)  # the EMA bug: only reached between accumulation steps
                continue
            global_step = _optimizer_step(script, epoch, batch_index // spec.accum, global_step, micro_losses)
            micro_losses = []
        if spec.stepping == PER_EPOCH:
            script.scheduler.step()
        val_loss = _validate(script, epoch, global_step - 1)
        if spec.stepping == ON_VAL_LOSS:
            script.scheduler.step(val_loss)
        if CHECKPOINTS in spec.sources and (epoch + 1) % spec.checkpoint_every == 0:
            _save_checkpoint(script, epoch + 1, global_step)
    return global_step


def _optimizer_step(script: Script, epoch: int, update_index: int, global_step: int, losses: list[float]) -> int:
    spec, optimizer, scaler = script.spec, script.optimizer, script.scaler
    if spec.stepping == BEFORE_OPTIMIZER:
        script.scheduler.step()  # the bug: the scheduler moves before the optimizer uses the LR
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(script.model.parameters(), spec.clip or MEASURE_ONLY_MAX_NORM)
    lr = optimizer.param_groups[0]["lr"]  # the LR this optimizer step uses
    values = {"loss": sum(losses) / len(losses), "lr": lr, "grad_norm": grad_norm.item()}
    if spec.log_momentum:
        values["momentum"] = momentum_of(optimizer)
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        values["loss_scale"] = scale
        if scaler.get_scale() < scale:
            script.skipped_steps.append(global_step)
    else:
        optimizer.step()
    optimizer.zero_grad()
    if spec.stepping in (PER_BATCH, PRESTEP):
        script.scheduler.step()  # OneCycleLR raises here once it runs past total_steps
    if spec.lr_logged == "next":
        values["lr"] = script.scheduler.get_last_lr()[0]  # what HF Trainer logged before its fix
    script.lr_used.append([global_step, lr])
    script.logger.train_step(epoch, update_index, global_step, values)
    return global_step + 1


def _validate(script: Script, epoch: int, global_step: int) -> float:
    model = script.ema.eval_model() if script.ema is not None else script.model
    model.eval()
    with torch.no_grad():
        logits = model(script.data.val_inputs)
        val_loss = script.loss_fn(logits, script.data.val_labels).item()
    accuracy = None
    if script.data.task == CLASSIFICATION:
        accuracy = (logits.argmax(dim=1) == script.data.val_labels).float().mean().item()
    script.logger.validation(epoch, global_step, val_loss, accuracy)
    return val_loss


def _save_checkpoint(script: Script, epochs_done: int, global_step: int) -> None:
    """`torch.save` the resume state like sample_loop.save_checkpoint, minus the keys the script omits."""
    run_dir = script.logger.run.run_dir
    checkpoint_dir = run_dir / "checkpoints"
    checkpoint_dir.mkdir(exist_ok=True)
    path = checkpoint_dir / f"ckpt_epoch_{epochs_done}.pt"
    state = {
        "epoch": epochs_done,
        "global_step": global_step,
        "model": script.model.state_dict(),
        "optimizer": script.optimizer.state_dict(),
        "rng_state": torch.get_rng_state(),
    }
    if script.scheduler is not None:
        state["scheduler"] = script.scheduler.state_dict()
    if script.scaler is not None:
        state["scaler"] = script.scaler.state_dict()
    if script.ema is not None:
        state["ema"] = script.ema.state_dict()
    for key in script.spec.checkpoint_omits:
        state.pop(key, None)
    torch.save(state, path)
    relative = path.relative_to(run_dir).as_posix()
    script.logger.saved(relative)
    script.checkpoints.append(
        {
            "path": relative,
            "keys": sorted(state),
            "epoch": epochs_done,
            "global_step": global_step,
            "scheduler_last_epoch": getattr(script.scheduler, "last_epoch", None),
            "optimizer_lr": script.optimizer.param_groups[0]["lr"],
            "momentum": momentum_of(script.optimizer),
            "weights_finite": model_is_finite(script.model),
        }
    )


def _plain_state(scheduler: object | None) -> dict:
    """The scheduler's state_dict entries that are plain numbers (for the manifest's key facts)."""
    if scheduler is None:
        return {}
    plain = {}
    for key, value in scheduler.state_dict().items():
        if isinstance(value, (bool, int, str)) and not key.startswith("_"):
            plain[key] = value
        elif isinstance(value, float) and math.isfinite(value) and not key.startswith("_"):
            plain[key] = value  # JSON has no inf (ReduceLROnPlateau's mode_worse)
        elif key == "base_lrs":
            plain[key] = list(value)
    return plain
