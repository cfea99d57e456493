"""Scheduler identification against every torch LR scheduler class, built and stepped for real."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler as S

from forensics.ingest.checkpoint import read_checkpoint_file
from forensics.ingest.scheduler_state import (
    BASE_SCHEDULER_KEYS, MOMENTUM_CYCLING_KEYS, SCHEDULER_SIGNATURES, identify_scheduler, summarise_scheduler,
)


def halve(epoch: int) -> float:
    return 0.5


def warmup(epoch: int) -> float:
    return min(1.0, (epoch + 1) / 3)


BUILDERS = {
    "LambdaLR": lambda o: S.LambdaLR(o, warmup),
    "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, halve),
    "StepLR": lambda o: S.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[2, 4, 4], gamma=0.1),
    "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=3),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=4),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.9),
    "SequentialLR": lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=2),
                                                 S.ExponentialLR(o, gamma=0.9)], milestones=[2]),
    "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=8, power=2.0),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-4),
    "ChainedScheduler": lambda o: S.ChainedScheduler([S.ConstantLR(o, factor=0.5, total_iters=2),
                                                      S.ExponentialLR(o, gamma=0.9)]),
    "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, patience=1),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=20),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2),
}


def stepped_scheduler(name: str, steps: int = 4):
    """Train a tiny model for a few steps with the named scheduler and return it."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = BUILDERS[name](optimizer)
    inputs, targets = torch.randn(8, 3), torch.randn(8, 1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        scheduler.step(loss.item()) if name == "ReduceLROnPlateau" else scheduler.step()
    return optimizer, scheduler


def test_every_torch_scheduler_is_covered():
    assert set(BUILDERS) == set(SCHEDULER_SIGNATURES)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_signature_table_matches_torch(name):
    _, scheduler = stepped_scheduler(name)
    optional = MOMENTUM_CYCLING_KEYS.get(name, frozenset())
    assert set(scheduler.state_dict()) - BASE_SCHEDULER_KEYS - optional == SCHEDULER_SIGNATURES[name]


@pytest.mark.parametrize("cycle_momentum", [True, False])
@pytest.mark.parametrize("name", sorted(MOMENTUM_CYCLING_KEYS))
def test_momentum_cycling_keys_do_not_change_the_identification(name, cycle_momentum):
    optimizer = torch.optim.AdamW(nn.Linear(2, 1).parameters(), lr=0.01)
    if name == "OneCycleLR":
        scheduler = S.OneCycleLR(optimizer, max_lr=0.1, total_steps=20, cycle_momentum=cycle_momentum)
    else:
        scheduler = S.CyclicLR(optimizer, base_lr=0.01, max_lr=0.1, step_size_up=3, cycle_momentum=cycle_momentum)
    keys = set(scheduler.state_dict())
    assert (MOMENTUM_CYCLING_KEYS[name] <= keys) == cycle_momentum
    class_name, _, match, _ = identify_scheduler(keys)
    assert (class_name, match) == (name, "exact")


def test_only_lambda_and_multiplicative_share_keys():
    shared = [(a, b) for a, b in itertools.combinations(sorted(SCHEDULER_SIGNATURES), 2)
              if SCHEDULER_SIGNATURES[a] == SCHEDULER_SIGNATURES[b]]
    assert shared == [("LambdaLR", "MultiplicativeLR")]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_identifies_each_class_from_a_saved_checkpoint(tmp_path, name):
    optimizer, scheduler = stepped_scheduler(name)
    path = tmp_path / "ckpt.pt"
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": 0}, path)

    ckpt = read_checkpoint_file(path, "ckpt.pt")

    assert ckpt.problems == []
    [state] = ckpt.schedulers
    if name in ("LambdaLR", "MultiplicativeLR"):
        assert state.class_name == "LambdaLR|MultiplicativeLR" and state.match == "ambiguous"
        assert "identical" in state.identified_by and "None (a function)" in state.identified_by
    else:
        assert (state.class_name, state.match) == (name, "exact")
    assert state.last_epoch == getattr(scheduler, "last_epoch", None)
    assert state.last_lrs == pytest.approx(tuple(scheduler.get_last_lr()))


def test_nested_schedulers_are_named():
    _, sequential = stepped_scheduler("SequentialLR")
    state = summarise_scheduler(sequential.state_dict(), "scheduler")
    assert [c.class_name for c in state.children] == ["LinearLR", "ExponentialLR"]
    assert state.params["milestones"] == [2] and state.children[0].key == "scheduler._schedulers[0]"
    _, chained = stepped_scheduler("ChainedScheduler")
    assert summarise_scheduler(chained.state_dict(), "s").params["schedulers"] == ["ConstantLR", "ExponentialLR"]


def test_params_are_plain_values():
    _, multistep = stepped_scheduler("MultiStepLR")
    assert summarise_scheduler(multistep.state_dict(), "s").params == {"milestones": [2, 4, 4], "gamma": 0.1}
    _, plateau = stepped_scheduler("ReduceLROnPlateau")
    params = summarise_scheduler(plateau.state_dict(), "s").params
    assert params["patience"] == 1 and params["mode"] == "min" and isinstance(params["best"], float)
    _, cyclic = stepped_scheduler("CyclicLR")
    params = summarise_scheduler(cyclic.state_dict(), "s").params
    assert params["max_lrs"] == [0.1] and params["total_size"] == 6.0 and params["cycle_momentum"] is True


def test_three_phase_onecycle():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = S.OneCycleLR(optimizer, max_lr=[0.05], total_steps=100, pct_start=0.3, three_phase=True,
                             anneal_strategy="linear")
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    state = summarise_scheduler(scheduler.state_dict(), "s")
    assert state.params["three_phase"] is True and state.params["pct_start"] == pytest.approx(0.3)
    assert state.params["_anneal_func_type"] == "linear" and state.params["use_beta1"] is True


def test_subclass_with_extra_keys_is_a_superset_match():
    _, scheduler = stepped_scheduler("MultiStepLR")
    state = dict(scheduler.state_dict(), warmup_iters=500, warmup_factor=0.001)
    name, how, match, _ = identify_scheduler(set(state))
    assert (name, match) == ("MultiStepLR", "superset") and "warmup_factor" in how


def test_pre_2_2_onecycle_key_name():
    _, scheduler = stepped_scheduler("OneCycleLR")
    state = scheduler.state_dict()
    state["anneal_func"] = state.pop("_anneal_func_type")
    name, how, match, _ = identify_scheduler(set(state))
    assert (name, match) == ("OneCycleLR", "legacy") and "anneal_func" in how


def test_older_plateau_without_new_keys_is_partial():
    _, scheduler = stepped_scheduler("ReduceLROnPlateau")
    state = {k: v for k, v in scheduler.state_dict().items() if k not in ("default_min_lr", "_last_lr")}
    name, how, match, _ = identify_scheduler(set(state))
    assert (name, match) == ("ReduceLROnPlateau", "partial") and "default_min_lr" in how


def test_unknown_scheduler_keys_give_none():
    name, how, match, candidates = identify_scheduler({"t_initial", "warmup_t", "last_epoch"})
    assert (name, match, candidates) == (None, "none", ()) and "t_initial" in how
