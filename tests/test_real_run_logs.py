"""Real logs and structured files from ../shared/real_runs parse with their LR/loss recovered (skipped when absent)."""

from __future__ import annotations

import math

import numpy as np

from forensics.model.build import build_run


def _rows(run, metric, source=None):
    frame = run.series(metric)
    return frame if source is None else frame[frame["source"] == source]


def test_nanogpt_log_loss_turns_nan_at_iter_3010(real_run):
    run = build_run(real_run("issue_nanogpt_215_fp16_nan"))
    loss = _rows(run, "loss")
    finite = loss[np.isfinite(loss["value"])]
    assert int(loss[~np.isfinite(loss["value"])]["step"].min()) == 3010 and int(finite["step"].max()) == 3000
    assert float(_rows(run, "val_loss")["value"].iloc[0]) == 4.0427


def test_megatron_log_grad_norm_nan_and_lr(real_run):
    run = build_run(real_run("issue_megatron_ds_396_gradnorm_nan"))
    assert _rows(run, "lr")["value"].tolist() == [2.999e-04] * 3 and _rows(run, "lr")["step"].tolist() == [5426, 5427, 5428]
    assert _rows(run, "grad_norm")["value"].isna().all() and _rows(run, "loss_scale")["value"].tolist() == [1.0] * 3


def test_mmdet_log_lr_and_loss_with_epoch_and_iteration(real_run):
    run = build_run(real_run("issue_mmdet_8654_resume"))
    lr = _rows(run, "lr")
    assert lr["value"].iloc[0] == 9.833e-03 and int(lr["step"].iloc[0]) == 19 * 643 + 450
    assert int(lr["step"].iloc[4]) == 21 * 643 + 200  # epoch 22 after the gap
    assert _rows(run, "loss")["value"].iloc[-1] == 2.7313
    assert "(epoch-1)*643+iter" in run.source("train.log").detail


def test_chatglm_hf_dicts_nan_loss_at_step_1_and_constant_lr(real_run):
    run = build_run(real_run("issue_chatglm_49_nan_constant_lr"))
    loss = _rows(run, "loss")
    assert loss["step"].tolist() == [0, 1, 2, 3] and math.isnan(loss["value"].iloc[1])
    assert _rows(run, "lr")["value"].tolist() == [5e-05] * 4


def test_scheduler_order_warning_in_all_three_forms(real_run):
    run = build_run(real_run("issue_lr_scheduler_order_warning"))
    warnings = {event.source: event for event in run.events if event.kind == "scheduler_order_warning"}
    assert set(warnings) == {"neuralrecon_51.log", "pytorch_transformers_classification_21.log",
                             "reid_strong_baseline_190.log"}
    assert warnings["pytorch_transformers_classification_21.log"].data["torch_location"] == "lr_scheduler.py:82"
    assert all(event.line == 1 for event in warnings.values())


def test_whisper_trainer_state_warmup_500_then_linear_decay_to_5000(real_run):
    run = build_run(real_run("hf_whisper_large_v2_ja"))
    lr = _rows(run, "lr", "trainer_state.json")
    steps, values = lr["step"].to_numpy(), lr["value"].to_numpy()
    peak = int(steps[np.argmax(values)])
    # logged every 25 steps: the 1e-5 peak right after step 500 falls between the points at 500 and 525
    assert steps[0] == 25 and steps[-1] == 5000 and peak in (500, 525)
    assert np.all(np.diff(values[steps <= 500]) > 0) and np.all(np.diff(values[steps >= 525]) < 0)
    decay = values[steps >= 525]
    assert np.allclose(np.diff(decay), np.diff(decay)[0], rtol=1e-6)  # linear
    assert "train_loss" not in set(_rows(run, "loss")["tag"])  # the run-mean summary is not a loss point
    assert run.configs["trainer_state.json"]["max_steps"] == 5000
    assert len(_rows(run, "val_loss", "trainer_state.json")) == 5


def test_tinyllama_trainer_state_cosine(real_run):
    run = build_run(real_run("hf_tinyllama_lora_sft"))
    lr = _rows(run, "lr", "trainer_state.json")
    values = lr["value"].to_numpy()
    assert int(lr["step"].iloc[int(np.argmax(values))]) <= 75 and values[-1] < 1e-6 * values.max() * 1000
    middle = values[len(values) // 2]
    assert 0.4 * values.max() < middle < 0.6 * values.max()  # cosine passes half its peak halfway
    assert len(_rows(run, "grad_norm")) == len(lr)


def test_lightning_yolov3_lr_adam_column_and_nan_loss_per_version(real_run):
    run = build_run(real_run("lightning_yolov3_onecycle_nan"))
    assert set(_rows(run, "lr")["tag"]) == {"lr-Adam"}
    first_nan = {}
    for version in ("version_0", "version_1", "version_2", "version_4"):
        loss = _rows(run, "loss", f"lightning_logs/{version}/metrics.csv")
        nan_steps = loss[loss["value"].isna()]["step"]
        first_nan[version] = int(nan_steps.min()) if len(nan_steps) else None
    assert first_nan == {"version_0": 4249, "version_1": 4599, "version_2": 3849, "version_4": None}
    assert run.configs["lightning_logs/version_0/hparams.yaml"]["epochs"] == 40


def test_yolov5_results_csv_lr_columns_match_the_event_file(real_run):
    run = build_run(real_run("yolov5_exp2"))
    table = _rows(run, "lr", "results.csv")
    assert set(table["tag"]) == {"x/lr0", "x/lr1", "x/lr2"} and len(table) == 900
    assert table[table["tag"] == "x/lr0"]["value"].iloc[0] == 0.0712
    assert "epoch column" in run.source("results.csv").detail
    intent = run.configs["opt.yaml"]
    assert (intent["optimizer"], intent["epochs"], intent["batch_size"], intent["base_lr"]) == ("SGD", 300, 16, 0.01)


def test_testtube_meta_tags_are_a_config(real_run):
    run = build_run(real_run("lightning_testtube_neuralode"))
    assert run.configs["hall_of_fame_20200206/meta_tags.csv"]["base_lr"] == 0.02
