"""Checks: one module per diagnosis, grouped in family folders, registered explicitly here.

A finding code is never reused for a different meaning; the codes are part of the output contract.
"""

from forensics.checks.base import Check
from forensics.checks.numerics import NUMERICS_CHECKS
from forensics.checks.progress import PROGRESS_CHECKS
from forensics.checks.resume import RESUME_CHECKS
from forensics.checks.schedule import SCHEDULE_CHECKS
from forensics.checks.sources import SOURCES_CHECKS

REGISTRY: list[type[Check]] = [*SCHEDULE_CHECKS, *RESUME_CHECKS, *NUMERICS_CHECKS, *PROGRESS_CHECKS, *SOURCES_CHECKS]

# Emitted by the runner, not by a check class: a check that crashed.
INTERNAL_ERROR = "internal_error"


def check_by_code(code: str) -> type[Check] | None:
    """The registered check class for a finding code."""
    return next((check for check in REGISTRY if check.code == code), None)
