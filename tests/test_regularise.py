"""The regularisers of `charrnn.core.regularise` and `charrnn.training.ema`: masks of the stated shapes,
drawn as often as stated, the same in both engines, through the hand-written backward (gradcheck with
the masks fixed), AR/TAR as written in AWD-LSTM, and a weight average that evaluation uses and resume
restores bit for bit."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charrnn.core.regularise as reg
from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN
from charrnn.gradcheck.engine import GradcheckOptions, run_gradcheck
from charrnn.training.ema import WeightAverage
from charrnn.training.train import train

from helpers import cli, tiny_options, write_corpus

CELLS = ["rnn", "gru", "lstm"]


def _model(impl="scratch", **over) -> CharRNN:
    cfg = dict(model="gru", impl=impl, vocab_size=7, hidden=6, layers=2, embed=3)
    cfg.update(over)
    return CharRNN(ModelConfig(**cfg)).double().train()


@pytest.fixture
def drawn(monkeypatch):
    """Every mask drawn through regularise.keep_mask, as (shape, p)."""
    calls = []
    real = reg.keep_mask

    def spy(shape, p, like):
        calls.append((tuple(shape), p))
        return real(shape, p, like)

    monkeypatch.setattr(reg, "keep_mask", spy)
    return calls


@pytest.mark.parametrize("impl", ["scratch", "torch"])
def test_each_mask_is_drawn_once_per_batch_in_its_shape(impl, drawn):
    m = _model(impl, model="lstm", layers=3, hidden=6, dropout=0.3, dropout_kind="locked", weight_drop=0.2,
               embed_dropout=0.1)
    m(torch.randint(0, 7, (4, 9)))  # B = 4, T = 9
    assert sorted(drawn) == sorted([((24, 6), 0.2)] * 3  # W_hh of each layer: (4H, H), not per step or row
                                   + [((4, 6), 0.3)] * 2  # locked, layers 1 and 2: (B, H), not (B, T, H)
                                   + [((4, 1, 6), 0.3)]  # before the head: one mask per sequence
                                   + [((7,), 0.1)])  # embedding dropout: one per character of the vocabulary
    drawn.clear()
    m.eval()(torch.randint(0, 7, (4, 9)))
    assert drawn == []  # evaluation drops nothing


def test_a_locked_mask_drops_the_same_units_at_every_step_and_elementwise_does_not():
    torch.manual_seed(0)
    h = torch.randn(5, 40, 8) + 3.0  # (B, T, H), no zeros of its own
    locked = reg.drop_sequence(h, 0.5, "locked", training=True)
    zero = locked == 0
    assert zero.any() and torch.equal(zero, zero[:, :1].expand_as(zero))  # constant along T
    assert not torch.equal(zero[0, 0], zero[1, 0]) or not torch.equal(zero[1, 0], zero[2, 0])  # per sequence
    kept = ~zero
    assert torch.allclose(locked[kept], 2.0 * h[kept])  # scaled by 1 / (1 - p)
    elementwise = reg.drop_sequence(h, 0.5, "elementwise", training=True) == 0
    assert not torch.equal(elementwise, elementwise[:, :1].expand_as(elementwise))
    assert torch.equal(reg.drop_sequence(h, 0.5, "locked", training=False), h)


@pytest.mark.parametrize("impl", ["scratch", "torch"])
def test_weight_drop_is_one_matrix_for_the_whole_batch_and_a_new_one_per_batch(impl):
    """Identical sequences in one batch see the same dropped W_hh (equal outputs); the next batch
    draws another (different outputs); evaluation uses the whole matrix."""
    torch.manual_seed(1)
    m = _model(impl, model="gru", layers=1, weight_drop=0.5)
    x = torch.randint(0, 7, (1, 12)).expand(3, 12)  # three copies of one sequence
    a, b = m(x)[0], m(x)[0]
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])
    assert not torch.allclose(a, b)
    assert torch.equal(m.eval()(x)[0], m(x)[0])


def test_embedding_dropout_drops_every_occurrence_of_a_character_in_the_batch():
    torch.manual_seed(2)
    m = _model(embed=4, embed_dropout=0.5)
    seen = {}
    m.rnn.register_forward_hook(lambda mod, args, out: seen.update(inp=args[0].detach()))
    x = torch.randint(0, 7, (6, 30))
    m(x)
    inp, table = seen["inp"], m.embedding.weight.detach()
    dropped = {c for c in range(7) if (x == c).any() and (inp[x == c] == 0).all()}
    assert dropped and len(dropped) < len(set(x.flatten().tolist()))
    for c in set(x.flatten().tolist()) - dropped:
        assert torch.allclose(inp[x == c], 2.0 * table[c].expand_as(inp[x == c]))


@pytest.mark.parametrize("cell", CELLS)
def test_both_engines_drop_the_same_units_and_agree_in_training(cell):
    """torch's fused kernels (layer by layer, masked weights) and the scratch layers' hand-written
    forward and backward: the same seed draws the same masks, so outputs and gradients are equal."""
    over = dict(model=cell, dropout=0.3, dropout_kind="locked", weight_drop=0.4, embed_dropout=0.2)
    a, b = _model("scratch", **over), _model("torch", **over)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 7, (4, 9))
    outs = []
    for m in (a, b):
        torch.manual_seed(5)
        logits, state = m(x)
        (logits.sin().sum() + sum(s.sum() for s in (state if cell == "lstm" else (state,)))).backward()
        outs.append((logits, [p.grad for p in m.parameters()]))
    assert (outs[0][0] - outs[1][0]).abs().max() < 1e-12
    assert max((g - h).abs().max().item() for g, h in zip(outs[0][1], outs[1][1])) < 1e-12


def test_gradcheck_with_fixed_masks_passes_and_checks_the_masked_path(monkeypatch):
    opts = GradcheckOptions(model="all", layers=2, hidden=4, weight_drop=0.4, dropout=0.4, samples=8)
    report = run_gradcheck(opts)
    assert report.passed and len(report.rows) > 40
    # the masks are in the checked function: a backward that forgets the W_hh mask fails
    from charrnn.core import scratch

    real = scratch.ScratchLayer.backward

    def forgetful(ctx, dout, *dstateT):
        ctx.masks = (ctx.masks[0], None)
        return real(ctx, dout, *dstateT)

    monkeypatch.setattr(scratch.ScratchLayer, "backward", staticmethod(forgetful))
    bad = run_gradcheck(replace(opts, model="gru"))
    assert {r.tensor for r in bad.failures} >= {"gru/weight_hh_l0", "gru/weight_hh_l1"}


def test_ar_tar_is_awd_lstms_penalty():
    rng = np.random.default_rng(0)
    raw, dropped = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    want = 2.0 * np.mean(dropped ** 2) + 0.5 * np.mean((raw[:, 1:] - raw[:, :-1]) ** 2)
    got = reg.ar_tar(torch.tensor(raw), torch.tensor(dropped), 2.0, 0.5)
    assert math.isclose(got.item(), want, rel_tol=1e-6)


def test_ar_tar_change_the_update_but_not_the_reported_loss(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    runs = {}
    for name, over in (("plain", {}), ("ar", dict(ar=3.0, tar=2.0))):
        runs[name] = train(tiny_options(corpus, tmp_path / name, model="gru", max_steps=6, log_every=1, eval_every=6, **over))
    first = {n: next(json.loads(l) for l in open(tmp_path / n / "metrics.jsonl") if '"log"' in l) for n in runs}
    assert first["plain"]["train_loss"] == first["ar"]["train_loss"]  # step 1: same weights, the NLL alone
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ar" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(a["rnn.weight_hh_l0"], b["rnn.weight_hh_l0"])  # the penalty's gradient was applied


def test_weight_average_follows_the_formula():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    avg = WeightAverage(m, decay=0.9)
    want = [p.detach().double().clone() for p in m.parameters()]
    for step in range(1, 30):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
        avg.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        want = [d * w + (1 - d) * p.detach().double() for w, p in zip(want, m.parameters())]
    for a, w in zip(avg.avg, want):
        assert torch.allclose(a.double(), w, atol=1e-6)
    trained = [p.detach().clone() for p in m.parameters()]
    with avg.applied():
        assert all(torch.equal(p, a) for p, a in zip(m.parameters(), avg.avg))
    assert all(torch.equal(p, t) for p, t in zip(m.parameters(), trained))  # restored exactly


def _interrupt_at(step):
    def on_event(e):
        if e.kind == "log" and e.data["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)
    return on_event


def test_ema_is_what_is_evaluated_saved_and_resumed_bit_for_bit(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    opts = dict(model="gru", layers=2, dropout=0.2, dropout_kind="locked", weight_drop=0.2, ema=0.9,
                max_steps=16, eval_every=8, log_every=1)
    full = train(tiny_options(corpus, tmp_path / "full", **opts))
    part = train(tiny_options(corpus, tmp_path / "part", **opts), on_event=_interrupt_at(5))
    assert part["interrupted"]
    train({}, resume=str(tmp_path / "part"))
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert a["weights"] == "ema 0.9"
    for key in ("model", "trained_model"):  # the average and the trained weights, bit for bit
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert not torch.equal(a["model"]["rnn.weight_hh_l0"], a["trained_model"]["rnn.weight_hh_l0"])
    # the reported val loss is of the averaged weights: score them here with plain cross-entropy
    from charrnn.core.checkpoint import load

    ck = load(tmp_path / "full" / "last.pt")
    model = CharRNN(replace(ck.model_config, impl="torch"))
    model.load_state_dict(a["model"])
    ids = torch.tensor(ck.vocab.encode(corpus.read_text()))
    val = ids[len(ids) - int(len(ids) * 0.1):]
    with torch.no_grad():
        logits, _ = model.eval()(val[None, :-1])
    nll = F.cross_entropy(logits[0], val[1:]).item()
    assert math.isclose(nll, full["val_loss"], rel_tol=1e-5)
    trained = CharRNN(replace(ck.model_config, impl="torch"))
    trained.load_state_dict(a["trained_model"])
    with torch.no_grad():
        other = F.cross_entropy(trained.eval()(val[None, :-1])[0][0], val[1:]).item()
    assert not math.isclose(other, full["val_loss"], rel_tol=1e-5)


@pytest.mark.parametrize("args, words", [
    (["--dropout-kind", "per-step"], "--dropout-kind must be one of elementwise, locked"),
    (["--weight-drop", "1"], "--weight-drop must be in [0, 1)"),
    (["--embed-dropout", "-0.1"], "--embed-dropout must be in [0, 1)"),
    (["--ema", "1.5"], "--ema must be a decay in [0, 1)"),
    (["--ar", "-1"], "--ar and --tar must be 0 (off) or positive"),
])
def test_bad_regulariser_values_are_one_line_and_exit_2(tmp_path, args, words):
    corpus = write_corpus(tmp_path, 2000)
    r = cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), *args, code=2)
    assert words in r.output and not (tmp_path / "run").exists()


def test_a_checkpoint_from_before_dropout_kind_keeps_elementwise_dropout(tmp_path):
    """The default is now locked; a run saved before the option existed resumes, samples and evaluates
    as it was trained."""
    from charrnn.core.checkpoint import load

    corpus = write_corpus(tmp_path, 2000)
    train(tiny_options(corpus, tmp_path / "run", dropout=0.2, max_steps=2, eval_every=2))
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert raw["model_config"]["dropout_kind"] == "locked"
    del raw["model_config"]["dropout_kind"]
    torch.save(raw, tmp_path / "old.pt")
    assert load(tmp_path / "old.pt").model_config.dropout_kind == "elementwise"
