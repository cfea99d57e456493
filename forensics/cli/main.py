"""The `forensics` command: the app, its commands, and the one place errors become exit codes."""

from __future__ import annotations

import sys

import typer

from forensics import __version__
from forensics.cli import analyze as analyze_command
from forensics.cli import checks as checks_command
from forensics.errors import ForensicsError

EXIT_UNUSABLE_INPUT = 2
EXIT_INTERNAL_ERROR = 3

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Post-mortems of deep-learning training runs from the files they leave behind.")
app.command("analyze")(analyze_command.analyze)
app.command("checks")(checks_command.checks)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forensics {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Post-mortems of deep-learning training runs from the files they leave behind."""
    _state["debug"] = debug


_state = {"debug": False}


def main() -> None:
    """Console-script entry point: ForensicsError -> one line and exit 2; tracebacks only with --debug."""
    _state["debug"] = "--debug" in sys.argv[1:]
    try:
        app(standalone_mode=True)
    except ForensicsError as error:
        typer.secho(f"forensics: error: {error}", err=True, fg="red")
        sys.exit(EXIT_UNUSABLE_INPUT)
    except Exception as error:  # noqa: BLE001 - a bug must still end with one readable line
        if _state["debug"]:
            raise
        typer.secho(f"forensics: internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
                    err=True, fg="red")
        sys.exit(EXIT_INTERNAL_ERROR)
