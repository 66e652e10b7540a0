"""The `charrnn` command line: parsing and rendering only, over the engine.

Its rooms: `app` (the Typer app, `main()`, which turns a `CharRNNError` into one line and an exit code,
and what the commands share: the two consoles, help texts, `flag_values`, `note`), one module per command
group — `data` (download), `train`, `generate` (sample), `evaluate` (eval, info, plot), `checks`
(gradcheck, diagnose), `inspect` (probe, explore), `serve` (serve), `export` (export) — then `render` (every table and line the commands
print, built from engine reports) and `progress` (the training display). Nothing outside this package
imports typer or rich, and nothing imports it.

A command group is a module that decorates its functions with `@app.command()` (`from charrnn.cli.app
import app, console, out`); importing it registers them. To add one, write `charrnn/cli/NAME.py` and add
its one import line below; the order of the lines is the order of `charrnn --help`.
"""

from charrnn.cli.app import main
from charrnn.cli import data  # noqa: F401,E402  download
from charrnn.cli import train  # noqa: F401,E402  train
from charrnn.cli import generate  # noqa: F401,E402  sample
from charrnn.cli import evaluate  # noqa: F401,E402  eval, info, plot
from charrnn.cli import checks  # noqa: F401,E402  gradcheck, diagnose
from charrnn.cli import inspect  # noqa: F401,E402  probe, explore
from charrnn.cli import serve  # noqa: F401,E402  serve
from charrnn.cli import export  # noqa: F401,E402  export

__all__ = ["main"]
