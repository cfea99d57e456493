"""The sample runs' ground truth (MANIFEST.json) agrees with the files the generator wrote.

All runs are generated once per module into tmp_path; the committed `sample_runs/` is compared
against that output. If the committed runs drift (e.g. after a generator change), regenerate with
`.venv/bin/python sample_runs/generate.py`.
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

from generate import MANIFEST_NAME, RUNS, generate, generate_run  # noqa: E402

CHECKPOINT_KEYS = {"epoch", "global_step", "model", "optimizer", "scheduler", "rng_state"}
LOG_STEP_LINE = re.compile(r"^epoch (\d+) step (\d+)/(\d+) loss (\S+) lr (\S+) grad_norm (\S+)$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Every sample run, generated once into a temporary folder: (folder, manifest)."""
    out_dir = tmp_path_factory.mktemp("sample_runs")
    manifest = generate(out_dir)
    return out_dir, manifest


def event_files(run_dir: Path) -> list[Path]:
    """The run's event files in name order, which is the order the processes wrote them."""
    return sorted((run_dir / "tb").glob("events.out.tfevents.*"))


def read_event_file(path: Path) -> list[tuple[str, int, float, float]]:
    """(tag, step, value, wall_time) for every scalar in one event file, in file order."""
    points = []
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            scalar = float(tensor_util.make_ndarray(value.tensor))
            points.append((value.tag, event.step, scalar, event.wall_time))
    return points


def read_scalars(run_dir: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) over all of the run's event files, in write order."""
    return [(tag, step, value) for path in event_files(run_dir) for tag, step, value, _ in read_event_file(path)]


