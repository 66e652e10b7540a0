"""charrnn.probe: the built-in signals follow their definitions, Pearson r matches an independent
computation, constants are reported rather than divided by, and the recorded activations are the
model's own state carried over the whole text."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from charrnn.activations import record
from charrnn.config import ModelConfig
from charrnn.models import CharRNN
from charrnn.probe import builtin_signals, gather, pearson, rank_units


def test_builtin_signals_by_hand():
    text = 'a(b[c]"d e"\n)f g'
    s = builtin_signals(text)
    #              a  (  b  [  c  ]  "  d  _  e  "  \n )  f  _  g
    depth = [0, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    quote = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    line = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4]
    word = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 0, 1, 2, 0, 1]
    for name, want in (("depth", depth), ("quote", quote), ("line-pos", line), ("word-pos", word)):
        assert s[name].dtype == np.float64
        assert s[name].tolist() == want, name


def test_unmatched_close_does_not_go_negative():
    assert builtin_signals("))(")["depth"].tolist() == [0, 0, 1]


def _naive_r(x, y):
    """Pearson r by its textbook formula, in Python floats."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def test_pearson_matches_textbook_and_reports_constants():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=200)
    acts = np.stack([signal * 3 + 1, -signal, rng.normal(size=200), np.full(200, 0.7), signal + rng.normal(size=200)], 1)
    r = pearson(acts, signal)
    assert math.isnan(r[3])  # a constant unit: no correlation, no division by zero
    for j in (0, 1, 2, 4):
        assert abs(r[j] - _naive_r(acts[:, j].tolist(), signal.tolist())) < 1e-12
    ranking = rank_units(acts, signal)
    assert ranking.order[:2].tolist() in ([0, 1], [1, 0])
    assert ranking.order[-1] == 3 and ranking.constant_units.tolist() == [3]
    assert not ranking.signal_constant
    flat = rank_units(acts, np.ones(200))
    assert flat.signal_constant and np.isnan(flat.r).all()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_gather_is_the_state_carried_over_the_text(kind, impl):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model=kind, vocab_size=7, hidden=5, layers=2, impl=impl)).eval()
    ids = torch.randint(0, 7, (53,), generator=torch.Generator().manual_seed(1))
    acts = gather(model, ids.numpy(), chunk=10, gates=True)  # chunked: the state must carry across
    with torch.no_grad():
        whole = record(model, ids.unsqueeze(0))  # one pass over the whole text
    per_layer = 2 if kind == "lstm" else 1
    assert acts.matrix.shape == (53, 2 * 5 * per_layer)
    assert acts.labels[0] == (0, "h", 0) and acts.labels[-1] == (1, "c" if kind == "lstm" else "h", 4)
    for j, (layer, part, index) in enumerate(acts.labels):
        want = whole.layers[layer][part][0, :, index].double().numpy()
        np.testing.assert_allclose(acts.matrix[:, j], want, rtol=0, atol=1e-6)
    sig = {"lstm": {"input", "forget", "output"}, "gru": {"reset", "update"}, "rnn": set()}[kind]
    assert all(set(g) == sig for g in acts.gates)
    for g in acts.gates[0].values():
        assert g.shape == (53, 5)
