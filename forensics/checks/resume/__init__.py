"""Resume: restarts that lost the run's place or could not have restored it."""

from forensics.checks.resume.missing_resume_state import MissingResumeState
from forensics.checks.resume.resume_drift import ResumeDrift

RESUME_CHECKS = [ResumeDrift, MissingResumeState]
