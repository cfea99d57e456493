"""The closed-form replay against a real torch scheduler stepped once per step on a real SGD optimizer.

Tolerance, per step t, relative to torch's value `want` (eps = 2.2e-16, `scale` = the largest LR
level the spec names: base LRs, max_lr, base_lr, eta_min, lr_end):

    |got - want| <= 4 eps |want| + 8 eps scale                       (every class)
                    + 3 t eps |want|   only for a CosineAnnealingLR with eta_min != 0

- The closed forms perform torch's float operations in torch's order, so on this machine they
  are bit for bit equal except in the one approximated case below. The 4 eps relative term allows
  numpy builds whose cos/pow differ from the C library by a few ulp (AVX-512 SVML).
- `8 eps scale`: a few-ulp difference in cos near -1 (in `1 + cos(x)`) moves the LR by a few ulp
  of the LR level while the LR itself may be near 0, so this part can only be absolute.
- `3 t eps`: in long runs of CosineAnnealingLR steps with eta_min = b > 0 the LR is computed as
  `b + (lr - b) * prod(ratio)` instead of re-rounding `lr` at each step, only where that is safe
  (decaying, or lr >= 2.5 b): there torch's roundings and ours move the value by at most 3 eps
  per step relative (`closed_form_ops` gives the argument). Near a trough followed by a rise it is
  looped exactly, because torch's own rounding there is amplified up to 1e5 on the way up.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensics.schedule import parse_spec
from forensics.schedule.replay import CLOSED_FORM, STEPPED, build_scheduler, replay
from forensics.schedule.spec import ScheduleSpec

EPS = float(np.finfo(np.float64).eps)
_LR_LEVELS = ("max_lr", "base_lr", "eta_min", "lr_end")


def torch_reference(spec: ScheduleSpec, base_lrs: list[float], count: int):
    """(LRs (groups, count), notes, construction text) from torch, stepped on a real SGD optimizer."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    optimizer = torch.optim.SGD(groups, lr=base_lrs[0])
    values = np.full((len(base_lrs), count), np.nan)
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler, used = build_scheduler(spec, optimizer, base_lrs)
        for index in range(count):
            values[:, index] = [group["lr"] for group in optimizer.param_groups]
            if index == count - 1:
                break
            try:
                scheduler.step()
            except ValueError as error:
                notes.append(f"torch stopped the schedule after {index + 1} steps: {error}")
                break
    return values, tuple(notes), used


def lr_scale(spec: ScheduleSpec, base_lrs: list[float]) -> float:
    levels = [abs(lr) for lr in base_lrs]
    for name in _LR_LEVELS:
        value = spec.params.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                levels.append(abs(item))
    return max([*levels, *(lr_scale(child, base_lrs) for child in spec.children)])


def has_affine_cosine(spec: ScheduleSpec) -> bool:
    return (spec.class_name == "CosineAnnealingLR" and spec.params.get("eta_min", 0.0) != 0) \
        or any(has_affine_cosine(child) for child in spec.children)


def assert_mirrors(got: np.ndarray, want: np.ndarray, spec: ScheduleSpec, base_lrs: list[float],
                   steps: np.ndarray | None = None) -> None:
    """`got` equals torch's `want` within the module's stated tolerance (NaN and inf where torch has them)."""
    steps = np.arange(want.shape[1]) if steps is None else steps
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), spec.text()
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]), spec.text()
    relative = EPS * (4 + (3 * steps if has_affine_cosine(spec) else 0))
    allowed = relative * np.abs(want) + 8 * EPS * lr_scale(spec, base_lrs)
    excess = np.abs(got - want)[finite] - np.broadcast_to(allowed, want.shape)[finite]
    worst = int(np.argmax(excess)) if excess.size else 0
    assert not excess.size or excess[worst] <= 0, (
        f"{spec.text()}: differs from torch by {np.abs(got - want)[finite][worst]:.3g} at "
        f"{np.argwhere(finite)[worst].tolist()} (want {want[finite][worst]!r})")


def outcome(function):
    """What a replay gives: its values and notes, or the exception torch (or the mirror) raised."""
    try:
        return "ok", function()
    except Exception as error:  # noqa: BLE001 - the exception itself is compared
        return "error", (type(error).__name__, str(error))


