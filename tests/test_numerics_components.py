"""Component losses and grad norms are numerics evidence, and grad_explosion does not hang on float luck.

Every run here is trained for real (tiny torch models on synthetic data) and logged the way the
frameworks log: YOLO-style component losses to a SummaryWriter, a GAN's generator/discriminator
losses to a Lightning-style metrics.csv, Megatron iteration lines without a loss. Onsets are
measured from the values the run logged.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from forensics.analyze import analyze  # noqa: E402
from forensics.checks.numerics.grad_explosion import GradExplosion  # noqa: E402
from forensics.model.build import build_run  # noqa: E402

SERIOUS = ("warning", "error")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The builders train on one thread (cheap on shared CPUs); other tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
MY_CODES = ("nan_onset", "grad_explosion", "loss_plateau", "val_stuck")


def _first_nonfinite(logged: dict[str, list[tuple[int, float]]]) -> int | None:
    steps = [step for points in logged.values() for step, value in points if not math.isfinite(value)]
    return min(steps) if steps else None


def _serious(run_dir: Path) -> list:
    return [f for f in analyze(run_dir).findings if f.severity in SERIOUS and f.code in MY_CODES]


# ---- YOLO-style component losses ------------------------------------------------------------------

def train_yolo_style(out: Path, *, blow_up_at: int | None, steps: int = 120, seed: int = 0) -> dict:
    """A shared trunk with box (MSE), objectness (BCE) and class (CE) heads, logged as
    train/box_loss, train/obj_loss, train/cls_loss and x/lr0 (no total loss, like yolov5). At
    `blow_up_at` the LR is set to 1e12 (a unit bug), so the weights overflow."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    inputs = torch.randn(512, 6)
    boxes, objects, classes = inputs[:, :4] * 0.5, (inputs[:, 4] > 0).float(), (inputs[:, 5] > 0).long()
    trunk, box_head, obj_head, cls_head = (torch.nn.Linear(6, 16), torch.nn.Linear(16, 4), torch.nn.Linear(16, 1),
                                           torch.nn.Linear(16, 2))
    parameters = [p for m in (trunk, box_head, obj_head, cls_head) for p in m.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.05)
    writer = SummaryWriter(str(out / "tb"))
    logged = {"train/box_loss": [], "train/obj_loss": [], "train/cls_loss": []}
    for step in range(steps):
        if step == blow_up_at:
            for group in optimizer.param_groups:
                group["lr"] = 1e12
        batch = slice((step * 32) % 512, (step * 32) % 512 + 32)
        features = torch.relu(trunk(inputs[batch]))
        losses = {"train/box_loss": torch.nn.functional.mse_loss(box_head(features), boxes[batch]),
                  "train/obj_loss": torch.nn.functional.binary_cross_entropy_with_logits(
                      obj_head(features)[:, 0], objects[batch]),
                  "train/cls_loss": torch.nn.functional.cross_entropy(cls_head(features), classes[batch])}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        for name, loss in losses.items():
            logged[name].append((step, float(loss.detach())))
            writer.add_scalar(name, float(loss.detach()), step)
        writer.add_scalar("x/lr0", optimizer.param_groups[0]["lr"], step)
    writer.close()
    return logged


def test_yolo_component_losses_going_nan_are_a_nan_onset(tmp_path):
    logged = train_yolo_style(tmp_path, blow_up_at=80)
    onset = _first_nonfinite(logged)
    assert onset is not None and onset >= 80  # measured from the run
    [finding] = [f for f in analyze(tmp_path).findings if f.code == "nan_onset"]
    assert finding.step == onset and finding.severity == "error"
    assert finding.message.split(" ")[0] in logged


def test_yolo_component_losses_that_stay_finite_raise_nothing(tmp_path):
    logged = train_yolo_style(tmp_path, blow_up_at=None)
    assert _first_nonfinite(logged) is None
    assert _serious(tmp_path) == []


# ---- GAN-style generator/discriminator losses ----------------------------------------------------