def series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one tag, in write order."""
    return [(step, value) for point_tag, step, value in read_scalars(run_dir) if point_tag == tag]


# Another CPU (or thread count) rounds a training loop's float32 sums differently: the committed runs
# differ from a regeneration elsewhere in the last bits, growing to ~1e-4 in a run that diverges. The
# structure (tags, steps, which values are NaN) and the schedule's LR do not move; the rest is compared
# to this relative tolerance, far below anything a check or a label depends on.
TRAINING_FLOAT_NOISE = 1e-2
LR_FLOAT_NOISE = 1e-6


def same_values(left: list[tuple], right: list[tuple], rel: float = 0.0) -> bool:
    """(tag, step, value) lists with equal tags and steps, NaN where the other has NaN, and values equal
    to `rel` (exactly when 0); LR tags (computed by the scheduler, not the loop) always to LR_FLOAT_NOISE."""
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if a[:-1] != b[:-1]:
            return False
        if math.isnan(a[-1]) or math.isnan(b[-1]):
            if not (math.isnan(a[-1]) and math.isnan(b[-1])):
                return False
            continue
        tolerance = min(rel, LR_FLOAT_NOISE) if "lr" in a[0].split("/")[-1] else rel
        if not (a[-1] == b[-1] or math.isclose(a[-1], b[-1], rel_tol=tolerance)):
            return False
    return True


def same_manifest(left, right, rel: float = TRAINING_FLOAT_NOISE) -> bool:
    """Manifest entries equal, floats to `rel` (they are measured from the loop's values)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_manifest(left[k], right[k], rel) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_manifest(a, b, rel) for a, b in zip(left, right))
    if isinstance(left, float) and isinstance(right, float):
        return left == right or math.isclose(left, right, rel_tol=rel) or (math.isnan(left) and math.isnan(right))
    return left == right


def test_every_run_is_in_the_manifest(generated):
    out_dir, manifest = generated
    assert list(manifest) == list(RUNS)
    assert json.loads((out_dir / MANIFEST_NAME).read_text()) == manifest
    for name, truth in manifest.items():
        assert truth["expected_codes"] == list(RUNS[name].expected_codes)
        for key in ("description", "scheduler", "stepping", "epochs", "steps_per_epoch", "total_optimizer_steps"):
            assert key in truth, (name, key)


@pytest.mark.parametrize("name", list(RUNS))
def test_event_files_hold_the_logged_series(generated, name):
    out_dir, manifest = generated
    truth = manifest[name]
    files = event_files(out_dir / name)
    assert len(files) == truth["event_files"] == truth["process_lifetimes"]
    scalars = read_scalars(out_dir / name)
    counts: dict[str, int] = {}
    for tag, _, _ in scalars:
        counts[tag] = counts.get(tag, 0) + 1
    assert counts == truth["tags"]
    assert counts["train/lr"] == truth["total_optimizer_steps"]
    steps = [step for step, _ in series(out_dir / name, "train/lr")]
    expected_steps = [
        step for lifetime in truth["lifetimes"] for step in range(lifetime["first_step"], lifetime["last_step"] + 1)
    ]
    assert steps == expected_steps


@pytest.mark.parametrize("name", [name for name, spec in RUNS.items() if spec.crash_after_epoch])
def test_resumed_runs_have_a_later_event_file_from_another_process(generated, name):
    out_dir, _ = generated
    first, second = event_files(out_dir / name)
    first_pid, second_pid = first.name.split(".")[-2], second.name.split(".")[-2]
    assert first_pid != second_pid
    first_times = [wall_time for *_, wall_time in read_event_file(first)]
    second_times = [wall_time for *_, wall_time in read_event_file(second)]
    assert min(second_times) > max(first_times)


@pytest.mark.parametrize("name", list(RUNS))
def test_checkpoints_load_with_weights_only(generated, name):
    out_dir, manifest = generated
    latest_write = {ckpt["path"]: ckpt for ckpt in manifest[name]["checkpoints"]}  # a later write replaces a file
    on_disk = {path.relative_to(out_dir / name).as_posix() for path in (out_dir / name).glob("checkpoints/*.pt")}
    assert on_disk == set(latest_write)
    for path, record in latest_write.items():
        checkpoint = torch.load(out_dir / name / path, weights_only=True)
        assert set(checkpoint) == CHECKPOINT_KEYS
        assert checkpoint["epoch"] == record["epoch"]
        assert checkpoint["global_step"] == record["global_step"]
        assert checkpoint["scheduler"]["last_epoch"] == record["scheduler_last_epoch"]
        weights_finite = all(bool(torch.isfinite(tensor).all()) for tensor in checkpoint["model"].values())
        assert weights_finite == record["weights_finite"]
        assert (out_dir / name / path).stat().st_size < 64 * 1024


@pytest.mark.parametrize("name", list(RUNS))
def test_train_log_prints_what_was_logged(generated, name):
    out_dir, manifest = generated
    lines = (out_dir / name / "train.log").read_text().splitlines()
    banners = [index for index, line in enumerate(lines) if line.startswith("Starting training: ")]
    assert banners[0] == 0 and len(banners) == manifest[name]["process_lifetimes"]
    resumed_from = manifest[name]["lifetimes"][-1]["resumed_from"]
    if resumed_from:
        assert lines[banners[1] + 1].startswith(f"Resuming from {resumed_from} ")
    lr_by_step = [dict(series(out_dir / name, "train/lr"))]
    if manifest[name]["process_lifetimes"] > 1:  # steps may rewind: match each lifetime to its own file
        lr_by_step = [
            {step: value for tag, step, value, _ in read_event_file(path) if tag == "train/lr"}
            for path in event_files(out_dir / name)
        ]
    step_lines = 0
    lifetime = -1
    for line in lines:
        if line.startswith("Starting training: "):
            lifetime += 1
        match = LOG_STEP_LINE.match(line)
        if match:
            step_lines += 1
            step, logged_lr = int(match[2]), float(match[5])
            assert logged_lr == pytest.approx(lr_by_step[lifetime][step], rel=1e-3)
    assert step_lines > 0


def test_healthy_run_finishes_its_schedule_and_learns(generated):
    out_dir, manifest = generated
    truth = manifest["healthy_onecycle"]
    lrs = series(out_dir / "healthy_onecycle", "train/lr")
    assert truth["lr_at_end"] == pytest.approx(1e-2 / (25 * 1e4), rel=1e-6)
    assert lrs[-1][1] == pytest.approx(truth["lr_at_end"], rel=1e-6)
    assert max(value for _, value in lrs) == pytest.approx(1e-2, rel=1e-6)
    assert truth["schedule_fraction_completed"] == 1.0
    assert truth["train_loss_last_epoch_mean"] < 0.5 * truth["train_loss_first_epoch_mean"]
    assert truth["expected_codes"] == []


def test_stuck_run_lr_stays_within_5_percent_of_its_start(generated):
    out_dir, manifest = generated
    truth = manifest["stuck_lr_onecycle_per_epoch"]
    lrs = [value for _, value in series(out_dir / "stuck_lr_onecycle_per_epoch", "train/lr")]
    assert len(lrs) == truth["total_optimizer_steps"] == 2400
    assert all(abs(lr - lrs[0]) <= 0.05 * lrs[0] for lr in lrs)
    assert truth["fraction_of_steps_lr_within_5pct_of_first"] == 1.0
    assert lrs[0] == pytest.approx(truth["lr_at_start"], rel=1e-6)
    assert lrs[-1] == pytest.approx(truth["lr_at_end"], rel=1e-6)
    assert truth["scheduler_steps_taken"] == truth["epochs"]


def test_nan_run_goes_nonfinite_at_the_manifest_step_and_not_before(generated):
    out_dir, manifest = generated
    truth = manifest["nan_divergence"]
    losses = series(out_dir / "nan_divergence", "train/loss")
    onset = truth["first_nonfinite_loss_step"]
    assert 0 < onset < truth["total_optimizer_steps"] - 1
    assert all(math.isfinite(value) for step, value in losses if step < onset)
    assert not math.isfinite(dict(losses)[onset])
    assert any(math.isnan(value) for _, value in losses)
    for step, value in truth["last_finite_losses"]:
        assert dict(losses)[step] == pytest.approx(value, rel=1e-6)
    assert truth["last_finite_losses"][-1][0] == onset - 1


def test_scheduler_reset_resume_repeats_warmup_and_keeps_counting(generated):
    out_dir, manifest = generated
    truth = manifest["resume_scheduler_reset"]
    lrs = dict(series(out_dir / "resume_scheduler_reset", "train/lr"))
    resume = truth["resume_step"]
    assert resume == truth["last_step_before_resume"] + 1 == truth["resume_checkpoint_global_step"]
    assert lrs[resume] == pytest.approx(truth["lr_after_resume"], rel=1e-6)
    assert lrs[resume] < 0.05 * lrs[resume - 1]
    assert truth["intended_lr_after_resume"] > 10 * truth["lr_after_resume"]
    assert truth["final_checkpoint_scheduler_last_epoch"] < truth["final_checkpoint_global_step"]


def test_step_counter_reset_resume_rewinds_tb_steps(generated):
    out_dir, manifest = generated
    truth = manifest["resume_start_epoch_reset"]
    first, second = (
        [step for tag, step, _, _ in read_event_file(path) if tag == "train/lr"]
        for path in event_files(out_dir / "resume_start_epoch_reset")
    )
    assert second[0] == truth["step_rewound_to"] == 0 < first[-1] == truth["last_step_before_resume"]
    assert truth["final_checkpoint_scheduler_last_epoch"] > truth["scheduler_t_max"]
    assert truth["overwritten_checkpoints"]


def test_generation_is_deterministic(generated, tmp_path):
    out_dir, manifest = generated
    truth = generate_run("healthy_onecycle", tmp_path)
    assert same_values(read_scalars(tmp_path / "healthy_onecycle"), read_scalars(out_dir / "healthy_onecycle"))
    assert truth == manifest["healthy_onecycle"]


def test_generation_leaves_torch_settings_alone(tmp_path):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    generate_run("nan_divergence", tmp_path)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


@pytest.mark.parametrize("name", list(RUNS))
def test_committed_run_matches_the_generator(generated, name):
    committed = SAMPLE_RUNS_DIR / name
    if not (committed / "tb").is_dir():
        pytest.skip(f"{committed} is not committed")
    out_dir, manifest = generated
    assert same_values(read_scalars(committed), read_scalars(out_dir / name), rel=TRAINING_FLOAT_NOISE), (
        f"{committed} differs from the generator's output beyond float noise; regenerate: "
        ".venv/bin/python sample_runs/generate.py"
    )
    committed_manifest = json.loads((SAMPLE_RUNS_DIR / MANIFEST_NAME).read_text())
    assert same_manifest(committed_manifest[name], manifest[name])


def test_float_noise_tolerance_still_catches_real_drift():
    run = [("train/loss", 0, 0.7460758686), ("train/lr", 0, 0.003), ("train/loss", 1, float("nan"))]
    other_cpu = [("train/loss", 0, 0.7460758090), ("train/lr", 0, 0.003), ("train/loss", 1, float("nan"))]
    assert same_values(run, other_cpu, rel=TRAINING_FLOAT_NOISE)
    assert not same_values(run, other_cpu)  # exact comparison (same machine, same process)
    assert not same_values(run, [("train/loss", 0, 0.80), *other_cpu[1:]], rel=TRAINING_FLOAT_NOISE)
    assert not same_values(run, [other_cpu[0], ("train/lr", 0, 0.0031), other_cpu[2]], rel=TRAINING_FLOAT_NOISE)
    assert not same_values(run, [*other_cpu[:2], ("train/loss", 1, 1.0)], rel=TRAINING_FLOAT_NOISE)
    assert not same_values(run, [*other_cpu[:2], ("train/loss", 2, float("nan"))], rel=TRAINING_FLOAT_NOISE)
    assert same_manifest({"a": [1, 0.5], "b": "x"}, {"a": [1, 0.5000001], "b": "x"})
    assert not same_manifest({"a": [1, 0.5]}, {"a": [2, 0.5]})
