"""Tag spellings seen in real runs map to the canonical metrics the checks ask for."""

import pytest

from forensics.model.aliases import MetricName, canonical_metric, is_adversarial_loss, is_training_loss

CASES = [
    # (tag, folder it was found in, expected)
    ("lr", "", MetricName("lr", 0)),
    ("learning_rate", "", MetricName("lr", 0)),           # HF trainer_state
    ("lr-AdamW", "", MetricName("lr", 0)),                # Lightning LearningRateMonitor
    ("lr-Adam/pg2", "", MetricName("lr", 2)),             # ... with several param groups
    ("Learning Rate", "", MetricName("lr", 0)),
    ("train/lr", "", MetricName("lr", 0)),
    ("train/learning_rate", "", MetricName("lr", 0)),
    ("lr/group1", "", MetricName("lr", 1)),
    ("x/lr0", "", MetricName("lr", 0)),                   # yolov5
    ("x/lr2", "", MetricName("lr", 2)),
    ("loss", "", MetricName("loss", 0)),
    ("train/loss", "", MetricName("loss", 0)),
    ("Loss/train", "", MetricName("loss", 0)),
    ("train_loss", "", MetricName("loss", 0)),            # Lightning
    ("lm loss", "", MetricName("loss", 0)),               # Megatron
    ("epoch_loss", "logs/train", MetricName("loss", 0)),  # Keras train/ folder
    ("epoch_loss", "logs/validation", MetricName("val_loss", 0)),
    ("val/loss", "", MetricName("val_loss", 0)),
    ("eval_loss", "", MetricName("val_loss", 0)),
    ("Loss/val", "", MetricName("val_loss", 0)),
    ("train/grad_norm", "", MetricName("grad_norm", 0)),
    ("grad norm", "", MetricName("grad_norm", 0)),
    ("grad_2.0_norm_total", "", MetricName("grad_norm", 0)),  # Lightning grad_norm(norm_type=2)
    ("grad_2.0_norm/0.weight", "", MetricName("grad_2.0_norm/0.weight", 0)),
    ("loss scale", "", MetricName("loss_scale", 0)),
    ("scaler/scale", "", MetricName("loss_scale", 0)),
    ("lr-Adam-momentum", "", MetricName("momentum", 0)),
    ("train/box_loss", "", MetricName("train/box_loss", 0)),  # component losses keep their name
    ("val/accuracy", "", MetricName("val/accuracy", 0)),
    ("epoch_accuracy", "logs/validation", MetricName("val/epoch_accuracy", 0)),  # Keras
    ("epoch_accuracy", "logs/train", MetricName("epoch_accuracy", 0)),
]


@pytest.mark.parametrize(("tag", "context", "expected"), CASES)
def test_canonical_metric(tag, context, expected):
    assert canonical_metric(tag, context) == expected


# Component losses count as training losses (NaN, divergence, plateau); validation losses, loss
# scales and bookkeeping values do not. Adversarial ones are training losses that measure a balance.
TRAINING_LOSS_CASES = [
    # (canonical metric name, is a training loss, is adversarial)
    ("loss", True, False),
    ("train/box_loss", True, False),       # yolov5
    ("train/obj_loss", True, False),
    ("loss_cls", True, False),             # mmdet per-head
    ("loss_bbox", True, False),
    ("loss/ce", True, False),
    ("train_gen_loss", True, True),        # Lightning GAN
    ("train_disc_loss", True, True),
    ("g_loss", True, True),
    ("loss_d", True, True),
    ("val/box_loss", False, False),
    ("val_loss", False, False),
    ("eval_loss_ctc", False, False),
    ("loss_cls/val", False, False),
    ("loss_scale", False, False),
    ("loss_weight", False, False),
    ("best_loss", False, False),
    ("num_losses", False, False),
    ("metrics/precision", False, False),
]


@pytest.mark.parametrize(("name", "training", "adversarial"), TRAINING_LOSS_CASES)
def test_training_loss_components(name, training, adversarial):
    assert is_training_loss(name) is training
    assert is_adversarial_loss(name) is adversarial


def test_megatron_lm_loss_is_the_training_loss():
    assert is_training_loss(canonical_metric("lm loss").name)
