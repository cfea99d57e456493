"""Correct resumes made by the real frameworks get no warning or error: Lightning's
`fit(ckpt_path="last.ckpt")` (a new `version_N/` folder per fit, TensorBoard and CSV loggers,
LearningRateMonitor) and HF Trainer's `train(resume_from_checkpoint=True)` after a process died
past its newest `checkpoint-N/` (the steps after it are logged again, with the same LR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensics.analyze import analyze

from resume_runs import Lifetime, in_new_process

LOUD = ("warning", "error")


def _lightning_fit(root: Path, epochs: int, resume: bool) -> Lifetime:
    import logging

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=120)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(160, 8, generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    trainer = L.Trainer(max_epochs=epochs, log_every_n_steps=5, enable_progress_bar=False, enable_model_summary=False,
                        logger=[TensorBoardLogger(root, name="lightning_logs"), CSVLogger(root, name="lightning_logs")],
                        callbacks=[LearningRateMonitor("step"), ModelCheckpoint(dirpath=root / "ckpt", save_last=True)])
    before = 0
    if resume:
        before = torch.load(root / "ckpt" / "last.ckpt", weights_only=False)["global_step"]
    trainer.fit(Regression(), loader, ckpt_path=str(root / "ckpt" / "last.ckpt") if resume else None)
    return Lifetime([before, trainer.global_step])


def test_lightning_fit_from_last_ckpt_is_healthy(tmp_path):
    pytest.importorskip("lightning")
    first = in_new_process(_lightning_fit, tmp_path, 3, False)
    second = in_new_process(_lightning_fit, tmp_path, 6, True)
    assert second.steps[0] == first.steps[-1]  # measured: the resume continued from the saved step
    report = analyze(tmp_path)
    assert [s.kind for s in report.segments] == ["start", "restart"]
    assert report.segments[1].rewound_from_step is None
    assert report.segments[0].end_step < second.steps[0] <= report.segments[1].start_step
    assert not [(f.code, f.message) for f in report.findings if f.severity in LOUD]


def _hf_train(root: Path, resume: bool, die_at: int) -> Lifetime:
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 1)

        def forward(self, x, labels=None):
            out = self.lin(x)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    class Preempted(transformers.TrainerCallback):
        def on_log(self, args, state, control, **kwargs):
            if not resume and state.global_step >= die_at:
                raise SystemExit("preempted")

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=generator)
    data = [{"x": a, "labels": b} for a, b in zip(x, x.sum(1, keepdim=True))]
    args = transformers.TrainingArguments(
        output_dir=str(root), max_steps=40, per_device_train_batch_size=8, learning_rate=0.05, warmup_steps=8,
        lr_scheduler_type="linear", logging_steps=2, save_steps=10, report_to=["tensorboard"], use_cpu=True,
        disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=Regression(), args=args, train_dataset=data, callbacks=[Preempted()])
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    except SystemExit:
        pass
    return Lifetime([trainer.state.global_step])


def test_hf_trainer_resume_that_reruns_steps_is_healthy(tmp_path):
    pytest.importorskip("transformers")
    first = in_new_process(_hf_train, tmp_path, False, 26)
    in_new_process(_hf_train, tmp_path, True, 26)
    newest = max(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*") if int(p.name.split("-")[1]) <= first.steps[0])
    assert newest < first.steps[0]  # measured: steps after the newest checkpoint were logged, then run again
    report = analyze(tmp_path)
    assert [s.kind for s in report.segments] == ["start", "restart"]
    assert report.segments[1].rewound_from_step == first.steps[0]
    assert newest < report.segments[1].start_step <= first.steps[0]
    assert not [(f.code, f.message) for f in report.findings if f.severity in LOUD]
