"""The --schedule parser: constructor-like text in, ScheduleSpec out, never evaluated."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forensics.cli.main import app
from forensics.errors import ForensicsError
from forensics.schedule import parse_spec, schedule_options

VALID = [
    "OneCycleLR(max_lr=3e-3, total_steps=58285, pct_start=0.1, div_factor=25, final_div_factor=1000)",
    "SequentialLR([LinearLR(start_factor=0.01, total_iters=5), CosineAnnealingLR(T_max=95)], milestones=[5])",
    "MultiStepLR(milestones=[30, 60, 90], gamma=0.1)",
    "StepLR(30, 0.1)",
    "CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=-0.0)",
    "OneCycleLR(max_lr=[0.1, 0.01], total_steps=100, anneal_strategy='linear', three_phase=True)",
    "ChainedScheduler([ConstantLR(factor=0.5, total_iters=2), ExponentialLR(gamma=0.9)])",
    "cosine(warmup_steps=57, total_steps=2808)",
    "linear(num_warmup_steps=500, num_training_steps=5000)",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_specs_parse_and_round_trip(text):
    spec = parse_spec(text)
    assert parse_spec(spec.text()) == spec


def test_positional_arguments_follow_the_torch_signature():
    assert parse_spec("StepLR(30, 0.1)").params == {"step_size": 30, "gamma": 0.1}
    sequential = parse_spec(VALID[1])
    assert [c.class_name for c in sequential.children] == ["LinearLR", "CosineAnnealingLR"]
    assert sequential.params == {"milestones": [5]}
    assert parse_spec(VALID[7]).params == {"num_warmup_steps": 57, "num_training_steps": 2808}


@pytest.mark.parametrize("text, names", [
    ("__import__('os').system('x')", "__import__"),
    ("os.system('rm -rf /')", "os.system"),
    ("torch.optim.lr_scheduler.StepLR(step_size=3)", "torch.optim"),
    ("CosineAnnealingLR(T_max=(lambda: 1)())", "lambda"),
    ("CosineAnnealingLR(T_max=[x for x in range(3)])", "for x in"),
    ("CosineAnnealingLR(T_max=2**100**100)", "**"),
    ("CosineAnnealingLR(T_max=open('/etc/passwd'))", "open"),
    ("CosineAnnealingLR(**{'T_max': 3})", "**"),
    ("StepLR(step_size=3).__class__", "__class__"),
    ("Foo(T_max=3)", "Foo"),
    ("CosineAnnealingLR(Tmax=3)", "Tmax"),
    ("LambdaLR(lr_lambda=1)", "LambdaLR"),
    ("ReduceLROnPlateau()", "ReduceLROnPlateau"),
    ("cosine(1, 2)", "by name"),
    ("OneCycleLR(max_lr=0.1", "not a constructor call"),
])
def test_hostile_or_wrong_specs_are_refused_with_one_clear_line(text, names):
    with pytest.raises(ForensicsError) as error:
        parse_spec(text)
    message = str(error.value)
    assert message.startswith("--schedule:") and "\n" not in message
    assert names in message


def test_cli_refuses_a_hostile_schedule_with_exit_2(sample_run, tmp_path):
    result = CliRunner().invoke(app, ["analyze", str(sample_run("healthy_onecycle")), "-q", "-o",
                                      str(tmp_path / "r.json"), "--format", "json",
                                      "--schedule", "__import__('os').system('touch /tmp/pwned')"])
    assert result.exit_code == 2
    assert "only a plain scheduler name may be called" in result.output
    assert not (tmp_path / "r.json").exists()


def test_cli_refuses_a_schedule_torch_rejects(sample_run, tmp_path):
    result = CliRunner().invoke(app, ["analyze", str(sample_run("healthy_onecycle")), "-q", "-o",
                                      str(tmp_path / "r.json"), "--schedule", "OneCycleLR(max_lr=0.1, total_steps=-3)"])
    assert result.exit_code == 2
    assert "torch refused it" in result.output


def test_options_are_none_when_nothing_was_given():
    assert schedule_options(None) is None
    options = schedule_options("StepLR(step_size=3)", 0.1, 50, "epoch")
    assert options.spec.class_name == "StepLR" and options.base_lr == 0.1 and options.interval == "epoch"
