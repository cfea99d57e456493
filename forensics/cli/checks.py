"""`forensics checks [CODE]`: list the registered checks, or explain one from its docstring."""

from __future__ import annotations

import typer

from forensics.checks import REGISTRY, check_by_code
from forensics.errors import ForensicsError


def checks(code: str = typer.Argument(None, help="A finding code to explain, e.g. constant_lr.")) -> None:
    """List every check, or explain one (its documentation is the check's own docstring)."""
    if code is None:
        for check in REGISTRY:
            typer.echo(f"{check.code:<22} {check.severity:<8} {check.title()}")
        return
    check = check_by_code(code)
    if check is None:
        known = ", ".join(c.code for c in REGISTRY)
        raise ForensicsError(f"no check has the code {code!r}; known codes: {known}")
    typer.echo(f"{check.code} ({check.severity}): {check.title()}")
    typer.echo(f"Needs: {', '.join(check.needs)}")
    for section, text in check.documentation().items():
        typer.echo(f"\n{section}\n  {text}")