SHORT_SPECS = [
    "StepLR(step_size=7, gamma=0.5)", "StepLR(step_size=1, gamma=0.99)",
    "MultiStepLR(milestones=[0, 5, 5, 30, 700], gamma=0.3)", "MultiStepLR(milestones=[], gamma=0.3)",
    "ConstantLR(factor=0.25, total_iters=40)", "ConstantLR(factor=0.25, total_iters=0)", "ConstantLR()",
    "LinearLR(start_factor=0.01, end_factor=1.0, total_iters=50)", "LinearLR(start_factor=1.0, end_factor=0.0, total_iters=333)",
    "LinearLR(start_factor=0.5, end_factor=0.5, total_iters=0)", "LinearLR()",
    "ExponentialLR(gamma=0.999)", "ExponentialLR(gamma=1.5)",  # the second overflows to inf as torch does
    "PolynomialLR(total_iters=300, power=2.0)", "PolynomialLR(total_iters=300, power=0.5)",
    "PolynomialLR(total_iters=1500, power=1)", "PolynomialLR(total_iters=0, power=0.0)",
    "CosineAnnealingLR(T_max=100)", "CosineAnnealingLR(T_max=100, eta_min=1e-5)",
    "CosineAnnealingLR(T_max=37, eta_min=0.0001)", "CosineAnnealingLR(T_max=1, eta_min=0.0)",
    "CosineAnnealingLR(T_max=200, eta_min=0.01)",  # eta_min above the base LR
    "CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=1e-6)", "CosineAnnealingWarmRestarts(T_0=13)",
    "CosineAnnealingWarmRestarts(T_0=1, T_mult=3)",
    "OneCycleLR(max_lr=0.1, total_steps=500)", "OneCycleLR(max_lr=0.1, total_steps=3000, pct_start=0.25)",
    "OneCycleLR(max_lr=0.1, total_steps=500, anneal_strategy='linear', three_phase=True)",
    "OneCycleLR(max_lr=[0.1, 0.02], epochs=10, steps_per_epoch=50, three_phase=True)",
    "OneCycleLR(max_lr=0.1, total_steps=100, pct_start=0.0)",
    "CyclicLR(base_lr=0.001, max_lr=0.01, step_size_up=20)",
    "CyclicLR(base_lr=[0.001, 0.002], max_lr=0.01, step_size_up=20, step_size_down=7, mode='triangular2')",
    "CyclicLR(base_lr=0.001, max_lr=0.01, step_size_up=20, step_size_down=0)",
    "CyclicLR(base_lr=0.001, max_lr=0.01, step_size_up=20, mode='exp_range', gamma=0.999)",
    "SequentialLR([LinearLR(start_factor=0.01, total_iters=50), CosineAnnealingLR(T_max=900, eta_min=1e-5)], milestones=[50])",
    "SequentialLR([ConstantLR(factor=0.5, total_iters=10), ExponentialLR(gamma=0.99), StepLR(step_size=30)], milestones=[20, 200])",
    "SequentialLR([LinearLR(start_factor=0.1, total_iters=5), MultiStepLR(milestones=[0, 40]), ConstantLR(factor=0.5, total_iters=0), "
    "PolynomialLR(total_iters=50, power=2.0)], milestones=[5, 100, 150])",
    "SequentialLR([ExponentialLR(gamma=0.9), CosineAnnealingWarmRestarts(T_0=20), cosine_with_restarts(num_warmup_steps=10, "
    "num_training_steps=300, num_cycles=2)], milestones=[30, 700])",
    "ChainedScheduler([LinearLR(start_factor=0.1, total_iters=30), CosineAnnealingLR(T_max=700, eta_min=1e-5)])",
    "ChainedScheduler([ConstantLR(factor=0.1, total_iters=30), ExponentialLR(gamma=0.99)])",
    "ChainedScheduler([CosineAnnealingLR(T_max=50), StepLR(step_size=100, gamma=0.5)])",
    "ChainedScheduler([ExponentialLR(gamma=0.999), CosineAnnealingLR(T_max=60, eta_min=1e-4)])",
    "linear(num_warmup_steps=100, num_training_steps=800)", "cosine(num_warmup_steps=100, num_training_steps=800)",
    "cosine(num_warmup_steps=0, num_training_steps=900, num_cycles=1.5)", "linear(num_warmup_steps=900, num_training_steps=800)",
    "cosine_with_restarts(num_warmup_steps=100, num_training_steps=800, num_cycles=3)",
    "polynomial(num_warmup_steps=100, num_training_steps=800, power=2.0)", "polynomial(warmup_ratio=0.1, total_steps=700)",
    "inverse_sqrt(num_warmup_steps=100)", "inverse_sqrt()", "constant_with_warmup(num_warmup_steps=100)", "constant()",
]


