"""charrnn plot: the curves drawn are the run's metrics, converted independently here; files are real
PNG/SVG; several runs share one picture; missing data or a missing extra is one clear line."""

from __future__ import annotations

import json
import math
import struct
import sys

import pytest
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.training.train import train
from helpers import tiny_options, write_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plot")
    corpus = write_corpus(tmp)
    a = tmp / "seq"
    b = tmp / "rand"
    train(tiny_options(corpus, a, max_steps=20, eval_every=10, log_every=5))
    train(tiny_options(corpus, b, max_steps=20, eval_every=10, log_every=5, sampling="random"))
    return a, b


def events(run, kind):
    return [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == kind]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.mark.parametrize("metric,fn", [("loss", lambda l: l), ("bpc", lambda l: l / math.log(2)), ("perplexity", math.exp)])
@pytest.mark.parametrize("x", ["step", "epoch", "chars", "time"])
def test_drawn_lines_are_the_runs_metrics(runs, metric, x, fn):
    from charrnn.analysis.plot import draw, read_runs

    fig = draw(read_runs([runs[0]], x, metric), x, metric)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    for label, kind, key in (("seq train", "log", "train_loss"), ("seq val", "eval", "val_loss")):
        want = events(runs[0], kind)
        assert list(lines[label].get_xdata()) == [e[x] for e in want]
        assert list(lines[label].get_ydata()) == pytest.approx([fn(e[key]) for e in want], rel=1e-12)


def test_one_run_writes_a_png_in_the_run_directory(runs):
    r = runner.invoke(app, ["plot", str(runs[0])])
    assert r.exit_code == 0, r.output
    path = runs[0] / "curves-loss.png"
    assert str(path) in r.output
    w, h = png_size(path)
    assert w > 400 and h > 300


def test_several_runs_share_one_svg_with_a_legend_entry_each(runs, tmp_path):
    out = tmp_path / "cmp.svg"
    r = runner.invoke(app, ["plot", str(runs[0]), str(runs[1]), "--out", str(out), "--metric", "perplexity"])
    assert r.exit_code == 0, r.output
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in ("seq train", "seq val", "rand train", "rand val"):
        assert name in svg


def test_default_output_for_several_runs_is_beside_the_first(runs):
    r = runner.invoke(app, ["plot", str(runs[0]), str(runs[1]), "--metric", "bpc"])
    assert r.exit_code == 0, r.output
    assert png_size(runs[0].parent / "seq-vs-rand-bpc.png")


def test_a_directory_without_metrics_is_one_line_and_exit_2(tmp_path):
    r = runner.invoke(app, ["plot", str(tmp_path)])
    assert r.exit_code == 2
    assert "no metrics.jsonl" in r.output and "Traceback" not in r.output


def test_unknown_axis_or_suffix_is_bad_input(runs, tmp_path):
    assert runner.invoke(app, ["plot", str(runs[0]), "--x", "minutes"]).exit_code == 2
    assert runner.invoke(app, ["plot", str(runs[0]), "--out", str(tmp_path / "a.pdf")]).exit_code == 2


def test_without_matplotlib_one_line_says_how_to_install(runs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    r = runner.invoke(app, ["plot", str(runs[0]), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2
    assert "pip install 'charrnn[plot]'" in r.output
    assert not (tmp_path / "x.png").exists()


def test_terminal_rendering_draws_every_curve(runs):
    r = runner.invoke(app, ["plot", str(runs[0]), str(runs[1]), "--terminal"])
    assert r.exit_code == 0, r.output
    for name in ("seq train", "seq val", "rand train", "rand val", "optimizer steps"):
        assert name in r.stdout


def test_terminal_without_plotext_says_how_to_install(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotext", None)
    r = runner.invoke(app, ["plot", str(runs[0]), "--terminal"])
    assert r.exit_code == 2 and "charrnn[plot]" in r.output
