"""Lightning runs made by a real `lightning.Trainer` (tiny model, synthetic data, CPU): the schedule
comes from the checkpoint's `lr_schedulers` and the horizon and accumulation from `hparams.yaml`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from forensics.analyze import analyze
from forensics.model.build import build_run

L = pytest.importorskip("lightning")
torch = pytest.importorskip("torch")


def fit(root: Path, accumulate: int, size_in_micro_batches: bool) -> Path:
    """Warmup + cosine stepped per optimizer step; sized in optimizer steps, or by mistake in micro-batches."""

    class Module(L.LightningModule):
        def __init__(self, lr=0.01, warmup_steps=4, max_epochs=4, accumulate_grad_batches=accumulate):
            super().__init__()
            self.save_hyperparameters()
            self.linear = torch.nn.Linear(4, 1)

        def training_step(self, batch, index):
            x, y = batch
            loss = ((self.linear(x) - y) ** 2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            total = (batches * self.hparams.max_epochs if size_in_micro_batches
                     else self.trainer.estimated_stepping_batches)
            warm = self.hparams.warmup_steps
            scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [
                torch.optim.lr_scheduler.LinearLR(optimizer, 1e-3, 1.0, warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warm)], milestones=[warm])
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(320, 4, generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    batches = len(loader)
    trainer = L.Trainer(max_epochs=4, accumulate_grad_batches=accumulate, default_root_dir=str(root),
                        logger=L.pytorch.loggers.CSVLogger(str(root)), log_every_n_steps=1,
                        callbacks=[L.pytorch.callbacks.LearningRateMonitor("step")], enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(Module(), loader)
    return root


def lr_column(root: Path) -> list[float]:
    rows = csv.DictReader(open(next(root.rglob("metrics.csv"))))
    return [float(row["lr-SGD"]) for row in rows if row.get("lr-SGD")]


def test_lightning_healthy_run_declares_its_schedule(tmp_path):
    root = fit(tmp_path, accumulate=1, size_in_micro_batches=False)
    report = analyze(root)
    schedule = report.intended_schedule
    assert (schedule["source"] if isinstance(schedule, dict) else schedule.source) == "checkpoint"
    assert [f.code for f in report.findings if f.severity in ("warning", "error")] == []
    stated = build_run(root).stated
    assert stated.value("epochs") == 4
    assert any(f.source.endswith("hparams.yaml") for f in stated.all("epochs"))


def test_lightning_accumulation_sized_in_micro_batches_is_incomplete(tmp_path):
    root = fit(tmp_path, accumulate=4, size_in_micro_batches=True)
    lrs = lr_column(root)
    assert lrs[-1] > 0.5 * max(lrs)  # measured: the cosine is far from its end when training stops
    report = analyze(root)
    found = [f for f in report.findings if f.code == "schedule_incomplete"]
    assert len(found) == 1
    assert "gradient accumulation steps (4)" in found[0].message
    assert any("accumulate_grad_batches" in e.locator for e in found[0].evidence)
