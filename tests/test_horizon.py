"""The trained horizon and `eval --by-position`: the horizon against the batch layout training really
used, the per-position curve against an independent one-call computation, the warning and the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_checkpoint, load_model
from charrnn.cli.app import app
from charrnn.data.batches import Batches
from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint
from charrnn.training.evaluate import evaluate_ids
from charrnn.analysis.horizon import by_position, horizon_of, trained_horizon


@pytest.mark.parametrize("n, B, T", [(10_000, 32, 35), (5399, 8, 16), (777, 4, 7)])
def test_sequential_horizon_is_the_longest_stream_training_ran(n, B, T):
    """Walk the real batch plans of many epochs: the furthest position from a zero state any row reached."""
    batches = Batches(np.zeros(n, dtype=np.int64), B, T, "sequential", seed=3)
    longest = max(batches.epoch(e)["num_batches"] * T for e in range(40))
    assert trained_horizon({"batch_size": B, "seq_len": T, "sampling": "sequential", "state": "auto"}, n)["chars"] == longest


def test_reset_and_random_horizons_are_one_window():
    for cfg in ({"sampling": "random", "state": "auto"}, {"sampling": "sequential", "state": "reset"},
                {"sampling": "random", "state": "carry"}):
        assert trained_horizon({"batch_size": 8, "seq_len": 24, **cfg}, 5000)["chars"] == 24


@pytest.fixture(scope="module")
def run(tiny_run):
    """The session's tiny run: 40 steps of batches 8 x 16, sequential, so more than one epoch."""
    return str(tiny_run.run)


def test_checkpoint_records_the_horizon_and_old_ones_derive_it(run):
    ckpt = load_checkpoint(run)
    n = ckpt["corpus"]["train_chars"]
    assert ckpt["horizon"]["chars"] == (n - 1) // 8 // 16 * 16
    old = {k: v for k, v in ckpt.items() if k != "horizon"}
    assert horizon_of(old) == ckpt["horizon"]


def test_by_position_matches_one_call_per_stream(run):
    model, ckpt = load_model(run, torch.device("cpu"))
    ids = np.arange(3001) % ckpt["model_config"]["vocab_size"]  # any ids: exact arithmetic is what is checked
    ids = np.random.default_rng(0).permutation(ids)
    prof = by_position(model, ids, torch.device("cpu"), horizon=100, streams=3)
    with torch.no_grad():
        x = torch.as_tensor(ids[:3000].reshape(3, 1000))
        y = torch.as_tensor(ids[1:3001].reshape(3, 1000))
        logits, _ = model(x, model.begin_state(3, torch.device("cpu")))  # one call: no chunks, no carried state
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(3, 1000).double()
    assert torch.allclose(prof.curve, nll.mean(0), atol=1e-6)
    weighted = sum(b["loss"] * b["chars"] for b in prof.bins) / sum(b["chars"] for b in prof.bins)
    assert weighted == pytest.approx(prof.loss, rel=1e-9)
    assert prof.loss == pytest.approx(evaluate_ids(model, ids, torch.device("cpu"), streams=3).loss, rel=1e-6)
    assert prof.within == pytest.approx(float(nll.mean(0)[:100].mean()), rel=1e-9)
    assert [b["past_horizon"] for b in prof.bins] == [b["from"] > 100 for b in prof.bins]


def test_cli_eval_says_its_layout_and_warns_past_the_horizon(run, tmp_path):
    result = CliRunner().invoke(app, ["eval", run, "--split", "train", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert "stream(s) of" in result.stdout and "each from a zero state" in result.stdout
    horizon = load_checkpoint(run)["horizon"]["chars"]
    assert f"past the run's trained horizon of {horizon:,}" in result.stderr
    assert "--by-position" in result.stderr

    png = tmp_path / "pos.png"
    result = CliRunner().invoke(app, ["eval", run, "--split", "train", "--device", "cpu", "--by-position", "--json",
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    bins = data["by_position"]["bins"]
    assert data["by_position"]["horizon"] == horizon
    assert any(b["past_horizon"] for b in bins) and any(not b["past_horizon"] for b in bins)
    assert {b["to"] for b in bins} >= {horizon}
    assert f"trained horizon {horizon:,} characters" in result.stderr
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_eval_within_the_horizon_does_not_warn(run, tmp_path):
    text = tmp_path / "short.txt"
    text.write_text(load_checkpoint(run)["vocab"][5] * 300, encoding="utf-8")  # one stream of 299 < horizon
    result = CliRunner().invoke(app, ["eval", run, "--text", str(text), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert "trained horizon" not in result.stderr


def test_diagnose_explains_the_training_loop_vs_eval_gap(run):
    c = {x.id: x for x in diagnose_checkpoint(run, options=DiagnoseOptions(max_chars=4000)).checks}["loss.trained_horizon"]
    v = c.values
    assert c.status in ("ok", "warn")
    assert v["horizon"] == load_checkpoint(run)["horizon"]["chars"]
    epochs = [json.loads(line) for line in open(f"{run}/metrics.jsonl") if '"epoch"' in line and '"event": "epoch"' in line]
    assert v["recorded_last_epoch_loss"] == pytest.approx(epochs[-1]["train_loss"])
    assert v["eval_stream_chars"] > v["horizon"]
    assert "training loop's last epoch reported" in c.message


def test_without_matplotlib_the_picture_is_one_line_about_the_extra(monkeypatch, tmp_path):
    import sys

    from charrnn.core.errors import CharRNNError
    from charrnn.analysis.horizon import save_position_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    prof = {"bins": [{"from": 1, "to": 2, "loss": 1.0}], "horizon": None}
    assert save_position_plot(prof, tmp_path / "x.png") is None
    with pytest.raises(CharRNNError, match=r"pip install 'charrnn\[plot\]'"):
        save_position_plot(prof, tmp_path / "x.png", required=True)
    assert not (tmp_path / "x.png").exists()


def test_eval_by_position_without_matplotlib_names_the_extra_in_full(run, monkeypatch):
    # the hint went through rich markup, which read "[plot]" as a style tag and printed pip install 'charrnn'
    import sys

    from typer.testing import CliRunner

    from charrnn.cli.app import app

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = CliRunner().invoke(app, ["eval", str(run), "--by-position", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "pip install 'charrnn[plot]'" in r.stderr
