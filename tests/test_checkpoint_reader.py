"""Checkpoint files written by real (tiny) torch training loops in the common layouts, bad files,
and the real Lightning checkpoints under shared/real_runs when they are present."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

from checkpoint_builders import assert_json_clean, lightning_shaped_checkpoint, train
from forensics.ingest.checkpoint import RNG_SAFE_GLOBALS, read_checkpoint_file, read_training_args


# --- layouts --------------------------------------------------------------------------------

def test_plain_layout_adam_steplr_scaler_rng(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model, optimizer, scheduler, scaler = train(
        6, lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), weight_decay=1e-4),
        lambda o: lr_scheduler.StepLR(o, step_size=4, gamma=0.5), scaler)
    path = tmp_path / "last.pt"
    torch.save({
        "epoch": 2, "global_step": 6,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scheduler_state_dict": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng_state": torch.get_rng_state(),
        "numpy_rng_state": np.random.get_state(),   # a uint32 ndarray: needs RNG_SAFE_GLOBALS
        "python_rng_state": random.getstate(),
    }, path)

    ckpt = read_checkpoint_file(path, "last.pt")

    assert ckpt.readable and ckpt.problems == []
    assert ckpt.layout == "plain" and ckpt.model_key == "model_state_dict"
    assert (ckpt.epoch, ckpt.global_step) == (2, 6)
    [opt] = ckpt.optimizers
    group = opt.param_groups[0]
    assert opt.key == "optimizer_state_dict" and opt.family == "adam"
    assert group.lr == pytest.approx(optimizer.param_groups[0]["lr"]) == pytest.approx(0.005)
    assert group.initial_lr == pytest.approx(0.01)
    assert group.betas == (0.8, 0.95) and group.weight_decay == pytest.approx(1e-4)
    assert group.extra["eps"] == pytest.approx(1e-8) and group.params == 2
    assert opt.step_counts == (6,) and opt.params_with_state == 2
    [sched] = ckpt.schedulers
    assert (sched.class_name, sched.match) == ("StepLR", "exact")
    assert sched.last_epoch == 6 and sched.step_count == 7
    assert sched.params == {"step_size": 4, "gamma": 0.5}
    assert sched.last_lrs == pytest.approx((0.005,))
    assert ckpt.has_rng_state and set(ckpt.rng_state_keys) == {
        "torch_rng_state", "numpy_rng_state", "python_rng_state"}
    assert ckpt.has_grad_scaler and ckpt.grad_scaler_scale == scaler.get_scale()
    assert (ckpt.weight_tensors, ckpt.weight_values, ckpt.nonfinite_weight_values) == (2, 10, 0)
    assert_json_clean(ckpt)


def test_plain_layout_sgd_momentum_onecycle(tmp_path):
    model, optimizer, scheduler, _ = train(
        5, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=40, pct_start=0.25))
    path = tmp_path / "ckpt.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": 0, "step": 5}, path)

    ckpt = read_checkpoint_file(path, "ckpt.pth")

    [opt] = ckpt.optimizers
    group = opt.param_groups[0]
    assert opt.family == "sgd_momentum" and opt.step_counts == ()
    assert group.momentum == pytest.approx(optimizer.param_groups[0]["momentum"])
    assert group.extra["nesterov"] is True and group.extra["max_lr"] == pytest.approx(0.2)
    assert group.lr == pytest.approx(optimizer.param_groups[0]["lr"])
    [sched] = ckpt.schedulers
    assert sched.class_name == "OneCycleLR"
    params = sched.params
    assert params["total_steps"] == 40 and params["pct_start"] == pytest.approx(0.25)
    assert params["max_lrs"] == pytest.approx([0.2]) and params["max_lrs_source"] == "optimizer param_groups"
    assert params["cycle_momentum"] is True and params["three_phase"] is False
    assert params["_anneal_func_type"] == "cos"
    assert params["div_factor"] == pytest.approx(25.0) and params["final_div_factor"] == pytest.approx(1e4)
    assert ckpt.global_step == 5 and ckpt.epoch == 0
    assert not ckpt.has_rng_state and not ckpt.has_grad_scaler


def test_model_only_counts_nonfinite(tmp_path):
    model, *_ = train(2, lambda p: torch.optim.SGD(p, lr=0.1))
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
        model.weight[1, 2] = float("inf")
        model.bias[1] = float("-inf")
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)

    ckpt = read_checkpoint_file(path, "weights.pt")

    assert ckpt.layout == "model_only" and ckpt.optimizers == [] and ckpt.schedulers == []
    assert (ckpt.weight_tensors, ckpt.weight_values) == (2, 10)
    assert (ckpt.nonfinite_weight_values, ckpt.nonfinite_weight_tensors) == (3, 2)
    assert_json_clean(ckpt)


def test_legacy_non_zip_format_is_read_without_mmap(tmp_path):
    model, optimizer, *_ = train(3, lambda p: torch.optim.AdamW(p, lr=0.001))
    path = tmp_path / "old.pt"
    torch.save({"net": model.state_dict(), "opt": optimizer.state_dict(), "iteration": 3}, path,
               _use_new_zipfile_serialization=False)

    ckpt = read_checkpoint_file(path, "old.pt")

    assert ckpt.readable and ckpt.problems == []
    assert ckpt.model_key == "net" and ckpt.global_step == 3
    assert ckpt.optimizers[0].key == "opt" and ckpt.optimizers[0].step_counts == (3,)


def test_lightning_layout(tmp_path):
    checkpoint, optimizer, scheduler = lightning_shaped_checkpoint()
    path = tmp_path / "epoch=1-step=8.ckpt"
    torch.save(checkpoint, path)

    ckpt = read_checkpoint_file(path, "lightning_logs/version_0/checkpoints/epoch=1-step=8.ckpt")

    assert ckpt.layout == "lightning" and ckpt.framework_version == "2.1.1"
    assert (ckpt.epoch, ckpt.global_step) == (1, 8)
    assert ckpt.model_key == "state_dict" and ckpt.weight_tensors == 2
    assert ckpt.loop_counters == {"batches_that_stepped": 8, "batches_completed": 8, "epochs_completed": 1,
                                  "optimizer_steps_automatic": 8, "scheduler_steps": 8}
    [opt] = ckpt.optimizers
    assert opt.key == "optimizer_states[0]" and opt.step_counts == (8,)
    assert opt.param_groups[0].lr == pytest.approx(optimizer.param_groups[0]["lr"])
    [sched] = ckpt.schedulers
    assert sched.key == "lr_schedulers[0]" and sched.class_name == "CosineAnnealingLR"
    assert sched.params == {"T_max": 20, "eta_min": 1e-6} and sched.last_epoch == 8
    assert sched.interval is None  # Lightning keeps interval in configure_optimizers, not here
    assert ckpt.has_grad_scaler and ckpt.grad_scaler_scale == 65536.0
    assert ckpt.hyper_parameters == {"lr": 3e-4, "batch_size": 16, "layers": [4, 2]}
    assert "loops" in ckpt.top_level_keys
    assert_json_clean(ckpt)


def test_scheduler_config_dict_keeps_interval(tmp_path):
    _, optimizer, scheduler, _ = train(3, lambda p: torch.optim.SGD(p, lr=0.1),
                                       lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9))
    path = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "optimizer_states": [optimizer.state_dict()],
                "lr_schedulers": [{"scheduler": scheduler.state_dict(), "interval": "step", "frequency": 1}]},
               path)
    [sched] = read_checkpoint_file(path, "c.ckpt").schedulers
    assert (sched.class_name, sched.interval, sched.frequency) == ("ExponentialLR", "step", 1)
    assert sched.key == "lr_schedulers[0].scheduler"


# --- bad input --------------------------------------------------------------------------------

class RunConfig:
    """A custom object people put into checkpoints."""

    def __init__(self) -> None:
        self.lr = 0.1


class CreatesFileWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zip_format", [True, False])
def test_custom_class_is_unsafe_and_nothing_runs(tmp_path, zip_format):
    marker = tmp_path / "unpickled.txt"
    model, *_ = train(1, lambda p: torch.optim.SGD(p, lr=0.1))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": RunConfig(), "hook": CreatesFileWhenUnpickled(marker)},
               path, _use_new_zipfile_serialization=zip_format)

    ckpt = read_checkpoint_file(path, "ckpt.pt")

    assert not marker.exists()
    assert not ckpt.readable
    [problem] = ckpt.problems
    assert problem.code == "checkpoint_unsafe" and problem.path == "ckpt.pt"
    assert "RunConfig" in problem.message or "open" in problem.message
    assert "not allowed; not loaded another way" in problem.message and "ckpt.pt" in problem.message
    if zip_format:  # every refused global is listed from the opcodes
        assert "RunConfig" in problem.message and "open" in problem.message


def test_truncated_file_is_unreadable(tmp_path):
    model, optimizer, *_ = train(2, lambda p: torch.optim.Adam(p))
    path = tmp_path / "cut.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    [problem] = read_checkpoint_file(path, "cut.pt").problems
    assert problem.code == "checkpoint_unreadable"
    assert "cut.pt" in problem.message and "zip archive" in problem.message and "\n" not in problem.message


def test_random_bytes_are_unreadable(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    ckpt = read_checkpoint_file(path, "noise.pt")
    [problem] = ckpt.problems
    assert problem.code == "checkpoint_unreadable" and not ckpt.readable and "\n" not in problem.message


def test_directory_named_pt_is_file_unreadable(tmp_path):
    (tmp_path / "x.pt").mkdir()
    [problem] = read_checkpoint_file(tmp_path / "x.pt", "x.pt").problems
    assert problem.code == "file_unreadable" and "x.pt" in problem.message


def test_file_without_read_permission(tmp_path):
    path = tmp_path / "locked.pt"
    torch.save({"epoch": 1}, path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user that ignores file permissions (root)")
        [problem] = read_checkpoint_file(path, "locked.pt").problems
        assert problem.code == "file_unreadable"
    finally:
        path.chmod(0o600)


def test_unparseable_optimizer_is_partial(tmp_path):
    model, *_ = train(1, lambda p: torch.optim.SGD(p, lr=0.1))
    path = tmp_path / "odd.pt"
    torch.save({"model": model.state_dict(), "optimizer": {"param_groups": "lost"}, "scheduler": [1, 2]}, path)
    ckpt = read_checkpoint_file(path, "odd.pt")
    assert ckpt.readable and ckpt.weight_tensors == 2
    assert sorted((p.code, p.locator) for p in ckpt.problems) == [
        ("checkpoint_partial", "key optimizer"), ("checkpoint_partial", "key scheduler[0]"),
        ("checkpoint_partial", "key scheduler[1]")]


def test_rng_globals_are_scoped_not_global(tmp_path):
    path = tmp_path / "rng.pth"
    torch.save({"numpy": np.random.get_state()}, path)
    assert read_checkpoint_file(path, "rng.pth").has_rng_state is False  # "numpy" is not an RNG key name
    assert read_checkpoint_file(path, "rng.pth").problems == []
    assert not set(map(id, torch.serialization.get_safe_globals())) & {id(np.ndarray), id(np.dtype)}
    # Only the uint32 array of the MT19937 state is let through, not numpy arrays in general.
    torch.save({"metrics": np.zeros(3)}, path)
    [problem] = read_checkpoint_file(path, "rng.pth").problems
    assert problem.code == "checkpoint_unsafe" and "'numpy.dtypes.Float64DType'" in problem.message
    names = sorted(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in RNG_SAFE_GLOBALS)
    assert names == ["numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                     "numpy.dtype", "numpy.dtypes.UInt32DType", "numpy.ndarray"]


def test_training_args_not_a_pickle(tmp_path):
    path = tmp_path / "training_args.bin"
    path.write_bytes(b"\x00garbage")
    args, [problem] = read_training_args(path, "training_args.bin")
    assert args is None and problem.code == "checkpoint_unreadable"


# --- real artifacts -------------------------------------------------------------------------

def test_real_lightning_gan_checkpoints(real_run):
    root = real_run("lightning_gan_nan_genrisk")
    found = {p.parts[-3]: p for p in root.rglob("*.ckpt")}
    if "version_0" not in found:
        pytest.skip("lightning_gan_nan_genrisk version_0 checkpoint not present")
    nan_run = read_checkpoint_file(found["version_0"], "version_0.ckpt")
    assert nan_run.layout == "lightning" and nan_run.problems == []
    assert nan_run.global_step == 1600 and nan_run.epoch == 79 and nan_run.schedulers == []
    assert (nan_run.weight_tensors, nan_run.nonfinite_weight_tensors) == (16, 15)
    assert [o.param_groups[0].lr for o in nan_run.optimizers] == [0.01, 0.01]
    assert nan_run.loop_counters["optimizer_steps_manual"] == 1600
    if "version_2" in found:
        healthy = read_checkpoint_file(found["version_2"], "version_2.ckpt")
        assert healthy.nonfinite_weight_values == 0 and healthy.weight_tensors == 16
