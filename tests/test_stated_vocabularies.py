"""Schedules stated in each framework's vocabulary are read as intent ("config", not "inferred").

Every run here is a real training loop: a 4-weight linear model on seeded synthetic data, an SGD
optimizer and the scheduler the framework would build (the real torch / transformers / timm class
where one exists; Megatron's and DeepSpeed's formulas from their sources otherwise), with the LR
read from `param_groups` before each `optimizer.step()` and written to `metrics.csv`. The config
file is the one that framework writes or reads. Each run must come out with a declared schedule
that follows the logged LR, and without a schedule finding; the broken twins must be found.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from forensics.analyze import analyze
from forensics.checks.schedule.alignment import align
from forensics.model.build import build_run
from forensics.schedule import resolve_intended

SCHEDULE_CODES = {"constant_lr", "per_epoch_stepping", "schedule_too_fast", "schedule_overrun", "schedule_incomplete",
                  "off_by_one", "warmup_missing", "momentum_cycling", "lr_collapse", "lr_runaway"}
BASE_LR = 0.01


def train(run_dir: Path, make_scheduler, steps: int, per_epoch: int | None = None, epoch_rows: bool = False) -> list:
    """A real loop: step the scheduler every batch, or once every `per_epoch` batches; log LR and loss.

    With `epoch_rows` one row per epoch is written (step = epoch), as yolov5 does."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR)
    scheduler = make_scheduler(optimizer)
    inputs = torch.randn(512, 4)
    targets = inputs.sum(1, keepdim=True) + 0.05 * torch.randn(512, 1)
    rows = []
    for step in range(steps):
        lr = optimizer.param_groups[0]["lr"]
        batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
        loss = ((model(inputs[batch]) - targets[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not epoch_rows:
            rows.append({"step": step, "lr": lr, "train_loss": loss.item()})
        if per_epoch is None or (step + 1) % per_epoch == 0:
            if epoch_rows:
                rows.append({"step": step // per_epoch, "lr": lr, "train_loss": loss.item()})
            scheduler.step()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def lambda_of(function):
    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, function)


def schedule_findings(run_dir: Path) -> list:
    report = analyze(run_dir)
    return [f for f in report.findings if f.code in SCHEDULE_CODES and f.severity in ("warning", "error")]


def assert_declared_and_followed(run_dir: Path, tolerance: float = 1e-6, source: str = "config"):
    run = build_run(run_dir)
    run.intended_schedule = resolve_intended(run)
    intended = run.intended_schedule
    assert intended is not None and intended.source == source, intended and intended.source_detail
    comparison = align(run).comparison
    assert comparison.residual < tolerance, (intended.spec, comparison.residual)
    assert schedule_findings(run_dir) == []
    return intended


def megatron_cosine(step: int, warmup: int, decay: int, min_lr: float) -> float:
    """megatron/core/optimizer_param_scheduler.py get_lr: linear warmup, cosine to min_lr, then min_lr."""
    if step < warmup:
        return BASE_LR * step / warmup
    if step > decay:
        return min_lr
    ratio = (step - warmup) / (decay - warmup)
    return min_lr + (BASE_LR - min_lr) * 0.5 * (math.cos(math.pi * ratio) + 1.0)


def deepspeed_warmup_decay(step: int, warmup: int, total: int) -> float:
    """deepspeed/runtime/lr_schedules.py WarmupDecayLR with warmup_type 'linear' and warmup_min_lr 0."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


def test_hf_composite_name_nested_lr_schedule(tmp_path):
    from transformers import get_cosine_schedule_with_warmup
    train(tmp_path, lambda o: get_cosine_schedule_with_warmup(o, 10, 100), 100)
    (tmp_path / "config.yaml").write_text("learning_rate: 0.01\nlr_schedule:\n  name: cosine_with_warmup\n"
                                          "  warmup_steps: 10\n  total_steps: 100\n")
    intended = assert_declared_and_followed(tmp_path)
    assert intended.horizon == 100 and "cosine_with_warmup" in intended.source_detail


@pytest.mark.parametrize("name", ["warmup_cosine", "WarmupCosine", "get_cosine_schedule_with_warmup"])
def test_hydra_nesting_and_composite_spellings(tmp_path, name):
    from transformers import get_cosine_schedule_with_warmup
    train(tmp_path, lambda o: get_cosine_schedule_with_warmup(o, 8, 80), 80)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        f"trainer:\n  max_steps: 80\nmodel:\n  optim:\n    lr: 0.01\n    sched:\n      name: {name}\n"
        "      warmup_steps: 8\n")
    assert_declared_and_followed(tmp_path)


def test_linear_warmup_name(tmp_path):
    from transformers import get_linear_schedule_with_warmup
    train(tmp_path, lambda o: get_linear_schedule_with_warmup(o, 5, 60), 60)
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.01, "scheduler": "linear_warmup", "warmup_steps": 5,
                                                      "num_training_steps": 60}))
    assert_declared_and_followed(tmp_path)


def test_megatron_cosine(tmp_path):
    train(tmp_path, lambda_of(lambda s: megatron_cosine(s, 10, 90, 1e-4) / BASE_LR), 90)
    (tmp_path / "args.json").write_text(json.dumps({"lr": 0.01, "min_lr": 1e-4, "lr_decay_style": "cosine",
                                                    "lr_warmup_iters": 10, "lr_decay_iters": 90, "train_iters": 90}))
    assert_declared_and_followed(tmp_path)


def test_deepspeed_json(tmp_path):
    train(tmp_path, lambda_of(lambda s: deepspeed_warmup_decay(s, 10, 100)), 100)
    (tmp_path / "ds_config.json").write_text(json.dumps({
        "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 0.01}},
        "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.01,
                                                          "warmup_num_steps": 10, "total_num_steps": 100,
                                                          "warmup_type": "linear"}}}))
    intended = assert_declared_and_followed(tmp_path)
    assert intended.horizon == 100


def test_mmengine_param_scheduler_list(tmp_path):
    def sequential(optimizer):
        warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.001, total_iters=10)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=90, eta_min=0.0)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[10])
    train(tmp_path, sequential, 100)
    (tmp_path / "config.json").write_text(json.dumps({
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.01}},
        "param_scheduler": [{"type": "LinearLR", "start_factor": 0.001, "by_epoch": False, "begin": 0, "end": 10},
                            {"type": "CosineAnnealingLR", "by_epoch": False, "begin": 10, "end": 100, "T_max": 90,
                             "eta_min": 0.0}],
        "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": 100}}))
    intended = assert_declared_and_followed(tmp_path)
    assert intended.class_name == "SequentialLR"


def test_fairseq_inverse_sqrt(tmp_path):
    from transformers import get_inverse_sqrt_schedule
    train(tmp_path, lambda o: get_inverse_sqrt_schedule(o, num_warmup_steps=10), 100)
    (tmp_path / "args.json").write_text(json.dumps({"arch": "transformer", "lr": [0.01], "lr_scheduler": "inverse_sqrt",
                                                    "warmup_updates": 10, "max_update": 100, "update_freq": [1]}))
    assert_declared_and_followed(tmp_path)


def test_lightning_cli_class_path(tmp_path):
    train(tmp_path, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.01, total_steps=100), 100)
    (tmp_path / "hparams.yaml").write_text(
        "lr: 0.01\nlr_scheduler:\n  class_path: torch.optim.lr_scheduler.OneCycleLR\n"
        "  init_args:\n    max_lr: 0.01\n    total_steps: 100\n")
    assert_declared_and_followed(tmp_path)


def test_yolov5_hyp_per_epoch(tmp_path):
    epochs, lrf = 20, 0.01
    train(tmp_path, lambda_of(lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf), epochs * 8, per_epoch=8,
          epoch_rows=True)
    (tmp_path / "hyp.yaml").write_text(f"lr0: 0.01\nlrf: {lrf}\nmomentum: 0.937\nwarmup_epochs: 0\n")
    (tmp_path / "opt.yaml").write_text(f"epochs: {epochs}\nbatch_size: 16\ncos_lr: false\n")
    intended = assert_declared_and_followed(tmp_path)
    assert intended.class_name == "LinearLR" and intended.interval == "epoch"


def _timm_cosine():
    """timm.scheduler.cosine_lr without running timm/__init__.py (it needs torchvision)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "scheduler"
    package = types.ModuleType("_timm_scheduler")
    package.__path__ = [str(folder)]
    sys.modules.setdefault("_timm_scheduler", package)
    module_spec = importlib.util.spec_from_file_location("_timm_scheduler.cosine_lr", folder / "cosine_lr.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["_timm_scheduler.cosine_lr"] = module
    module_spec.loader.exec_module(module)
    return module.CosineLRScheduler


def test_timm_sched_per_epoch(tmp_path):
    cosine = _timm_cosine()
    epochs, per_epoch = 20, 8
    made = {}

    class EpochStepper:
        def __init__(self, optimizer):
            made["scheduler"] = cosine(optimizer, t_initial=epochs, lr_min=1e-5, warmup_t=0, t_in_epochs=True)
            self.epoch = 0

        def step(self):
            self.epoch += 1
            made["scheduler"].step(self.epoch)

    train(tmp_path, EpochStepper, epochs * per_epoch, per_epoch=per_epoch, epoch_rows=True)
    (tmp_path / "args.yaml").write_text(f"model: resnet18\nlr: 0.01\nsched: cosine\nepochs: {epochs}\n"
                                        "min_lr: 1.0e-05\nwarmup_epochs: 0\nwarmup_lr: 1.0e-05\n")
    intended = assert_declared_and_followed(tmp_path)
    assert intended.interval == "epoch" and intended.horizon == epochs


def test_timm_warmup_is_approximate_but_raises_nothing(tmp_path):
    cosine = _timm_cosine()
    epochs, per_epoch = 30, 8

    class EpochStepper:
        def __init__(self, optimizer):
            self.scheduler = cosine(optimizer, t_initial=epochs, lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-4,
                                    t_in_epochs=True)
            self.epoch = 0

        def step(self):
            self.epoch += 1
            self.scheduler.step(self.epoch)

    train(tmp_path, EpochStepper, epochs * per_epoch, per_epoch=per_epoch, epoch_rows=True)
    (tmp_path / "args.yaml").write_text(f"lr: 0.01\nsched: cosine\nepochs: {epochs}\nmin_lr: 1.0e-05\n"
                                        "warmup_epochs: 3\nwarmup_lr: 1.0e-04\n")
    intended = assert_declared_and_followed(tmp_path, tolerance=0.05)
    assert intended.approximate and any("timm" in note for note in intended.notes)


def test_unreplayable_name_says_so_and_keeps_the_horizon(tmp_path):
    """A named schedule with no torch class: noted, and its stated horizon still finds an early stop."""
    total = 400

    def tanh(step):  # timm's TanhLRScheduler shape, stopped at half its horizon
        return 0.5 * (1 - math.tanh(-6 + 9 * step / total)) + 1e-3
    rows = train(tmp_path, lambda_of(tanh), total // 2)
    assert 0.5 < rows[-1]["lr"] / rows[0]["lr"] < 0.98  # measured: still high, but moving
    (tmp_path / "config.yaml").write_text(f"lr: 0.01\nsched: tanh\nmax_steps: {total}\n")
    report = analyze(tmp_path)
    schedule = report.intended_schedule
    notes = " ".join(schedule.notes if hasattr(schedule, "notes") else schedule["notes"])
    assert "cannot be replayed" in notes and "tanh" in notes
    found = [f for f in report.findings if f.code == "schedule_incomplete"]
    assert found and found[0].step == total // 2 - 1
    assert any(e.source == "config.yaml" and "max_steps" in e.locator for e in found[0].evidence)


def test_too_fast_interval_from_the_config_epochs(tmp_path):
    """CosineAnnealingLR(T_max=30) with `epochs: 30` in the config, stepped every batch: too fast, no overrun."""
    train(tmp_path, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30), 300)
    (tmp_path / "config.yaml").write_text("epochs: 30\noptimizer: {name: SGD, lr: 0.01}\n"
                                          "scheduler:\n  name: CosineAnnealingLR\n  T_max: 30\n")
    codes = {f.code for f in schedule_findings(tmp_path)}
    assert codes == {"schedule_too_fast"}, codes


def test_too_fast_healthy_twin_steps_per_epoch(tmp_path):
    train(tmp_path, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30), 300, per_epoch=10)
    (tmp_path / "config.yaml").write_text("epochs: 30\noptimizer: {name: SGD, lr: 0.01}\n"
                                          "scheduler:\n  name: CosineAnnealingLR\n  T_max: 30\n")
    assert schedule_findings(tmp_path) == []
    run = build_run(tmp_path)
    intended = resolve_intended(run)
    assert intended.interval == "epoch" and intended.steps_per_epoch == 10


def test_named_schedule_ending_mid_decay_is_incomplete_and_finished_twin_is_not(tmp_path):
    from transformers import get_cosine_schedule_with_warmup
    broken, healthy = tmp_path / "broken", tmp_path / "healthy"
    train(broken, lambda o: get_cosine_schedule_with_warmup(o, 10, 400), 100)
    train(healthy, lambda o: get_cosine_schedule_with_warmup(o, 10, 100), 100)
    (broken / "config.yaml").write_text("lr: 0.01\nscheduler: warmup_cosine\nwarmup_steps: 10\nmax_steps: 400\n")
    (healthy / "config.yaml").write_text("lr: 0.01\nscheduler: warmup_cosine\nwarmup_steps: 10\nmax_steps: 100\n")
    found = [f for f in schedule_findings(broken) if f.code == "schedule_incomplete"]
    assert len(found) == 1 and found[0].step == 99 and found[0].end_step == 400
    assert schedule_findings(healthy) == []
    logged = np.array([row["lr"] for row in csv.DictReader(open(broken / "metrics.csv"))], dtype=float)
    assert logged[-1] > 0.5 * logged.max()  # measured from the run: it stopped with the LR still high
