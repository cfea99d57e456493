"""Reading HF Trainer `checkpoint-N/` folders: built from real state_dicts, and the real one."""

from __future__ import annotations

import pytest
import torch

from checkpoint_builders import LocalTrainingArguments, assert_json_clean, make_hf_checkpoint_dir
from forensics.ingest.checkpoint import read_checkpoint_file, read_hf_checkpoint_dir


def test_hf_checkpoint_dir(tmp_path):
    folder = make_hf_checkpoint_dir(tmp_path / "out")

    ckpt = read_hf_checkpoint_dir(folder, "out/checkpoint-6")

    assert ckpt.readable and ckpt.problems == [], ckpt.problems
    assert ckpt.layout == "hf_checkpoint_dir" and ckpt.global_step == 6
    assert ckpt.epoch is None and ckpt.epoch_fraction == pytest.approx(1.2)
    assert ckpt.trainer_state == {"global_step": 6, "max_steps": 10, "num_train_epochs": 2, "epoch": 1.2,
                                  "logging_steps": 1, "save_steps": 6}
    [opt] = ckpt.optimizers
    assert opt.key == "optimizer.pt" and opt.family == "adam" and opt.step_counts == (6,)
    assert opt.param_groups[0].initial_lr == pytest.approx(5e-5)
    [sched] = ckpt.schedulers
    assert (sched.key, sched.class_name, sched.match) == ("scheduler.pt", "LambdaLR", "context")
    assert sched.candidates == ("LambdaLR", "MultiplicativeLR")
    assert sched.last_epoch == 6 and sched.last_lrs == pytest.approx((5e-5 * 4 / 8,))
    assert ckpt.has_rng_state and ckpt.rng_state_keys == ["rng_state.pth"]
    assert ckpt.has_grad_scaler and ckpt.grad_scaler_scale == 65536.0
    assert ckpt.training_args == {
        "__class__": f"{LocalTrainingArguments.__module__}.LocalTrainingArguments", "learning_rate": 5e-5,
        "lr_scheduler_type": "linear", "warmup_steps": 2, "max_steps": 10, "seed": 42, "fp16": False}
    assert (ckpt.weight_tensors, ckpt.weight_values) == (4, 8 + 2 + 3 + 4)
    assert (ckpt.nonfinite_weight_values, ckpt.nonfinite_weight_tensors) == (2, 2)
    assert "out/checkpoint-6/model.safetensors" in ckpt.files
    assert_json_clean(ckpt)


def test_hf_dir_without_trainer_state_takes_step_from_name(tmp_path):
    folder = make_hf_checkpoint_dir(tmp_path, steps=4, trainer_state=False)
    # Older Trainer versions save torch weights instead of safetensors.
    (folder / "model.safetensors").unlink()
    weights = torch.load(folder / "optimizer.pt", weights_only=True)["state"][0]["exp_avg"].clone()
    weights[0, 0] = float("nan")
    torch.save({"linear.weight": weights, "linear.bias": torch.zeros(2)}, folder / "pytorch_model.bin")

    ckpt = read_hf_checkpoint_dir(folder, "checkpoint-4")

    assert ckpt.global_step == 4 and ckpt.trainer_state is None and ckpt.problems == []
    assert (ckpt.weight_tensors, ckpt.weight_values, ckpt.nonfinite_weight_values) == (2, 10, 1)
    assert "checkpoint-4/pytorch_model.bin" in ckpt.files


def test_hf_dir_with_bad_members_reports_each(tmp_path):
    folder = make_hf_checkpoint_dir(tmp_path, steps=3)
    data = (folder / "optimizer.pt").read_bytes()
    (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])
    (folder / "trainer_state.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"\xff" * 20)
    ckpt = read_hf_checkpoint_dir(folder, "checkpoint-3")
    codes = {(p.code, p.path) for p in ckpt.problems}
    assert codes == {("checkpoint_unreadable", "checkpoint-3/optimizer.pt"),
                     ("checkpoint_partial", "checkpoint-3/trainer_state.json"),
                     ("checkpoint_unreadable", "checkpoint-3/model.safetensors")}
    assert ckpt.readable and ckpt.global_step == 3 and ckpt.schedulers


def test_real_hf_tinyllama_files(real_run):
    root = real_run("hf_tinyllama_lora_sft")
    scheduler = read_checkpoint_file(root / "scheduler.pt", "scheduler.pt")
    [sched] = scheduler.schedulers
    assert sched.candidates == ("LambdaLR", "MultiplicativeLR") and sched.last_epoch == 2799
    assert sched.base_lrs == (1e-5, 1e-5) and sched.last_lrs[0] == pytest.approx(2.64e-10, rel=1e-3)
    scaler = read_checkpoint_file(root / "scaler.pt", "scaler.pt")
    assert scaler.has_grad_scaler and scaler.grad_scaler_scale == 65536.0
    rng = read_checkpoint_file(root / "rng_state.pth", "rng_state.pth")
    assert rng.readable and rng.problems == []

    folder = read_hf_checkpoint_dir(root, "hf_tinyllama_lora_sft")
    assert folder.problems == [] and folder.global_step == 2800 and folder.has_rng_state
    assert folder.schedulers[0].class_name == "LambdaLR"
    assert folder.trainer_state["max_steps"] == 2808
    args = folder.training_args
    assert args["learning_rate"] == 1e-5 and args["lr_scheduler_type"] == "cosine"
    assert args["warmup_ratio"] == 0.02 and args["gradient_accumulation_steps"] == 8
    assert args["optim"] == "adamw_torch" and args["fp16"] is True
    assert_json_clean(folder)
