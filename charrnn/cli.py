"""The `charrnn` command line: a thin layer over the engine.

Each command parses its options, builds a config, calls one engine function and renders what comes back.
The engine raises `CharRNNError` for anything the user can fix; `main()` prints it as one line on stderr
and exits with its code (2 for bad input, 1 for a failed check). CHARRNN_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from charrnn import __version__
from charrnn.errors import CharRNNError

app = typer.Typer(
    name="charrnn",
    help="Train and sample character-level RNN, GRU and LSTM language models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Progress, tables and reports go to stderr so that stdout carries only the product (samples, JSON).
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def _version(value: bool):
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Train and sample character-level RNN, GRU and LSTM language models."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the app, turn CharRNNError into one line and an exit code."""
    debug = os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="charrnn", standalone_mode=False)
    except CharRNNError as e:
        if debug:
            raise
        print(f"charrnn: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print("charrnn: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # click's usage errors and anything unexpected
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            if debug:
                raise
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            print("charrnn: aborted", file=sys.stderr)
            sys.exit(1)
        if debug:
            raise
        print(f"charrnn: internal error: {type(e).__name__}: {e} (set CHARRNN_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
