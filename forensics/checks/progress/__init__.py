"""Progress: whether the run was learning at all (training loss, validation metrics)."""

from forensics.checks.progress.loss_plateau import LossPlateau
from forensics.checks.progress.val_stuck import ValStuck

PROGRESS_CHECKS = [LossPlateau, ValStuck]
