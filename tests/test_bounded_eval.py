"""Evaluation during training scores a fixed, evenly spread part of a long validation split, and the
whole split at the end: the part is scored exactly as an independent computation says, a bound that
covers the split changes nothing, and metrics.jsonl says which was scored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.core.config import ModelConfig
from charrnn.training.evaluate import evaluate_ids
from charrnn.analysis.texts import evaluate_text
from charrnn.core.models import CharRNN
from charrnn.training.train import train
from helpers import tiny_options, write_corpus


def model_and_ids(n=9000, V=13):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="gru", vocab_size=V, hidden=8, embed=4)).double().eval()
    ids = np.random.default_rng(0).integers(0, V, size=n + 1).astype(np.uint8)
    return model, ids


def test_a_bound_that_covers_the_split_is_the_full_evaluation():
    model, ids = model_and_ids()
    full = evaluate_ids(model, ids, "cpu")
    for bound in (len(ids) - 1, len(ids) + 5000):
        assert evaluate_ids(model, ids, "cpu", max_chars=bound) == full


def test_the_part_scored_is_two_windows_at_the_ends_scored_from_zero_state():
    model, ids = model_and_ids(n=9000)
    got = evaluate_ids(model, ids, "cpu", max_chars=4096, chunk=100)
    # 4096 characters = 2 windows of 2048 (the minimum stream), evenly spread: the split's start and end
    nll = 0.0
    for start in (0, 9000 - 2048):
        x = torch.from_numpy(ids[start:start + 2048].astype(np.int64))[None]
        y = torch.from_numpy(ids[start + 1:start + 2049].astype(np.int64))
        with torch.no_grad():
            logits, _ = model(x)  # one call from zero state, no chunking
        nll += float(F.cross_entropy(logits[0], y, reduction="sum"))
    assert got.chars == 4096
    assert got.nll == pytest.approx(nll, rel=1e-6)  # evaluate_ids takes the cross-entropy in float32


def test_windows_spread_over_the_split_and_never_overlap():
    from charrnn.training.evaluate import window_layout

    starts, cols = window_layout(1_000_000, 65536)
    starts = starts[:, 0]
    assert len(starts) * cols <= 65536 and cols >= 2048
    assert starts[0] == 0 and starts[-1] + cols == 1_000_000
    assert np.all(np.diff(starts) >= cols)


def test_training_reports_the_part_and_ends_with_the_whole_split(tmp_path):
    corpus = write_corpus(tmp_path, n_chars=60000)  # val split: 6,000 characters
    run = tmp_path / "run"
    summary = train(tiny_options(corpus, run, max_steps=20, eval_every=10, eval_chars=2048))
    evals = [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20]
    assert evals[0]["val_scope"] == "part" and evals[0]["val_chars"] == 2048
    assert evals[-1]["val_scope"] == "full" and evals[-1]["val_chars"] == 5999
    assert "val_loss_part" in evals[-1]  # the number comparable with the earlier evaluations
    assert summary["val_loss"] == evals[-1]["val_loss"]
    again = evaluate_text(run / "last.pt", split="val", device="cpu")  # charrnn eval scores all of it
    assert again["chars"] == 5999
    assert again["loss"] == pytest.approx(evals[-1]["val_loss"], rel=1e-5)


def test_a_time_budget_that_ends_on_an_evaluation_step_still_ends_with_the_whole_split(tmp_path, monkeypatch):
    """--minutes ends the run; its last step is an evaluation step that scored only the part (the step
    budget did not say it was the last), so the finish must score the whole split once more."""
    from charrnn.training import subscribers
    from charrnn.training.loop import Trainer

    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.run.step))  # one "second" per step, no clock
    # the time --minutes keeps back for the final evaluation is then that evaluation's real seconds (~0), not
    # a "second" for its sample and checkpoints, which would end training a step early
    monkeypatch.setattr(subscribers, "RESERVE_EXTRA", 0.0)
    corpus = write_corpus(tmp_path, n_chars=60000)  # val split: 6,000 characters
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=0, minutes=20 / 60, eval_every=10, eval_chars=2048))
    evals = [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == "eval"]
    assert (evals[0]["step"], evals[0]["val_scope"]) == (10, "part")
    assert (evals[-1]["step"], evals[-1]["val_scope"]) == (20, "full")  # after the part scored at step 20
    assert evals[-1]["val_chars"] == 5999


def test_eval_chars_0_scores_the_whole_split_every_time(tmp_path):
    corpus = write_corpus(tmp_path, n_chars=30000)
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=20, eval_every=10, eval_chars=0))
    evals = [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == "eval"]
    assert [e["val_scope"] for e in evals] == ["full", "full"]
