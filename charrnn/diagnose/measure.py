"""The measurements behind `charrnn diagnose`: tensors in, plain numbers out, no judgement.

Every function here talks to a model only through the interface every charrnn consumer uses,

    state = model.begin_state(batch_size, device)     # a tensor or a (nested) tuple of tensors
    logits, state = model(x, state)                   # x: LongTensor (B, T) -> logits (B, T, V)

so a user's own model (d2l style, a Python loop over time steps) is measured exactly like a CharRNN.
What a number means, and when it is bad, is decided in `charrnn.diagnose`.

Text layout: most measurements cut the sampled text into R contiguous streams, one per batch row, and
walk them in windows of T characters (the layout of sequential training):

    row 0: | window 0 | window 1 | window 2 | ...      window j+1 continues window j in every row,
    row 1: | window 0 | window 1 | window 2 | ...      so its state can be reset or carried
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.core.errors import CharRNNError

# ---------------------------------------------------------------------------------------------------
# state as data: a tensor or nested tuples/lists of tensors


def state_leaves(state) -> list[torch.Tensor]:
    """The tensors of a state, depth first."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for s in state for t in state_leaves(s)]
    return []


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state):
    """The same structure with fn applied to every tensor."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    return state


def detach(state):
    return map_state(lambda t: t.detach(), state)


def batch_dims(model, device) -> list[int | None]:
    """For each state tensor, the dimension that holds the batch rows: the one whose size follows the
    batch size between begin_state(3) and begin_state(5). None where no dimension does (one state shared
    by every row, e.g. a (1, H) state broadcast over the batch)."""
    a, b = state_leaves(model.begin_state(3, device)), state_leaves(model.begin_state(5, device))
    if len(a) != len(b):
        raise CharRNNError("begin_state returns a different structure for different batch sizes")
    dims = []
    for s3, s5 in zip(a, b):
        diff = [d for d in range(min(s3.dim(), s5.dim())) if s3.shape[d] == 3 and s5.shape[d] == 5]
        dims.append(diff[0] if diff and s3.dim() == s5.dim() else None)
    return dims


def _per_row_norm(t: torch.Tensor, dim: int | None, rows: int) -> torch.Tensor:
    if dim is None:  # a shared state: every row sees the whole tensor
        return t.detach().float().norm().expand(rows)
    return t.detach().float().movedim(dim, 0).reshape(t.shape[dim], -1).norm(dim=1)


def logits_of(model, x: torch.Tensor, state):
    """Run the model and check what comes back: (logits (B, T, V), state)."""
    result = model(x, state)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise CharRNNError("the model's forward must return (logits, state)")
    logits, new_state = result
    B, T = x.shape
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (B, T):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CharRNNError(
            f"the model's forward returned logits of shape {shape} for input ({B}, {T}); expected ({B}, {T}, V) "
            "(a d2l model that concatenates time-major outputs to (T*B, V) needs "
            "`logits.view(T, B, -1).transpose(0, 1)`)"
        )
    return logits, new_state


def nll_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-character negative log-likelihood (B, T), in float64 for the sums made of it."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
    return nll.view(y.shape).double()


def streams(ids: torch.Tensor, rows: int, cols: int, starts: torch.Tensor | None = None):
    """(x, y) of shape (rows, cols): row r is ids[s_r : s_r + cols] and its next characters. Default
    starts: consecutive stretches, row r at r * cols."""
    if starts is None:
        starts = torch.arange(rows) * cols
    idx = starts[:, None] + torch.arange(cols + 1)  # (rows, cols + 1)
    xy = ids[idx]
    return xy[:, :-1], xy[:, 1:]


def windowed_streams(ids: torch.Tensor, rows: int, T: int, max_chars: int):
    """`streams` of whole windows: (x, y, J), x and y (rows, J*T) from at most max_chars characters, J the
    windows per row; at least two of them (window 0 is a burn-in), else ValueError."""
    J = min(max_chars, len(ids) - 1) // rows // T
    if J < 2:
        raise ValueError("text too short")
    x, y = streams(ids, rows, J * T)
    return x, y, J


# ---------------------------------------------------------------------------------------------------
# loss


def score_rows(model, x: torch.Tensor, y: torch.Tensor, device, chunk: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-character NLL (rows, cols) of rows scored from a fresh state, carried across chunks (any model
    that follows the interface, its output checked on every call)."""
    from charrnn.training.evaluate import score_streams

    nll = score_streams(model, x, y, device, chunk, forward=lambda xb, st: logits_of(model, xb, st), detach=detach)
    return nll if mask is None else nll * mask