def train_gan_style(out: Path, *, disc_lr_bug_at: int | None, steps: int = 200, seed: int = 0) -> dict:
    """A 1-D GAN logged to a Lightning-style logs/metrics.csv (step, train_gen_loss, train_disc_loss).
    From `disc_lr_bug_at` on the discriminator's LR is 1e30, so its logits overflow."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    generator = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    discriminator = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    g_opt = torch.optim.Adam(generator.parameters(), lr=1e-3)
    d_opt = torch.optim.SGD(discriminator.parameters(), lr=1e-2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    logged = {"train_gen_loss": [], "train_disc_loss": []}
    rows = []
    for step in range(steps):
        if step == disc_lr_bug_at:
            d_opt.param_groups[0]["lr"] = 1e30
        real = torch.randn(64, 1) * 0.5 + 2.0
        fake = generator(torch.randn(64, 2))
        d_loss = bce(discriminator(real), torch.ones(64, 1)) + bce(discriminator(fake.detach()), torch.zeros(64, 1))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = bce(discriminator(fake), torch.ones(64, 1))
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        values = {"train_gen_loss": float(g_loss.detach()), "train_disc_loss": float(d_loss.detach())}
        for name, value in values.items():
            logged[name].append((step, value))
        rows.append({"step": step, **values})
    (out / "logs").mkdir(parents=True)
    with open(out / "logs" / "metrics.csv", "w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=["step", "train_gen_loss", "train_disc_loss"])
        table.writeheader()
        table.writerows(rows)
    return logged


def test_gan_losses_going_nan_are_a_nan_onset(tmp_path):
    logged = train_gan_style(tmp_path, disc_lr_bug_at=120)
    onset = _first_nonfinite(logged)
    assert onset is not None and onset >= 120
    [finding] = [f for f in analyze(tmp_path).findings if f.code == "nan_onset"]
    assert finding.step == onset and finding.severity == "error"


def test_healthy_gan_gets_no_alarm_and_no_plateau_from_its_adversarial_losses(tmp_path):
    logged = train_gan_style(tmp_path, disc_lr_bug_at=None)
    assert _first_nonfinite(logged) is None
    report = analyze(tmp_path)
    assert [f for f in report.findings if f.code in MY_CODES] == []
    plateau = next(outcome for outcome in report.checks if outcome.code == "loss_plateau")
    assert plateau.status == "not_applicable" and "adversarial" in plateau.detail


# ---- Megatron-style lines: a grad norm that is NaN on every line, no loss -------------------------

def train_megatron_style(out: Path, *, nan_batches: str, iterations: int = 12) -> list[float]:
    """Megatron iteration lines with `grad norm:` but no `lm loss` (a rank without the last pipeline
    stage prints them). nan_batches: "all" (a NaN in every batch), "one" (one bad batch, skipped as a
    loss scaler would), "none". Returns the logged grad norms."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    norms, lines = [], []
    for iteration in range(1, iterations + 1):
        inputs, target = torch.randn(16, 4), torch.randn(16, 1)
        if nan_batches == "all" or (nan_batches == "one" and iteration == 6):
            inputs[0, 0] = float("nan")
        loss = torch.nn.functional.mse_loss(model(inputs), target)
        optimizer.zero_grad()
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        if math.isfinite(norm):
            optimizer.step()
        norms.append(norm)
        lines.append(f" iteration {iteration:8d}/     100 | consumed samples: {16 * iteration:12d} | "
                     f"learning rate: {1e-2:.3E} | global batch size:    16 | loss scale: 1.0 | "
                     f"grad norm: {norm:.3f} | number of skipped iterations:   0 | number of nan iterations:   0 |")
    (out / "train.log").write_text("\n".join(lines) + "\n")
    return norms


def test_grad_norm_nan_on_every_line_without_a_loss_is_a_nan_onset(tmp_path):
    norms = train_megatron_style(tmp_path, nan_batches="all")
    assert all(math.isnan(norm) for norm in norms)
    [finding] = [f for f in analyze(tmp_path).findings if f.code == "nan_onset"]
    assert finding.severity == "error" and finding.step == 1 and finding.end_step == len(norms)
    assert "No training loss is logged" in finding.message
    assert any(e.note.startswith("loss scale") for e in finding.evidence)


@pytest.mark.parametrize("nan_batches", ["none", "one"])
def test_a_finite_grad_norm_or_one_skipped_step_is_no_nan_onset(tmp_path, nan_batches):
    norms = train_megatron_style(tmp_path, nan_batches=nan_batches)
    assert sum(not math.isfinite(norm) for norm in norms) == (1 if nan_batches == "one" else 0)
    assert [f for f in analyze(tmp_path).findings if f.code == "nan_onset"] == []


# ---- a loss logged through a NaN filter (HF logging_nan_inf_filter) ----------------------------------

