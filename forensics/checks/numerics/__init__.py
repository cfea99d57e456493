"""Numerics: NaN, infinities, exploding gradients."""

from forensics.checks.numerics.nan_onset import NanOnset

NUMERICS_CHECKS = [NanOnset]
