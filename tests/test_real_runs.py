"""Other people's real runs (../shared/real_runs): analysed without crashing, with the right facts.

Skipped when the folder is absent.
"""

from __future__ import annotations

import json

import jsonschema

from forensics.analyze import analyze
from forensics.render import render_html, render_json, render_markdown

from conftest import REPO, real_runs_root

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())


def test_every_real_run_analyses_and_renders(real_run):
    root = real_runs_root()
    real_run(".")  # skips when absent
    for run_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        report = analyze(run_dir)
        jsonschema.validate(json.loads(render_json(report)), SCHEMA)
        render_html(report)
        render_markdown(report)
        assert all(outcome.status != "error" for outcome in report.checks), (run_dir.name, report.checks)


def test_yolov5_event_file_gives_three_lr_groups_and_no_false_alarm(real_run):
    report = analyze(real_run("yolov5_exp2"))
    lr = next(t for t in report.trajectories if t.metric == "lr")
    # 3 x 300 from the event file and the same 3 x 300 from results.csv (x/lr0..2 columns)
    assert lr.count == 2 * 900 and lr.groups == (0, 1, 2)
    assert set(lr.sources) == {"events.out.tfevents.1670903056.mike-Laptop.3423.0", "results.csv"}
    assert report.findings == []


def test_keras_tensor_scalars_are_read(real_run):
    report = analyze(real_run("keras_tf2_mnist_sgd"))
    metrics = {t.metric: t for t in report.trajectories}
    assert metrics["loss"].count == 10 and metrics["val_loss"].count == 10
    # train/ and validation/ writers ran in one process: one segment, not two
    assert [segment.kind for segment in report.segments] == ["start"]


def test_lightning_gan_checkpoint_weights_are_nan(real_run):
    report = analyze(real_run("lightning_gan_nan_genrisk"))
    poisoned = [c for c in report.checkpoints if c.nonfinite_weight_values]
    assert poisoned, report.checkpoints
    assert all(c.lrs and c.lrs[0] == 0.01 for c in report.checkpoints)


# Every warning or error forensics raises on the real runs, each one checked by a person reading
# the run (the reasons are in docs/real-runs.md). Anything else is a false alarm.
EXPECTED_SERIOUS = {
    "issue_chatglm_49_nan_constant_lr": {("nan_onset", "warning")},
    "issue_lr_scheduler_order_warning": {("off_by_one", "warning")},
    "issue_megatron_ds_396_gradnorm_nan": {("nan_onset", "error")},
    "issue_nanogpt_215_fp16_nan": {("nan_onset", "error")},
    "lightning_gan_nan_genrisk": {("nan_onset", "error")},
    "lightning_yolov3_onecycle_nan": {("nan_onset", "error")},
}


def test_real_runs_raise_only_the_findings_a_reader_agrees_with(real_run):
    root = real_runs_root()
    real_run(".")
    seen = {}
    for run_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        serious = {(f.code, f.severity) for f in analyze(run_dir).findings if f.severity in ("error", "warning")}
        if serious:
            seen[run_dir.name] = serious
    assert seen == EXPECTED_SERIOUS
