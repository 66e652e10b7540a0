"""What a learner's loop hands `Watch.step`, in the forms the checks read: PyTorch tensors or NumPy arrays,
ids or one-hot, batch-major (B, T) or time-major (T, B), one state array or a tuple (LSTM's (h, c)).

    ce = CharLoss(V).of(logits, targets)     # per-character cross-entropy: logits, log-probs or probabilities
    x, y = batch_time(inputs, targets, V)    # both (B, T) int arrays, rows = streams, or (None, None)
    rows = state_rows(state, B)              # (B, D): each stream's state flattened, a copy (torch or numpy)

Nothing here changes what it is given: every torch op runs on detached tensors under no_grad, and
every array that is kept is a copy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor) or (isinstance(x, (list, tuple)) and bool(x) and isinstance(x[0], torch.Tensor))


def scalar(loss: Any) -> float:
    """The loss as a Python float (a 0-d tensor, a NumPy scalar or a number)."""
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().float().reshape(-1)[0]) if loss.numel() else math.nan
    return float(np.asarray(loss, dtype=np.float64).reshape(-1)[0])


def to_numpy(x: Any) -> np.ndarray:
    """A tensor, an array, or a list of per-time-step arrays (stacked on a new first axis)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)):
        return np.stack([to_numpy(a) for a in x])
    return np.asarray(x)


