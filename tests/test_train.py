"""The training loop: state policies, per-character bookkeeping, checkpoints, exact resume, budgets."""

import json
import math
import os
import signal

import pytest
import torch
import yaml

import charrnn.training.train as train_mod
from charrnn.core.checkpoint import load_checkpoint, load_model
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.training.optim import lr_at
from charrnn.training.train import train
from charrnn.core.config import TrainConfig

from helpers import tiny_options, write_corpus


class Recording(CharRNN):
    """A CharRNN that records the state it is given and the state it returns, step by step."""

    calls: list = []

    def forward(self, x, state=None):
        logits, new = super().forward(x, state)
        if self.training:
            Recording.calls.append((state[0].clone(), state[0].requires_grad, new[0].detach().clone()))
        return logits, new


@pytest.fixture
def recording(monkeypatch):
    Recording.calls = []
    monkeypatch.setattr(train_mod, "CharRNN", Recording)
    return Recording.calls


def _steps_per_epoch(run):
    return next(e for e in map(json.loads, open(run / "metrics.jsonl")) if e["event"] == "epoch")["step"]


def test_carry_passes_each_batch_the_detached_final_state_of_the_last(tmp_path, recording):
    corpus = write_corpus(tmp_path, 3000)
    train(tiny_options(corpus, tmp_path / "run", sampling="sequential", state="carry", max_steps=25))
    spe = _steps_per_epoch(tmp_path / "run")
    assert spe < 25  # the run crosses an epoch boundary
    for k, (given, needs_grad, _) in enumerate(recording):
        if k % spe == 0:
            assert not given.any(), "each epoch starts from zero state"
        else:
            assert torch.equal(given, recording[k - 1][2]), f"step {k} did not get step {k - 1}'s final state"
            assert not needs_grad  # detached: truncated BPTT


def test_reset_gives_every_batch_zero_state(tmp_path, recording):
    corpus = write_corpus(tmp_path, 3000)
    train(tiny_options(corpus, tmp_path / "run", sampling="random", max_steps=12))  # auto -> reset
    assert len(recording) == 12
    assert all(not given.any() for given, _, _ in recording)


def test_contradicting_policy_is_allowed_with_a_warning(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    events = []
    train(tiny_options(corpus, tmp_path / "run", sampling="random", state="carry", max_steps=3), on_event=events.append)
    warnings = [e.data["message"] for e in events if e.kind == "warning"]
    assert any("--sampling random with --state carry" in w for w in warnings)


def test_aggregates_are_total_nll_over_characters(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=40, log_every=1, eval_every=1000))
    lines = [json.loads(l) for l in open(run / "metrics.jsonl")]
    logs = [l for l in lines if l["event"] == "log"]
    epoch = next(l for l in lines if l["event"] == "epoch")
    in_epoch = [l for l in logs if l["step"] <= epoch["step"]]
    # every step scores B*T characters, so the epoch loss is the plain mean of the step losses
    assert math.isclose(epoch["train_loss"], sum(l["train_loss"] for l in in_epoch) / len(in_epoch), rel_tol=1e-9)
    assert math.isclose(epoch["train_perplexity"], math.exp(epoch["train_loss"]), rel_tol=1e-9)
    assert all(l["chars"] == l["step"] * 8 * 16 for l in logs)


