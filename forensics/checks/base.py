"""What a check is, and what it produces: findings that carry their evidence.

A check reads only the run model; it never opens a file. Its class declares the stable `code`,
the default severity and what it needs; its docstring is its documentation (first line = title,
then **Symptom**, **Bad run**, **Healthy run**, **Fix** sections), validated when the class is
defined so a malformed check fails at import rather than in review.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

from forensics.model.run import Run

SEVERITIES = ("error", "warning", "info")
REQUIRED_SECTIONS = ("Symptom", "Bad run", "Healthy run", "Fix")
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _json_number(value):
    """Floats that JSON cannot hold (NaN, inf) become their names, so the value is still shown."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@dataclass(frozen=True)
class Evidence:
    """One verifiable fact behind a finding: where to look and what is there."""

    source: str                          # path relative to the run dir
    locator: str                         # "event tag=train/lr step=4100", "line 812", "ckpt key scheduler.last_epoch"
    observed: float | int | str | None   # what the run shows there
    expected: float | int | str | None = None  # what a healthy run would show, when known
    note: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "locator": self.locator, "observed": _json_number(self.observed),
                "expected": _json_number(self.expected), "note": self.note}


@dataclass(frozen=True)
class Finding:
    """A diagnosed problem: where it starts and ends, what it is, how to fix it, and the evidence."""

    code: str
    severity: str
    confidence: float
    step: int | None
    end_step: int | None
    title: str
    message: str
    fix: str
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """The single source of a finding's JSON keys (see docs/report-schema.md)."""
        return {
            "code": self.code, "severity": self.severity, "confidence": round(self.confidence, 3),
            "step": self.step, "end_step": self.end_step, "title": self.title, "message": self.message,
            "fix": self.fix, "evidence": [item.to_dict() for item in self.evidence],
        }


class NotApplicable(Exception):
    """Raised by a check whose inputs are missing; the reason is shown so absence never looks like health."""


class Check:
    """Base class of every check. Subclasses set the class attributes and implement `run`."""

    code: ClassVar[str]
    severity: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        problems = []
        code = getattr(cls, "code", None)
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            problems.append("`code` must be a snake_case string")
        if getattr(cls, "severity", None) not in SEVERITIES:
            problems.append(f"`severity` must be one of {SEVERITIES}")
        if not isinstance(getattr(cls, "needs", None), tuple):
            problems.append("`needs` must be a tuple naming the series or state it reads")
        doc = cls.__doc__ or ""
        if not doc.strip():
            problems.append("a docstring is required")
        missing = [name for name in REQUIRED_SECTIONS if f"**{name}**" not in doc]
        if missing:
            problems.append(f"docstring lacks sections {missing}")
        if problems:
            raise TypeError(f"check {cls.__name__}: " + "; ".join(problems))

    @classmethod
    def title(cls) -> str:
        """The first docstring line: the check's one-line message."""
        return cls.__doc__.strip().splitlines()[0].strip()

    @classmethod
    def documentation(cls) -> dict[str, str]:
        """The docstring sections by name (Symptom, Bad run, Healthy run, Fix)."""
        text = cls.__doc__
        sections = {}
        for name in REQUIRED_SECTIONS:
            start = text.index(f"**{name}**") + len(name) + 4
            ends = [text.index(f"**{other}**") for other in REQUIRED_SECTIONS if f"**{other}**" in text[start:]
                    and text.index(f"**{other}**") > start]
            body = text[start:min(ends)] if ends else text[start:]
            flat = " ".join(body.strip(" :\n").split())
            sections[name] = flat[:1].upper() + flat[1:]
        return sections

    def run(self, run: Run) -> list[Finding]:
        """Examine the run; return findings (empty when healthy) or raise NotApplicable."""
        raise NotImplementedError

    def finding(self, *, step, end_step, message, fix, evidence, confidence, severity=None) -> Finding:
        """A finding stamped with this check's code, title and (default) severity."""
        return Finding(code=self.code, severity=severity or self.severity, confidence=confidence, step=step,
                       end_step=end_step, title=self.title(), message=message, fix=fix, evidence=tuple(evidence))
