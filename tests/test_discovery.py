"""Discovery walks read-only, classifies by name, and reports what it cannot walk."""

import os

from forensics.ingest import discovery as kinds
from forensics.ingest.discovery import classify, discover


def test_classify_by_name():
    assert classify("events.out.tfevents.1670903056.mike-Laptop.3423.0") == kinds.TENSORBOARD
    assert classify("ckpt_epoch_5.pt") == kinds.CHECKPOINT
    assert classify("last.ckpt") == kinds.CHECKPOINT
    assert classify("pytorch_model.bin") == kinds.CHECKPOINT
    assert classify("training_args.bin") == kinds.TRAINING_ARGS
    assert classify("trainer_state.json") == kinds.TRAINER_STATE
    assert classify("train.log") == kinds.LOG
    assert classify("hparams.yaml") == kinds.CONFIG
    assert classify("metrics.csv") == kinds.METRICS_TABLE
    assert classify("model.safetensors") == kinds.WEIGHTS
    assert classify("README") == kinds.OTHER


def test_walks_nested_folders_and_groups_hf_checkpoint_dirs(tmp_path):
    (tmp_path / "tb" / "a").mkdir(parents=True)
    (tmp_path / "tb" / "a" / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    (tmp_path / "tb" / "events.out.tfevents.2.host.2.0").write_bytes(b"")
    hf = tmp_path / "checkpoint-500"
    hf.mkdir()
    (hf / "optimizer.pt").write_bytes(b"x")
    (hf / "trainer_state.json").write_text("{}")
    found = discover(tmp_path)
    assert [f.display_path for f in found.of_kind(kinds.TENSORBOARD)] == [
        "tb/a/events.out.tfevents.1.host.1.0", "tb/events.out.tfevents.2.host.2.0"]
    (checkpoint_dir,) = found.of_kind(kinds.HF_CHECKPOINT_DIR)
    assert checkpoint_dir.display_path == "checkpoint-500"
    assert checkpoint_dir.members == ("checkpoint-500/optimizer.pt", "checkpoint-500/trainer_state.json")
    assert not found.of_kind(kinds.CHECKPOINT)  # the folder's files are not read twice
    assert found.problems == []


def test_symlink_loops_are_reported_once_and_not_followed(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train.log").write_text("step 1 loss 0.5\n")
    os.symlink(tmp_path, tmp_path / "logs" / "back_to_root")
    os.symlink(tmp_path / "self", tmp_path / "self")
    found = discover(tmp_path)
    assert [f.display_path for f in found.files] == ["logs/train.log"]
    codes = sorted(problem.code for problem in found.problems)
    assert codes == ["symlink_loop", "symlink_loop"]
    assert all(problem.path in ("logs/back_to_root", "self") for problem in found.problems)


def test_broken_link_and_fifo_are_reported(tmp_path):
    os.symlink(tmp_path / "gone.pt", tmp_path / "ckpt.pt")
    os.mkfifo(tmp_path / "pipe.log")
    found = discover(tmp_path)
    assert found.files == []
    assert {(p.code, p.path) for p in found.problems} == {("broken_link", "ckpt.pt"), ("not_a_regular_file", "pipe.log")}
    assert all(p.path in p.message for p in found.problems)


def test_links_outside_the_run_are_reported_not_read(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.log").write_text("password=hunter2\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside / "secret.log", run / "train.log")
    os.symlink(outside, run / "bulk")
    (run / "inside.log").write_text("step 1 loss 0.5\n")
    os.symlink(run / "inside.log", run / "alias.log")  # a link inside the run is fine
    found = discover(run)
    assert sorted(f.display_path for f in found.files) == ["alias.log", "inside.log"]
    outside_links = sorted(p.path for p in found.problems if p.code == "link_outside_run")
    assert outside_links == ["bulk", "train.log"]
    followed = discover(run, follow_external_links=True)
    assert "train.log" in [f.display_path for f in followed.files]
    assert "bulk/secret.log" in [f.display_path for f in followed.files]
