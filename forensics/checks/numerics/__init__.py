"""Numerics: NaN, infinities, exploding gradients, a loss that diverges."""

from forensics.checks.numerics.grad_explosion import GradExplosion
from forensics.checks.numerics.loss_divergence import LossDivergence
from forensics.checks.numerics.nan_onset import NanOnset

NUMERICS_CHECKS = [NanOnset, GradExplosion, LossDivergence]
