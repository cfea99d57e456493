"""Run every registered check against a run; a crashing check costs only itself."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from forensics.checks import INTERNAL_ERROR, REGISTRY
from forensics.checks.base import Check, Finding, NotApplicable
from forensics.model.run import Run


@dataclass(frozen=True)
class CheckOutcome:
    """What one check did: ran (with its findings), did not apply (and why), or crashed."""

    code: str
    status: str             # "ran", "not_applicable", "error"
    detail: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"code": self.code, "status": self.status, "detail": self.detail, "findings": len(self.findings)}


def run_checks(run: Run, checks: list[type[Check]] | None = None) -> list[CheckOutcome]:
    """Every check's outcome, in registry order."""
    return [_run_one(check_class, run) for check_class in (REGISTRY if checks is None else checks)]


def _run_one(check_class: type[Check], run: Run) -> CheckOutcome:
    try:
        findings = tuple(check_class().run(run))
    except NotApplicable as reason:
        return CheckOutcome(check_class.code, "not_applicable", str(reason))
    except Exception as error:  # noqa: BLE001 - one broken check must not hide the others' findings
        where = traceback.extract_tb(error.__traceback__)[-1]
        detail = f"{type(error).__name__}: {error} (at {PurePosixPath(where.filename).name}:{where.lineno})"
        crash = Finding(code=INTERNAL_ERROR, severity="warning", confidence=1.0, step=None, end_step=None,
                        title="A check crashed", message=f"check {check_class.code} crashed: {detail}; "
                        "its diagnosis is missing from this report", fix="Report this as a forensics bug.")
        return CheckOutcome(check_class.code, "error", detail, (crash,))
    detail = f"{len(findings)} finding(s)" if findings else "nothing found"
    return CheckOutcome(check_class.code, "ran", detail, findings)
