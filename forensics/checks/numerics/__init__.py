"""Numerics: NaN, infinities, exploding gradients."""

from forensics.checks.numerics.grad_explosion import GradExplosion
from forensics.checks.numerics.nan_onset import NanOnset

NUMERICS_CHECKS = [NanOnset, GradExplosion]
