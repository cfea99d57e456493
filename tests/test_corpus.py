"""The labelled corpus is internally consistent: what CORPUS.json claims is in the artifacts themselves.

These tests check the corpus, not forensics' detection (the detection table is the lead's). The
corpus is generated once per pytest session into a temporary folder (`corpus_dir`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

SAMPLE_RUNS_DIR = Path(__file__).resolve().parent.parent / "sample_runs"
sys.path.insert(0, str(SAMPLE_RUNS_DIR))

from corpus import CORPUS, CORPUS_NAME, EVENT_FILE_PATTERN, generate_case  # noqa: E402
from corpus_truth import early_loss_spikes, grad_spike_steps, plateau_fraction, replay_intended_lrs  # noqa: E402

from forensics.checks import REGISTRY  # noqa: E402

# The output contract's codes: every registered check's (a new check adds itself by registering).
CONTRACT_CODES = {check.code for check in REGISTRY}
STEP_ORDER_WARNING = "Detected call of `lr_scheduler.step()` before `optimizer.step()`"
KV_LINE = re.compile(r"^epoch (\d+) step (\d+)/(\d+) loss (\S+) lr (\S+) grad_norm (\S+)$")
HF_LINE = re.compile(r"^\{'loss': ([^,]+), 'grad_norm': ([^,]+), 'learning_rate': ([^,]+), 'epoch': ([^}]+)\}$")
TIMM_LINE = re.compile(r"^Train: (\d+) \[\s*(\d+)/(\d+) \(\s*\d+%\)\]  Loss: (\S+) \((\S+)\)  LR: (\S+)$")
FLOAT32 = 1e-6


@pytest.fixture(scope="session")
def cases(corpus_dir: Path) -> dict:
    """CORPUS.json's cases."""
    return json.loads((corpus_dir / CORPUS_NAME).read_text())["cases"]


def names(predicate=lambda spec: True) -> list[str]:  # noqa: ANN001
    """Case names whose spec satisfies `predicate` (for parametrize)."""
    return [name for name, spec in CORPUS.items() if predicate(spec)]


def tb_series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one tag over the run's event files in name (= process) order."""
    points = []
    for path in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    points.append((event.step, float(tensor_util.make_ndarray(value.tensor))))
    return points


def logged_lrs(run_dir: Path, style: str) -> list[tuple[int | None, float]]:
    """(step or None, LR) from train.log's step lines in the given style, in order."""
    points = []
    for line in (run_dir / "train.log").read_text().splitlines():
        if style == "kv" and (match := KV_LINE.match(line)):
            points.append((int(match[2]), float(match[5])))
        elif style == "hf" and (match := HF_LINE.match(line)):
            points.append((None, float(match[3])))
        elif style == "timm" and (match := TIMM_LINE.match(line)):
            points.append((int(match[1]) * int(match[3]) + int(match[2]), float(match[6])))
    return points


def close(a: float, b: float, rel: float) -> bool:
    """Relative closeness that also holds for two zeros."""
    return abs(a - b) <= rel * max(abs(a), abs(b)) or a == b


# ---- the manifest ---------------------------------------------------------------------------


def test_corpus_json_lists_every_case_with_its_ground_truth(cases, corpus_dir):
    document = json.loads((corpus_dir / CORPUS_NAME).read_text())
    assert document["version"] == 1 and "step" in document["conventions"]
    assert list(cases) == list(CORPUS)
    for name, truth in cases.items():
        assert truth["healthy"] == (not truth["expected_codes"]), name
        assert set(truth["allowed_codes"]) <= CONTRACT_CODES, name
        for entry in truth["expected_codes"]:
            assert entry["code"] in CONTRACT_CODES, name
            assert isinstance(entry["onset_step"], int) and entry["onset_step"] >= 0, name
            assert isinstance(entry["tolerance_steps"], int) and entry["tolerance_steps"] >= 0, name
            assert entry.get("end_step", entry["onset_step"]) >= entry["onset_step"], name
            assert entry["code"] not in truth["allowed_codes"], name
        assert truth["description"] and truth["sources"] == list(CORPUS[name].sources)


