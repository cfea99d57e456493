"""Correct resumes and epoch ends as real frameworks print them are no restart, rewind or gap.

Each case is a shape that drew a false alarm on a healthy framework run (issue 9): an HF Trainer
resumed with `resume_from_checkpoint` whose stdout bars restart on one line and lag their dicts; a
Lightning progress bar redrawn at batch 0 with the previous epoch's label and postfix; Lightning's
`hp_metric` placeholder at step 0 in each new version folder; a timm checkpoint, which holds no
scheduler state because timm rebuilds its schedule from the saved epoch.
"""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter

from forensics.analyze import analyze
from forensics.ingest.checkpoint_layouts import read_layout
from forensics.ingest.discovery import FoundFile
from forensics.ingest.logs.reader import read_log

PER_EPOCH = 20
BANNER = ["[transformers] ***** Running training *****", "[transformers]   Num examples = 320",
          "[transformers]   Num Epochs = 6", "[transformers]   Instantaneous batch size per device = 16",
          "[transformers]   Total train batch size (w. parallel, distributed & accumulation) = 16",
          "[transformers]   Gradient Accumulation steps = 1", "[transformers]   Total optimization steps = 120"]


def _hf_lines(steps, restored=None):
    """HF 5.x stdout: the bar redrawn with `\\r`, each dict printed after a bar that may lag it by a
    logging interval; a resumed process draws `0/120` and its restored position on one line."""
    lines = list(BANNER)
    if restored is not None:
        lines.append(f"[transformers]   Resuming training from checkpoint with epoch {restored // PER_EPOCH} "
                     f"and global step {restored}")
    bar = f"  0%|          | 0/120 [00:00<?, ?it/s]"
    if restored is not None:
        bar += f"\r 50%|█████     | {restored + 2}/120 [00:00<00:00, 60.1it/s]"
    for step in steps:
        shown = step - 5 if step % 10 == 0 else step  # the redraw before every other dict lags it
        lr = 3e-3 * (120 - step) / 120
        lines.append(f"{bar}\r{shown * 100 // 120:3d}%|█         | {shown}/120 [00:00<00:01, 62.1it/s]"
                     f"{' ' * 40}{{'loss': '{2.0 - step / 200:.4g}', 'learning_rate': '{lr:.4g}', "
                     f"'epoch': '{step / PER_EPOCH:g}'}}")
        bar = ""
    return lines


def _found(path):
    return FoundFile(path, path.name, "log", path.stat().st_size, 0.0)


def test_hf_stdout_steps_come_from_the_epoch_when_the_bar_lags_and_restart_at_the_resume(tmp_path):
    first, second = list(range(5, 80, 5)), list(range(65, 125, 5))
    text = _hf_lines(first) + ["Killed: preempted at step 75"] + _hf_lines(second, restored=60)
    path = tmp_path / "train.log"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    loss = next(series for series in read_log(_found(path)).series if series.tag == "loss")
    assert list(loss.steps) == first + second


def test_hf_stdout_resume_that_reruns_steps_with_the_same_lr_is_healthy(tmp_path):
    first, second = list(range(5, 80, 5)), list(range(65, 125, 5))
    text = _hf_lines(first) + ["Killed: preempted at step 75"] + _hf_lines(second, restored=60)
    (tmp_path / "train.log").write_text("\n".join(text) + "\n", encoding="utf-8")
    report = analyze(tmp_path, command="test", schedule=None, follow_links=False)
    assert [s.kind for s in report.segments] == ["start", "restart"]
    assert (report.segments[1].start_step, report.segments[1].end_step) == (65, 120)
    assert not [f.code for f in report.findings if f.code == "resume_drift" and f.severity != "info"]


def _lightning_epoch(epoch, batches, loss, lr, last_label):
    """One epoch of Lightning's bar: the redraw at batch 0 still shows the previous epoch's label
    and postfix, then each batch, then the validation postfix at the end."""
    post = f"v_num=0, train_loss={loss:.3f}, lr={lr:.3f}"
    lines = [f"Epoch {last_label}:   0%|          | 0/{batches} [00:00<?, ?it/s, {post}]",
             f"Epoch {epoch}:   0%|          | 0/{batches} [00:00<?, ?it/s, {post}]"]
    for batch in range(4, batches + 1, 4):
        loss *= 0.95
        post = f"v_num=0, train_loss={loss:.3f}, lr={lr:.3f}"
        lines.append(f"Epoch {epoch}: {batch * 100 // batches:3d}%|██  | {batch}/{batches} [00:00<00:00, 80.0it/s, {post}]")
    return lines, loss


def test_lightning_bar_at_batch_zero_is_no_rewind(tmp_path):
    lines, loss = [], 1.2
    for epoch in range(6):
        more, loss = _lightning_epoch(epoch, 16, loss, 0.01 * 0.5 ** (epoch // 3), max(epoch - 1, 0))
        lines += more
    path = tmp_path / "train.log"
    path.write_text("\r".join(lines) + "\n", encoding="utf-8")
    series = next(item for item in read_log(_found(path)).series if item.tag == "train_loss")
    assert list(series.steps) == sorted(series.steps) and series.steps[0] == 4
    report = analyze(tmp_path, command="test", schedule=None, follow_links=False)
    assert [s.kind for s in report.segments] == ["start"]


def test_hp_metric_placeholder_does_not_set_a_resumed_versions_step_range(tmp_path):
    for version, steps in (("version_0", range(0, 40)), ("version_1", range(40, 80))):
        writer = SummaryWriter(tmp_path / "lightning_logs" / version)
        writer.add_scalar("hp_metric", -1, 0)
        for step in steps:
            writer.add_scalar("lr-AdamW", 1e-3 * (1 - step / 80), step)
            writer.add_scalar("train_loss", 2.0 - step / 80, step)
        writer.close()
    report = analyze(tmp_path, command="test", schedule=None, follow_links=False)
    assert [(s.start_step, s.end_step) for s in report.segments] == [(0, 39), (40, 79)]
    assert not [f for f in report.findings if f.code == "resume_drift" and f.severity != "info"]


def test_timm_checkpoint_layout_is_recognised():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = {"epoch": 5, "arch": "resnet18", "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
             "version": 2, "args": {"sched": "cosine"}, "metric": 0.5}
    facts = read_layout(saved, "last.pth.tar")
    assert facts.layout == "timm" and facts.epoch == 5 and facts.optimizers and not facts.schedulers
    del saved["version"]
    assert read_layout(saved, "last.pth.tar").layout == "plain"


def test_lightning_bar_nan_and_inf_as_tqdm_prints_them_are_read(tmp_path):
    from forensics.ingest.logs.formats.base import to_float

    assert str(to_float("nan.0")) == "nan" and to_float("inf.0") == float("inf") and to_float("-inf.0") == -float("inf")
    path = tmp_path / "train.log"
    path.write_text("\r".join(f"Epoch 0:  {b * 6}%|█ | {b}/16 [00:00<00:00, 75.3it/s, v_num=0, g_loss="
                              f"{'1.25' if b < 3 else 'nan.0'}, d_loss={'0.5' if b < 4 else 'inf.0'}]"
                              for b in range(1, 8)) + "\n", encoding="utf-8")
    series = {item.tag: list(item.values) for item in read_log(_found(path)).series}
    assert len(series["g_loss"]) == 7 and str(series["g_loss"][2]) == "nan" and series["d_loss"][3] == float("inf")
