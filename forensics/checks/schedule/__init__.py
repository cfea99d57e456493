"""Schedule: the LR the run had against the LR it was meant to have."""

from forensics.checks.schedule.constant_lr import ConstantLr

SCHEDULE_CHECKS = [ConstantLr]
