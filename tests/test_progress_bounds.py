"""val_stuck knows bounds: a frozen model copy at chance is stuck, a saturated or settled metric is converged.

Every run here is trained for real (a tiny torch classifier on synthetic blobs) and logged with a
real SummaryWriter or a Lightning-style metrics.csv; what a test expects is measured from the
values the run logged, never assumed.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from forensics.analyze import analyze  # noqa: E402
from forensics.checks.progress.metric_bounds import metric_scale, quality_metric  # noqa: E402
from forensics.checks.progress.val_stuck import ValStuck  # noqa: E402
from forensics.model.build import build_run  # noqa: E402
from forensics.model.stated import Fact, StatedFacts  # noqa: E402

SERIOUS = ("warning", "error")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The builders train on one thread (cheap on shared CPUs); other tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _blobs(classes: int, per_class: int, dim: int, separation: float, seed: int, label_noise: float = 0.0):
    """A balanced Gaussian-blob classification set (exactly `per_class` samples per class)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234)) * separation
    labels = torch.arange(classes).repeat_interleave(per_class)
    inputs = centres[labels] + torch.randn(len(labels), dim, generator=generator)
    if label_noise:
        flip = torch.rand(len(labels), generator=generator) < label_noise
        labels = torch.where(flip, (labels + 1) % classes, labels)
    order = torch.randperm(len(labels), generator=generator)
    return inputs[order], labels[order]


