"""The factor search: which bookkeeping mistake turns a per-character loss into the number a loop reports.

    factors = known_factors(batch_size=32, seq_len=35, size=len(training_set))       # an epoch's logged loss
    factors = known_factors(32, 35, size, per="step", vocab_size=28)                   # one step's loss
    explaining(recorded / per_char, factors)      # the factors that explain the ratio, the likeliest first

A loss is `recorded = factor x per-character loss`. `diagnose --log` (`charrnn.diagnose.log`) looks for
the factor in a logged curve, whose level it only knows roughly (an untrained model scores about ln V);
`charrnn.watch` looks for it in one step's loss next to the cross-entropy of that step's logits, where
the ratio is exact and a tight tolerance is used. Both ask this module, so a factor found by one is
named and advised on by the other in the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MATCH_TOL = 1.5  # a factor explains a ratio when they agree within this factor; factors closer to 1 are invisible


@dataclass(frozen=True)
class Factor:
    value: float  # recorded = value x per-character loss
    label: str  # what the number is and which mistake makes it
    advice: str = ""  # the fix, in terms of the user's loop


SUM_T = "average the cross-entropy over the time steps too: divide each sequence's summed loss by T, or take the mean over all B·T characters of the batch (flatten the (B, T, V) logits to (B·T, V) before the loss)"
SUM_B = "average over the sequences of the batch too: divide the batch's loss by B, so that it is the mean over its B·T characters"
SUM_BT = "use the mean over the batch's characters (reduction='mean'), or divide the summed loss by B·T"
LEN_DATASET = "divide the epoch's sum of batch losses by the number of batches, len(train_loader), or better sum NLL x characters per batch and divide by the characters scored; never by len(training_set)"
STEP_LEN_DATASET = "do not divide a batch's loss by len(training_set): take the mean NLL over the batch's characters; it also scales the gradients down by the same factor"
DOUBLE = "divide the summed NLL once, by the characters scored; a loss that is already a mean needs no further division"
MEAN_V = "take -log p[target] of each character (the one-hot dot product summed, or the probability picked by index), not the mean over the V entries of the one-hot product"


def known_factors(batch_size: int | None, seq_len: int | None, size: int | None, per: str = "epoch",
                  vocab_size: int | None = None) -> list[Factor]:
    """The bookkeeping factors a per-character loss can be multiplied by in a loop with these B, T and
    len(dataset) (`size`, in sequences), the commonest mistake first (it wins when the numbers cannot tell
    two apart); equal values merged, values too close to 1 to be seen left out.

    per="epoch": an epoch's (or a log interval's) recorded loss, as `diagnose --log` reads it.
    per="step": one step's loss, as `charrnn.watch` sees it; with `vocab_size`, also the mean over the V
    entries of a one-hot product (NumPy loops)."""
    B, T = batch_size, seq_len
    found = _epoch_factors(B, T, size) if per == "epoch" else _step_factors(B, T, size, vocab_size)
    merged: dict[float, Factor] = {}
    for f in found:
        if abs(math.log(f.value)) < math.log(MATCH_TOL):
            continue
        key = next((k for k in merged if abs(math.log(k / f.value)) < 1e-9), None)
        if key is None:
            merged[f.value] = f
        else:
            merged[key] = Factor(key, merged[key].label + "; or " + f.label, merged[key].advice)
    return list(merged.values())


def _sum_t(T) -> Factor:
    return Factor(T, f"T = {T}: the loss is summed over each sequence's characters, not averaged", SUM_T)


def _sum_bt(B, T) -> Factor:
    return Factor(B * T, f"B·T = {B * T}: the loss is summed over every character of a batch (reduction='sum')", SUM_BT)


def _sum_b(B) -> Factor:
    return Factor(B, f"B = {B}: the loss is summed over the sequences of a batch, not averaged", SUM_B)


def _twice(B, T) -> list[Factor]:
    """A per-character mean divided again: by B·T, by T."""
    out = [Factor(1 / (B * T), f"1/(B·T) = 1/{B * T}: a per-character mean divided again by the characters in a batch", DOUBLE)] if B and T else []
    return out + ([Factor(1 / T, f"1/T = 1/{T}: a per-character mean divided again by T", DOUBLE)] if T else [])


def _epoch_factors(B, T, size) -> list[Factor]:
    found: list[Factor] = [_sum_t(T)] if T else []
    if B:
        if size:
            nb = math.ceil(size / B)
            found.append(Factor(nb / size, f"batches / len(dataset) = {nb}/{size}: the epoch's summed batch losses are divided "
                                           "by len(dataset) (sequences) instead of by the number of batches", LEN_DATASET))
        else:
            found.append(Factor(1 / B, f"1/B = 1/{B}: the epoch's summed batch losses are divided by len(dataset) (sequences) "
                                       "instead of by the number of batches", LEN_DATASET))
    found += [_sum_bt(B, T)] if B and T else []
    found += [_sum_b(B)] if B else []
    if B and T:
        found.append(Factor(T / B, f"T/B = {T}/{B}: the loss is summed over each sequence and the epoch divided by len(dataset)",
                            SUM_T + "; and " + LEN_DATASET))
    return found + _twice(B, T)


def _step_factors(B, T, size, V) -> list[Factor]:
    """One step's loss: summed over T, B or both; divided by len(dataset); a mean over V; divided twice."""
    found: list[Factor] = ([_sum_t(T)] if T else []) + ([_sum_bt(B, T)] if B and T else []) + ([_sum_b(B)] if B else [])
    if size:
        found.append(Factor(1 / size, f"1/len(dataset) = 1/{size}: the batch's mean loss is divided by len(training_set)",
                            STEP_LEN_DATASET))
        if T:
            found.append(Factor(T / size, f"T/len(dataset) = {T}/{size}: each sequence's summed loss is divided by "
                                          "len(training_set)", SUM_T + "; and " + STEP_LEN_DATASET))
        if B and T:
            found.append(Factor(B * T / size, f"B·T/len(dataset) = {B * T}/{size}: the batch's summed loss is divided by "
                                              "len(training_set)", SUM_BT + "; " + STEP_LEN_DATASET))
    if V:
        found.append(Factor(1 / V, f"1/V = 1/{V}: the loss is a mean over the V entries of the one-hot product", MEAN_V))
        if T:
            found.append(Factor(T / V, f"T/V = {T}/{V}: summed over the sequence, each step a mean over the V entries of the "
                                       "one-hot product", MEAN_V + "; and " + SUM_T))
    found += _twice(B, T)
    return found + ([Factor(1 / B, f"1/B = 1/{B}: a per-character mean divided again by B", DOUBLE)] if B else [])


def explaining(ratio: float, factors: list[Factor], target: float = 1.0, tol: float = MATCH_TOL) -> list[Factor]:
    """Factors k with ratio / k within `tol` of `target`, the best first: the closest, except that a
    commoner mistake (earlier in `factors`) wins over one the numbers cannot tell it from."""
    miss = {f: abs(math.log(ratio / f.value / target)) for f in factors}
    close = sorted((f for f in factors if miss[f] < math.log(tol)), key=miss.__getitem__)
    if not close:
        return []
    tied = [f for f in close if miss[f] - miss[close[0]] < math.log(tol)]
    best = min(tied, key=factors.index)
    return [best] + [f for f in close if f is not best]
