"""`forensics.model.stated`: each vocabulary's keys become the same normalised facts, with their key path."""

from __future__ import annotations

import json

import pytest

from forensics.model.build import build_run


@pytest.mark.parametrize("name, text, expected", [
    ("ds_config.json", json.dumps({"gradient_accumulation_steps": 8, "optimizer": {"type": "Adam", "params": {"lr": 3e-4}},
                                   "scheduler": {"type": "WarmupCosineLR", "params": {"warmup_num_steps": 100,
                                                                                      "total_num_steps": 1000}}}),
     {"gradient_accumulation_steps": (8, "config key gradient_accumulation_steps"),
      "base_lr": (3e-4, "config key optimizer.params.lr"), "warmup_steps": (100, "config key scheduler.params.warmup_num_steps"),
      "max_steps": (1000, "config key scheduler.params.total_num_steps")}),
    ("args.json", json.dumps({"lr": 1.5e-4, "min_lr": 1e-5, "lr_decay_style": "cosine", "lr_warmup_iters": 2000,
                              "lr_decay_iters": 320000, "train_iters": 500000, "world_size": 64}),
     {"decay_steps": (320000, "config key lr_decay_iters"), "max_steps": (500000, "config key train_iters"),
      "warmup_steps": (2000, "config key lr_warmup_iters"), "min_lr": (1e-5, "config key min_lr"),
      "world_size": (64, "config key world_size")}),
    ("args.yaml", "sched: cosine\nepochs: 300\nwarmup_epochs: 5\nwarmup_lr: 1.0e-06\nmin_lr: 1.0e-05\n"
                  "decay_epochs: 90\ncooldown_epochs: 10\nlr: 0.05\n",
     {"epochs": (300, "config key epochs"), "warmup_epochs": (5, "config key warmup_epochs"),
      "warmup_lr": (1e-6, "config key warmup_lr"), "decay_epochs": (90, "config key decay_epochs"),
      "cooldown_epochs": (10, "config key cooldown_epochs")}),
    ("config.json", json.dumps({"lr": [0.0005], "lr_scheduler": "inverse_sqrt", "warmup_updates": 4000,
                                "max_update": 300000, "update_freq": [4]}),
     {"base_lr": (0.0005, "config key lr"), "warmup_steps": (4000, "config key warmup_updates"),
      "max_steps": (300000, "config key max_update"), "gradient_accumulation_steps": (4, "config key update_freq")}),
    ("config.yaml", "defaults: [base]\ntrainer:\n  max_epochs: 12\n  accumulate_grad_batches: 2\n  devices: 4\n"
                    "model:\n  optim:\n    lr: 0.001\n    sched:\n      name: CosineAnnealing\n      min_lr: 0.0\n",
     {"epochs": (12, "config key trainer.max_epochs"), "gradient_accumulation_steps": (2, "config key trainer.accumulate_grad_batches"),
      "world_size": (4, "config key trainer.devices"), "min_lr": (0.0, "config key model.optim.sched.min_lr")}),
])
def test_vocabularies_normalise_with_their_key_paths(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    stated = build_run(tmp_path).stated
    for fact_name, (value, locator) in expected.items():
        fact = stated.get(fact_name)
        assert fact is not None, fact_name
        assert (fact.value, fact.locator, fact.source) == (value, locator, name)


def test_mmengine_param_scheduler_list_is_kept_as_a_chain(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"param_scheduler": [
        {"type": "LinearLR", "start_factor": 0.001, "by_epoch": False, "begin": 0, "end": 500},
        {"type": "CosineAnnealingLR", "by_epoch": True, "begin": 0, "end": 12, "T_max": 12}],
        "train_cfg": {"max_epochs": 12}}))
    stated = build_run(tmp_path).stated
    chain = stated.get("scheduler_chain")
    assert [part["name"] for part in chain.value] == ["LinearLR", "CosineAnnealingLR"]
    assert stated.value("epochs") == 12


def test_scheduler_parameters_are_not_the_run_length(tmp_path):
    """A warmup LinearLR's total_iters is its own length, not the run's max_steps."""
    (tmp_path / "config.yaml").write_text("scheduler:\n  type: LinearLR\n  total_iters: 500\n")
    assert build_run(tmp_path).stated.get("max_steps") is None


def test_the_report_json_carries_what_the_run_states_with_where(tmp_path):
    import jsonschema

    from forensics.analyze import analyze
    from forensics.render import RENDERERS

    from conftest import REPO

    (tmp_path / "config.yaml").write_text("optim:\n  lr: 0.003\ntrainer:\n  max_epochs: 12\n")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / (1 + s), "lr": 0.003}) + "\n"
                                                    for s in range(20)))
    document = json.loads(RENDERERS["json"](analyze(tmp_path, command="test")))
    jsonschema.validate(document, json.loads((REPO / "docs" / "report.schema.json").read_text()))
    facts = document["stated"]["facts"]
    assert facts["base_lr"] == {"name": "base_lr", "value": 0.003, "source": "config.yaml",
                                "locator": "config key optim.lr", "origin": "config"}
    assert facts["epochs"]["value"] == 12 and facts["epochs"]["locator"] == "config key trainer.max_epochs"