def train_classifier(out: Path, *, classes: int, separation: float, epochs: int = 6, batches: int = 20,
                     per_class_train: int = 40, per_class_val: int = 20, val_label_noise: float = 0.0,
                     evaluate: str = "trained", log_val_loss: bool = True, logger: str = "tb",
                     percent: bool = False, top5: bool = False, hidden: int = 32, seed: int = 0) -> dict:
    """Train a tiny MLP and log per-step training loss and per-epoch validation metrics.

    `evaluate="frozen_copy"` validates a copy taken before training (its last layer zeroed, as a
    zero-initialised EMA that is never updated): every logit is equal, so it always predicts class 0.
    Returns what was logged: {"train_loss": [...], "val": {name: [(step, value), ...]}}.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    dim = 8
    x_train, y_train = _blobs(classes, per_class_train, dim, separation, seed)
    x_val, y_val = _blobs(classes, per_class_val, dim, separation, seed + 1, val_label_noise)
    model = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    evaluated = model
    if evaluate == "frozen_copy":
        evaluated = copy.deepcopy(model)
        with torch.no_grad():
            evaluated[2].weight.zero_()
            evaluated[2].bias.zero_()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = math.ceil(len(x_train) / batches)
    scale = 100.0 if percent else 1.0
    acc1, acc5 = ("val/Acc@1", "val/Acc@5") if top5 else ("val/accuracy", None)
    logged = {"train_loss": [], "val": {}}
    rows = []
    writer = SummaryWriter(str(out / "tb")) if logger == "tb" else None
    step = 0
    for _ in range(epochs):
        for index in range(batches):
            xb, yb = x_train[index * batch:(index + 1) * batch], y_train[index * batch:(index + 1) * batch]
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            logged["train_loss"].append(float(loss.detach()))
            if writer:
                writer.add_scalar("train/loss", logged["train_loss"][-1], step)
            rows.append({"step": step, "train_loss": logged["train_loss"][-1]})
            step += 1
        with torch.no_grad():
            logits = evaluated(x_val)
            values = {acc1: float((logits.argmax(1) == y_val).float().mean()) * scale}
            if acc5:
                top = logits.topk(min(5, classes), dim=1).indices
                values[acc5] = float((top == y_val[:, None]).any(1).float().mean()) * scale
            if log_val_loss:
                values["val/loss"] = float(torch.nn.functional.cross_entropy(logits, y_val))
        for name, value in values.items():
            logged["val"].setdefault(name, []).append((step - 1, value))
            if writer:
                writer.add_scalar(name, value, step - 1)
        rows.append({"step": step - 1, **values})
    if writer:
        writer.close()
    else:
        (out / "logs").mkdir(parents=True)
        columns = ["step", "train_loss", *[name for name in rows[batches] if name not in ("step", "train_loss")]]
        with open(out / "logs" / "metrics.csv", "w", newline="") as handle:
            table = csv.DictWriter(handle, fieldnames=columns)
            table.writeheader()
            table.writerows(rows)
    return logged


def _fell(losses: list[float]) -> float:
    tenth = max(1, len(losses) // 10)
    start, end = float(np.median(losses[:tenth])), float(np.median(losses[-tenth:]))
    return (start - end) / start


def _spread(points) -> float:
    values = [value for _, value in points]
    return max(values) - min(values)


def _val_stuck(run_dir: Path) -> list:
    return [f for f in analyze(run_dir).findings if f.code == "val_stuck"]


# ---- the failure: validation on a model copy that never changes --------------------------------

def test_frozen_copy_at_chance_with_its_frozen_validation_loss_is_an_error(tmp_path):
    logged = train_classifier(tmp_path, classes=10, separation=3.0, evaluate="frozen_copy")
    accuracy, loss = logged["val"]["val/accuracy"], logged["val"]["val/loss"]
    assert _fell(logged["train_loss"]) > 0.2 and _spread(accuracy) == 0 and _spread(loss) == 0  # the premise
    [finding] = _val_stuck(tmp_path)
    assert finding.severity == "error"
    assert finding.step == accuracy[0][0]
    assert "validation loss is frozen" in finding.message
    assert any(e.note == "validation loss, first evaluation" for e in finding.evidence)


def test_frozen_copy_without_a_validation_loss_is_a_warning_and_an_error_once_the_classes_are_known(tmp_path):
    logged = train_classifier(tmp_path, classes=10, separation=3.0, evaluate="frozen_copy", log_val_loss=False,
                              logger="csv")
    accuracy = logged["val"]["val/accuracy"]
    assert _fell(logged["train_loss"]) > 0.2 and _spread(accuracy) == 0
    [finding] = _val_stuck(tmp_path)
    assert finding.severity == "warning" and finding.step == accuracy[0][0]

    run = build_run(tmp_path)
    run.stated_facts = StatedFacts((Fact("num_classes", 10, "config.yaml", "config key model.num_classes", "config"),))
    [finding] = ValStuck().run(run)
    assert finding.severity == "error" and "chance level 0.1 with 10 classes" in finding.message
    assert any(e.locator == "config key model.num_classes" for e in finding.evidence)


def test_top1_in_percent_at_a_thousandth_reads_as_chance_for_1000_classes(tmp_path):
    """0.10 logged in percent is 0.1% (chance for 1,000 classes), not 10%: with every value at most 1
    the scale is ambiguous and both readings are tried against the chance level."""
    logged = train_classifier(tmp_path, classes=1000, separation=3.0, epochs=5, batches=10, per_class_train=4,
                              per_class_val=2, evaluate="frozen_copy", log_val_loss=False, logger="csv",
                              percent=True, top5=True, hidden=16)
    top1 = logged["val"]["val/Acc@1"]
    assert _fell(logged["train_loss"]) > 0.2 and all(value == pytest.approx(0.1) for _, value in top1)
    run = build_run(tmp_path)
    run.stated_facts = StatedFacts((Fact("num_classes", 1000, "args.yaml", "config key num_classes", "config"),))
    findings = {f.message.split(" ")[0]: f for f in ValStuck().run(run)}
    assert findings["val/Acc@1"].severity == "error" and "0.1%" in findings["val/Acc@1"].message
    assert findings["val/Acc@5"].severity == "error" and "0.5%" in findings["val/Acc@5"].message


# ---- the healthy twins: converged is not stuck ---------------------------------------------------

def test_top5_saturated_at_100_while_top1_climbs_is_converged(tmp_path):
    logged = train_classifier(tmp_path, classes=10, separation=2.0, epochs=8, logger="csv", percent=True,
                              top5=True, seed=1)
    top1, top5 = logged["val"]["val/Acc@1"], logged["val"]["val/Acc@5"]
    assert {value for _, value in top5} == {100.0} and _spread(top1) > 1.0  # the premise, measured
    assert _val_stuck(tmp_path) == []


def test_separable_task_at_exactly_one_is_converged(tmp_path):
    for log_val_loss in (True, False):
        out = tmp_path / str(log_val_loss)
        logged = train_classifier(out, classes=2, separation=8.0, log_val_loss=log_val_loss)
        assert {value for _, value in logged["val"]["val/accuracy"]} == {1.0}
        assert _fell(logged["train_loss"]) > 0.2
        assert _val_stuck(out) == []


def test_accuracy_settled_by_the_first_evaluation_while_the_loss_keeps_falling_raises_no_alarm(tmp_path):
    """7.5% of the validation labels are wrong: validation accuracy sits at its ceiling from the first epoch on while
    the training loss keeps falling. With its validation loss moving, nothing is raised; without a
    validation loss nothing tells it from a frozen copy, which earns a note, never an alarm."""
    for log_val_loss in (True, False):
        out = tmp_path / str(log_val_loss)
        logged = train_classifier(out, classes=2, separation=8.0, val_label_noise=0.07, hidden=64,
                                  log_val_loss=log_val_loss, logger="csv", seed=1)
        accuracy = [value for _, value in logged["val"]["val/accuracy"]]
        assert 0.85 < min(accuracy) and max(accuracy) < 0.99 and _fell(logged["train_loss"]) > 0.2
        findings = _val_stuck(out)
        assert all(f.severity not in SERIOUS for f in findings), findings
        if log_val_loss:
            assert findings == []


# ---- what a metric name means ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind", "higher", "top_k"), [
    ("val/accuracy", "accuracy", True, 1),
    ("val/acc@5", "accuracy", True, 5),
    ("val_top5", "accuracy", True, 5),
    ("val/epoch_accuracy", "accuracy", True, 1),                 # Keras validation/ folder
    ("evaluation_accuracy_vs_iterations", "accuracy", True, 1),  # Keras
    ("eval_wer", "error_rate", False, 1),                       # HF speech
    ("metrics/map_0.5:0.95", "overlap", True, 1),                # yolov5 (computed on the val set)
    ("metrics/precision", "overlap", True, 1),
    ("val_auc", "auc", True, 1),
])
def test_quality_metric_names(name, kind, higher, top_k):
    metric = quality_metric(name)
    assert (metric.kind, metric.higher_is_better, metric.top_k) == (kind, higher, top_k)


@pytest.mark.parametrize("name", ["train/accuracy", "eval_runtime", "eval_loss", "val/box_loss", "eval_num_tokens",
                                  "best_val_acc", "epoch_accuracy"])
def test_not_validation_quality_metrics(name):
    assert quality_metric(name) is None


def test_percent_scale_is_read_from_the_metric_or_its_siblings():
    assert metric_scale(np.array([88.0, 92.0]), []) == 100.0
    assert metric_scale(np.array([0.1, 0.1]), [100.0]) == 100.0
    assert metric_scale(np.array([0.93, 0.94]), []) == 1.0


@pytest.mark.parametrize("name", ["yolov5_exp2", "hf_whisper_large_v2_ja", "keras_tf2_mnist_sgd",
                                  "lightning_yolov3_onecycle_nan"])
def test_real_runs_with_converged_validation_metrics_get_no_val_stuck(real_run, name):
    assert [f for f in analyze(real_run(name)).findings if f.code == "val_stuck"] == []
