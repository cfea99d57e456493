"""Real PyTorch Lightning fits for the framework corpus: a `Recipe` says what one run does, `fit_case`
runs it (and its resume) into a case folder with Lightning's own loggers, callbacks and checkpoints.

Besides the real loggers each fit gets an in-memory `Tap` logger: Lightning hands it the very
`log_metrics(metrics, step)` calls it hands to CSVLogger/TensorBoardLogger, so labels are measured on
exactly what the run logged without parsing our own files back.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from frameworks_common_pl import CLASSES, blobs, regression, seed_everything, tiny_mlp

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
LIGHTNING_LOGGER = logging.getLogger("lightning.pytorch")


@dataclass
class Recipe:
    """Everything one Lightning run does; defaults are a healthy AdamW classifier with no scheduler."""

    task: str = "blobs"                  # blobs | noisy | regression | gan
    optimizer: str = "adamw"
    lr: float = 1e-2
    code_lr: float | None = None         # LR the code really passes to the optimizer (else lr)
    scheduler: Callable | None = None    # (optimizer, steps_per_epoch) -> torch scheduler
    interval: str = "step"
    frequency: int = 1
    manual_scheduler: bool = False       # built in on_fit_start and stepped by hand: never checkpointed
    unreturned_scheduler: bool = False   # built in configure_optimizers but not returned
    epochs: int = 10
    n_train: int = 256
    batch_size: int = 16
    accumulate: int = 1
    clip: float | None = None
    label_noise: float = 0.0
    val_label_noise: float = 0.0
    loggers: tuple = ("csv",)
    lr_monitor: str | None = "step"
    log_momentum: bool = False
    log_every: int = 1
    checkpoint: bool = True
    weights_only: bool = False
    hparams: dict | None = None
    progress_log: bool = False           # stdout+stderr with the progress bar into train.log
    grad_norms: str | None = None        # "lightning": utilities.grad_norm keys; "plain": one grad_norm
    blowup_step: int | None = None       # from this optimizer step on, inputs arrive scaled x1000
    ema_frozen: bool = False             # validate an EMA copy whose update() is dead code
    stop_after_epoch: int | None = None  # first fit stops here (preempted); the second resumes
    resume: str | None = None            # "ckpt": fit(ckpt_path=last.ckpt); "weights": state_dict + fresh fit
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (Lightning steps on the last partial accumulation window too)."""
        batches = -(-self.n_train // self.batch_size)
        return -(-batches // self.accumulate)


class Tap(Logger):
    """In-memory logger: records every (step, metrics) Lightning logs, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "tap"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((int(step), {k: float(v) for k, v in metrics.items()}))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class StopAfter(Callback):
    """Stop the fit after `epochs` epochs, as a preempted job would (last.ckpt is still written)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class TinyClassifier(L.LightningModule):
    """A two-layer MLP classifier (or regressor) whose optimizer/scheduler wiring follows the recipe."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        if recipe.hparams is not None:
            self.save_hyperparameters(recipe.hparams)
        self.net = tiny_mlp(out=1 if recipe.task == "regression" else CLASSES)
        self.ema = copy.deepcopy(self.net) if recipe.ema_frozen else None
        self.manual = None

    def _loss(self, batch, net) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        out = net(x)
        if self.recipe.task == "regression":
            return F.mse_loss(out, y), out
        return F.cross_entropy(out, y), out

    def training_step(self, batch, batch_idx):
        if self.recipe.blowup_step is not None and self.global_step >= self.recipe.blowup_step:
            batch = (batch[0] * 1000.0, batch[1])
        loss, _ = self._loss(batch, self.net)
        self.log("train_loss", loss, prog_bar=True)
        if self.recipe.extra.get("lr_in_bar"):
            self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # The EMA update sits in the accumulation branch, dead with accumulate_grad_batches=1.
        if self.ema is not None and self.trainer.accumulate_grad_batches > 1:
            for ema_p, p in zip(self.ema.parameters(), self.net.parameters()):
                ema_p.data.mul_(0.99).add_(p.data, alpha=0.01)
        if self.manual is not None and (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:
            self.manual.step()

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.recipe.grad_norms == "lightning":
            self.log_dict(grad_norm(self.net, norm_type=2))
        elif self.recipe.grad_norms == "plain":
            norms = [p.grad.detach().norm() for p in self.net.parameters() if p.grad is not None]
            self.log("grad_norm", torch.stack(norms).norm())

    def validation_step(self, batch, batch_idx) -> None:
        loss, out = self._loss(batch, self.ema if self.ema is not None else self.net)
        self.log("val_loss", loss, prog_bar=True)
        if self.recipe.task != "regression":
            self.log("val_acc", (out.argmax(-1) == batch[1]).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        recipe = self.recipe
        lr = recipe.code_lr if recipe.code_lr is not None else recipe.lr
        optimizer = make_optimizer(recipe.optimizer, self.parameters(), lr)
        if recipe.scheduler is None or recipe.manual_scheduler:
            return optimizer
        scheduler = recipe.scheduler(optimizer, recipe.steps_per_epoch)
        if recipe.unreturned_scheduler:
            self.unused_scheduler = scheduler  # kept, never handed to Lightning, never stepped
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": recipe.interval, "frequency": recipe.frequency}}

    def on_fit_start(self) -> None:
        if self.recipe.manual_scheduler:
            self.manual = self.recipe.scheduler(self.optimizers().optimizer, self.recipe.steps_per_epoch)


class TinyGAN(L.LightningModule):
    """Least-squares GAN on 2-D points with manual optimization; logs g_loss and d_loss."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.automatic_optimization = False
        if recipe.hparams is not None:
            self.save_hyperparameters(recipe.hparams)
        self.generator = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.noise = torch.Generator().manual_seed(recipe.seed)

    def training_step(self, batch, batch_idx) -> None:
        opt_g, opt_d = self.optimizers()
        real = batch[0][:, :2]
        fake = self.generator(torch.randn(len(real), 4, generator=self.noise))
        d_loss = ((self.discriminator(real) - 1) ** 2).mean() + (self.discriminator(fake.detach()) ** 2).mean()
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = ((self.discriminator(fake) - 1) ** 2).mean()
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True)

    def configure_optimizers(self):
        d_lr = self.recipe.extra.get("d_lr", self.recipe.lr)
        return [make_optimizer(self.recipe.optimizer, self.generator.parameters(), self.recipe.lr),
                make_optimizer(self.recipe.optimizer, self.discriminator.parameters(), d_lr)]


def make_optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    """sgd (momentum 0.9), adam or adamw."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind](params, lr=lr)


def loaders(recipe: Recipe) -> tuple[DataLoader, DataLoader]:
    """Seeded synthetic train/val loaders for the recipe's task."""
    if recipe.task == "regression":
        x, y = regression(recipe.n_train, recipe.seed)
        vx, vy = regression(128, recipe.seed + 1)
    else:
        x, y = blobs(recipe.n_train, recipe.seed, label_noise=recipe.label_noise)
        vx, vy = blobs(200, recipe.seed + 1, label_noise=recipe.val_label_noise)
    shuffle_gen = torch.Generator().manual_seed(recipe.seed)
    train = DataLoader(TensorDataset(x, y), batch_size=recipe.batch_size, shuffle=True, generator=shuffle_gen)
    return train, DataLoader(TensorDataset(vx, vy), batch_size=100)


@dataclass
class FitRecord:
    """What one fit logged (the tap's rows) and where its logger wrote."""

    rows: list[tuple[int, dict]]
    log_dir: str

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of every logged value of `key`, in logging order."""
        return [(step, metrics[key]) for step, metrics in self.rows if key in metrics]


def _trainer(recipe: Recipe, case_dir: Path, tap: Tap, max_epochs: int, stop: int | None) -> L.Trainer:
    loggers: list[Logger] = []
    if "csv" in recipe.loggers:
        loggers.append(CSVLogger(save_dir=str(case_dir), name="lightning_logs" if len(recipe.loggers) == 1 else "csv"))
    if "tb" in recipe.loggers:
        loggers.append(TensorBoardLogger(save_dir=str(case_dir), name="lightning_logs"))
    loggers.append(tap)
    callbacks: list[Callback] = []
    if recipe.lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval=recipe.lr_monitor, log_momentum=recipe.log_momentum))
    if recipe.checkpoint:
        callbacks.append(ModelCheckpoint(save_last=True, save_weights_only=recipe.weights_only))
    if stop is not None:
        callbacks.append(StopAfter(stop))
    if recipe.progress_log:
        callbacks.append(TQDMProgressBar(refresh_rate=recipe.log_every))
    return L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=loggers, callbacks=callbacks,
        enable_checkpointing=recipe.checkpoint, enable_progress_bar=recipe.progress_log,
        enable_model_summary=recipe.progress_log, log_every_n_steps=recipe.log_every,
        accumulate_grad_batches=recipe.accumulate, gradient_clip_val=recipe.clip, deterministic=True,
        num_sanity_val_steps=0, default_root_dir=str(case_dir),
    )


@contextlib.contextmanager
def _captured(recipe: Recipe, case_dir: Path):
    """With progress_log, send stdout, stderr and Lightning's logging to train.log (`> train.log 2>&1`)."""
    if not recipe.progress_log:
        level = LIGHTNING_LOGGER.level
        LIGHTNING_LOGGER.setLevel(logging.ERROR)
        try:
            yield
        finally:
            LIGHTNING_LOGGER.setLevel(level)
        return
    with open(case_dir / "train.log", "a", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        LIGHTNING_LOGGER.addHandler(handler)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        finally:
            LIGHTNING_LOGGER.removeHandler(handler)


def _module(recipe: Recipe) -> L.LightningModule:
    return TinyGAN(recipe) if recipe.task == "gan" else TinyClassifier(recipe)


def fit_case(recipe: Recipe, case_dir: Path) -> list[FitRecord]:
    """Run the recipe's fit (and its resumed fit) into case_dir; one FitRecord per fit."""
    case_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    train, val = loaders(recipe)
    records = []
    with _captured(recipe, case_dir):
        tap = Tap()
        first_epochs = recipe.stop_after_epoch if recipe.resume else None
        trainer = _trainer(recipe, case_dir, tap, recipe.epochs, first_epochs)
        trainer.fit(_module(recipe), train, None if recipe.task == "gan" else val)
        records.append(FitRecord(tap.rows, trainer.log_dir))
        if recipe.resume:
            records.append(_resumed_fit(recipe, case_dir, trainer, train, val))
    return records


def _resumed_fit(recipe: Recipe, case_dir: Path, first: L.Trainer, train, val) -> FitRecord:
    """A second process's fit: a new module and Trainer, resuming from the first fit's last.ckpt."""
    last = Path(first.checkpoint_callback.dirpath) / "last.ckpt"
    seed_everything(recipe.seed + 100)
    model = _module(recipe)
    tap = Tap()
    if recipe.resume == "ckpt":
        trainer = _trainer(recipe, case_dir, tap, recipe.epochs, None)
        trainer.fit(model, train, val, ckpt_path=str(last))
    else:
        # A weights-only checkpoint cannot be resumed by fit(ckpt_path=...); the script loads the
        # weights and starts a fresh fit for the remaining epochs (new optimizer, scheduler, step 0).
        model.load_state_dict(torch.load(last, weights_only=True)["state_dict"])
        trainer = _trainer(recipe, case_dir, tap, recipe.epochs - recipe.stop_after_epoch, None)
        trainer.fit(model, train, val)
    return FitRecord(tap.rows, trainer.log_dir)