def train_filtered_loss(out: Path, *, break_at: int | None, steps: int = 60,
                        misreport_norm: bool = False) -> tuple[list[float], list[float]]:
    """Regression logged like HF's Trainer with logging_nan_inf_filter=True: a non-finite loss is
    replaced by the mean of the finite ones so far. At `break_at` a weight is set to NaN (a bad
    update), so every later grad norm is NaN. `misreport_norm` logs NaN for a norm that is in fact
    finite (a broken norm computation, as some sharded setups report). Returns what was logged."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    inputs = torch.randn(640, 4)
    target = inputs @ torch.randn(4, 1)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    writer = SummaryWriter(str(out / "tb"))
    losses, norms, finite_so_far = [], [], []
    for step in range(steps):
        if step == break_at:
            with torch.no_grad():
                model.weight[0, 0] = float("nan")
        batch = slice((step * 32) % 640, (step * 32) % 640 + 32)
        loss = torch.nn.functional.mse_loss(model(inputs[batch]), target[batch])
        optimizer.zero_grad()
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0))
        optimizer.step()
        norm = float("nan") if misreport_norm else norm
        value = float(loss.detach())
        if math.isfinite(value):
            finite_so_far.append(value)
        logged = value if math.isfinite(value) else sum(finite_so_far) / len(finite_so_far)
        losses.append(logged)
        norms.append(norm)
        writer.add_scalar("train/loss", logged, step)
        writer.add_scalar("train/grad_norm", norm, step)
    writer.close()
    return losses, norms


def test_grad_norm_nan_to_the_end_behind_a_filtered_loss_is_a_nan_onset(tmp_path):
    losses, norms = train_filtered_loss(tmp_path, break_at=30)
    onset = next(step for step, norm in enumerate(norms) if not math.isfinite(norm))
    assert all(map(math.isfinite, losses)) and not any(map(math.isfinite, norms[onset:]))  # the premise
    [finding] = [f for f in analyze(tmp_path).findings if f.code == "nan_onset"]
    assert finding.step == onset and finding.severity == "error"
    assert "stays finite without improving" in finding.message


def test_a_finite_filtered_loss_with_finite_grad_norms_is_no_nan_onset(tmp_path):
    losses, norms = train_filtered_loss(tmp_path, break_at=None)
    assert all(map(math.isfinite, norms))
    assert [f for f in analyze(tmp_path).findings if f.code == "nan_onset"] == []


def test_a_nan_grad_norm_next_to_a_loss_that_keeps_learning_is_no_nan_onset(tmp_path):
    losses, norms = train_filtered_loss(tmp_path, break_at=None, misreport_norm=True)
    assert not any(map(math.isfinite, norms)) and losses[-1] < 0.5 * losses[0]  # the premise
    assert [f for f in analyze(tmp_path).findings if f.code == "nan_onset"] == []


# ---- grad_explosion under clipping: found whatever the last bits -----------------------------------

def train_clipped(out: Path, *, gamma: float, steps: int = 200, seed: int = 0) -> list[tuple[int, float]]:
    """Regression with clip_grad_norm_(max_norm=1.0) and ExponentialLR(gamma) stepped per batch; logs
    the pre-clip grad norm and the loss to a SummaryWriter. Returns the logged grad norms."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    inputs = torch.randn(800, 8)
    target = inputs @ torch.randn(8, 1) + 0.1 * torch.randn(800, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    writer = SummaryWriter(str(out / "tb"))
    norms = []
    for step in range(steps):
        batch = slice((step * 32) % 800, (step * 32) % 800 + 32)
        loss = torch.nn.functional.mse_loss(model(inputs[batch]), target[batch])
        optimizer.zero_grad()
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        writer.add_scalar("train/loss", float(loss.detach()), step)
        writer.add_scalar("train/grad_norm", norm, step)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        optimizer.step()
        scheduler.step()
        norms.append((step, norm))
    writer.close()
    return norms


def _spike_onset(points: list[tuple[int, float]]) -> int | None:
    """The corpus's label rule: the first value above 10x the median of the 50 before it."""
    history = []
    for step, value in points:
        if len(history) >= 10 and value > 10 * statistics.median(history[-50:]):
            return step
        history.append(value)
    return None


def _decisions(run_dir: Path, relative: float, replicas: int = 12) -> set:
    """grad_explosion's (found, step) over copies of the logged norms with relative noise added."""
    run = build_run(run_dir)
    frame = run.metrics["grad_norm"]
    original = frame["value"].to_numpy().copy()
    generator = np.random.default_rng(0)
    decisions = set()
    for _ in range(replicas):
        run.metrics["grad_norm"] = frame.assign(value=original * (1 + relative * generator.standard_normal(len(original))))
        findings = GradExplosion().run(run)
        decisions.add((bool(findings), findings[0].step if findings else None))
    return decisions


def test_a_clipped_grad_norm_growing_by_orders_of_magnitude_is_found_whatever_the_last_bits(tmp_path):
    norms = train_clipped(tmp_path, gamma=1.08)
    values = [value for _, value in norms]
    assert all(math.isfinite(value) for value in values)
    assert statistics.median(values[-10:]) > 1000 * statistics.median(values[:50])  # the premise, measured
    [finding] = GradExplosion().run(build_run(tmp_path))
    onset = _spike_onset(norms)
    assert onset is not None and abs(finding.step - onset) <= 10
    # Last-bit noise (another CPU) and 1% noise (another trajectory) leave the verdict alone.
    assert _decisions(tmp_path, 1e-7) == {(True, finding.step)}
    assert {found for found, _ in _decisions(tmp_path, 1e-2)} == {True}


def test_a_clipped_run_at_a_constant_lr_is_never_an_explosion_whatever_the_last_bits(tmp_path):
    norms = train_clipped(tmp_path, gamma=1.0)
    assert max(value for _, value in norms) < 100 * statistics.median(value for _, value in norms)
    assert _decisions(tmp_path, 1e-7) == {(False, None)}
    assert _decisions(tmp_path, 1e-2) == {(False, None)}
    assert _serious(tmp_path) == []
