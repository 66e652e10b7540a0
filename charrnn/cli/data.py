"""`charrnn download`: corpora into the data directory, verified by their checksums."""

from __future__ import annotations

import typer

from charrnn.cli import render
from charrnn.cli.app import app, console
from charrnn.core.errors import CharRNNError


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
    from charrnn.data import corpora

    root = corpora.data_dir(directory)
    names = list(dict.fromkeys(names or []))
    if not names and not list_:
        raise CharRNNError(f"name a corpus to download ({', '.join(corpora.CATALOG)}) or use --list")
    entries = [corpora.lookup(n) for n in names]  # every name checked before any transfer starts
    if source is not None and len(entries) != 1:
        raise CharRNNError("--from imports one corpus: name exactly one")
    for entry in entries:
        _fetch(corpora, entry, root, mirror, source, force)
    if list_:
        # descriptions only where they fit without squeezing the paths
        console.print(render.corpora_table(root, corpora.status(root), wide=console.width >= 120))


def _fetch(corpora, entry, root, mirror, source, force) -> None:
    """One corpus: kept when a verified copy is there, else fetched (or built, or imported) with a bar."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    path = corpora.corpus_path(entry.name, root)
    if not force and corpora.verify(path, entry):
        console.print(f"{entry.name}: already present and verified at {path}")
        return
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