@pytest.mark.parametrize("text", SHORT_SPECS)
def test_closed_form_equals_torch_at_every_step(text):
    spec = parse_spec(text)
    for base_lrs in ([0.003], [0.003, 1e-4]):
        if "[0.1, 0.02]" in text or "[0.001, 0.002]" in text:
            base_lrs = [0.003, 1e-4]
        got = replay(spec, base_lrs, 1500)
        want, notes, used = torch_reference(spec, base_lrs, 1500)
        assert got.method == CLOSED_FORM, text
        assert got.notes == notes and got.used == used
        assert_mirrors(got.lrs, want, spec, base_lrs)


@pytest.mark.parametrize("text", [
    "ChainedScheduler([SequentialLR([LinearLR(total_iters=5), ExponentialLR(gamma=0.9)], milestones=[5]), StepLR(step_size=3)])",
    "SequentialLR([LinearLR(total_iters=5), OneCycleLR(max_lr=0.1, total_steps=100)], milestones=[5])",
    "SequentialLR([LinearLR(total_iters=5), CyclicLR(base_lr=0.001, max_lr=0.01, step_size_up=10)], milestones=[5])",
    "SequentialLR([ConstantLR(), LinearLR(total_iters=0)], milestones=[4])",  # torch divides by zero at the milestone
    "OneCycleLR(max_lr=0.1, total_steps=10, pct_start=0.1)",                # a phase of length 0: torch divides by zero
    "StepLR(step_size=0)", "LinearLR(start_factor=0.0)", "OneCycleLR(max_lr=0.1, total_steps=100, pct_start=1)",
])
def test_without_a_mirror_torch_is_stepped_and_gives_the_same_result(text):
    spec = parse_spec(text)
    got = outcome(lambda: replay(spec, [0.003], 200))
    want = outcome(lambda: torch_reference(spec, [0.003], 200))
    assert got[0] == want[0], (got, want)
    if got[0] == "error":
        assert got[1] == want[1]
        return
    assert got[1].method == STEPPED
    assert np.array_equal(got[1].lrs, want[1][0], equal_nan=True) and got[1].notes == want[1][1]


def test_epoch_interval_and_the_step_cap_behave_as_before():
    result = replay(parse_spec("CosineAnnealingLR(T_max=6)"), [0.1], 1000, interval="epoch", steps_per_epoch=100)
    want, _, _ = torch_reference(parse_spec("CosineAnnealingLR(T_max=6)"), [0.1], 10)
    assert result.method == CLOSED_FORM and result.scheduler_steps == 10
    assert np.array_equal(result.lrs[0], np.repeat(want[0], 100))


# --- random parameters, valid or not: the mirror (or its fallback) gives exactly what torch gives ---

