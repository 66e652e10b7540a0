"""Training curves of one or several runs, read from their metrics.jsonl, in one picture.

    runs = [read_curves("runs/tm-random"), read_curves("runs/tm-sequential")]
    path = save_figure(runs, "compare.png", x="step", metric="perplexity")    # matplotlib: PNG or SVG
    print(terminal_plot(runs, x="step", metric="loss"))                       # plotext: text for SSH

The train curve is the "log" events (mean per-character loss over each log interval), the val curve the
"eval" events (per-character loss on the validation characters scored). Both convert the same way:
loss in nats per character, bpc = loss / ln 2, perplexity = exp(loss). The x axis is any field that
every event carries: step, chars (characters trained on), time (the run's wall clock in seconds,
evaluation included, summed over resumes) or epoch (epochs completed, fractional).

matplotlib and plotext are optional (`pip install 'charrnn[plot]'`); without them the call raises a
CharRNNError that says how to install them. `pyplot` and `write_figure` are how every picture charrnn
draws gets matplotlib and is written (these curves, eval --by-position's plot, probe's gate picture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.core.errors import CharRNNError
from charrnn.training.rundir import read_metrics

X_AXES = {"step": "optimizer steps", "chars": "characters trained on", "time": "wall-clock time (s)",
          "epoch": "epochs completed"}
METRICS = {"loss": "loss (nats per character)", "bpc": "bits per character", "perplexity": "perplexity"}
INSTALL_HINT = "pip install 'charrnn[plot]'"


@dataclass
class Curves:
    """One run's curves, x and y already converted to the axis and metric asked for."""

    name: str
    path: Path  # the metrics.jsonl read
    train: list[tuple[float, float]] = field(default_factory=list)
    val: list[tuple[float, float]] = field(default_factory=list)


def metrics_file(run: str | Path) -> Path:
    """A run directory (holding metrics.jsonl) or a metrics file itself."""
    p = Path(run)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.is_file():
        raise CharRNNError(f"{run}: no metrics.jsonl there (is it a run directory written by charrnn train?)")
    return p


def convert(loss: float, metric: str) -> float:
    """A per-character loss in nats -> the metric asked for."""
    if metric == "bpc":
        return loss / math.log(2)
    if metric == "perplexity":
        return math.exp(min(loss, 700.0))
    return loss


def read_curves(run: str | Path, x: str = "step", metric: str = "loss", name: str | None = None) -> Curves:
    if x not in X_AXES:
        raise CharRNNError(f"--x must be one of {', '.join(X_AXES)}, not {x!r}")
    if metric not in METRICS:
        raise CharRNNError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    path = metrics_file(run)
    curves = Curves(name=name or path.parent.name, path=path)
    for event in read_metrics(path, strict=True):
        kind, key = event.get("event"), None
        if kind == "log":
            key, points = "train_loss", curves.train
        elif kind == "eval":
            key, points = "val_loss", curves.val
        if key is None or event.get(key) is None or event.get(x) is None:
            continue
        points.append((float(event[x]), convert(float(event[key]), metric)))
    if not curves.train and not curves.val:
        raise CharRNNError(f"{path}: no log or eval events to plot yet")
    return curves


def read_runs(runs: list[str | Path], x: str = "step", metric: str = "loss") -> list[Curves]:
    """Several runs; legend names are the directory names, made unique with their parents when needed."""
    if not runs:
        raise CharRNNError("name at least one run directory")
    paths = [metrics_file(r) for r in runs]
    names = [p.parent.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.parent.name}/{p.parent.name}" for p in paths]
    return [read_curves(p, x, metric, name) for p, name in zip(paths, names)]


def default_output(runs: list[Curves], metric: str) -> Path:
    """One run: RUN/curves-<metric>.png. Several: beside the first run, named after all of them."""
    first = runs[0].path.parent
    if len(runs) == 1:
        return first / f"curves-{metric}.png"
    stem = "-vs-".join(r.path.parent.name for r in runs)[:120]
    return first.parent / f"{stem}-{metric}.png"


def pyplot(what: str = "plotting"):
    """matplotlib.pyplot on the file-only Agg backend; without the plot extra, a CharRNNError
    '{what} needs matplotlib: pip install ...'. Every picture charrnn draws starts here."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never opens a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharRNNError(f"{what} needs matplotlib: {INSTALL_HINT}") from None
    return plt


def write_figure(fig, path: str | Path, **savefig) -> Path:
    """Write a matplotlib figure (the format from the suffix), its folder created, and close it; an
    unwritable path is one CharRNNError line. Every picture charrnn writes ends here."""
    path = Path(path)
    plt = pyplot()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # text stays text in an SVG (searchable, selectable) rather than outlines
        with plt.rc_context({"svg.fonttype": "none"}):
            fig.savefig(path, **savefig)
    except OSError as e:
        raise CharRNNError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path


def draw(runs: list[Curves], x: str, metric: str, title: str | None = None):
    """A matplotlib Figure: each run one colour, val solid with markers, train thin and faded (solid when
    the run has no val curve, as d2l 8.5's recipe)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        if run.train:
            xs, ys = zip(*run.train)
            faded = bool(run.val)  # beside a val curve the noisier train curve steps back; alone it is the curve
            ax.plot(xs, ys, color=color, alpha=0.45 if faded else 1.0, linewidth=1.0 if faded else 1.8, label=f"{run.name} train")
        if run.val:
            xs, ys = zip(*run.val)
            ax.plot(xs, ys, color=color, linewidth=2.0, marker="o", markersize=3, label=f"{run.name} val")
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel(METRICS[metric])
    if metric == "perplexity":
        ax.set_yscale("log")  # early perplexities are tens, late ones near 1: a log axis shows both
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 20, 30, 40 rather than 2x10^1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or (runs[0].name if len(runs) == 1 else f"{len(runs)} runs"))
    fig.tight_layout()
    return fig


def save_figure(runs: list[Curves], out: str | Path | None, x: str = "step", metric: str = "loss",
                title: str | None = None) -> Path:
    """Draw and write a .png or .svg (chosen by the suffix); returns the path written."""
    path = Path(out) if out else default_output(runs, metric)
    if path.suffix.lower() not in (".png", ".svg"):
        raise CharRNNError(f"--out {path}: write a .png or .svg file")
    return write_figure(draw(runs, x, metric, title), path)


def terminal_plot(runs: list[Curves], x: str = "step", metric: str = "loss", width: int = 100, height: int = 25,
                  color: bool = False) -> str:
    """The same curves as text (plotext's braille canvas), for a terminal over SSH."""
    try:
        import plotext
    except ImportError:
        raise CharRNNError(f"--terminal needs plotext: {INSTALL_HINT}") from None
    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    for run in runs:
        for label, points in (("train", run.train), ("val", run.val)):
            if points:
                xs, ys = zip(*points)
                signal = fig.signal(list(xs), list(ys))
                signal.label(f"{run.name} {label}")
                signal.lines()
                fig.draw(signal)
    if metric == "perplexity":
        fig.ruler("y").scale("log")
    fig.label(X_AXES[x], axis="x")
    fig.label(METRICS[metric], axis="y")
    fig.title(runs[0].name if len(runs) == 1 else f"{len(runs)} runs")
    return fig.build().string(colorless=not color)
