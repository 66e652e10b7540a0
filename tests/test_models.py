"""The model interface: shapes, explicit per-sequence state, LSTM init, and per-character evaluation."""

import math

import numpy as np
import pytest
import torch

from charrnn.core.config import ModelConfig
from charrnn.training.evaluate import evaluate_ids
from charrnn.core.models import CharRNN, detach_state


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("embed", [0, 8])
def test_forward_shapes_and_state(kind, embed):
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model=kind, vocab_size=11, hidden=16, layers=2, embed=embed))
    state = m.begin_state(3)
    hs = state if isinstance(state, tuple) else (state,)
    assert all(h.shape == (2, 3, 16) and not h.any() for h in hs)  # (layers, batch, hidden), zero
    x = torch.randint(0, 11, (3, 5))
    logits, new_state = m(x, state)
    assert logits.shape == (3, 5, 11)
    # carrying the state across two calls equals one call over the whole sequence
    la, s1 = m(x[:, :2], m.begin_state(3))
    lb, s2 = m(x[:, 2:], s1)
    torch.testing.assert_close(torch.cat([la, lb], 1), logits)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_rows_of_a_batch_are_independent(kind):
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model=kind, vocab_size=7, hidden=12, layers=2)).eval()
    x = torch.randint(0, 7, (4, 6))
    base, _ = m(x, m.begin_state(4))
    x2 = x.clone()
    x2[1] = (x2[1] + 3) % 7
    state = m.begin_state(4)
    if isinstance(state, tuple):
        state[0][:, 1] = 0.5
    else:
        state[:, 1] = 0.5
    changed, _ = m(x2, state)
    assert not torch.allclose(changed[1], base[1])
    keep = [0, 2, 3]
    torch.testing.assert_close(changed[keep], base[keep], rtol=0, atol=1e-6)


def test_lstm_forget_gate_bias_starts_at_one():
    m = CharRNN(ModelConfig(model="lstm", vocab_size=5, hidden=6, layers=2))
    for k in range(2):
        total = getattr(m.rnn, f"bias_ih_l{k}") + getattr(m.rnn, f"bias_hh_l{k}")
        assert torch.allclose(total[6:12], torch.ones(6))  # gate order i, f, g, o


def test_detach_state_keeps_values_and_cuts_the_graph():
    m = CharRNN(ModelConfig(model="lstm", vocab_size=5, hidden=6))
    _, s = m(torch.randint(0, 5, (2, 3)))
    d = detach_state(s)
    assert all(t.grad_fn is None and torch.equal(t, u) for t, u in zip(d, s))


class ContextFree(torch.nn.Module):
    """Predicts the same distribution whatever it has seen: its loss cannot depend on the layout."""

    def __init__(self, v):
        super().__init__()
        self.vocab_size = v
        self.bias = torch.nn.Parameter(torch.randn(v))

    def begin_state(self, batch_size, device=None):
        return torch.zeros(1, batch_size, 1)

    def forward(self, x, state):
        return self.bias.expand(*x.shape, -1), state


def test_evaluation_scores_every_character_once_whatever_the_layout():
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 9, size=1001)
    m = ContextFree(9)
    exact = -torch.log_softmax(m.bias, 0)[torch.as_tensor(ids[1:])].sum().item()
    for streams, chunk in [(1, 1000), (7, 13), (64, 5), (1000, 3)]:
        r = evaluate_ids(m, ids, "cpu", streams=streams, chunk=chunk)
        assert r.chars == 1000  # total NLL / characters scored, padding excluded
        assert math.isclose(r.nll, exact, rel_tol=1e-6)  # float32 logits; one character more or less is ~1e-3
        assert math.isclose(r.loss, exact / 1000, rel_tol=1e-6)
        assert math.isclose(r.bpc, r.loss / math.log(2)) and math.isclose(r.perplexity, math.exp(r.loss))


def test_evaluation_carries_state_within_streams():
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model="gru", vocab_size=9, hidden=16)).eval()
    ids = np.random.default_rng(1).integers(0, 9, size=401)
    one_call = evaluate_ids(m, ids, "cpu", streams=4, chunk=1000)
    chunked = evaluate_ids(m, ids, "cpu", streams=4, chunk=7)  # same streams, state carried across chunks
    assert math.isclose(one_call.nll, chunked.nll, rel_tol=1e-5)


def test_d2l_init_small_gaussian_weights_zero_biases():
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model="rnn", vocab_size=30, hidden=256, init_std=0.01))
    w = m.rnn.weight_hh_l0
    assert abs(w.std().item() - 0.01) < 0.0005 and abs(w.mean().item()) < 0.0005
    assert not m.rnn.bias_ih_l0.any() and not m.head.bias.any()
    lstm = CharRNN(ModelConfig(model="lstm", vocab_size=30, hidden=8, init_std=0.01))
    total = lstm.rnn.bias_ih_l0 + lstm.rnn.bias_hh_l0
    assert torch.equal(total, torch.cat([torch.zeros(8), torch.ones(8), torch.zeros(16)]))  # forget gate open
