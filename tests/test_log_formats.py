"""Every log format parses the real lines its docstring documents, and the registry sends each to it."""

from __future__ import annotations

import math

import pytest

from forensics.ingest.logs.formats import FORMAT_MODULES, parse_line
from forensics.ingest.logs.formats.base import docstring_examples

EXAMPLES = [(module.FORMAT.name, line) for module in FORMAT_MODULES for line in docstring_examples(module.__doc__)]


def test_every_format_documents_real_lines():
    for module in FORMAT_MODULES:
        assert len(docstring_examples(module.__doc__)) >= 2, module.__name__


@pytest.mark.parametrize("name,line", EXAMPLES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(EXAMPLES)])
def test_documented_line_is_parsed_by_its_format(name, line):
    for segment in line.split("\r"):  # tqdm redraws: one physical line, several updates
        result = parse_line(segment)
        assert result is not None, segment
        line_format, parsed = result
        assert line_format.name == name, (segment, line_format.name)
        assert parsed.values or parsed.progress or parsed.facts, segment


def _parse(line):
    line_format, parsed = parse_line(line)
    return line_format.name, parsed


def test_hf_dict_keeps_nan_and_takes_the_glued_progress_counter():
    name, parsed = _parse("  0%| | 1/13000 [00:10<36:34:36, 10.13s/it]{'loss': nan, 'reward': 5.7646, "
                          "'learning_rate': 5e-05}")
    assert name == "hf_trainer_dict" and math.isnan(parsed.values["loss"])
    assert parsed.values["learning_rate"] == 5e-05 and parsed.progress == (1, 13000)


def test_hf_banner_lines_give_the_counters_as_facts():
    _, parsed = _parse("  Total optimization steps = 22,500")
    assert parsed.values == {} and parsed.facts == {"total_optimization_steps": 22500}
    _, parsed = _parse("[INFO|trainer.py:1712] 2023-05-01 10:00:00,123 >>   Num Epochs = 3")
    assert parsed.facts == {"num_epochs": 3}


def test_hf_end_of_training_summary_is_not_a_loss_value():
    _, parsed = _parse("{'train_runtime': 77350.9963, 'train_samples_per_second': 3.232, 'train_loss': 0.0189, "
                       "'epoch': 38.17}")
    assert parsed.values == {}


def test_timm_step_is_rebuilt_from_epoch_and_batch():
    _, parsed = _parse("Train: 3 [ 100/391 ( 26%)]  Loss: 0.6931 (0.7012)  Time: 0.190s, 1347.37/s  "
                       "(0.197s, 1299.49/s)  LR: 1.000e-03  Data: 0.011 (0.017)")
    assert parsed.step == 3 * 391 + 100 and parsed.values["lr"] == 1e-3 and parsed.values["loss"] == 0.6931
    assert parsed.step_basis == "epoch*391+batch from timm progress counters"


def test_megatron_reads_lr_grad_norm_and_loss_scale_and_reports_skipped_iterations():
    _, parsed = _parse(" iteration        5/     100 | consumed samples:        10240 | learning rate: 4.134000E-07 | "
                       "global batch size:  2048 | lm loss: 1.344240E+01 | loss scale: 1.0 | grad norm: nan | "
                       "number of skipped iterations:   2 | number of nan iterations:   1 |")
    assert parsed.step == 5 and parsed.values["learning rate"] == 4.134e-07 and parsed.values["lm loss"] == 13.4424
    assert math.isnan(parsed.values["grad norm"]) and parsed.values["loss scale"] == 1.0
    assert [kind for kind, _ in parsed.events] == ["overflow", "nan_reported"]


def test_mmdet_iterations_are_one_based_within_one_based_epochs():
    _, parsed = _parse("2022-08-29 23:03:22,363 - mmdet - INFO - Epoch [20][450/643]\tlr: 9.833e-03, eta: 13 days, "
                       "10:21:10, time: 7.100, data_time: 0.420, memory: 8932, loss_bbox: 0.9103, loss: 2.7187")
    assert parsed.step == 19 * 643 + 450 and parsed.values["lr"] == 9.833e-03 and parsed.values["loss"] == 2.7187
    assert "eta" not in parsed.values and "memory" not in parsed.values


def test_deepspeed_overflow_gives_the_new_loss_scale():
    _, parsed = _parse("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768")
    assert parsed.values == {"loss_scale": 32768.0}


def test_free_text_lines():
    _, epoch_line = _parse("Epoch 10: Train 42.54%, Val 44.77%, LR: 0.797074")
    assert epoch_line.epoch == 10 and epoch_line.step is None and epoch_line.values["LR"] == 0.797074
    _, step_line = _parse("Step 100: LR = 0.000120")
    assert step_line.step == 100 and step_line.values == {"LR": 0.00012}


@pytest.mark.parametrize("line", [
    "Starting training: model=MLP(4-16-16-2, 386 params) optimizer=AdamW(lr=0.01, weight_decay=0.01) epochs=12",
    "Namespace(lr=0.1, epochs=90, batch_size=256)",
    "args: lr=0.1 batch_size=256",
    "Using 4 GPUs for training",
    "Saved checkpoint checkpoints/ckpt_epoch_3.pt",
])
def test_config_dumps_and_prose_are_not_metric_lines(line):
    result = parse_line(line)
    assert result is None or not result[1].values, result
