"""Command line: parses arguments and calls the library. User errors print one line and exit 2."""

from __future__ import annotations

from panelsynth.cli import (
    batch_cmd,  # noqa: F401
    evaluate_cmd,  # noqa: F401
    impute_cmd,  # noqa: F401
    prepare_cmd,  # noqa: F401
    run_cmd,  # noqa: F401
    workspace_cmds,  # noqa: F401  (registers commands)
)
from panelsynth.cli.app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``panelsynth``)."""
    app(args=argv, prog_name="panelsynth")


if __name__ == "__main__":  # pragma: no cover
    main()
