"""The gradient measurements of `charrnn diagnose`: ||dL/dh_t|| through time, the recurrent matrices and
their spectra, saturated units. Tensors in, plain numbers out, no judgement (see `measure` for the interface).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from charrnn.diagnose.measure import batch_dims, begin, detach, logits_of, map_state, state_leaves, streams
from charrnn.diagnose.measure_state import state_width


def _per_row_norm(t: torch.Tensor, dim: int | None, rows: int) -> torch.Tensor:
    if dim is None or dim >= t.dim() or t.shape[dim] != rows:  # a shared state: every row sees the whole tensor
        return t.detach().float().norm().expand(rows)
    return t.detach().float().movedim(dim, 0).reshape(t.shape[dim], -1).norm(dim=1)


def bptt_gradient_norms(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int = 8, L: int = 128,
                        burn_in: int = 32) -> dict:
    """||dL/dh_t|| against the distance from the loss, for a loss on the last step only.

    The model runs one step at a time from a burnt-in state; each step's incoming state is kept (with
    retain_grad) and the loss is the cross-entropy of the final step, summed over rows so each row's
    gradient is its own. Returns the geometric mean over rows of the norm at each distance 0..L-1 (the
    state entering the last step is distance 0) over all state tensors together."""
    n = len(ids) - 1
    starts = torch.randint(0, max(n - burn_in - L, 1), (rows,), generator=generator)
    x, y = streams(ids, rows, burn_in + L, starts)
    x, y = x.to(device), y.to(device)
    dims = batch_dims(model, device)
    with torch.no_grad():
        _, state = logits_of(model, x[:, :burn_in], begin(model, rows, device))
    state = map_state(lambda t: t.detach().clone().requires_grad_(t.is_floating_point()), detach(state))
    kept = []  # the state entering each step
    logits = None
    with torch.enable_grad():
        for t in range(burn_in, burn_in + L):
            kept.append(state)
            logits, new_state = logits_of(model, x[:, t : t + 1], state)
            for leaf in state_leaves(new_state):
                if leaf.requires_grad and not leaf.is_leaf:
                    leaf.retain_grad()
            state = new_state
        loss = F.cross_entropy(logits[:, -1].float(), y[:, -1], reduction="sum")
        loss.backward()
    norms = torch.zeros(L, rows, dtype=torch.float64)
    reached = torch.zeros(L, dtype=torch.bool)
    seen: dict[int, int] = {}
    for t, s in enumerate(kept):
        total = torch.zeros(rows, dtype=torch.float64)
        for leaf, d in zip(state_leaves(s), dims):
            if id(leaf) in seen and seen[id(leaf)] != t:
                continue  # the same tensor object as at an earlier step: the state was not updated
            seen[id(leaf)] = t
            if leaf.grad is not None:
                total += _per_row_norm(leaf.grad, d, rows).double().cpu() ** 2
                reached[t] = True
        norms[t] = total.sqrt()
    for p in user_parameters(model).values():
        p.grad = None
    by_distance = norms.flip(0)  # (L, rows): distance 0 = the state entering the last step
    reached = reached.flip(0)
    logn = torch.where(by_distance > 0, by_distance.log(), torch.full_like(by_distance, -math.inf))
    geo = logn.mean(dim=1).exp()  # geometric mean over rows
    return {"rows": rows, "length": L, "norms": geo, "reached": reached, "finite": bool(torch.isfinite(norms).all())}


def spectral_radii(named: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Spectral radius (largest |eigenvalue|) and spectral norm (largest singular value) of each square
    matrix."""
    out = {}
    for name, W in named.items():
        W = W.detach().double().cpu()
        out[name] = {"spectral_radius": float(torch.linalg.eigvals(W).abs().max()),
                     "spectral_norm": float(torch.linalg.matrix_norm(W, ord=2)), "size": W.shape[0]}
    return out


