"""The Typer app every command hangs on, `main()`, and what the command modules share.

Each command parses its options, builds a config, calls one engine function and renders what comes back.
The engine raises `CharRNNError` for anything the user can fix; the app prints it as one line on stderr
and exits with its code (2 for bad input, 1 for a failed check, 4 for a refused write, 3 for an internal
error; `charrnn.core.errors` lists them). CHARRNN_DEBUG=1 shows the traceback. The commands live in the
sibling modules, which `charrnn.cli` imports so that they register here.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import fields
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from charrnn import __version__
from charrnn.core.config import ModelConfig, TrainConfig
from charrnn.core.errors import EXIT_INTERNAL, CharRNNError

try:  # typer vendors click since 0.20; before, it used click itself
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:
    from click import UsageError as _UsageError

_STARTED = time.perf_counter()  # when the command began (reset by each invocation): --minutes counts from here


def _debug() -> bool:
    return os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")


class _Group(TyperGroup):
    """Turns the engine's CharRNNError into one line on stderr and its exit code, inside the app, so
    that `charrnn ...`, `python -m charrnn` and typer's CliRunner all behave the same."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharRNNError as e:
            if _debug():
                raise
            print(f"charrnn: error: {e}", file=sys.stderr)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside training (which saves and says so itself)
            print("charrnn: interrupted (Ctrl-C)", file=sys.stderr)
            ctx.exit(130)
        except _UsageError as e:  # a bad flag or value: one line and exit 2, as the engine's bad input
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            print(f"charrnn: error: {e.format_message()}{where}", file=sys.stderr)
            ctx.exit(2)


app = typer.Typer(
    name="charrnn",
    cls=_Group,
    help="Train and sample character-level RNN, GRU and LSTM language models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Progress, tables and reports go to stderr so that stdout carries only the product (samples, JSON).
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

# Help texts several commands share.
IMPL_HELP = "Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."
DEVICE_HELP = "auto | cpu | cuda | mps"
DATA_DIR_HELP = "Where the training corpus lives, if not where it was."


def default(name: str) -> str:
    """The help text's "[default: ...]" for option `name`, read from the config dataclasses, so that
    every default is written once, there."""
    value = next(f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls) if f.name == name)
    shown = ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
    return f"  \\[default: {shown}]"


def flag_values(ctx: typer.Context) -> dict[str, Any]:
    """The command's options by long flag name ({"--batch-size": 32, "--out": None, ...}): a flag, a YAML
    key and a config field share their name, so `charrnn.core.config.merge_options` reads this as it is."""
    long = {p.name: next((o for o in p.opts if o.startswith("--")), None) for p in ctx.command.params}
    return {flag: ctx.params[name] for name, flag in long.items() if flag is not None and name in ctx.params}


def scored_split(text, split: str | None) -> str | None:
    """The split a command scores: the one named, else the run's val split unless --text gives a file."""
    return split or ("val" if text is None else None)


def note(text: str) -> None:
    """A dim line on stderr, printed as it is (no markup: it may quote what the user typed)."""
    console.print(text, style="dim", markup=False, highlight=False, soft_wrap=True)


def _version(value: bool):
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Train and sample character-level RNN, GRU and LSTM language models."""
    global _STARTED
    _STARTED = time.perf_counter()


def started() -> float:
    """When this command began (time.perf_counter()): a --minutes budget counts from here."""
    return _STARTED


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script. Click reports usage errors itself (exit 2), the app turns
    CharRNNError into one line and its code; anything unexpected is a bug: one line and exit code 3
    (CHARRNN_DEBUG=1: the traceback). The codes are listed in `charrnn.core.errors`."""
    try:
        app(args=argv, prog_name="charrnn")
    except Exception as e:
        if _debug():
            raise
        print(f"charrnn: internal error: {type(e).__name__}: {e} (set CHARRNN_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
