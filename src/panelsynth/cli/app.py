"""The Typer application object and small helpers shared by the command modules."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from panelsynth.errors import PanelsynthError, cap_long_words, os_error_line


class _Group(TyperGroup):
    """Turns a user error anywhere below into one ``Error: ...`` line and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PanelsynthError as err:
            typer.echo(f"Error: {cap_long_words(str(err))}", err=True)
            raise typer.Exit(err.exit_code) from None
        except OSError as err:  # a full disk, a read-only folder, a name too long, ...
            typer.echo(f"Error: {os_error_line(err)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            sys.exit(130)


app = typer.Typer(
    cls=_Group,
    help="Synthetic respondents for panel surveys with a cluster-guided, three-stage LLM method.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
metadata_app = typer.Typer(
    cls=_Group, help="Build raw metadata JSON from a dictionary.", no_args_is_help=True
)
app.add_typer(metadata_app, name="metadata")


def _setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logger = logging.getLogger("panelsynth")
    if not logger.handlers:
        handler = RichHandler(
            show_time=False, show_path=False, markup=False, console=_err_console()
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


def echo(msg: str) -> None:
    typer.echo(msg)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _setup_logging(verbose)