def recurrent_matrices(model) -> tuple[dict[str, torch.Tensor], str]:
    """The square recurrent matrices: for a CharRNN each gate block of each layer's weight_hh (rows
    gate-major, torch order), for any other model every square 2-D parameter whose name says hh."""
    cfg = getattr(model, "config", None)
    core = getattr(model, "rnn", None)
    if cfg is not None and core is not None and hasattr(core, "weight_hh_l0") and getattr(cfg, "model", None) in ("rnn", "gru", "lstm"):
        gates = {"rnn": ("h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}[cfg.model]
        H = cfg.hidden
        out = {}
        for k in range(cfg.layers):
            W = getattr(core, f"weight_hh_l{k}")
            for g, name in enumerate(gates):
                out[f"rnn.weight_hh_l{k}[{name}]"] = W[g * H : (g + 1) * H]
        return out, cfg.model
    params = {n: p for n, p in user_parameters(model).items() if p.dim() == 2 and p.shape[0] == p.shape[1]}
    out = {n: p for n, p in params.items() if "hh" in n.rsplit(".", 1)[-1].lower()}
    if not out:  # unnamed (d2l's params list): the square matrices as wide as the state
        width = state_width(model, next(iter(params.values())).device) if params else None
        out = {n: p for n, p in params.items() if p.shape[0] == width}
    return out, "user"


def user_parameters(model) -> dict[str, torch.Tensor]:
    """A model's tensors by name: named_parameters() of a torch module (or a NumpyModel); for any other
    object the tensors it holds as attributes, in lists or dicts (d2l's RNNModelScratch: self.params)."""
    if hasattr(model, "named_parameters"):
        return dict(model.named_parameters())
    out = {}
    for name, value in vars(model).items():
        items = (value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple))
                 else [(None, value)])
        for key, v in items:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                out[name if key is None else f"{name}[{key!r}]" if isinstance(key, str) else f"{name}[{key}]"] = v
    return out


# ---------------------------------------------------------------------------------------------------
# saturation

SIGMOID_SAT = 0.99  # a sigmoid unit past 0.01 / 0.99 has slope < 0.01 (of its 0.25 peak)
TANH_SAT = 0.99  # a tanh unit past +-0.99 has slope < 0.02 (of its 1.0 peak)


@torch.no_grad()
def saturation(model, ids: torch.Tensor, device, rows: int = 16, T: int = 256, skip: int = 32) -> dict:
    """The share of saturated units, measured on real text after `skip` characters of warm-up.

    A CharRNN's gates are recomputed layer by layer from its own weights (torch's equations and gate
    order); for another model only its state is visible, and the share of entries with |h| > 0.99 is
    reported (meaningful where the state is a tanh output, as in d2l's models)."""
    n = len(ids) - 1
    T = min(T, max(n // rows, 2))
    skip = min(skip, T // 2)
    x, _ = streams(ids, rows, T)
    x = x.to(device)
    cfg = getattr(model, "config", None)
    core = getattr(model, "rnn", None)
    if cfg is not None and core is not None and hasattr(core, "weight_hh_l0") and getattr(cfg, "model", None) in ("rnn", "gru", "lstm"):
        return {"kind": cfg.model, "shares": _charrnn_gate_saturation(model, x, skip), "positions": (T - skip) * rows}
    h = torch.zeros(0)
    state = begin(model, rows, device)
    hs = []
    for t in range(0, T, 32):
        _, state = logits_of(model, x[:, t : t + 32], state)
        if t >= skip:
            hs.append(state_leaves(state)[0].float().flatten().cpu())
    if hs:
        h = torch.cat(hs)
    return {"kind": "user", "shares": {"state |h|>0.99": float((h.abs() > TANH_SAT).double().mean()) if h.numel() else None},
            "positions": len(hs) * rows}


# charrnn.analysis.activations gate names -> the names the report shows (and whether the unit is a tanh)
_GATE_LABELS = {"input": "input gate", "forget": "forget gate", "cell": "cell input g (tanh)", "output": "output gate",
                "reset": "reset gate", "update": "update gate", "candidate": "candidate n (tanh)"}


def _charrnn_gate_saturation(model, x: torch.Tensor, skip: int) -> dict[str, float]:
    """Share of saturated units per gate, averaged over layers, from `charrnn.analysis.activations.record` (the
    cell equations live there, not here)."""
    from charrnn.analysis.activations import record

    trace = record(model, x)  # every layer's h, c and gates, each (B, T, H)
    shares: dict[str, list[float]] = {}
    for layer in trace.layers:
        units = {_GATE_LABELS[g]: t for g, t in layer["gates"].items()}
        if trace.model == "rnn":
            units["h (tanh)"] = layer["h"]
        if trace.model == "lstm":
            units["tanh(c)"] = torch.tanh(layer["c"])
        for name, t in units.items():
            sat = (t.abs() > TANH_SAT) if "tanh" in name else ((t < 1 - SIGMOID_SAT) | (t > SIGMOID_SAT))
            shares.setdefault(name, []).append(float(sat[:, skip:].double().mean()))
    return {name: sum(v) / len(v) for name, v in shares.items()}
