"""The one place errors become exit codes: ForensicsError -> one line, exit 2; bugs -> one line, exit 3."""

from __future__ import annotations

import functools

import typer

from forensics.errors import ForensicsError

EXIT_UNUSABLE_INPUT = 2
EXIT_INTERNAL_ERROR = 3

# Set by the app callback from the global --debug option.
settings = {"debug": False}


def reported(command):
    """Wrap a command so no traceback reaches the user unless --debug was given."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except ForensicsError as error:
            if settings["debug"]:
                raise
            typer.secho(f"forensics: error: {error}", err=True, fg="red")
            raise typer.Exit(EXIT_UNUSABLE_INPUT) from None
        except Exception as error:  # noqa: BLE001 - a bug must still end with one readable line
            if settings["debug"]:
                raise
            typer.secho(f"forensics: internal error: {type(error).__name__}: {error} "
                        "(rerun with --debug for the traceback)", err=True, fg="red")
            raise typer.Exit(EXIT_INTERNAL_ERROR) from None
    return wrapper
