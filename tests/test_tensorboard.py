"""train --tensorboard: the event files hold the run's scalars (the same numbers as metrics.jsonl) and
its samples; a resumed run continues the curves without doubling back; a missing extra is one line."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from charrnn.cli.app import app
from helpers import write_corpus

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()
FLAGS = ["--model", "gru", "--hidden", "16", "--batch-size", "4", "--seq-len", "12", "--eval-every", "10",
         "--log-every", "5", "--sample-every", "1", "--sample-length", "20", "--seed", "3", "--quiet"]


def scalars(logdir):
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea, {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_scalars_and_samples_match_the_metrics(tmp_path):
    corpus = write_corpus(tmp_path)
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--corpus", str(corpus), "--out", str(run), "--max-steps", "20", "--tensorboard", *FLAGS])
    assert r.exit_code == 0, r.output
    ea, got = scalars(run / "tensorboard")
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    logs = [e for e in lines if e["event"] == "log"]
    evals = [e for e in lines if e["event"] == "eval"]
    for tag, key, src in (("train/loss", "train_loss", logs), ("train/lr", "lr", logs), ("train/grad_norm", "grad_norm", logs),
                          ("train/clipped_fraction", "clipped", logs), ("train/chars_per_sec", "chars_per_sec", logs),
                          ("train/bpc", "bpc", logs), ("val/loss", "val_loss", evals), ("val/bpc", "bpc", evals),
                          ("val/perplexity", "perplexity", evals)):
        assert [s for s, _ in got[tag]] == [e["step"] for e in src], tag
        assert [v for _, v in got[tag]] == pytest.approx([e[key] for e in src], rel=1e-6), tag  # float32 in the file
    assert "sample/text_summary" in ea.Tags()["tensors"]
    assert len(ea.Tensors("sample/text_summary")) == len(evals)


def test_resume_continues_the_curves(tmp_path):
    corpus = write_corpus(tmp_path)
    run = tmp_path / "run"
    logs = tmp_path / "tb"
    base = ["train", "--corpus", str(corpus), "--out", str(run), "--tensorboard-dir", str(logs), *FLAGS]
    assert runner.invoke(app, [*base, "--max-steps", "20"]).exit_code == 0
    r = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "40", "--tensorboard-dir", str(logs), "--quiet"])
    assert r.exit_code == 0, r.output
    _, got = scalars(logs)
    assert [s for s, _ in got["val/loss"]] == [10, 20, 30, 40]
    assert [s for s, _ in got["train/loss"]] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_without_tensorboard_one_line_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    corpus = write_corpus(tmp_path)
    r = runner.invoke(app, ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--max-steps", "5", "--tensorboard", *FLAGS])
    assert r.exit_code == 2
    assert "pip install 'charrnn[tensorboard]'" in r.output
    assert not (tmp_path / "run").exists()  # nothing started
