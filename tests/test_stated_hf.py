"""HF Trainer runs: what `training_args.bin`, `trainer_state.json` and the log banner state, and the
step convention of the logged LR, on files a real `transformers.Trainer` wrote.

The fixtures under tests/fixtures/stated/ come from tests/fixtures/stated/make_hf_runs.py (transformers
5.x, CPU, a 4-weight model on synthetic data); one test also runs a tiny Trainer live to measure the
convention the alignment relies on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forensics.analyze import analyze
from forensics.checks.schedule.alignment import align
from forensics.model.build import build_run
from forensics.schedule import resolve_intended

FIXTURES = Path(__file__).parent / "fixtures" / "stated"


def warnings_and_errors(report) -> list:
    return [f for f in report.findings if f.severity in ("warning", "error")]


def test_transformers_logs_at_step_s_the_lr_of_step_s_minus_1(tmp_path):
    """Measured, not assumed: the LR logged at `step: s` is the LR the (0-based) optimizer step s-1 used."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x=None, labels=None):
            return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, index):
            x = torch.randn(2, generator=torch.Generator().manual_seed(index))
            return {"x": x, "labels": x.sum()}

    used = []

    class Record(transformers.TrainerCallback):
        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            used.append(optimizer.param_groups[0]["lr"])  # before scheduler.step(): the LR this step used

    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=12, learning_rate=1e-2,
                                          lr_scheduler_type="linear", warmup_steps=4, logging_steps=1,
                                          per_device_train_batch_size=4, report_to=[], save_strategy="no",
                                          use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=Tiny(), args=args, train_dataset=Data(), callbacks=[Record()])
    trainer.train()
    logged = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert all(logged[s] == pytest.approx(used[s - 1], rel=1e-12) for s in logged)
    assert len(used) == 12


@pytest.mark.parametrize("name", ["hf_accum_healthy", "hf_cosine_healthy"])
def test_healthy_hf_runs_are_declared_aligned_and_quiet(name):
    run = build_run(FIXTURES / name)
    run.intended_schedule = resolve_intended(run)
    intended = run.intended_schedule
    assert intended.source == "config" and intended.source_path == "training_args.bin"
    alignment = align(run)
    assert alignment.shift == 1 and alignment.comparison.residual < 1e-9
    assert warnings_and_errors(analyze(FIXTURES / name)) == []


def test_warmup_ratio_given_as_warmup_steps_in_transformers_5():
    state = json.loads((FIXTURES / "hf_cosine_healthy" / "trainer_state.json").read_text())
    run = build_run(FIXTURES / "hf_cosine_healthy")
    assert run.stated.value("warmup_ratio") == 0.1 and run.stated.get("warmup_steps") is None
    intended = resolve_intended(run)
    assert intended.params["num_warmup_steps"] == -(-state["max_steps"] // 10)  # HF: ceil(ratio * steps)


def test_accumulation_run_ending_at_a_quarter_of_max_steps_is_incomplete():
    state = json.loads((FIXTURES / "hf_accum_incomplete" / "trainer_state.json").read_text())
    assert state["max_steps"] == 4 * state["global_step"]  # measured from the generated run
    report = analyze(FIXTURES / "hf_accum_incomplete")
    found = [f for f in warnings_and_errors(report) if f.code == "schedule_incomplete"]
    assert len(found) == 1
    finding = found[0]
    assert finding.step == state["global_step"] - 1 and finding.end_step == state["max_steps"]
    assert "gradient accumulation steps (4)" in finding.message and "training_args.bin" in finding.message
    where = {(e.source, e.locator) for e in finding.evidence}
    assert ("training_args.bin", "field gradient_accumulation_steps") in where
    assert ("trainer_state.json", "key max_steps") in where


def test_trainer_state_horizon_with_accumulation_in_a_yaml_config(tmp_path):
    """No training_args.bin: the horizon in trainer_state.json and k=4 in a YAML config are enough."""
    shutil.copy(FIXTURES / "hf_accum_incomplete" / "trainer_state.json", tmp_path / "trainer_state.json")
    (tmp_path / "config.yaml").write_text("model: tiny\ntraining:\n  gradient_accumulation_steps: 4\n  lr: 0.01\n")
    report = analyze(tmp_path)
    found = [f for f in warnings_and_errors(report) if f.code == "schedule_incomplete"]
    assert len(found) == 1, [f.code for f in report.findings]
    assert "gradient accumulation steps (4)" in found[0].message
    assert "config.yaml config key training.gradient_accumulation_steps" in found[0].message
    where = {(e.source, e.locator) for e in found[0].evidence}
    assert ("config.yaml", "config key training.gradient_accumulation_steps") in where
    assert ("trainer_state.json", "key max_steps") in where


def test_trainer_state_healthy_twin_without_args(tmp_path):
    shutil.copy(FIXTURES / "hf_accum_healthy" / "trainer_state.json", tmp_path / "trainer_state.json")
    (tmp_path / "config.yaml").write_text("training:\n  gradient_accumulation_steps: 4\n")
    assert warnings_and_errors(analyze(tmp_path)) == []


def test_stated_facts_name_their_file_and_key():
    run = build_run(FIXTURES / "hf_accum_incomplete")
    stated = run.stated
    assert (stated.get("max_steps").source, stated.get("max_steps").locator) == ("trainer_state.json", "key max_steps")
    accumulation = stated.get("gradient_accumulation_steps")
    assert (accumulation.value, accumulation.source, accumulation.origin) == (4, "training_args.bin", "training_args")
    assert stated.value("scheduler")["name"] == "linear"
    assert stated.int_value("steps_per_epoch") == 8  # 128 samples / batch 4 / accumulation 4
    assert stated.horizon()[0] == 96
    assert json.dumps(stated.to_dict())


def test_banner_facts_carry_their_line(tmp_path):
    (tmp_path / "train.log").write_text(
        "***** Running training *****\n  Num examples = 1,280\n  Num Epochs = 10\n"
        "  Num update steps per epoch = 10\n  Instantaneous batch size per device = 16\n"
        "  Total train batch size (w. parallel, distributed & accumulation) = 128\n"
        "  Gradient Accumulation steps = 8\n  Total optimization steps = 100\n"
        "{'loss': 0.7, 'learning_rate': 0.001, 'epoch': 0.1}\n")
    stated = build_run(tmp_path).stated
    assert (stated.value("max_steps"), stated.get("max_steps").locator) == (100, "line 8")
    assert (stated.value("gradient_accumulation_steps"), stated.get("gradient_accumulation_steps").locator) == (8, "line 7")
    assert stated.value("steps_per_epoch") == 10 and stated.get("steps_per_epoch").locator == "line 4"


def test_framework_counters_win_over_a_config_and_the_disagreement_is_kept(tmp_path):
    shutil.copy(FIXTURES / "hf_accum_healthy" / "trainer_state.json", tmp_path / "trainer_state.json")
    (tmp_path / "config.yaml").write_text("max_steps: 500\n")
    stated = build_run(tmp_path).stated
    assert stated.value("max_steps") == 24 and stated.get("max_steps").origin == "trainer_state"
    assert [(f.source, f.value) for f in stated.disagreements("max_steps")] == [("config.yaml", 500)]
