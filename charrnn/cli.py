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


@app.command()
def download(
    names: list[str] = typer.Argument(None, metavar="NAME", help="Catalog corpora to fetch (see --list).", show_default=False),
    list_: bool = typer.Option(False, "--list", help="Show the catalog and which corpora are present and verified."),
    directory: str | None = typer.Option(None, "--dir", help="Data directory (default: $CHARRNN_DATA, else ./corpora)."),
    mirror: str | None = typer.Option(None, "--mirror", help="Fetch BASE/<name>.txt instead of the origin; BASE is http(s)://, file:// or a directory (default: $CHARRNN_MIRROR)."),
    source: str | None = typer.Option(None, "--from", help="Import a local copy of the one corpus named (its checksum is still checked)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even when a verified copy is present."),
):
    """Download corpora into the data directory and verify their checksums."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table

    from charrnn import corpora

    root = corpora.data_dir(directory)
    names = list(dict.fromkeys(names or []))
    if not names and not list_:
        raise CharRNNError(f"name a corpus to download ({', '.join(corpora.CATALOG)}) or use --list")
    entries = [corpora.lookup(n) for n in names]  # every name checked before any transfer starts
    if source is not None and len(entries) != 1:
        raise CharRNNError("--from imports one corpus: name exactly one")
    for entry in entries:
        path = corpora.corpus_path(entry.name, root)
        if not force and corpora.verify(path, entry):
            console.print(f"{entry.name}: already present and verified at {path}")
            continue
        if path.exists() and not force:
            console.print(f"{entry.name}: {path} failed its checksum; fetching it again")
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(entry.name, total=None)
            # force=True: we have just found the file missing or corrupt, no need to hash it again.
            path = corpora.download(entry.name, root, mirror=mirror, source=source, force=True,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        how = "built" if entry.url is None else "imported" if source else "downloaded"
        console.print(f"{entry.name}: {how} and verified, {path.stat().st_size:,} bytes at {path}")
    if list_:
        wide = console.width >= 120  # descriptions only where they fit without squeezing the paths
        table = Table(title=f"corpora in {root}", title_justify="left")
        for column in ("name", "bytes", "sha1", "status", "path") + (("description",) if wide else ()):
            # The short columns never wrap; a long path folds rather than squeezing them to nothing.
            table.add_column(column, no_wrap=column not in ("path", "description"), overflow="fold" if column == "path" else "ellipsis")
        for entry, path, ok in corpora.status(root):
            state = "[green]verified[/]" if ok else "[red]corrupt[/]" if path.exists() else "[dim]missing[/]"
            size = f"{entry.size:,}" if entry.size else f"{path.stat().st_size:,}" if ok else "-"
            row = [entry.name, size, (entry.sha1 or "local")[:8], state, str(path)]
            table.add_row(*row + ([entry.description] if wide else []))
        console.print(table)


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
