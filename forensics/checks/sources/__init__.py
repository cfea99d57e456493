"""Checks that compare what several sources say about the same quantity."""

from forensics.checks.sources.lr_mismatch import LrMismatch

SOURCES_CHECKS = [LrMismatch]
