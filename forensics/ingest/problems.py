"""Input problems: what a reader could not read, kept as data so every report can show it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputProblem:
    """One thing a reader could not read, or read only in part.

    `code` is a stable snake_case name (e.g. `event_file_truncated`, `checkpoint_unsafe`);
    `path` is relative to the run directory; `locator` pins the place (`byte 4096`, `line 12`,
    `key optimizer.state`) when there is one.
    """

    code: str
    path: str
    message: str
    locator: str | None = None
    severity: str = "warning"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "path": self.path,
            "locator": self.locator,
            "severity": self.severity,
            "message": self.message,
        }
