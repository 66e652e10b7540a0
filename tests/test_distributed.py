"""Data-parallel training: two gloo processes under torchrun train exactly what one process trains with
the same global batch, only rank 0 writes, and a run resumes across world sizes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch

from charrnn.core.errors import CharRNNError
from charrnn.training.train import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")

# Plain SGD without clipping: the update is lr * g itself, so a gradient scaled wrongly by the world size
# (summed instead of averaged, or averaged twice) moves the weights by lr * |g| per step. Adam would
# normalise the scale away and clipping would bound it.
OPTIONS = {"model": "lstm", "hidden": 24, "layers": 2, "embed": 8, "dropout": 0.0, "batch_size": 8, "seq_len": 12,
           "eval_every": 3, "log_every": 2, "sample_every": 0, "threads": 1, "device": "cpu", "seed": 5,
           "optimizer": "sgd", "lr": 1.0, "clip": 0}
# Tolerance: one process and two differ only in float32 rounding: the all-reduced mean of two half-batch
# mean gradients vs one full-batch mean, a relative error of a few ulps (2^-24 ~ 6e-8) of each gradient
# element. With lr 1, gradients below ~1 and 6 steps that is ~6 * 4 * 6e-8 ~ 1.5e-6 at most, so 1e-5
# leaves headroom (measured: 6e-8); a world-size scaling bug moves the weights by lr * |g| ~ 1e-2 per step.
WEIGHT_TOL = 1e-5


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    words = ["the", "time", "machine", "traveller", "said", "and", "of", "a", "to", "was", "in", "it"]
    p = tmp_path / "small.txt"
    p.write_text(" ".join(rng.choice(words) for _ in range(4000)), encoding="utf-8")
    return p


def torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "charrnn", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def flags(options: dict) -> list[str]:
    return [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict, tol: float = WEIGHT_TOL) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= tol, f"max |difference| {worst:.3g}"


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_global_batch(corpus, tmp_path):
    one = train({**OPTIONS, "corpus": str(corpus), "max_steps": 6, "out": str(tmp_path / "one")})
    run = torchrun([*flags(OPTIONS), "--corpus", str(corpus), "--max-steps", "6", "--out", str(tmp_path / "ddp"),
                    "--quiet", "--json"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "ddp"))
    # rank 0 evaluates (the other ranks' summaries have no val_loss); one metrics file with the global loss
    summaries = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    evaluated = [s for s in summaries if s["val_loss"] is not None]
    assert len(evaluated) == 1 and evaluated[0]["steps"] == 6
    assert evaluated[0]["val_loss"] == pytest.approx(one["val_loss"], abs=1e-5)
    logs = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logs] == [e["step"] for e in ref]
    for got, want in zip(logs, ref):
        if got["event"] == "log":
            assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-5)


@pytest.mark.slow
def test_one_process_run_resumes_on_two(corpus, tmp_path):
    """The checkpoint holds all B carried streams, so the world size may change on resume."""
    train({**OPTIONS, "corpus": str(corpus), "max_steps": 6, "out": str(tmp_path / "whole")})
    train({**OPTIONS, "corpus": str(corpus), "max_steps": 3, "out": str(tmp_path / "split")})
    run = torchrun(["--resume", str(tmp_path / "split"), "--max-steps", "6", "--quiet"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "split"))


def test_batch_size_must_divide_among_the_processes(monkeypatch, corpus, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(CharRNNError, match="--batch-size 8 must be a multiple of the world size 3"):
        train({**OPTIONS, "corpus": str(corpus), "max_steps": 1, "out": str(tmp_path / "x")})
