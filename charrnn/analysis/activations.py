"""Record what happens inside a trained CharRNN, character by character: every layer's hidden output,
the LSTM cell state, and each gate's activation.

    trace = record(model, x)                 # x: LongTensor (B, T) ids; state carried from zero
    trace.layers[0]["h"]                     # (B, T, H): layer 0's output after each character
    trace.layers[0]["gates"]["forget"]       # (B, T, H): LSTM forget gate at each character
    trace.logits                             # (B, T, V): the model's prediction after each character

The cells run through the from-scratch forward functions of `charrnn.core.scratch`, which keep every
activation in their cache and use torch's equations, gate order and parameter names. So one code path
serves both engines (a checkpoint trained with `--impl torch` has the same tensors), and the cell
equations are written once in the package. Gate names:

    lstm: input, forget, cell (the candidate g, tanh), output
    gru:  reset, update, candidate (n, tanh)
    rnn:  none (the hidden output is the whole story)

Dropout is not applied (evaluation semantics). Callers wrap the call in torch.no_grad().
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from charrnn.core.scratch import gru_forward, lstm_forward, rnn_forward

GATE_NAMES = {"rnn": (), "gru": ("reset", "update", "candidate"), "lstm": ("input", "forget", "cell", "output")}


@dataclass
class Trace:
    """Activations of one forward pass. Every tensor is batch-first, (B, T, H) or (B, T, V)."""

    model: str  # "rnn" | "gru" | "lstm"
    layers: list[dict] = field(default_factory=list)  # per layer: {"h", "c" (lstm only), "gates": {name: t}}
    logits: torch.Tensor | None = None  # (B, T, V)
    state: object = None  # the state after the last character, in the model's layout


def _layer_weights(core, k: int) -> list[torch.Tensor]:
    return [getattr(core, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _run_layer(kind: str, inp: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, weights) -> tuple[dict, tuple]:
    """One layer over a time-major input inp (T, B, I) -> ({"h", "c"?, "gates"} time-major, final state)."""
    H = h0.shape[1]
    if kind == "rnn":
        out, hT, _ = rnn_forward(inp, h0, *weights)
        return {"h": out, "gates": {}}, (hT,)
    if kind == "gru":
        out, hT, cache = gru_forward(inp, h0, *weights)
        acts = cache[2]  # (T, B, 3H): r, z, n after their nonlinearities
        gates = dict(zip(GATE_NAMES["gru"], acts.split(H, dim=2)))
        return {"h": out, "gates": gates}, (hT,)
    out, hT, cT, cache = lstm_forward(inp, h0, c0, *weights)
    cs, acts = cache[2], cache[4]  # cs (T+1, B, H) with cs[0] = c0; acts (T, B, 4H): i, f, g, o
    gates = dict(zip(GATE_NAMES["lstm"], acts.split(H, dim=2)))
    return {"h": out, "c": cs[1:], "gates": gates}, (hT, cT)


def record(model, x: torch.Tensor, state=None) -> Trace:
    """Run a CharRNN over x (B, T) from `state` (zeros if None) and keep every activation.

    The logits equal `model(x, state)[0]` in eval mode (tests hold this to float rounding)."""
    cfg = model.config
    if state is None:
        state = model.begin_state(x.shape[0], x.device)
    weight = model.head.weight
    if model.embedding is not None:
        inp = model.embedding(x)  # (B, T, E)
    else:
        inp = F.one_hot(x.long(), model.vocab_size).to(weight.dtype)  # (B, T, V)
    inp = inp.transpose(0, 1).contiguous()  # (T, B, I): the scratch functions are time-major
    hs, cs = state if cfg.model == "lstm" else (state, None)  # (L, B, H) each
    trace = Trace(model=cfg.model)
    final_h, final_c = [], []
    for k in range(cfg.layers):
        layer, final = _run_layer(cfg.model, inp, hs[k], cs[k] if cs is not None else None, _layer_weights(model.rnn, k))
        final_h.append(final[0])
        if cfg.model == "lstm":
            final_c.append(final[1])
        inp = layer["h"]  # (T, B, H): the next layer's input (no dropout: evaluation)
        trace.layers.append(_batch_first(layer))
    trace.logits = model.head(inp.transpose(0, 1))  # (B, T, V)
    h = torch.stack(final_h)
    trace.state = (h, torch.stack(final_c)) if cfg.model == "lstm" else h
    return trace


def _batch_first(layer: dict) -> dict:
    out = {k: v.transpose(0, 1) for k, v in layer.items() if k != "gates"}
    out["gates"] = {k: v.transpose(0, 1) for k, v in layer["gates"].items()}
    return out