@torch.no_grad()
def batch_partition(model, x: torch.Tensor, y: torch.Tensor, device, batch_sizes: tuple[int, ...]) -> dict[int, dict]:
    """The same windows (n, T), each from a fresh state, scored in batches of each size: total NLL over
    characters scored, and the per-window mean losses (for the worked example)."""
    out = {}
    for bs in batch_sizes:
        per_window = []
        for s in range(0, x.shape[0], bs):
            xb = x[s : s + bs].to(device)
            logits, _ = logits_of(model, xb, model.begin_state(xb.shape[0], device))
            per_window.append(nll_of(logits, y[s : s + bs].to(device)).cpu())
        nll = torch.cat(per_window)  # (n, T)
        out[bs] = {"loss": float(nll.sum() / nll.numel()), "per_window": nll.mean(dim=1)}
    return out


def unigram_entropy(targets: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the character frequencies of `targets`: the loss of the best model that ignores
    context, fitted to this very text."""
    counts = np.bincount(targets, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def bigram_entropy(inputs: np.ndarray, targets: np.ndarray, vocab_size: int) -> float:
    """Conditional entropy H(next | current) of the pairs: the in-sample loss of a bigram table fitted
    to this text (optimistic: the table has V^2 free numbers)."""
    pair = np.bincount(inputs.astype(np.int64) * vocab_size + targets, minlength=vocab_size * vocab_size)
    pair = pair.reshape(vocab_size, vocab_size).astype(np.float64)
    row = pair.sum(axis=1, keepdims=True)
    nz = pair > 0
    return float(-(pair[nz] * np.log(pair[nz] / np.broadcast_to(row, pair.shape)[nz])).sum() / pair.sum())


# ---------------------------------------------------------------------------------------------------
# hidden state


@torch.no_grad()
def row_independence(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int = 4, T: int = 16) -> dict:
    """Perturb the input and the initial state of row 0 and measure how much the other rows move.

    Two chained calls, the second from the state the first returned: the other rows moving in the first
    call is a leak inside forward (a statistic over the batch); moving only in the second is a leak
    through the returned state (a state pooled over the batch). The unperturbed pair runs twice, so a
    model that keeps state between calls (which moves every row) is told apart."""
    dims = batch_dims(model, device)
    n = len(ids) - 1
    starts = torch.randint(0, max(n - 2 * T, 1), (rows,), generator=generator)
    x, _ = streams(ids, rows, 2 * T, starts)
    other = torch.randint(0, max(n - 2 * T, 1), (1,), generator=generator)
    x_pert = x.clone()
    x_pert[0] = streams(ids, 1, 2 * T, other)[0][0]
    if torch.equal(x_pert[0], x[0]):
        x_pert[0] = torch.roll(x[0], 1)

    # The same random non-zero state for both runs; the perturbed run adds more noise to row 0 only.
    s_a = map_state(lambda t: t + 0.1 * torch.randn(t.shape, generator=generator).to(t) if t.is_floating_point() else t,
                    model.begin_state(rows, device))
    leaf_dims = iter(dims)

    def perturb_row0(t):
        d = next(leaf_dims)
        if d is None or not t.is_floating_point():
            return t  # a shared state has no row of its own to perturb
        noise = torch.zeros_like(t).movedim(d, 0)
        noise[0] = 0.5 * torch.randn(noise[0].shape, generator=generator).to(t)
        return t + noise.movedim(0, d)

    s_b = map_state(perturb_row0, s_a)

    def chained(xs, s):
        l1, s1 = logits_of(model, xs[:, :T].to(device), s)
        l2, _ = logits_of(model, xs[:, T:].to(device), s1)
        return l1.float().cpu(), l2.float().cpu()

    a1, a2 = chained(x, s_a)
    b1, b2 = chained(x_pert, s_b)
    again1, again2 = chained(x, s_a)  # the baseline once more: a model keeping state between calls moves it
    within = float((a1[1:] - b1[1:]).abs().max())  # other rows, during the call that saw the perturbation
    through = float((a2[1:] - b2[1:]).abs().max())  # other rows, in the next call, fed the returned state
    diff_row0 = float(torch.cat([(a1[0] - b1[0]).abs(), (a2[0] - b2[0]).abs()]).max())
    repeat = float(torch.cat([(a1 - again1).abs().flatten(), (a2 - again2).abs().flatten()]).max())
    scale = float(torch.cat([a1, a2], dim=1).abs().max())
    return {"rows": rows, "steps": 2 * T, "state_batch_dims": dims, "max_diff_other_rows": max(within, through),
            "max_diff_within_call": within, "max_diff_through_state": through,
            "max_diff_perturbed_row": diff_row0, "max_diff_same_input_again": repeat, "logit_scale": scale}


@torch.no_grad()
def call_independence(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int = 4, T: int = 32) -> dict:
    """The same input from a fresh begin_state, before and after a call on other text; and the same
    with state=None where the model accepts it."""
    n = len(ids) - 1
    x, _ = streams(ids, rows, T, torch.randint(0, max(n - T, 1), (rows,), generator=generator))
    x_other, _ = streams(ids, rows, T, torch.randint(0, max(n - T, 1), (rows,), generator=generator))
    x, x_other = x.to(device), x_other.to(device)
    first, _ = logits_of(model, x, model.begin_state(rows, device))
    logits_of(model, x_other, model.begin_state(rows, device))
    again, _ = logits_of(model, x, model.begin_state(rows, device))
    out = {"max_diff_fresh_state": float((first - again).abs().max()), "logit_scale": float(first.abs().max())}
    try:
        n1, _ = logits_of(model, x, None)
        logits_of(model, x_other, None)
        n2, _ = logits_of(model, x, None)
        out["max_diff_state_none"] = float((n1 - n2).abs().max())
    except CharRNNError:
        raise
    except Exception:  # the model requires an explicit state: fine, the interface passes one
        out["max_diff_state_none"] = None
    return out


@torch.no_grad()
def reset_vs_carry(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int, T: int, max_chars: int) -> dict:
    """Per-window losses of the same windows with the state reset, carried from the previous window of
    the same stream (contiguous), and carried from an unrelated window (shuffled).

    Window 0 of every row is a burn-in (it is identical in all three): the scored windows are 1..J-1.
    Returns per-window mean losses (rows * (J-1),) for each policy and the per-position means."""
    x, y, J = windowed_streams(ids, rows, T, max_chars)  # (rows, J*T) each
    xw = x.view(rows, J, T)
    yw = y.view(rows, J, T)

    def run(order: torch.Tensor, carry: bool) -> torch.Tensor:
        """order: (rows, J) flat window indices into (rows*J); returns nll (rows*J, T) by window index."""
        nll = torch.zeros(rows * J, T, dtype=torch.float64)
        state = model.begin_state(rows, device)
        for j in range(J):
            w = order[:, j]
            xb, yb = xw.reshape(-1, T)[w].to(device), yw.reshape(-1, T)[w].to(device)
            if not carry:
                state = model.begin_state(rows, device)
            logits, state = logits_of(model, xb, state)
            state = detach(state)
            nll[w] = nll_of(logits, yb).cpu()
        return nll

    natural = torch.arange(rows * J).view(rows, J)
    reset = run(natural, carry=False)
    carried = run(natural, carry=True)
    later = natural[:, 1:].flatten()
    shuffled_order = natural.clone()
    shuffled_order[:, 1:] = later[torch.randperm(len(later), generator=generator)].view(rows, J - 1)
    shuffled = run(shuffled_order, carry=True)
    keep = later
    return {
        "windows": len(keep), "seq_len": T, "rows": rows,
        "reset": reset[keep], "carry": carried[keep], "shuffled": shuffled[keep],
        "inputs": xw.reshape(-1, T)[keep], "targets": yw.reshape(-1, T)[keep],
    }


@torch.no_grad()
def warmup_and_horizon(model, ids: torch.Tensor, device, rows: int, L: int, max_chars: int) -> dict:
    """Walk R streams in windows of L characters with the state carried; score every window after the
    first twice, from the carried state and from a fresh begin_state. Per position t (1..L) after the
    reset: the mean loss gap (reset - carried) and the mean KL(carried || reset) between the two next-
    character distributions. The first says how much prefix the model needs, the second how far back
    its state matters at all."""
    x, y, J = windowed_streams(ids, rows, L, max_chars)  # (rows, J*L) each
    gap = torch.zeros(L, dtype=torch.float64)
    kl = torch.zeros(L, dtype=torch.float64)
    carried_loss = torch.zeros(L, dtype=torch.float64)
    state = model.begin_state(rows, device)
    count = 0
    for j in range(J):
        xb, yb = x[:, j * L : (j + 1) * L].to(device), y[:, j * L : (j + 1) * L].to(device)
        logits_c, new_state = logits_of(model, xb, state)
        if j > 0:
            logits_r, _ = logits_of(model, xb, model.begin_state(rows, device))
            lp_c = F.log_softmax(logits_c.float(), -1)  # (rows, L, V)
            lp_r = F.log_softmax(logits_r.float(), -1)
            nll_c, nll_r = nll_of(logits_c, yb), nll_of(logits_r, yb)
            gap += (nll_r - nll_c).sum(0).cpu()
            carried_loss += nll_c.sum(0).cpu()
            kl += (lp_c.exp() * (lp_c - lp_r)).sum(-1).clamp_min(0).double().sum(0).cpu()
            count += rows
        state = detach(new_state)
    return {"windows": count, "length": L, "gap": gap / count, "kl": kl / count, "carried_loss": carried_loss / count}


# ---------------------------------------------------------------------------------------------------
# gradients


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
        _, state = logits_of(model, x[:, :burn_in], model.begin_state(rows, device))
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
    model.zero_grad(set_to_none=True)
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
    out = {}
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1].lower()
        if p.dim() == 2 and p.shape[0] == p.shape[1] and "hh" in leaf:
            out[name] = p
    return out, "user"


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
    state = model.begin_state(rows, device)
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
