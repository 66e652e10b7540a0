"""`charrnn eval` (one number, by position, against n-grams, or as a surprisal map), `info` and `plot`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from charrnn.cli import render
from charrnn.cli.app import DATA_DIR_HELP, DEVICE_HELP, IMPL_HELP, app, console, note, out, scored_split
from charrnn.core.errors import CharRNNError


@app.command("eval")
def eval_(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    text: Optional[Path] = typer.Option(None, "--text", help="Score this UTF-8 file (preprocessed as in training)."),
    split_name: Optional[str] = typer.Option(None, "--split", help="train | val | test of the training corpus  \\[default: val]"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    impl: Optional[str] = typer.Option(None, "--impl", help=IMPL_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    ngram: int = typer.Option(0, "--ngram", help="Also score Kneser-Ney 1..N-gram models fitted on the run's training split, and split the model's advantage by where it comes from; 0 = off."),
    json_out: bool = typer.Option(False, "--json", help="Print {loss, bpc, perplexity, chars, ...} as JSON (with --show or --html: also every character's surprisal and top-5 guesses)."),
    by_position: bool = typer.Option(False, "--by-position", help="Also show the loss against characters since the state was reset, with the run's trained horizon marked."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --by-position: save the curve as a PNG here (needs pip install 'charrnn\\[plot]') \\[default: by_position.png in the run directory when matplotlib is installed]."),
    show: bool = typer.Option(False, "--show", help="Show the text coloured by each character's surprisal (bits) and list the most surprising characters.", rich_help_panel="Surprisal map"),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the surprisal map as a self-contained HTML page (hover a character for the model's top-5 guesses).", rich_help_panel="Surprisal map"),
    max_chars: int = typer.Option(2000, "--max-chars", help="With --show or --html: score the first N characters, as one stream from a zero state.", rich_help_panel="Surprisal map"),
):
    """Per-character loss, bits per character and perplexity of a checkpoint on a text.

    --show and --html score the same text character by character (a map of where the model is surprised);
    they belong to eval because they split its one number into the characters it is made of: the
    surprisals, in nats, sum to the loss x characters printed above the map."""
    from charrnn.analysis.texts import evaluate_text

    if text is not None and split_name is not None:
        raise CharRNNError("give either --text or --split, not both")
    if plot is not None and not by_position:
        raise CharRNNError("--plot needs --by-position")
    views = [name for name, on in (("--ngram", ngram), ("--show/--html", show or html is not None),
                                   ("--by-position", by_position)) if on]
    if len(views) > 1:  # each is its own report; one would be dropped in silence
        raise CharRNNError(f"{' and '.join(views)} are separate reports: ask for one at a time")
    if ngram:
        return _eval_ngram(ckpt, ngram, text, scored_split(text, split_name), device, impl, data_dir, json_out)
    if show or html is not None:
        return _surprisal_map(ckpt, text, split_name, device, impl, data_dir, max_chars, show, html, json_out)
    with console.status("scoring", spinner="dots") as status:  # a long split: how far it is
        result = evaluate_text(ckpt, text=text, split=scored_split(text, split_name), device=device, impl=impl,
                               data_dir=data_dir, by_position=by_position,
                               progress=lambda f: status.update(f"scoring: {f:.0%}"))
    if json_out:
        print(json.dumps(result))
    else:
        out.print(render.eval_line(result))
    if result["warning"]:
        console.print(f"[yellow]warning:[/] {escape(result['warning'])}")
    if by_position:
        _show_by_position(result, plot, quiet=json_out)


def _show_by_position(result: dict, plot: Path | None, quiet: bool) -> None:
    """The --by-position table (stderr when --json holds stdout) and, with matplotlib, the picture."""
    from charrnn.analysis.horizon import save_position_plot

    prof = result["by_position"]
    (console if quiet else out).print(render.position_table(prof))
    if prof["horizon"]:
        (console if quiet else out).print(render.horizon_line(result))
    path = plot or Path(result["checkpoint"]).parent / "by_position.png"
    written = save_position_plot(prof, path, required=plot is not None)
    if written:
        console.print(f"picture: {written}")
    elif plot is None:
        note("for a picture of this curve: pip install 'charrnn[plot]'")  # no markup: [plot] is not a style


def _eval_ngram(ckpt, order, text, split_name, device, impl, data_dir, json_out) -> None:
    from charrnn.analysis.ngram import compare

    with console.status(f"fitting 1..{order}-grams and scoring", spinner="dots"):
        r = compare(ckpt, order, text=text, split=split_name, device=device, impl=impl, data_dir=data_dir)
    if json_out:
        print(json.dumps(r))
        return
    for line in render.ngram_report(r, order):
        out.print(line)


def _surprisal_map(ckpt, text, split_name, device, impl, data_dir, max_chars, show, html, json_out):
    """`eval --show/--html`: one scoring (charrnn.analysis.surprisal), drawn in the terminal and/or as a page."""
    from charrnn.analysis.explore import page_data, render_page, write_page
    from charrnn.analysis.surprisal import load_for_scoring
    from charrnn.training.evaluate import loss_numbers

    model, dev, ids, source, ck = load_for_scoring(ckpt, text, scored_split(text, split_name),
                                                     device, impl, data_dir, max_chars)
    data = page_data(model, ck.vocab, ids, dev, source=source, checkpoint=ck.path, units=False)
    if html is not None:
        path = write_page(html, render_page(data, title=f"charrnn eval: {source}"))
        console.print(f"wrote the surprisal map of {len(ids):,} characters to {path}")
    if show:
        screen = console if json_out else out  # stdout carries the JSON when both are asked for
        screen.print(f"{escape(source)}: {data['summary']}")
        screen.print(render.surprisal_legend())
        screen.print(render.surprisal_map(data["chars"], data["bits"]))
        screen.print(render.worst_table(data["worst"], data["top"]))
    if json_out:
        chars = [{"char": c, "bits": b, "top": t} for c, b, t in zip(data["chars"], data["bits"], data["top"])]
        print(json.dumps({**loss_numbers(data["loss"]), "chars": data["scored_chars"], "source": source,
                          "checkpoint": ck.path, "characters": chars, "worst": data["worst"]}, ensure_ascii=False))


@app.command()
def info(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON."),
):
    """What a checkpoint holds: config, vocabulary, parameter count, steps, best validation loss."""
    from charrnn.core.checkpoint import describe

    d = describe(ckpt)
    if json_out:
        print(json.dumps(d, ensure_ascii=False))
        return
    out.print(render.info_table(d))


@app.command()
def plot(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run directories (or their metrics.jsonl), overlaid in one picture."),
    x: str = typer.Option("step", "--x", help="x axis: step | chars | time | epoch"),
    metric: str = typer.Option("loss", "--metric", help="y axis: loss (nats/char) | bpc | perplexity"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="A .png or .svg file  \\[default: RUN/curves-METRIC.png; several runs: beside the first]"),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the picture  \\[default: the run's name]"),
    terminal: bool = typer.Option(False, "--terminal", help="Draw in the terminal instead of writing a file (plotext)."),
):
    """Train and val curves of one or several runs in one picture (e.g. random vs sequential batches)."""
    from charrnn.analysis.plot import read_runs, save_figure, terminal_plot

    curves = read_runs(runs, x, metric)
    if terminal:
        text = terminal_plot(curves, x, metric, width=min(out.width, 120), height=25, color=out.is_terminal)
        sys.stdout.write(text + "\n")
        return
    path = save_figure(curves, out_path, x, metric, title)
    console.print(f"wrote {path}")
