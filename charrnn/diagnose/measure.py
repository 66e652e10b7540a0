"""The measurements behind `charrnn diagnose`: tensors in, plain numbers out, no judgement.

Every function here talks to a model only through the interface every charrnn consumer uses,

    state = model.begin_state(batch_size, device)     # a tensor or a (nested) tuple of tensors
    logits, state = model(x, state)                   # x: LongTensor (B, T) -> logits (B, T, V)

so a user's own model (d2l style, a Python loop over time steps) is measured exactly like a CharRNN.
Every call into the model goes through `charrnn.core.userfile.call_user` (`begin`, `logits_of`), so an
exception is charged to whoever raised it. What a number means, and when it is bad, is decided in the
checks. This module: the state as data, the text layout, the loss measurements; `measure_state`: row,
call and returned-state measurements; `measure_grad`: gradients through time, recurrent matrices, saturation.

Text layout: most measurements cut the sampled text into R contiguous streams, one per batch row, and
walk them in windows of T characters (the layout of sequential training):

    row 0: | window 0 | window 1 | window 2 | ...      window j+1 continues window j in every row,
    row 1: | window 0 | window 1 | window 2 | ...      so its state can be reset or carried
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.core.errors import CharRNNError
from charrnn.core.userfile import call_user

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


def begin(model, batch_size: int, device):
    """model.begin_state(batch_size, device), called as the user's code."""
    return call_user(model.begin_state, batch_size, device)


def batch_dims_of(a, b, size_a: int = 3, size_b: int = 5) -> list[int | None]:
    """For each tensor of two states of one structure made for batches of size_a and size_b, the dimension
    that holds the batch rows: the one whose size follows the batch size. None where no dimension does (one
    state shared by every row, e.g. a (1, H) state broadcast over the batch)."""
    a, b = state_leaves(a), state_leaves(b)
    if len(a) != len(b):
        raise CharRNNError("begin_state returns a different structure for different batch sizes")
    dims = []
    for s3, s5 in zip(a, b):
        diff = [d for d in range(min(s3.dim(), s5.dim())) if s3.shape[d] == size_a and s5.shape[d] == size_b]
        dims.append(diff[0] if diff and s3.dim() == s5.dim() else None)
    return dims


def batch_dims(model, device) -> list[int | None]:
    """`batch_dims_of` begin_state(3) and begin_state(5)."""
    return batch_dims_of(begin(model, 3, device), begin(model, 5, device))


def describe(state, dims: list[int | None] | None = None) -> str:
    """A state's layout in words: 'a tensor (3, 16)', 'a tuple of 2 tensors (2, 3, 16), (2, 3, 16)'. With
    `dims` (one per tensor, as `batch_dims`), the batch dimension is written B: 'a tensor (B, 16)'."""
    leaves = iter(dims) if dims is not None else None

    def shape(t: torch.Tensor) -> str:
        d = next(leaves, None) if leaves is not None else None
        parts = ["B" if i == d else str(n) for i, n in enumerate(t.shape)]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def words(s) -> str:
        if isinstance(s, torch.Tensor):
            return f"a tensor {shape(s)}"
        if isinstance(s, (tuple, list)):
            kind = type(s).__name__
            if s and all(isinstance(x, torch.Tensor) for x in s):
                return f"a {kind} of {len(s)} tensor{'s' if len(s) != 1 else ''} " + ", ".join(shape(x) for x in s)
            return f"a {kind} of [" + "; ".join(words(x) for x in s) + "]"
        return "None" if s is None else f"a {type(s).__name__}"

    return words(state)


def layout_differences(want, got, where: str = "state") -> list[str]:
    """Where `got` departs from the structure and shapes of `want` (tuples and lists count as the same),
    one line each, e.g. 'state[0] is (16,) where begin_state gives (3, 16)'."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return [f"{where} is {describe(got)} where begin_state gives a tensor {tuple(want.shape)}"]
        if got.shape != want.shape:
            return [f"{where} is {tuple(got.shape)} where begin_state gives {tuple(want.shape)}"]
        return []
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return [f"{where} is {describe(got)} where begin_state gives {describe(want)}"]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in layout_differences(w, g, f"{where}[{i}]")]
    return [] if type(got) is type(want) else [f"{where} is {describe(got)} where begin_state gives {describe(want)}"]


def logits_of(model, x: torch.Tensor, state):
    """Run the model and check what comes back: (logits (B, T, V), state)."""
    result = call_user(model, x, state)
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
            logits, _ = logits_of(model, xb, begin(model, xb.shape[0], device))
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
        state = begin(model, rows, device)
        for j in range(J):
            w = order[:, j]
            xb, yb = xw.reshape(-1, T)[w].to(device), yw.reshape(-1, T)[w].to(device)
            if not carry:
                state = begin(model, rows, device)
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
    state = begin(model, rows, device)
    count = 0
    for j in range(J):
        xb, yb = x[:, j * L : (j + 1) * L].to(device), y[:, j * L : (j + 1) * L].to(device)
        logits_c, new_state = logits_of(model, xb, state)
        if j > 0:
            logits_r, _ = logits_of(model, xb, begin(model, rows, device))
            lp_c = F.log_softmax(logits_c.float(), -1)  # (rows, L, V)
            lp_r = F.log_softmax(logits_r.float(), -1)
            nll_c, nll_r = nll_of(logits_c, yb), nll_of(logits_r, yb)
            gap += (nll_r - nll_c).sum(0).cpu()
            carried_loss += nll_c.sum(0).cpu()
            kl += (lp_c.exp() * (lp_c - lp_r)).sum(-1).clamp_min(0).double().sum(0).cpu()
            count += rows
        state = detach(new_state)
    return {"windows": count, "length": L, "gap": gap / count, "kl": kl / count, "carried_loss": carried_loss / count}
