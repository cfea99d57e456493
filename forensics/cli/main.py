"""The `forensics` command: the app and its commands (errors are mapped in cli/errors.py)."""

from __future__ import annotations

import typer

from forensics import __version__
from forensics.cli import analyze as analyze_command
from forensics.cli import checks as checks_command
from forensics.cli import sweep as sweep_command
from forensics.cli.errors import reported, settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Post-mortems of deep-learning training runs from the files they leave behind.")
app.command("analyze")(reported(analyze_command.analyze))
app.command("checks")(reported(checks_command.checks))
app.command("sweep")(reported(sweep_command.sweep))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"forensics {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Post-mortems of deep-learning training runs from the files they leave behind."""
    settings["debug"] = debug


def main() -> None:
    """Console-script entry point."""
    app()