def test_every_code_has_cases_from_two_source_mixes_and_healthy_twins_exist(cases):
    mixes: dict[str, set] = {}
    for truth in cases.values():
        for entry in truth["expected_codes"]:
            mixes.setdefault(entry["code"], set()).add(tuple(truth["sources"]))
    assert set(mixes) <= CONTRACT_CODES
    # each code the corpus injects comes in two source mixes (checks without corpus cases have theirs
    # elsewhere: tests/test_check_catalogue.py asserts that every registered code has a bad run somewhere)
    assert all(len(sources) >= 2 for sources in mixes.values()), mixes
    healthy = [name for name, truth in cases.items() if truth["healthy"]]
    for twin in ("healthy_onecycle_tb", "healthy_warmup_cosine_per_epoch", "healthy_steplr_per_epoch",
                 "healthy_resume_tb", "healthy_constant_lr", "healthy_reduce_on_plateau", "healthy_amp_skip",
                 "healthy_grad_accum"):
        assert twin in healthy
    assert cases["healthy_amp_skip"]["allowed_codes"] == []
    styles = {truth["log_style"] for truth in cases.values() if truth["log_style"]}
    assert styles == {"kv", "hf", "timm"}


@pytest.mark.parametrize("name", names())
def test_declared_sources_are_the_files_written(cases, corpus_dir, name):
    truth, run_dir = cases[name], corpus_dir / name
    files = truth["files"]
    on_disk = sorted(
        EVENT_FILE_PATTERN if p.startswith("tb/events.out.tfevents.") else p
        for p in (path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*") if path.is_file())
    )
    assert files == on_disk
    sources = set(truth["sources"])
    assert (EVENT_FILE_PATTERN in files) == ("tensorboard" in sources)
    assert ("train.log" in files) == ("stdout" in sources)
    assert ("stderr.log" in files) == ("stderr" in sources)
    assert any(f.startswith("checkpoints/") for f in files) == ("checkpoints" in sources)
    assert truth["facts"]["event_files"] == (truth["facts"]["process_lifetimes"] if "tensorboard" in sources else 0)


@pytest.mark.parametrize("name", names(lambda spec: "tensorboard" in spec.sources))
def test_tensorboard_lr_matches_the_facts(cases, corpus_dir, name):
    facts = cases[name]["facts"]
    lrs = tb_series(corpus_dir / name, "train/lr")
    assert len(lrs) == facts["tags"]["train/lr"] == facts["total_optimizer_steps"]
    if facts["lr_logging_offset"] == 0:
        assert close(lrs[0][1], facts["lr_at_start"], FLOAT32) and close(lrs[-1][1], facts["lr_at_end"], FLOAT32)
    steps = [step for step, _ in lrs]
    expected = [s for life in facts["lifetimes"] for s in range(life["first_step"], life["last_step"] + 1)]
    assert steps == expected


@pytest.mark.parametrize("name", names(lambda spec: "checkpoints" in spec.sources))
def test_checkpoints_load_with_weights_only_and_match_their_records(cases, corpus_dir, name):
    records = {record["path"]: record for record in cases[name]["facts"]["checkpoints"]}  # later writes win
    omitted = set(CORPUS[name].checkpoint_omits)
    for path, record in records.items():
        checkpoint = torch.load(corpus_dir / name / path, weights_only=True)
        assert sorted(checkpoint) == record["keys"]
        assert not omitted & set(checkpoint)
        assert checkpoint["epoch"] == record["epoch"]
        if "global_step" in checkpoint:
            assert checkpoint["global_step"] == record["global_step"]
        if "scheduler" in checkpoint and "last_epoch" in checkpoint["scheduler"]:
            assert checkpoint["scheduler"]["last_epoch"] == record["scheduler_last_epoch"]


# ---- each failure, seen in its own artifacts ----------------------------------------------


def test_per_epoch_stepping_changes_the_lr_only_at_epoch_boundaries(cases, corpus_dir):
    facts = cases["per_epoch_onecycle_tb"]["facts"]
    lrs = tb_series(corpus_dir / "per_epoch_onecycle_tb", "train/lr")
    changes = [step for (_, a), (step, b) in zip(lrs, lrs[1:]) if a != b]
    assert changes and all(step % facts["optimizer_steps_per_epoch"] == 0 for step in changes)
    timm = logged_lrs(corpus_dir / "per_epoch_onecycle_timm", "timm")
    spe = cases["per_epoch_onecycle_timm"]["facts"]["optimizer_steps_per_epoch"]
    by_epoch: dict[int, set] = {}
    for step, lr in timm:
        by_epoch.setdefault(step // spe, set()).add(lr)
    assert all(len(values) == 1 for values in by_epoch.values()) and len(by_epoch) == 8
    for name in ("per_epoch_onecycle_tb", "per_epoch_warmup_cosine_hf", "per_epoch_onecycle_timm"):
        assert cases[name]["facts"]["lr_changes_off_epoch_boundary"] == 0 < cases[name]["facts"]["lr_changes"]


def test_constant_lr_cases_keep_their_lr(cases, corpus_dir):
    lrs = {lr for _, lr in tb_series(corpus_dir / "constant_lr_never_stepped_tb", "train/lr")}
    assert len(lrs) == 1
    kv = [lr for _, lr in logged_lrs(corpus_dir / "constant_lr_huge_horizon_kv", "kv")]
    assert max(kv) <= 1.001 * min(kv)


def test_schedule_too_fast_collapses_within_the_first_epoch(cases, corpus_dir):
    for name, style in (("too_fast_cosine_tb", None), ("too_fast_steplr_kv", "kv")):
        truth = cases[name]
        spe = truth["facts"]["optimizer_steps_per_epoch"]
        lrs = tb_series(corpus_dir / name, "train/lr") if style is None else logged_lrs(corpus_dir / name, style)
        first_epoch = [lr for step, lr in lrs if step < spe]
        assert min(first_epoch) <= 0.1 * first_epoch[0] * (1 + 1e-6), name
        onset = truth["expected_codes"][0]["onset_step"]
        assert 0 < onset < spe


def test_schedule_overrun_cosine_rises_after_its_horizon(cases, corpus_dir):
    entry = cases["overrun_cosine_tb"]["expected_codes"][0]
    lrs = dict(tb_series(corpus_dir / "overrun_cosine_tb", "train/lr"))
    horizon = entry["onset_step"]
    assert horizon == entry["facts"]["schedule_horizon_steps"]
    assert lrs[horizon] == min(lrs.values()) and lrs[max(lrs)] > 100 * max(lrs[horizon], 1e-12)


@pytest.mark.parametrize("name, log", [("overrun_onecycle_error_kv", "train.log"), ("overrun_onecycle_error_tb", "stderr.log")])
def test_onecycle_overrun_logs_the_real_torch_error(cases, corpus_dir, name, log):
    truth = cases[name]
    error = truth["facts"]["error_text"]
    onset = truth["expected_codes"][0]["onset_step"]
    assert error == f"Tried to step {onset + 1} times. The specified number of total steps is {onset}"
    text = (corpus_dir / name / log).read_text()
    assert "Traceback (most recent call last):" in text and f"ValueError: {error}" in text
    assert truth["facts"]["lifetimes"][-1]["last_step"] == onset - 1  # the crash step is never logged


def test_schedule_incomplete_ends_far_from_the_schedule_end(cases):
    for name, accum in (("incomplete_accum_onecycle_tb", 4), ("incomplete_accum_linear_hf", 8)):
        truth = cases[name]
        entry = truth["expected_codes"][0]
        assert entry["facts"]["time_scale_factor_k"] == accum == truth["facts"]["accum"]
        assert entry["onset_step"] == truth["facts"]["total_optimizer_steps"] - 1
        assert truth["facts"]["lr_at_end"] > 10 * truth["facts"]["intended_lr_at_planned_end"]
        assert entry["facts"]["schedule_horizon_steps"] == accum * truth["facts"]["total_optimizer_steps"]


def test_off_by_one_cases_carry_the_real_torch_warning_and_a_doubled_first_lr(cases, corpus_dir):
    spec = CORPUS["off_by_one_step_order_tb"]
    assert STEP_ORDER_WARNING in (corpus_dir / "off_by_one_step_order_tb" / "stderr.log").read_text()
    assert STEP_ORDER_WARNING in (corpus_dir / "off_by_one_prestepped_timm" / "train.log").read_text()
    intended = replay_intended_lrs(spec, 3)
    first = tb_series(corpus_dir / "off_by_one_step_order_tb", "train/lr")[0][1]
    assert close(first, 2 * intended[0], FLOAT32)
    timm_first = logged_lrs(corpus_dir / "off_by_one_prestepped_timm", "timm")[0][1]
    assert close(timm_first, 2 * intended[0], 1e-3)


def test_amp_skip_is_harmless_and_shows_in_the_loss_scale(cases, corpus_dir):
    truth, run_dir = cases["healthy_amp_skip"], corpus_dir / "healthy_amp_skip"
    assert STEP_ORDER_WARNING in (run_dir / "stderr.log").read_text()
    assert truth["facts"]["amp_skipped_steps"] == [0]
    scales = [value for _, value in tb_series(run_dir, "train/loss_scale")]
    assert scales[0] == 2.0**24 and set(scales[1:]) == {2.0**16}
    checkpoint = torch.load(run_dir / truth["facts"]["checkpoints"][0]["path"], weights_only=True)
    assert checkpoint["scaler"]["scale"] == 2.0**16


def test_resume_drift_cases_show_the_resume_in_their_artifacts(cases, corpus_dir):
    reset = cases["resume_scheduler_reset_tb"]
    onset = reset["expected_codes"][0]["onset_step"]
    lrs = dict(tb_series(corpus_dir / "resume_scheduler_reset_tb", "train/lr"))
    assert lrs[onset] < 0.05 * lrs[onset - 1]
    files = sorted((corpus_dir / "resume_scheduler_reset_tb" / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 2 and files[0].name.split(".")[-2] != files[1].name.split(".")[-2]  # two processes
    rewound = [step for step, _ in logged_lrs(corpus_dir / "resume_step_reset_kv", "kv")]
    assert rewound.index(0, 1) > 0 and cases["resume_step_reset_kv"]["expected_codes"][0]["onset_step"] == 0
    stale = cases["resume_stale_checkpoint_hf"]
    assert stale["facts"]["resumed_from"] == "checkpoints/ckpt_epoch_9.pt"
    assert "checkpoints/ckpt_epoch_11.pt" in stale["files"]
    assert stale["expected_codes"][0]["onset_step"] == 9 * stale["facts"]["optimizer_steps_per_epoch"]
    log = (corpus_dir / "resume_scheduler_reset_timm" / "train.log").read_text()
    assert "Loaded checkpoint 'checkpoints/ckpt_epoch_5.pt' (epoch 5)" in log


@pytest.mark.parametrize("name", names(lambda spec: bool(spec.checkpoint_omits)))
def test_missing_resume_state_checkpoints_lack_the_key_and_the_run_resumed(cases, corpus_dir, name):
    truth = cases[name]
    assert truth["facts"]["process_lifetimes"] == 2
    assert truth["expected_codes"][0]["onset_step"] == truth["facts"]["resume_step"]
    for record in truth["facts"]["checkpoints"]:
        keys = set(torch.load(corpus_dir / name / record["path"], weights_only=True))
        assert not keys & set(CORPUS[name].checkpoint_omits)


def test_nan_onset_is_the_first_nonfinite_loss_after_a_warning_sign(cases, corpus_dir):
    diverge = cases["nan_diverge_tb"]["expected_codes"][0]
    losses = tb_series(corpus_dir / "nan_diverge_tb", "train/loss")
    assert next(step for step, value in losses if not math.isfinite(value)) == diverge["onset_step"]
    assert diverge["facts"]["first_warning_sign_step"] < diverge["onset_step"]
    spike = cases["nan_spike_recover_hf"]["expected_codes"][0]
    hf = [float(m[1]) for line in (corpus_dir / "nan_spike_recover_hf" / "train.log").read_text().splitlines()
          if (m := HF_LINE.match(line))]  # one line per step: log_every=1
    assert next(i for i, value in enumerate(hf) if not math.isfinite(value)) == spike["onset_step"]
    assert spike["facts"]["first_warning_sign_step"] < spike["onset_step"]
    assert spike["facts"]["recovered_loss_spike_steps"]


def test_grad_explosion_jumps_a_hundredfold_with_a_finite_loss(cases, corpus_dir):
    # A corrupt record scaled x1000 makes the jump orders of magnitude, not a matter of float dynamics.
    entry = cases["grad_explosion_outlier_tb"]["expected_codes"][0]
    norms = tb_series(corpus_dir / "grad_explosion_outlier_tb", "train/grad_norm")
    assert grad_spike_steps(norms)[0] == entry["onset_step"]
    assert entry["facts"]["grad_norm_growth"] > 100 and entry["facts"]["loss_finite_throughout"]
    assert all(math.isfinite(v) for _, v in tb_series(corpus_dir / "grad_explosion_outlier_tb", "train/loss"))


def test_momentum_cycles_in_checkpoints_and_in_the_logged_series(cases, corpus_dir):
    for name in ("momentum_cycling_tb", "momentum_cycling_ckpt"):
        betas = {
            torch.load(corpus_dir / name / record["path"], weights_only=True)["optimizer"]["param_groups"][0]["betas"][0]
            for record in cases[name]["facts"]["checkpoints"]
        }
        assert len(betas) > 2, name
    momentum = [value for _, value in tb_series(corpus_dir / "momentum_cycling_tb", "train/momentum")]
    assert min(momentum) == pytest.approx(0.85, abs=1e-3) and max(momentum) == pytest.approx(0.95, abs=1e-3)


def test_warmup_missing_spikes_early_and_its_twin_does_not(cases, corpus_dir):
    assert early_loss_spikes(tb_series(corpus_dir / "warmup_missing_tb", "train/loss"))
    assert not early_loss_spikes(tb_series(corpus_dir / "healthy_warmup_regression", "train/loss"))
    assert cases["warmup_missing_hf"]["facts"]["early_loss_spike_steps"]


def test_loss_plateau_is_flat_for_most_of_the_run(cases, corpus_dir):
    losses = tb_series(corpus_dir / "loss_plateau_tb", "train/loss")
    assert plateau_fraction(losses) > 0.5
    assert cases["loss_plateau_timm"]["facts"]["loss_plateau_fraction"] > 0.5


def test_val_stuck_sits_at_chance_while_training_improves(cases, corpus_dir):
    for name in ("val_stuck_ema_tb", "val_stuck_ema_nan_hf"):
        facts = cases[name]["facts"]
        assert facts["val_accuracy_distinct_values"] == 1
        assert abs(facts["val_accuracy_first"] - facts["chance_accuracy"]) < 0.05
        assert facts["train_loss_last_epoch_mean"] < 0.7 * facts["train_loss_first_epoch_mean"]
    log = (corpus_dir / "val_stuck_ema_nan_hf" / "train.log").read_text()
    assert "'eval_loss': nan" in log


# ---- healthy twins ------------------------------------------------------------------------


@pytest.mark.parametrize("name", names(lambda spec: spec.healthy))
def test_healthy_twin_lr_is_a_replay_of_its_torch_scheduler(cases, corpus_dir, name):
    truth, spec, run_dir = cases[name], CORPUS[name], corpus_dir / name
    facts = truth["facts"]
    assert truth["allowed_codes"] == [] and facts["steps_lr_differs_from_intended"] == 0
    val_losses = [value for _, value in tb_series(run_dir, "val/loss")] if "tensorboard" in spec.sources else None
    replay = replay_intended_lrs(spec, facts["total_optimizer_steps"] + 1, val_losses)
    offset = facts["lr_logging_offset"]
    if "tensorboard" in spec.sources:
        for step, lr in tb_series(run_dir, "train/lr"):
            assert close(lr, replay[step + offset], FLOAT32), (step, lr, replay[step + offset])
    else:
        points = logged_lrs(run_dir, truth["log_style"])
        assert points
        for index, (step, lr) in enumerate(points):
            if step is None:  # HF lines carry no step: the k-th line follows step k*log_every - 1
                step = (index + 1) * spec.log_every - 1
            assert close(lr, replay[step + offset], 2e-3), (step, lr)


@pytest.mark.parametrize("name", names(lambda spec: spec.healthy))
def test_healthy_twins_show_no_failure_symptom(cases, name):
    facts = cases[name]["facts"]
    assert facts["grad_norm_spike_steps"] == [] and facts["early_loss_spike_steps"] == []
    assert facts["loss_plateau_fraction"] < 0.5 and facts["first_nonfinite_loss_step"] is None
    assert facts["train_loss_last_epoch_mean"] < facts["train_loss_first_epoch_mean"]
    if facts["val_accuracy_final"] is not None:
        assert facts["val_accuracy_final"] > facts["chance_accuracy"] + 0.2
    expected_warnings = 1 if name == "healthy_amp_skip" else 0
    assert len(facts["warnings"]) == expected_warnings


# ---- determinism --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["off_by_one_step_order_tb", "missing_state_global_step_kv"])
def test_generation_is_deterministic(cases, corpus_dir, tmp_path, name):
    truth = generate_case(name, tmp_path)
    assert truth == cases[name]
    if "tensorboard" in CORPUS[name].sources:
        for tag in ("train/lr", "train/loss", "train/grad_norm"):
            assert tb_series(tmp_path / name, tag) == tb_series(corpus_dir / name, tag)
    for log in ("train.log", "stderr.log"):
        if (corpus_dir / name / log).exists():
            assert (tmp_path / name / log).read_text() == (corpus_dir / name / log).read_text()


def test_generation_leaves_torch_settings_alone(tmp_path):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    generate_case("constant_lr_never_stepped_tb", tmp_path)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


@pytest.mark.parametrize("name", names(lambda spec: spec.cli_schedule is not None))
def test_cli_schedule_states_the_scheduler_the_script_builds(name):
    """A case's `cli_schedule`, replayed by forensics, gives the LRs of the scheduler the script constructs
    (stepped at the stated interval): it states the script's schedule, not the answer."""
    import warnings

    from corpus_loop import make_optimizer
    from forensics.schedule import replay, schedule_options

    spec = CORPUS[name]
    cli = spec.cli_schedule
    options = schedule_options(cli["schedule"], cli.get("base_lr"), cli.get("steps_per_epoch"), cli.get("interval"))
    plan = spec.plan()
    steps = min(plan.total_optimizer_steps, 200)
    interval = cli.get("interval") or "step"
    spe = cli.get("steps_per_epoch") or plan.optimizer_steps_per_epoch
    stated = replay(options.spec, [cli.get("base_lr") or spec.lr], steps, interval, spe).lrs[0]
    optimizer = make_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))])
    scheduler = spec.scheduler(optimizer, plan)
    built = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() here: only the LRs are read
        for step in range(steps):
            built.append(optimizer.param_groups[0]["lr"])
            if interval == "step" or (step + 1) % spe == 0:
                scheduler.step()
    assert stated == pytest.approx(built, rel=1e-6, abs=1e-12)

