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

`gather` runs a whole text through a model as one stream, chunk by chunk with the state carried, and
keeps every unit's value after each character, (N, units) in float64: what `charrnn probe` ranks and
the explore page colours by. A CharRNN is read through `record`; a user's model from --model-factory
takes part when it exposes its states (`FACTORY_PROTOCOL`).

    acts = gather(model, ids, device)              # Activations: matrix (N, units), labels, gates
    acts.label(j)                                  # "L0.c[5]": layer 0, cell state, unit 5
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.core.errors import CharRNNError
from charrnn.core.scratch import gru_forward, lstm_forward, rnn_forward

GATE_NAMES = {"rnn": (), "gru": ("reset", "update", "candidate"), "lstm": ("input", "forget", "cell", "output")}
SIGMOID_GATES = ("input", "forget", "output", "reset", "update")  # the gates that saturate at 0 and 1
CHUNK = 2048  # characters `gather` records per forward call: bounds the memory of one call, state carried across

FACTORY_PROTOCOL = """\
A --model-factory model exposes its states with a method

    record(x, state) -> (layers, new_state)

x is a LongTensor (1, T) of ids, state what begin_state(1, device) returned (or the new_state of the
previous call), and layers a list with one dict per recurrent layer: {"h": (1, T, H)} plus, optionally,
"c": (1, T, H) for a cell state and "gates": {name: (1, T, H)} with sigmoid gates in (0, 1). Tensors or
NumPy arrays. A CharRNN needs nothing: charrnn.analysis.activations.record reads it."""


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


# ------------------------------------------------------------------------------- a whole text, recorded


@dataclass
class Activations:
    """Every unit's value after each character of a text."""

    matrix: np.ndarray  # (N, units) float64: column j is unit labels[j]
    labels: list[tuple[int, str, int]]  # (layer, "h" | "c", index within the layer)
    gates: list[dict[str, np.ndarray]] = field(default_factory=list)  # per layer {gate: (N, H)}, if asked

    def label(self, j: int) -> str:
        layer, kind, index = self.labels[j]
        return f"L{layer}.{kind}[{index}]"


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def _record_chunk(model, x: torch.Tensor, state):
    """(layers, new_state) for one chunk, from a CharRNN or a model following FACTORY_PROTOCOL."""
    if hasattr(model, "config") and hasattr(model, "rnn"):  # a CharRNN: read through `record`
        trace = record(model, x, state)
        return trace.layers, trace.state
    if callable(getattr(model, "record", None)):
        result = model.record(x, state)
        ok = isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[0], (list, tuple)) and result[0]
        if not ok or not all(isinstance(l, dict) and tuple(np.shape(l.get("h"))[:2]) == tuple(x.shape) for l in result[0]):
            raise CharRNNError(f"the model's record(x, state) must return (layers, new_state) with layers a list of "
                               f"{{'h': (1, T, H), ...}} per layer; for x of shape {tuple(x.shape)} it returned something else")
        return result
    raise CharRNNError("this model does not expose its states: give it a method record(x, state) -> (layers, "
                       "new_state) (see `charrnn probe --help` and charrnn.analysis.activations.FACTORY_PROTOCOL)")


@torch.no_grad()
def gather(model, ids, device="cpu", gates: bool = False, chunk: int = CHUNK) -> Activations:
    """Run `model` over ids (N,) as one stream from a zero state, chunk by chunk with the state carried,
    and collect each layer's h (and c) into an (N, units) float64 matrix; sigmoid gates when asked."""
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if len(ids) < 1:
        raise CharRNNError("the text is empty")
    if hasattr(model, "eval"):
        model.eval()
    state = model.begin_state(1, device)
    columns: list[list[np.ndarray]] = []  # per unit block: chunks of (T, H)
    labels: list[tuple[int, str, int]] = []
    gate_parts: list[dict[str, list[np.ndarray]]] = []
    for s in range(0, len(ids), chunk):
        x = ids[s : s + chunk].unsqueeze(0).to(device)  # (1, T)
        layers, state = _record_chunk(model, x, state)
        blocks = [(k, kind, layer[kind]) for k, layer in enumerate(layers) for kind in ("h", "c") if kind in layer]
        if not columns:
            columns = [[] for _ in blocks]
            labels = [(k, kind, j) for k, kind, t in blocks for j in range(t.shape[-1])]
            gate_parts = [{g: [] for g in layer.get("gates", {}) if g in SIGMOID_GATES} for layer in layers]
        for parts, (_, _, t) in zip(columns, blocks):
            parts.append(_np(t)[0])  # (T, H)
        if gates:
            for parts, layer in zip(gate_parts, layers):
                for g in parts:
                    parts[g].append(_np(layer["gates"][g])[0])
    matrix = np.concatenate([np.concatenate(parts, axis=0) for parts in columns], axis=1)  # (N, units)
    gate_arrays = [{g: np.concatenate(p, axis=0) for g, p in parts.items()} for parts in gate_parts] if gates else []
    return Activations(matrix, labels, gate_arrays)
