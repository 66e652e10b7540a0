"""Look inside a model: `charrnn probe` (which units follow which property of a text) and `charrnn explore`
(a page of surprisal, guesses and unit activations, written or served)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from charrnn.cli import render
from charrnn.cli.app import DATA_DIR_HELP, DEVICE_HELP, IMPL_HELP, app, console, out, scored_split
from charrnn.core.errors import CharRNNError

_PROBE_HELP = """What did the model learn? Rank its units by how closely they follow a property of the text.

The model reads --text as one stream from a zero state. For each signal: the units ranked by |Pearson r|
(layer, h or c, index), and a linear probe (ridge regression from every unit, fitted on the first part
of the text, R^2 on the rest). Built-in signals: depth (nesting of ()[]{}), quote (inside double
quotes), line-pos, word-pos. --gates: how often each LSTM/GRU gate is saturated. A --model-factory model
takes part when it has record(x, state) -> (layers, new_state), layers = [{"h": (1,T,H), "c"?, "gates"?}]."""


@app.command(help=_PROBE_HELP)
def probe(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="A run directory or .pt file."),
    text: Path = typer.Option(..., "--text", help="The UTF-8 text to probe on (preprocessed as in training)."),
    signal: list[str] = typer.Option([], "--signal", help="Built-in signal: depth, quote, line-pos or word-pos (repeatable)."),
    signal_regex: list[str] = typer.Option([], "--signal-regex", help="NAME=PATTERN: 1 on characters inside a match, 0 elsewhere (repeatable)."),
    signal_file: list[str] = typer.Option([], "--signal-file", help="NAME=FILE: one number per character of the text, one per line (repeatable)."),
    gates: bool = typer.Option(False, "--gates", help="Per layer, how often each gate is saturated (< 0.1 or > 0.9)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --gates: save the saturation picture (PNG/SVG/PDF; needs pip install 'charrnn\\[plot]')."),
    top: int = typer.Option(10, "--top", help="Units shown per signal."),
    max_chars: int = typer.Option(20_000, "--max-chars", help="Probe the first N characters of the text."),
    fit_frac: float = typer.Option(0.8, "--fit-frac", help="The linear probe is fitted on this first fraction of the text, scored on the rest."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help="module:function or file.py:function returning your own model (see above)."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    impl: Optional[str] = typer.Option(None, "--impl", help=IMPL_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the ranked units, probes and gate fractions as JSON."),
):
    from charrnn.analysis.probe import ProbeOptions, probe as run_probe, save_gate_picture

    if (ckpt is None) == (model_factory is None):
        raise CharRNNError("give a checkpoint or --model-factory module:function (one of them)")
    if plot is not None and not gates:
        raise CharRNNError("--plot draws the gate saturation: add --gates")
    opts = ProbeOptions(signals=tuple(signal), regexes=tuple(signal_regex), files=tuple(signal_file), gates=gates, top=top,
                        max_chars=max_chars, fit_frac=fit_frac, device=device, impl=impl)
    with console.status("recording activations", spinner="dots"):
        report = run_probe(ckpt, text, opts, factory=model_factory)
    if plot is not None:
        save_gate_picture(report["gates"], plot)
    if json_out:
        print(json.dumps(report))
    else:
        for line in render.probe_report(report):
            out.print(line)
    if plot is not None:
        console.print(f"gate picture written to {plot}")


@app.command()
def explore(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    text: Optional[Path] = typer.Option(None, "--text", help="Explore this UTF-8 file (preprocessed as in training) \\[default: the run's val split]."),
    split_name: Optional[str] = typer.Option(None, "--split", help="train | val | test of the training corpus, instead of --text."),
    out_file: Path = typer.Option(Path("explore.html"), "--out", help="Where to write the page."),
    max_chars: int = typer.Option(3000, "--max-chars", help="Characters explored at most: the first N of the text; with --serve, the longest text a user may submit."),
    serve: bool = typer.Option(False, "--serve", help="Serve the page instead of writing it, with a box to type or paste a text and score it; Ctrl-C stops."),
    host: str = typer.Option("127.0.0.1", "--host", help="With --serve: the address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="With --serve: the port; 0 picks a free one."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    impl: Optional[str] = typer.Option(None, "--impl", help=IMPL_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
):
    """A page to explore a model on a text: surprisal colours, top-5 guesses on hover, one unit's activation,
    and the units that follow brackets, quotes, line and word position. One self-contained HTML file."""
    from charrnn.analysis.explore import page_data, render_page, write_page
    from charrnn.analysis.surprisal import load_for_scoring

    if text is not None and split_name is not None:
        raise CharRNNError("give either --text or --split, not both")
    if serve:
        return _serve_explore(ckpt, text, split_name, max_chars, host, port, device, impl, data_dir)
    model, dev, ids, source, ck = load_for_scoring(ckpt, text, scored_split(text, split_name),
                                                     device, impl, data_dir, max_chars)
    with console.status(f"scoring {len(ids):,} characters and recording the units", spinner="dots"):
        data = page_data(model, ck.vocab, ids, dev, source=source, checkpoint=ck.path)
    path = write_page(out_file, render_page(data))
    console.print(f"{escape(source)}: {data['summary']}")
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")


def _serve_explore(ckpt, text, split_name, max_chars, host, port, device, impl, data_dir):
    from charrnn.analysis.explore import render_page
    from charrnn.analysis.explore_server import explore_scorer, make_server

    score, first, path = explore_scorer(ckpt, text, split_name, max_chars, device, impl, data_dir)
    server = make_server(score, render_page(first, serve=True, max_chars=max_chars), host, port, max_chars)
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can score texts with the model")
    console.print(f"serving {path} on http://{bound_host}:{bound_port}/ (texts up to {max_chars:,} characters); Ctrl-C stops", soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
