"""The `charrnn` command line: parsing and rendering only, over the engine.

Its rooms: `app` (the Typer commands and `main()`, which turns a `CharRNNError` into one line and an exit
code), `render` (every table and line the commands print, built from engine reports), `progress` (the
training display) and `serve` (the `charrnn serve` command). Nothing outside this package imports typer or rich, and nothing imports it.
"""

from charrnn.cli.app import main

__all__ = ["main"]