_rate = st.floats(1e-6, 1.0)
_LEAVES = {
    "StepLR": st.fixed_dictionaries({"step_size": st.integers(-1, 40), "gamma": st.floats(0.0, 2.0)}),
    "MultiStepLR": st.fixed_dictionaries({"milestones": st.lists(st.integers(-3, 300), max_size=5),
                                          "gamma": st.floats(0.01, 1.5)}),
    "ConstantLR": st.fixed_dictionaries({"factor": st.one_of(st.just(0.0), st.floats(-0.1, 1.1)),
                                         "total_iters": st.integers(-3, 300)}),
    "LinearLR": st.fixed_dictionaries({"start_factor": st.floats(-0.1, 1.1), "end_factor": st.floats(-0.1, 1.1),
                                       "total_iters": st.integers(0, 300)}),
    "ExponentialLR": st.fixed_dictionaries({"gamma": st.floats(0.5, 1.05)}),
    "PolynomialLR": st.fixed_dictionaries({"total_iters": st.integers(0, 300), "power": st.one_of(
        st.sampled_from([0, 0.5, 1, 2, 2.0, -1.0]), st.floats(0.0, 3.0))}),
    "CosineAnnealingLR": st.fixed_dictionaries({"T_max": st.integers(1, 200), "eta_min": st.one_of(
        st.just(0.0), st.floats(0.0, 1e-3))}),
    "CosineAnnealingWarmRestarts": st.fixed_dictionaries({"T_0": st.integers(1, 60), "T_mult": st.integers(1, 3),
                                                          "eta_min": st.floats(0.0, 1e-3)}),
}
_HF = st.tuples(st.sampled_from(["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                                 "constant_with_warmup", "inverse_sqrt"]),
                st.fixed_dictionaries({"num_warmup_steps": st.integers(0, 200), "num_training_steps": st.integers(1, 600)},
                                      optional={"num_cycles": st.floats(0.25, 4.0), "power": st.floats(0.5, 3.0),
                                                "lr_end": st.floats(0.0, 1e-6)}))
_TOP_ONLY = {
    "OneCycleLR": st.fixed_dictionaries({
        "max_lr": _rate, "total_steps": st.integers(1, 400), "pct_start": st.floats(0.0, 1.0),
        "anneal_strategy": st.sampled_from(["cos", "linear"]), "three_phase": st.booleans(),
        "div_factor": st.floats(1.0, 100.0), "final_div_factor": st.floats(1.0, 1e5)}),
    "CyclicLR": st.fixed_dictionaries({
        "base_lr": st.floats(1e-5, 1e-3), "max_lr": st.floats(1e-3, 1e-1), "step_size_up": st.integers(0, 50),
        "step_size_down": st.one_of(st.none(), st.integers(0, 50)),
        "mode": st.sampled_from(["triangular", "triangular2", "exp_range"]), "gamma": st.floats(0.9, 1.0)}),
}
_leaf = st.one_of(*[params.map(lambda p, name=name: ScheduleSpec(name, p)) for name, params in _LEAVES.items()],
                  _HF.map(lambda pair: ScheduleSpec(*pair)))
_sequential = st.lists(_leaf, min_size=2, max_size=3).flatmap(lambda children: st.lists(
    st.integers(1, 300), min_size=len(children) - 1, max_size=len(children) - 1, unique=True).map(
    lambda milestones: ScheduleSpec("SequentialLR", {"milestones": sorted(milestones)}, tuple(children))))
_chained = st.lists(_leaf, min_size=2, max_size=3).map(lambda children: ScheduleSpec("ChainedScheduler", {},
                                                                                        tuple(children)))
_any_spec = st.one_of(_leaf, _sequential, _chained,
                      *[params.map(lambda p, name=name: ScheduleSpec(name, p)) for name, params in _TOP_ONLY.items()])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_any_spec, base_lrs=st.lists(_rate, min_size=1, max_size=2), count=st.integers(1, 500))
def test_random_specs_replay_as_torch_does(spec, base_lrs, count):
    got = outcome(lambda: replay(spec, base_lrs, count))
    want = outcome(lambda: torch_reference(spec, base_lrs, count))
    assert got[0] == want[0], (spec.text(), got, want)
    if got[0] == "error":
        assert got[1] == want[1]
        return
    values, notes, used = want[1]
    assert got[1].notes == notes and got[1].used == used
    assert_mirrors(got[1].lrs, values, spec, base_lrs)


# --- long horizons ---

@pytest.mark.parametrize("text, count", [
    # the shape named.py and HF's cosine build: warmup then a cosine to eta_min over a million steps
    ("SequentialLR([LinearLR(start_factor=1e-12, total_iters=2000), CosineAnnealingLR(T_max=998000, eta_min=1e-6)], "
     "milestones=[2000])", 1_000_000),
    # past T_max: torch's additive restart, then a rising half-period looped exactly
    ("CosineAnnealingLR(T_max=150000, eta_min=3e-5)", 400_000),
    ("CosineAnnealingWarmRestarts(T_0=1000, T_mult=2, eta_min=1e-6)", 300_000),
    ("SequentialLR([ConstantLR(factor=0.1, total_iters=500), PolynomialLR(total_iters=250000, power=2.0)], "
     "milestones=[1000])", 300_000),
])
def test_long_chainable_schedules_match_torch_at_every_step(text, count):
    spec = parse_spec(text)
    got = replay(spec, [3e-3], count)
    want, notes, _ = torch_reference(spec, [3e-3], count)
    assert got.method == CLOSED_FORM and got.notes == notes
    assert_mirrors(got.lrs, want, spec, [3e-3])


@pytest.mark.parametrize("text", [
    "OneCycleLR(max_lr=3e-3, total_steps=1000000, pct_start=0.1)",
    "OneCycleLR(max_lr=3e-3, total_steps=1000000, anneal_strategy='linear', three_phase=True)",
    "CyclicLR(base_lr=1e-4, max_lr=3e-3, step_size_up=2000, step_size_down=5000, mode='exp_range', gamma=0.99999)",
    "cosine_with_restarts(num_warmup_steps=10000, num_training_steps=1000000, num_cycles=5)",
    "polynomial(num_warmup_steps=10000, num_training_steps=1000000, power=1.5)",
    "inverse_sqrt(num_warmup_steps=4000)",
])
def test_long_epoch_formula_schedules_match_torch_at_sampled_steps(text):
    """These classes compute get_lr from last_epoch alone, so torch can be asked at any step directly."""
    spec = parse_spec(text)
    count = 1_000_000
    got = replay(spec, [1e-3], count)
    assert got.method == CLOSED_FORM
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler, _ = build_scheduler(spec, optimizer, [1e-3])
    steps = np.unique(np.concatenate([np.random.default_rng(11).integers(0, count, 4000), [0, 1, count - 1]]))
    want = np.empty((1, len(steps)))
    for index, step in enumerate(steps.tolist()):
        scheduler.last_epoch = step
        with torch.optim.lr_scheduler._enable_get_lr_call(scheduler):
            want[0, index] = scheduler.get_lr()[0]
    assert_mirrors(got.lrs[:, steps], want, spec, [1e-3], steps)


def test_the_replay_never_imports_torch_dynamo():
    """A closed-form and a stepped replay in a fresh interpreter: torch._dynamo stays out (2 s to import)."""
    script = ("import sys\nfrom forensics.schedule import parse_spec, replay\n"
              "a = replay(parse_spec('OneCycleLR(max_lr=0.1, total_steps=100)'), [0.01], 100)\n"
              "b = replay(parse_spec('SequentialLR([LinearLR(total_iters=5), OneCycleLR(max_lr=0.1, total_steps=100)], "
              "milestones=[5])'), [0.01], 100)\n"
              "print(a.method == %r, b.method == %r, 'torch._dynamo' in sys.modules)\n" % (CLOSED_FORM, STEPPED))
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["True", "True", "False"]


def test_the_mirror_is_bit_exact_where_no_approximation_is_made_on_this_build():
    """Informational guard for this repo's pinned build: when numpy's cos is the C library's (checked
    here, so the assertion cannot depend on float luck), a warmup-cosine with eta_min=0 is torch's to the bit."""
    probe = np.linspace(0.0, 10.0, 10_001)
    if not np.array_equal(np.cos(probe), [math.cos(x) for x in probe.tolist()]):
        pytest.skip("this numpy's cos is not the C library's; the tolerance in assert_mirrors applies")
    spec = parse_spec("SequentialLR([LinearLR(start_factor=0.001, total_iters=300), CosineAnnealingLR(T_max=5000)], "
                      "milestones=[300])")
    got = replay(spec, [3e-3], 6000)
    want, _, _ = torch_reference(spec, [3e-3], 6000)
    assert np.array_equal(got.lrs, want)
