"""The hidden-state measurements of `charrnn diagnose`: is the state per row, per call, and returned in the
layout `begin_state` gives? Tensors in, plain numbers out, no judgement (see `measure` for the interface).
"""

from __future__ import annotations

import torch

from charrnn.core.errors import CharRNNError
from charrnn.diagnose.measure import (batch_dims, begin, describe, layout_differences, logits_of, map_state,
                                      state_leaves, streams)


@torch.no_grad()
def returned_state(model, ids: torch.Tensor, device, rows: int = 3, T: int = 8) -> dict:
    """begin_state(rows) against the state forward returns from it, after one call on real text: the same
    structure (tuple or bare tensor, how many tensors) and the same shape for every tensor?"""
    x, _ = streams(ids, rows, T)
    start = begin(model, rows, device)
    _, returned = logits_of(model, x.to(device), start)
    diffs = layout_differences(start, returned)
    dims = batch_dims(model, device)
    return {"rows": rows, "steps": T, "begin_state": describe(start), "returned": describe(returned),
            "begin_state_layout": describe(start, dims), "differences": diffs, "same_layout": not diffs,
            "state_batch_dims": dims}


def _rows_to_perturb(rows: int, generator: torch.Generator) -> list[int]:
    """The first row, the last, and a random one between them: no single-row leak (a state taken from row
    0, from row B-1, or pooled over rows) escapes all three."""
    middle = 1 + int(torch.randint(0, max(rows - 2, 1), (1,), generator=generator)) if rows > 2 else 0
    return list(dict.fromkeys([0, rows - 1, middle]))


@torch.no_grad()
def row_independence(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int = 5, T: int = 16) -> dict:
    """Perturb the input and the initial state of one row at a time (first, last, a middle one) and measure
    how much the other rows move.

    Two chained calls, the second from the state the first returned: the other rows moving in the first
    call is a leak inside forward (a statistic over the batch); moving only in the second is a leak
    through the returned state (a state pooled over the batch, or one row's state given to all). The
    unperturbed pair runs twice, so a model that keeps state between calls (which moves every row) is
    told apart."""
    dims = batch_dims(model, device)
    n = len(ids) - 1
    x, _ = streams(ids, rows, 2 * T, torch.randint(0, max(n - 2 * T, 1), (rows,), generator=generator))
    # The same random non-zero state for every run; a perturbed run adds more noise to its row only.
    s_a = map_state(lambda t: t + 0.1 * torch.randn(t.shape, generator=generator).to(t) if t.is_floating_point() else t,
                    begin(model, rows, device))

    def chained(xs, s):
        l1, s1 = logits_of(model, xs[:, :T].to(device), s)
        l2, _ = logits_of(model, xs[:, T:].to(device), s1)
        return l1.float().cpu(), l2.float().cpu()

    a1, a2 = chained(x, s_a)
    again1, again2 = chained(x, s_a)  # the baseline once more: a model keeping state between calls moves it
    per_row = {}
    for r in _rows_to_perturb(rows, generator):
        b1, b2 = chained(_other_text(x, r, ids, T, generator), _perturb_row(s_a, dims, r, generator))
        others = [i for i in range(rows) if i != r]
        per_row[r] = {"within_call": float((a1[others] - b1[others]).abs().max()),  # other rows, in the call that saw it
                      "through_state": float((a2[others] - b2[others]).abs().max()),  # in the next call, fed the state
                      "perturbed_row": float(torch.cat([(a1[r] - b1[r]).abs(), (a2[r] - b2[r]).abs()]).max())}
    within = max(v["within_call"] for v in per_row.values())
    through = max(v["through_state"] for v in per_row.values())
    repeat = float(torch.cat([(a1 - again1).abs().flatten(), (a2 - again2).abs().flatten()]).max())
    scale = float(torch.cat([a1, a2], dim=1).abs().max())
    leaking = [r for r, v in per_row.items() if max(v["within_call"], v["through_state"]) == max(within, through)]
    return {"rows": rows, "steps": 2 * T, "state_batch_dims": dims, "perturbed_rows": list(per_row),
            "per_row": per_row, "worst_row": leaking[0], "max_diff_other_rows": max(within, through),
            "max_diff_within_call": within, "max_diff_through_state": through,
            "max_diff_perturbed_row": min(v["perturbed_row"] for v in per_row.values()),
            "max_diff_same_input_again": repeat, "logit_scale": scale}


def _other_text(x: torch.Tensor, r: int, ids: torch.Tensor, T: int, generator: torch.Generator) -> torch.Tensor:
    """x with row r replaced by another stretch of the text (rolled if it happens to be the same)."""
    n = len(ids) - 1
    other = torch.randint(0, max(n - 2 * T, 1), (1,), generator=generator)
    out = x.clone()
    out[r] = streams(ids, 1, 2 * T, other)[0][0]
    if torch.equal(out[r], x[r]):
        out[r] = torch.roll(x[r], 1)
    return out


def _perturb_row(state, dims: list[int | None], r: int, generator: torch.Generator):
    """state with noise added to row r of every tensor that has a batch dimension (a shared state has no
    row of its own to perturb)."""
    leaf_dims = iter(dims)

    def one(t):
        d = next(leaf_dims)
        if d is None or not t.is_floating_point():
            return t
        noise = torch.zeros_like(t).movedim(d, 0)
        noise[r] = 0.5 * torch.randn(noise[r].shape, generator=generator).to(t)
        return t + noise.movedim(0, d)

    return map_state(one, state)


@torch.no_grad()
def call_independence(model, ids: torch.Tensor, device, generator: torch.Generator, rows: int = 4, T: int = 32) -> dict:
    """The same input from a fresh begin_state, before and after a call on other text; and the same
    with state=None where the model accepts it."""
    n = len(ids) - 1
    x, _ = streams(ids, rows, T, torch.randint(0, max(n - T, 1), (rows,), generator=generator))
    x_other, _ = streams(ids, rows, T, torch.randint(0, max(n - T, 1), (rows,), generator=generator))
    x, x_other = x.to(device), x_other.to(device)
    first, _ = logits_of(model, x, begin(model, rows, device))
    logits_of(model, x_other, begin(model, rows, device))
    again, _ = logits_of(model, x, begin(model, rows, device))
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


def state_width(model, device) -> int | None:
    """The hidden width: the last dimension of begin_state(3)'s first tensor (None for a state without
    tensors)."""
    leaves = state_leaves(begin(model, 3, device))
    return int(leaves[0].shape[-1]) if leaves and leaves[0].dim() else None