def to_tensor(x: Any) -> torch.Tensor:
    """A detached tensor view (no copy for a tensor); a list of per-step tensors or arrays is stacked."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (list, tuple)):
        return torch.stack([to_tensor(a) for a in x])
    return torch.from_numpy(np.asarray(x))


def vocab_axis(shape: tuple[int, ...], V: int | None) -> int | None:
    """The axis holding the V classes: the last when it has V entries (or V is unknown), else the only
    other axis of size V (NumPy loops in the (T, V, B) layout), else None."""
    if not shape:
        return None
    if V is None or shape[-1] == V:
        return len(shape) - 1
    axes = [i for i, n in enumerate(shape) if n == V]
    return axes[0] if len(axes) == 1 else None


def ids(x: Any, V: int | None) -> np.ndarray | None:
    """Character ids from ids or a one-hot encoding (V axis found by `vocab_axis`); None when neither."""
    a = to_numpy(x)
    if a.dtype.kind in "iu":
        return a.astype(np.int64, copy=False)
    if a.dtype.kind not in "fb" or a.ndim == 0:
        return None
    axis = vocab_axis(a.shape, V)
    if axis is None or a.shape[axis] < 2:
        return None
    return np.argmax(a, axis=axis)


def _shifted(x: np.ndarray, y: np.ndarray) -> float:
    """The fraction of positions where y is x moved one step on: y[:, t] == x[:, t + 1]."""
    return float((y[:, :-1] == x[:, 1:]).mean()) if x.shape[1] > 1 else 0.0  # one column: nothing to tell by


def batch_time(inputs: Any, targets: Any, V: int | None, first: int = 0) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """inputs and targets as (B, T) ids, rows being streams, or (None, None) when the layout cannot be
    told; and which layout it was (pass it back as `first` to try it first next time). The targets of a
    character model are its inputs moved on by one: that fixes which axis is time (B, T or T, B) and how a
    flattened target vector was flattened (row-major, or d2l's Y.T.reshape(-1))."""
    x, y = ids(inputs, V), ids(targets, V)
    if x is None or y is None or x.size != y.size or x.ndim > 2:
        return None, None, first
    if x.ndim < 2:
        x, y = x.reshape(1, -1), y.reshape(1, -1)
    layouts = (lambda: (x, y.reshape(x.shape)), lambda: (x, y.reshape(x.T.shape).T),
               lambda: (x.T, y.reshape(x.shape).T), lambda: (x.T, y.reshape(x.T.shape)))
    for k in (first, *(k for k in range(len(layouts)) if k != first)):
        xc, yc = layouts[k]()
        if _shifted(xc, yc) >= 0.9:
            return np.ascontiguousarray(xc), np.ascontiguousarray(yc), k
    return None, None, first


class CharLoss:
    """The per-character cross-entropy of a step's logits (or log-probabilities, or probabilities) against
    its targets, computed independently of the loop's own loss. Whether the scores are probabilities is
    decided on the first step and kept."""

    def __init__(self, V: int | None):
        self.V = V
        self.probs: bool | None = None
        self.pick: int | None = None  # which flattening of ambiguous (B, T) targets the loss used, once known

    def of(self, scores: Any, targets: Any, reported: float | None = None, factors: tuple = ()) -> float | None:
        """The cross-entropy; `reported` (the loop's loss) and the bookkeeping `factors` it may carry tell
        an ambiguous flattening of the targets: the one the loop used makes reported / ce exact."""
        s = to_tensor(scores)
        axis = vocab_axis(tuple(s.shape), self.V)
        if axis is None:
            return None
        shape = tuple(s.shape)
        s = s.movedim(axis, -1)
        s2 = s.reshape(-1, s.shape[-1]).float()  # (N, V)
        t = self._targets(targets, shape, axis, s2.shape[0], s2.device)
        if t is None:
            return None
        with torch.no_grad():
            if self.probs is None:
                self.probs = bool(s2.min() >= 0 and s2.max() <= 1 and (s2.sum(-1) - 1).abs().max() < 1e-3)
            if len(t) == 1:
                return float(self._nll(s2, t[0]))
            if self.pick is not None:
                return float(self._nll(s2, t[self.pick]))
            ces = [float(self._nll(s2, c)) for c in t]
        exact = [i for i, ce in enumerate(ces) if reported is not None and ce > 0 and reported / ce > 0 and
                 any(abs(math.log(reported / ce / k)) < 1e-4 for k in (1.0, *factors))]
        if len(exact) == 1:
            self.pick = exact[0]
            return ces[self.pick]
        return min(ces)  # a model that has learned anything scores its own alignment lower

    def _nll(self, s2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.probs:
            return -torch.log(s2.gather(1, t[:, None]).clamp_min(1e-45)).mean()
        return F.cross_entropy(s2, t)

    def _targets(self, targets, shape: tuple[int, ...], axis: int, n: int, device) -> list[torch.Tensor] | None:
        """The targets flattened like the scores' rows. Ids of the scores' leading shape (or flat) map
        one to one; a (B, T) matrix next to (T·B, V) scores could be flattened either way, so both are
        tried. One-hot targets of the scores' shape (V on the same axis) become ids."""
        t = to_tensor(targets)
        if t.is_floating_point() or t.dtype == torch.bool:
            if tuple(t.shape) != shape:
                return None
            t = t.movedim(axis, -1).argmax(-1)
        t = t.to(device=device, dtype=torch.long)
        if t.numel() != n:
            return None
        if t.ndim == 1 or tuple(t.shape) == tuple(s for i, s in enumerate(shape) if i != axis):
            return [t.reshape(-1)]
        if t.ndim == 2:
            return [t.reshape(-1), t.T.reshape(-1)]
        return [t.reshape(-1)]


def state_parts(state: Any) -> list[Any]:
    """A state as a list of arrays: one tensor / array, or the parts of a tuple (LSTM's (h, c))."""
    if state is None:
        return []
    if isinstance(state, (list, tuple)):
        return [p for s in state for p in state_parts(s)]
    return [state]


def batch_axis(shape: tuple[int, ...], B: int | None) -> int | None:
    """Which axis of a state part holds the B streams: PyTorch's (layers, B, H) / (B, H) put it second
    to last, NumPy's (H, B) last; with B unknown, the second to last of a 2-D or 3-D state."""
    nd = len(shape)
    if nd == 0:
        return None
    order = [nd - 2, nd - 1, 0] if nd >= 2 else [0]
    if B is None:
        return nd - 2 if nd >= 2 else None
    return next((a for a in order if shape[a] == B), None)


def state_rows(state: Any, B: int | None) -> Any:
    """(B, D): each stream's state (all parts, all layers) as one row; a new tensor or array (a copy,
    so that the loop's later in-place changes do not reach it), or None when the rows cannot be found."""
    parts = state_parts(state)
    if not parts:
        return None
    if isinstance(parts[0], torch.Tensor):
        rows = []
        for p in parts:
            axis = batch_axis(tuple(p.shape), B)
            if axis is None:
                return None
            rows.append(p.detach().movedim(axis, 0).reshape(p.shape[axis], -1))
        if len({r.shape[0] for r in rows}) != 1:
            return None
        return torch.cat(rows, 1)
    arrays = [np.asarray(p) for p in parts]
    rows = []
    for a in arrays:
        axis = batch_axis(a.shape, B)
        if axis is None:
            return None
        rows.append(np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1))
    if len({r.shape[0] for r in rows}) != 1:
        return None
    return np.concatenate(rows, 1)


def row_relations(now: Any, before: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each stream: (its state equals the previous batch's final state, it is all zeros, the previous
    final state was all zeros). Exact equality first (a carried state is the same numbers); rows that
    are neither equal nor zero are compared again allowing float rounding (a dtype or device round trip)."""
    if isinstance(now, torch.Tensor):
        before = before.to(now.device, now.dtype) if isinstance(before, torch.Tensor) else torch.as_tensor(before).to(now)
        if torch.equal(now, before):
            same = torch.ones(now.shape[0], dtype=torch.bool, device=now.device)
        else:
            same = torch.isclose(now, before, rtol=1e-5, atol=1e-7).all(1)
        out = torch.stack([same, (now == 0).all(1), (before == 0).all(1)]).cpu().numpy()
        return out[0], out[1], out[2]
    before = np.asarray(before, dtype=now.dtype)
    same = np.ones(now.shape[0], bool) if np.array_equal(now, before) else np.isclose(now, before, rtol=1e-5, atol=1e-7).all(1)
    return same, (now == 0).all(1), (before == 0).all(1)


def carries_graph(state: Any) -> bool:
    """Whether any part of a torch state is the output of an operation autograd recorded."""
    return any(isinstance(p, torch.Tensor) and p.grad_fn is not None for p in state_parts(state))
