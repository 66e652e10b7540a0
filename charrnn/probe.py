"""What a trained model tracks: units whose activation follows a property of the text, and whether the
state holds that property at all (a linear probe).

    signals = builtin_signals(text)               # {"depth", "quote", "line-pos", "word-pos"}: (N,) float64
    acts = gather(model, ids)                     # Activations: matrix (N, units), labels, gates
    ranking = rank_units(acts.matrix, signals["depth"])
    ranking.r[ranking.order[0]]                   # the unit that follows depth best, its Pearson r
    acts.labels[ranking.order[0]]                 # (layer, "h" | "c", index)

Activation i is the state *after* reading character i (state carried from zero over the whole text),
so every signal is defined as the property of the text up to and including character i:

    depth     nesting depth of ()[]{} after the character (an opening bracket counts itself, a closing
              one does not); a closing bracket with nothing open leaves the depth at 0
    quote     1 from an opening double quote up to the character before its closing quote, else 0
    line-pos  characters since the last newline (the newline itself is 0)
    word-pos  characters since the last space or newline (the space itself is 0)

Pearson r is computed in float64 over every character. A unit that never changes, or a signal that
never changes, has no correlation: it is reported as constant (r = nan), never divided by zero.

Activations come from `charrnn.activations.record` for a CharRNN (both engines; every layer's h, the
LSTM's c, the gates). A user's model from --model-factory takes part when it exposes its states (see
`FACTORY_PROTOCOL`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.errors import CharRNNError

BUILTIN_SIGNALS = ("depth", "quote", "line-pos", "word-pos")
_OPEN, _CLOSE = "([{", ")]}"
SIGMOID_GATES = ("input", "forget", "output", "reset", "update")  # the gates that saturate at 0 and 1
CHUNK = 2048  # characters recorded per forward call: bounds the memory of one call, state carried across

FACTORY_PROTOCOL = """\
A --model-factory model exposes its states with a method

    record(x, state) -> (layers, new_state)

x is a LongTensor (1, T) of ids, state what begin_state(1, device) returned (or the new_state of the
previous call), and layers a list with one dict per recurrent layer: {"h": (1, T, H)} plus, optionally,
"c": (1, T, H) for a cell state and "gates": {name: (1, T, H)} with sigmoid gates in (0, 1). Tensors or
NumPy arrays. A CharRNN needs nothing: charrnn.activations.record reads it."""


# ------------------------------------------------------------------------------------------- signals


def builtin_signals(text: str) -> dict[str, np.ndarray]:
    """The four built-in signals of `text`, each (len(text),) float64 (definitions in the module doc)."""
    n = len(text)
    depth = np.zeros(n)
    quote = np.zeros(n)
    line_pos = np.zeros(n)
    word_pos = np.zeros(n)
    d, inside, lp, wp = 0, False, 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            d += 1
        elif ch in _CLOSE:
            d = max(d - 1, 0)
        if ch == '"':
            inside = not inside
        lp = 0 if ch == "\n" else lp + 1
        wp = 0 if ch in " \n" else wp + 1
        depth[i], quote[i], line_pos[i], word_pos[i] = d, float(inside), lp, wp
    return {"depth": depth, "quote": quote, "line-pos": line_pos, "word-pos": word_pos}


# ----------------------------------------------------------------------------------------- recording


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
    if hasattr(model, "config") and hasattr(model, "rnn"):  # a CharRNN: read through activations.record
        from charrnn.activations import record

        trace = record(model, x, state)
        return trace.layers, trace.state
    if callable(getattr(model, "record", None)):
        return model.record(x, state)
    raise CharRNNError("this model does not expose its states: give it a method record(x, state) -> (layers, "
                       "new_state) (see `charrnn probe --help` and charrnn.probe.FACTORY_PROTOCOL)")


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



# ---------------------------------------------------------------------------------------- unit ranking


@dataclass
class Ranking:
    """Pearson r of every unit with one signal, and the units in order of |r| (constant ones last)."""

    r: np.ndarray  # (units,) float64; nan for a constant unit, all nan for a constant signal
    order: np.ndarray  # (units,) unit indices, largest |r| first, constant units at the end
    constant_units: np.ndarray  # indices of units that never change on this text
    signal_constant: bool  # the signal never changes: no unit can correlate with it


def pearson(acts: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """r of each column of acts (N, U) with signal (N,), float64; nan where a column or the signal is
    constant (it has no correlation; nothing is divided by zero)."""
    a = np.asarray(acts, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    if a.ndim != 2 or s.shape != (a.shape[0],):
        raise CharRNNError(f"activations {a.shape} and signal {s.shape} do not line up character for character")
    r = np.full(a.shape[1], np.nan)
    if len(s) < 2 or np.ptp(s) == 0:
        return r
    live = np.ptp(a, axis=0) > 0  # (U,): a unit with one value throughout has no correlation
    ac = a[:, live] - a[:, live].mean(axis=0)
    sc = s - s.mean()
    # Normalised before the product so that neither sum of squares can overflow or underflow.
    ac /= np.sqrt((ac * ac).sum(axis=0))
    sc /= np.sqrt(sc @ sc)
    r[live] = np.clip(sc @ ac, -1.0, 1.0)
    return r


def rank_units(acts: np.ndarray, signal: np.ndarray) -> Ranking:
    """Rank the units of acts (N, U) by |Pearson r| with signal (N,)."""
    r = pearson(acts, signal)
    s = np.asarray(signal, dtype=np.float64)
    constant_signal = len(s) < 2 or np.ptp(s) == 0
    constant_units = np.flatnonzero(np.ptp(np.asarray(acts), axis=0) == 0)
    key = np.where(np.isnan(r), -1.0, np.abs(r))  # constant units sort after every real r
    order = np.argsort(-key, kind="stable")
    return Ranking(r, order, constant_units, bool(constant_signal))