def test_run_directory_and_checkpoint_contents(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    s = train(tiny_options(corpus, run, max_steps=20, eval_every=10))
    assert {p.name for p in run.iterdir()} >= {"last.pt", "best.pt", "config.yaml", "metrics.jsonl"}
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["hidden"] == 32 and cfg["batch_size"] == 8 and cfg["corpus"] == str(corpus)
    raw = torch.load(run / "best.pt", weights_only=True)  # tensors and plain values only
    assert raw["format_version"] == 1 and raw["model_config"]["hidden"] == 32
    assert raw["position"]["step"] == 20 and "".join(raw["vocab"]) == "".join(sorted(set(corpus.read_text())))
    evals = [json.loads(l) for l in open(run / "metrics.jsonl") if '"eval"' in l]
    assert [e["step"] for e in evals] == [10, 20]
    assert math.isclose(raw["best_val_loss"], min(e["val_loss"] for e in evals))
    assert math.isclose(s["best_val_loss"], raw["best_val_loss"])
    for key in ("step", "epoch", "chars", "train_loss", "lr", "grad_norm", "clipped", "chars_per_sec", "time"):
        assert key in next(json.loads(l) for l in open(run / "metrics.jsonl") if '"log"' in l)
    # the loaded model reproduces the recorded validation loss
    from charrnn.training.evaluate import evaluate_ids
    from charrnn.core.vocab import Vocab
    from charrnn.data.batches import split

    model, ckpt = load_model(run / "best.pt")
    ids = Vocab(tuple(ckpt["vocab"])).encode(corpus.read_text())
    val = split(ids, 0.1, 0.0)[1]
    assert math.isclose(evaluate_ids(model, val, "cpu", chunk=128).loss, raw["best_val_loss"], rel_tol=1e-6)


def _interrupt_at(step):
    def on_event(e):
        if e.kind == "log" and e.data["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C
    return on_event


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_ctrl_c_then_resume_is_bit_for_bit_the_uninterrupted_run(tmp_path, sampling):
    corpus = write_corpus(tmp_path, 4000)
    opts = dict(model="lstm", layers=2, dropout=0.2, sampling=sampling, max_steps=36, eval_every=8,
                log_every=1, schedule="cosine", warmup=5)
    train(tiny_options(corpus, tmp_path / "full", **opts))
    part = train(tiny_options(corpus, tmp_path / "part", **opts), on_event=_interrupt_at(13))
    assert part["interrupted"] and part["steps"] == 13
    assert load_checkpoint(tmp_path / "part", prefer="last")["position"]["step"] == 13
    resumed = train({}, resume=str(tmp_path / "part"))
    assert resumed["steps"] == 36 and not resumed["interrupted"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    strip = lambda run: [{k: v for k, v in json.loads(l).items() if k not in ("time", "chars_per_sec", "eval_seconds")}
                         for l in open(run / "metrics.jsonl")]
    assert strip(tmp_path / "full") == strip(tmp_path / "part")


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no native bf16")
def test_amp_resume_is_bit_for_bit_with_bf16_scratch_layers(tmp_path):
    """--amp on a bf16 CPU: the scratch GRU multiplies in bf16 (hidden >= BF16_MIN_HIDDEN), and a
    resumed run still ends on exactly the uninterrupted run's weights."""
    from charrnn.core.scratch import BF16_MIN_HIDDEN

    corpus = write_corpus(tmp_path, 3000)
    opts = dict(model="gru", impl="scratch", hidden=BF16_MIN_HIDDEN["gru"], batch_size=2, seq_len=8, amp=True,
                max_steps=8, eval_every=4, log_every=1)
    train(tiny_options(corpus, tmp_path / "full", **opts))
    part = train(tiny_options(corpus, tmp_path / "part", **opts), on_event=_interrupt_at(3))
    assert part["interrupted"] and part["steps"] == 3
    train({}, resume=str(tmp_path / "part"))
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_can_extend_the_budget_but_not_change_the_model(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=10))
    with pytest.raises(CharRNNError, match="cannot change --hidden when resuming"):
        train({"hidden": 64}, resume=str(run))
    s = train({"max_steps": 15}, resume=str(run))
    assert s["steps"] == 15


def test_an_existing_run_is_never_overwritten(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=5))
    before = (run / "last.pt").read_bytes()
    with pytest.raises(CharRNNError, match="already holds a run; continue it with --resume"):
        train(tiny_options(corpus, run, max_steps=5))
    assert (run / "last.pt").read_bytes() == before


def test_same_seed_same_weights_on_cpu(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    train(tiny_options(corpus, tmp_path / "a", max_steps=8, dropout=0.1, layers=2))
    train(tiny_options(corpus, tmp_path / "b", max_steps=8, dropout=0.1, layers=2))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_budgets_whichever_ends_first(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    s = train(tiny_options(corpus, tmp_path / "a", max_steps=0, epochs=2))
    spe = _steps_per_epoch(tmp_path / "a")
    assert s["steps"] == 2 * spe
    s = train(tiny_options(corpus, tmp_path / "b", max_steps=7, epochs=2))
    assert s["steps"] == 7
    s = train(tiny_options(corpus, tmp_path / "c", max_steps=10_000, minutes=0.5 / 60))
    assert 0 < s["steps"] < 10_000 and s["seconds"] < 5


def test_learning_rate_schedules():
    cfg = TrainConfig(lr=1.0, schedule="cosine", warmup=4, min_lr_frac=0.1)
    assert lr_at(cfg, 0, 0.0) == 0.25 and lr_at(cfg, 3, 0.0) == 1.0  # linear warm-up
    assert math.isclose(lr_at(cfg, 10, 0.5), 0.55) and math.isclose(lr_at(cfg, 10, 1.0), 0.1)
    assert lr_at(TrainConfig(lr=0.5), 100, 0.9) == 0.5


def test_it_learns(tmp_path):
    corpus = write_corpus(tmp_path, 8000)
    s = train(tiny_options(corpus, tmp_path / "run", hidden=64, max_steps=150, eval_every=150, lr=1e-2))
    assert s["val_loss"] < 1.9  # uniform over ~30 characters would be ln 30 = 3.4


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("x", "1 character"),
    ("abcdefgh" * 10, "needs at least"),
])
def test_unusable_corpora_are_clear_errors(tmp_path, text, match):
    p = tmp_path / "c.txt"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(CharRNNError, match=match):
        train(tiny_options(p, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unknown_corpus_name_and_bad_options(tmp_path):
    with pytest.raises(CharRNNError, match="no such corpus or file: nosuchcorpus"):
        train({"corpus": "nosuchcorpus", "out": str(tmp_path / "r")})
    with pytest.raises(CharRNNError, match="--sampling must be one of"):
        train({"sampling": "shuffled"})
    with pytest.raises(CharRNNError, match="unknown config key"):
        train({"hiden": 3})


def test_the_sample_prefix_is_preprocessed_as_the_corpus_is(tmp_path):
    """--lowercase --sample-prefix "THE MACHINE": the run samples from "the machine", as `sample` would."""
    corpus = write_corpus(tmp_path, 3000)
    events = []
    train(tiny_options(corpus, tmp_path / "run", lowercase=True, sample_prefix="THE MACHINE", max_steps=10,
                       eval_every=5, sample_every=1, sample_length=8), on_event=events.append)
    samples = [e.data for e in events if e.kind == "sample"]
    assert len(samples) == 2 and all(s["prefix"] == "the machine" for s in samples)
    assert all(s["text"].startswith("the machine") and len(s["text"]) == 19 for s in samples)
    assert any(e.kind == "notice" and "'the machine'" in e.data["message"] for e in events)


def test_a_sample_prefix_the_model_cannot_read_stops_the_run_before_it_starts(tmp_path):
    """One error line, exit 2, and no run directory: not a crash at the first periodic sample."""
    from helpers import cli, error_line

    corpus = write_corpus(tmp_path, 3000)
    r = cli("train", "--corpus", corpus, "--out", tmp_path / "run", "--lowercase", "--sample-prefix", "ROMEO:",
            "--hidden", "8", "--batch-size", "4", "--seq-len", "8", "--eval-every", "2", "--sample-every", "1",
            "--max-steps", "4", code=2)
    assert "--sample-prefix" in error_line(r) and "never saw: ':'" in error_line(r)
    assert not (tmp_path / "run").exists()
    # no samples, no check: a prefix that is never used stops nothing
    train(tiny_options(corpus, tmp_path / "quiet", sample_prefix="ROMEO:", lowercase=True, max_steps=2, sample_every=0))
