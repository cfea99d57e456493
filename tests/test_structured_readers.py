"""Our own sample runs' train.log matches their TensorBoard files; tables, MLflow, JSONL and configs read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forensics.ingest import discovery as kinds
from forensics.ingest.discovery import discover
from forensics.model.build import build_run

from conftest import SAMPLE_RUNS

# The generator's runs (MANIFEST.json); lr_mismatch_config_lr prints a wrong LR on purpose.
SAMPLE_NAMES = sorted(name for name in json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())
                      if (SAMPLE_RUNS / name / "train.log").is_file())


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_train_log_values_equal_tensorboard_at_the_same_steps(name):
    run = build_run(SAMPLE_RUNS / name)
    for metric, tb_tag, absolute in (("lr", "train/lr", 0.0), ("loss", "train/loss", 5e-5)):
        frame = run.series(metric)
        tb = frame[frame["tag"] == tb_tag].set_index(["segment", "step"])["value"]
        log = frame[frame["source"] == "train.log"]
        assert len(log) > 10, (name, metric)
        expected = tb.loc[list(zip(log["segment"], log["step"]))].to_numpy()
        printed = log["value"].to_numpy()
        both = np.isfinite(expected) & np.isfinite(printed)
        assert np.array_equal(np.isfinite(expected), np.isfinite(printed)), (name, metric)
        # train.log prints lr with %.3e (4 significant digits) and loss with %.4f
        assert np.allclose(printed[both], expected[both], rtol=5e-4, atol=absolute), (name, metric)


def test_sample_restart_and_resume_lines_are_events():
    run = build_run(SAMPLE_RUNS / "resume_scheduler_reset")
    kinds_seen = [(event.kind, event.line) for event in run.events if event.source == "train.log"]
    assert kinds_seen == [("restart", 32), ("resume", 33)]
    assert run.events[1].data["checkpoint"] == "checkpoints/ckpt_epoch_5.pt"


def test_mlflow_file_store(tmp_path):
    run_dir = tmp_path / "mlruns" / "1" / "0a1b2c"
    (run_dir / "metrics" / "train").mkdir(parents=True)
    (run_dir / "params").mkdir()
    (run_dir / "meta.yaml").write_text("run_id: 0a1b2c\nstatus: 3\n")
    (run_dir / "metrics" / "learning_rate").write_text(
        "1700000000000 0.001 0\n1700000001000 0.0009 1\n1700000002000 0.0008 2\n")
    (run_dir / "metrics" / "train" / "loss").write_text("1700000000000 0.69 0\n1700000001000 nan 1\n")
    (run_dir / "params" / "optimizer").write_text("AdamW")
    (run_dir / "params" / "lr").write_text("0.001")
    (run_dir / "params" / "epochs").write_text("3")
    found = discover(tmp_path)
    assert {f.kind for f in found.files} >= {kinds.MLFLOW_METRIC, kinds.MLFLOW_PARAMS}
    run = build_run(tmp_path)
    assert run.series("lr")["value"].tolist() == [0.001, 0.0009, 0.0008]
    assert run.series("lr")["wall_time"].tolist() == [1700000000.0, 1700000001.0, 1700000002.0]
    assert run.series("loss")["tag"].tolist() == ["train/loss"] * 2 and np.isnan(run.series("loss")["value"].iloc[1])
    intent = run.configs["mlruns/1/0a1b2c/params"]
    assert (intent["optimizer"], intent["base_lr"], intent["epochs"]) == ("AdamW", 0.001, 3)


def test_jsonl_metrics_and_wandb_history(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 10, "loss": 0.9, "lr": 0.1}\n{"step": 20, "loss": 0.8, "lr": 0.05}\nnot json\n')
    (tmp_path / "wandb-history.jsonl").write_text('{"_step": 0, "_runtime": 3.2, "train/loss": 1.5}\n')
    (tmp_path / "wandb-summary.json").write_text('{"train/loss": 1.5, "_step": 0}')
    run = build_run(tmp_path)
    loss = run.series("loss")
    assert sorted(zip(loss["source"].astype(str), loss["step"], loss["value"])) == [
        ("metrics.jsonl", 10, 0.9), ("metrics.jsonl", 20, 0.8), ("wandb-history.jsonl", 0, 1.5)]
    assert run.source("metrics.jsonl").problems[0].code == "jsonl_lines_unparsed"
    assert "wandb-summary.json" in run.configs


def test_lightning_sparse_rows_give_separate_lr_and_loss(tmp_path):
    (tmp_path / "metrics.csv").write_text("lr-Adam,step,train_loss,epoch\n0.001,49,,\n,49,16.42,0\n0.002,99,,\n"
                                          ",99,nan,0\n")
    run = build_run(tmp_path)
    assert run.series("lr")["step"].tolist() == [49, 99] and run.series("lr")["record"].tolist() == [2, 4]
    assert run.series("loss")["step"].tolist() == [49, 99] and np.isnan(run.series("loss")["value"].iloc[1])


def test_configs_are_parsed_safely_and_normalised(tmp_path):
    (tmp_path / "hparams.yaml").write_text("lr: 0.01\nmodel: !!python/object:evil.Module {a: 1}\n"
                                           "scheduler:\n  type: OneCycleLR\n  max_lr: 0.1\n  total_steps: 1000\n"
                                           "trainer:\n  max_epochs: 5\n  accumulate_grad_batches: 4\n")
    (tmp_path / "args.json").write_text(json.dumps({"optimizer": {"type": "AdamW", "lr": 3e-4}, "batch_size": 32,
                                                    "warmup_steps": 100, "max_steps": 5000}))
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    run = build_run(tmp_path)
    hparams = run.configs["hparams.yaml"]
    assert hparams["base_lr"] == 0.01 and hparams["epochs"] == 5 and hparams["gradient_accumulation_steps"] == 4
    assert hparams["scheduler"] == {"name": "OneCycleLR", "params": {"max_lr": 0.1, "total_steps": 1000}}
    assert hparams["raw"]["model"] == "<tag:yaml.org,2002:python/object:evil.Module>"
    args = run.configs["args.json"]
    assert (args["optimizer"], args["base_lr"], args["batch_size"], args["warmup_steps"], args["max_steps"]) == (
        "AdamW", 3e-4, 32, 100, 5000)
    assert run.source("broken.yaml").status == "failed"
    assert run.source("broken.yaml").problems[0].code == "config_unparsable"
