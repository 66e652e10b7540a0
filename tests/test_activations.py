"""charrnn.analysis.activations.record: the recorded activations are the model's own (same logits and state as
its forward, for both engines), and the gates obey the cell equations they were read from."""

from __future__ import annotations

import pytest
import torch

from charrnn.analysis.activations import GATE_NAMES, record
from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN


def _model(kind: str, impl: str, embed: int, layers: int = 2) -> CharRNN:
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model=kind, vocab_size=11, hidden=6, layers=layers, embed=embed, impl=impl, dropout=0.3))
    return m.double().eval()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("impl,embed", [("torch", 0), ("scratch", 5)])
def test_record_matches_forward(kind, impl, embed):
    model = _model(kind, impl, embed)
    x = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(1))
    state = model.begin_state(3)
    state = tuple(s.normal_() for s in state) if kind == "lstm" else state.normal_()  # a non-zero start
    with torch.no_grad():
        want_logits, want_state = model(x, state)
        trace = record(model, x, state)
    torch.testing.assert_close(trace.logits, want_logits, rtol=0, atol=1e-12)
    for got, want in zip(trace.state if kind == "lstm" else (trace.state,), want_state if kind == "lstm" else (want_state,)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert len(trace.layers) == 2
    for layer in trace.layers:
        assert layer["h"].shape == (3, 9, 6)
        assert tuple(layer["gates"]) == GATE_NAMES[kind]
    # the top layer's h at the last step is the returned state's top layer
    h_final = want_state[0][-1] if kind == "lstm" else want_state[-1]
    torch.testing.assert_close(trace.layers[-1]["h"][:, -1], h_final, rtol=0, atol=1e-12)


def test_lstm_gates_obey_the_cell_equations():
    model = _model("lstm", "torch", 0, layers=1)
    x = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        layer = record(model, x).layers[0]
    g = layer["gates"]
    c_prev = torch.cat([torch.zeros(2, 1, 6, dtype=torch.double), layer["c"][:, :-1]], dim=1)
    torch.testing.assert_close(layer["c"], g["forget"] * c_prev + g["input"] * g["cell"])
    torch.testing.assert_close(layer["h"], g["output"] * torch.tanh(layer["c"]))
    for name in ("input", "forget", "output"):
        assert ((g[name] > 0) & (g[name] < 1)).all()


def test_gru_gates_obey_the_cell_equations():
    model = _model("gru", "torch", 0, layers=1)
    x = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer = record(model, x).layers[0]
    g = layer["gates"]
    h_prev = torch.cat([torch.zeros(2, 1, 6, dtype=torch.double), layer["h"][:, :-1]], dim=1)
    torch.testing.assert_close(layer["h"], (1 - g["update"]) * g["candidate"] + g["update"] * h_prev)
