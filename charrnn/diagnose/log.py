"""`charrnn diagnose --log FILE`: read a user's own training log and say whether its curves can be trusted.

    log = read_log("train_log.csv")                     # charrnn.training_log: CSV, JSON lines, metrics.jsonl
    report = diagnose_log("train_log.csv", LogOptions(batch_size=32, seq_len=35, vocab_size=28))
    report.verdict, report.checks                       # the same Diagnosis / Check records as `diagnose`

No model is needed: only the numbers the user's loop wrote and what they know about it (B, T, V, the
number of sequences in each split). Three checks, with stable ids:

    log.scale            is each curve a per-character loss? An untrained model scores about ln V per
                         character and a negative log-likelihood is never negative; a level that a known
                         factor (T, B, B*T, batches / len(dataset), ...) explains is bookkeeping, a level far
                         above ln V that none explains is instability and is left to log.trend
    log.train_val_scale  train and val on one scale (the len(training_set) bug puts them B apart)
    log.trend            flat, rising, diverging, unstable, overfitting, or a running total never reset,
                         judged on the curves put back per character, so that a plateau made by the
                         bookkeeping is told from a real one

A curve is `recorded = factor x per-character loss`; the corrected curve is `recorded / factor`. The
engine returns a Diagnosis and never prints; `charrnn.cli.app` draws it next to the recorded curves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from charrnn.core.vocab import read_text
from charrnn.diagnose.context import Check
from charrnn.diagnose.measure import unigram_entropy
from charrnn.diagnose.scale import MATCH_TOL, Factor, explaining, known_factors
from charrnn.diagnose.subjects import Diagnosis
from charrnn.diagnose.training_log import TrainingLog, read_log
from charrnn.core.errors import CharRNNError

SECTION = ("log", "Training log")

FIRST_LOW = 0.25  # x ln V: a first logged per-character loss below this is implausibly low (bookkeeping) ...
FIRST_HIGH = 2.0  # ... and above this it is not per character (an untrained model scores about ln V)
SCALE_RATIO = 2.0  # at their first common point train and val agree within this factor (before any overfitting)
SMOOTH_RISE = 0.05  # a level above ln V is blamed on a factor only when the curve never rises more than 5% between points
ABOVE_UNIFORM = 1.1  # x ln V: a per-character loss ending above this is worse than guessing uniformly
CURVE_FLAT = 0.02  # fell by less than 2% from the first point to the end: flat
CURVE_RISE = 0.10  # the end is 10% above the minimum: rose
CURVE_DIVERGE = 1.5  # the end is 1.5x the first point (or not finite): diverging
SMOOTH_FROM = 30  # logs with this many points or more are judged averaged over windows of n/10 points
JUMP = 0.25  # a point 25% above the one before is a jump; two or more: unstable
UNIGRAM_FLAT = 0.95  # a flat curve at 95% of the unigram entropy (or ln V) or above has learned nothing
CUMULATIVE_MIN = 0.3  # a running total's increments: each 0.3 to 1.05x the one before (see _cumulative)
OVERFIT_RISE = 0.05  # val 5% above its minimum while train kept falling
SPIKE_RATIO = 100.0  # a logged gradient norm 100x the median


@dataclass(frozen=True)
class LogOptions:
    """What the user knows about their loop. sizes are numbers of sequences (len(dataset))."""

    batch_size: int | None = None
    seq_len: int | None = None
    vocab_size: int | None = None
    text: str | None = None  # a file: V (distinct characters) when vocab_size is not given, and the unigram entropy
    train_size: int | None = None
    val_size: int | None = None

    def __post_init__(self):
        for name in ("batch_size", "seq_len", "vocab_size", "train_size", "val_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1")
        if self.vocab_size is None and self.text is None:
            raise CharRNNError("--log needs --vocab-size V or --text FILE (the vocabulary size sets ln V, where a per-character loss starts)")
        if self.vocab_size == 1:
            raise CharRNNError("--vocab-size must be at least 2")


def _vocab(options: LogOptions) -> tuple[int, float | None]:
    """V, and the unigram entropy of --text (None without it)."""
    if options.text is None:
        return options.vocab_size, None

    chars = np.frombuffer(read_text(options.text).encode("utf-32-le"), dtype=np.uint32)
    if len(chars) == 0:
        raise CharRNNError(f"--text {options.text} is empty")
    _, ids = np.unique(chars, return_inverse=True)
    distinct = int(ids.max()) + 1
    return options.vocab_size or max(distinct, 2), unigram_entropy(ids, distinct)


# ---------------------------------------------------------------------------------------------------
# factors


def _factors(options: LogOptions, size: int | None) -> list[Factor]:
    """The epoch-level factors of this loop (see `charrnn.diagnose.scale.known_factors`)."""
    return known_factors(options.batch_size, options.seq_len, size)


def _first(curve: np.ndarray | None) -> tuple[int, float] | None:
    if curve is None:
        return None
    idx = np.flatnonzero(np.isfinite(curve))
    return (int(idx[0]), float(curve[idx[0]])) if len(idx) else None


def _series(curve: np.ndarray | None) -> list[float | None] | None:
    return None if curve is None else [float(v) for v in curve]


NO_FACTOR = Factor(1.0, "1: the loss is per character")


def _level_factors(first: float, lnV: float, factors: list[Factor], val_ref: float | None) -> list[Factor]:
    """Factors that bring a first point outside [FIRST_LOW, FIRST_HIGH] x ln V back inside, the likeliest
    first. `val_ref` is the val loss at that point when val is per character: it measures where the
    per-character level is, so the factors are ranked against it rather than ln V, and "no factor" is a
    candidate too, the commonest: train that close to val is per character however far from ln V (an
    unstable run's level is real)."""
    inside = [f for f in factors if FIRST_LOW <= first / f.value / lnV <= FIRST_HIGH]
    ref = val_ref or lnV
    found = explaining(first / ref, ([NO_FACTOR] if val_ref else []) + inside)
    if found and found[0] is NO_FACTOR:
        return []
    return [f for f in found if f is not NO_FACTOR] or sorted(inside, key=lambda f: abs(math.log(first / f.value / ref)))


# ---------------------------------------------------------------------------------------------------
# checks


def _check(cid: str, status: str, values: dict, message: str, advice: str = "") -> Check:
    return Check(cid, SECTION[0], status, values, message, advice)


def _curve_scale(name: str, curve: np.ndarray, lnV: float, factors: list[Factor],
                 val_ref: float | None) -> tuple[str, Factor | None, dict, str, str]:
    """One curve's verdict: (status, factor or None, values, message, advice). val_ref: see _level_factors."""
    first = _first(curve)
    finite = curve[np.isfinite(curve)]
    values = {"first": first[1] if first else None, "first_over_ln_vocab": first[1] / lnV if first else None,
              "factor": None, "corresponds_to": None, "candidates": []}
    if first is None:
        return "skip", None, values, f"{name}: no finite value", ""
    if (finite < -1e-9).any():
        worst = float(finite.min())
        values["min"] = worst
        return ("fail", None, values,
                f"{name} loss goes negative ({worst:.4g}): a negative log-likelihood is never below 0, so this is not a "
                "cross-entropy of probabilities",
                "compute the loss as -log(softmax(logits))[target]: take log_softmax (or softmax then log) before the NLL, "
                "and keep the minus sign")
    lo, hi = FIRST_LOW * lnV, FIRST_HIGH * lnV
    if lo <= first[1] <= hi:
        return "ok", None, values, f"{name} starts at {first[1]:.4g} = {first[1] / lnV:.2f} x ln V: per character", ""
    side = "above" if first[1] > hi else "below"
    where = f"{name} starts at {first[1]:.4g} = {first[1] / lnV:.3g} x ln V = {lnV:.3f}"
    seen = curve[~np.isnan(curve)]
    rise = _largest_rise(seen)
    values["largest_rise"] = rise
    if side == "above" and rise > SMOOTH_RISE:  # a bookkeeping factor scales a smooth curve; this one jumps
        return ("ok", None, values, f"{where}, and the curve itself jumps up by {100 * rise:.0f}% between two points: a real "
                "per-character loss that blew up (instability, see log.trend), not bookkeeping", "")
    matches = _level_factors(first[1], lnV, factors, val_ref)
    if not matches:
        if side == "above" and val_ref is not None and abs(math.log(first[1] / val_ref)) < math.log(MATCH_TOL):
            return ("ok", None, values, f"{where}, far above where an untrained model starts, but val is {val_ref:.4g} at the "
                    "same point, per character: the same scale, so a real per-character loss, i.e. instability (see log.trend)", "")
        if side == "above":
            return ("ok", None, values,
                    f"{where}, far above where an untrained model starts, and no bookkeeping factor of this loop (T, B, B·T, "
                    "len(dataset)) explains it: read as a real per-character loss, i.e. instability (see log.trend)", "")
        return ("warn", None, values,
                f"{where}, lower than a first point usually is, and no factor of this loop explains it" +
                ("" if factors else " (give --batch-size and --seq-len to test the usual factors)"),
                "check that the loss is divided once, by the number of characters scored")
    best = matches[0]
    values |= {"factor": best.value, "corresponds_to": best.label}
    others = "; the log cannot tell it from " + "; ".join(f"{f.label.split(':')[0]}" for f in matches[1:]) if len(matches) > 1 else ""
    return ("fail", best, values,
            f"{where}: not a per-character loss; divided by {best.value:.4g} it starts at {first[1] / best.value:.4g} "
            f"({first[1] / best.value / lnV:.2f} x ln V): factor {best.value:.4g} = {best.label}{others}", best.advice)


def check_scale(log: TrainingLog, lnV: float, options: LogOptions) -> tuple[Check, dict[str, Factor | None]]:
    """log.scale: each curve per character? Returns the check and the factor found per curve."""
    cid = "log.scale"
    curves = {"train": (log.train, options.train_size)} | ({"val": (log.val, options.val_size)} if log.val is not None else {})
    found, parts, advice, statuses = {}, [], [], []
    values: dict = {"ln_vocab": lnV}
    for name, (curve, size) in reversed(curves.items()):  # val first: when it is per character it is train's yardstick
        val_ref = None
        if name == "train" and statuses == ["ok"] and found["val"] is None and _first(curve) and _first(log.val):
            i = _first(curve)[0]
            val_ref = float(log.val[i]) if np.isfinite(log.val[i]) and log.val[i] > 0 else _first(log.val)[1]
        status, factor, v, msg, adv = _curve_scale(name, curve, lnV, _factors(options, size), val_ref)
        if name == "train" and factor and found.get("val") and found["val"].value == factor.value:
            parts[0] = f"val starts at {_first(log.val)[1]:.4g}: the same factor {factor.value:.4g}"
        found[name] = factor
        prefix = "" if name == "train" else "val_"
        values |= {f"{prefix}{k}": x for k, x in v.items()}
        statuses.append(status)
        parts.insert(0, msg)
        if adv:
            advice.insert(0, adv)
    order = {"skip": -1, "ok": 0, "warn": 1, "fail": 2}
    status = max(statuses, key=order.__getitem__)
    return _check(cid, status, values, "; ".join(parts), " ".join(dict.fromkeys(advice))), found


def check_train_val(log: TrainingLog, factors: dict[str, Factor | None], options: LogOptions) -> tuple[Check, dict[str, float]]:
    """log.train_val_scale: train and val on one scale at their first common point. Returns the check
    and the divisor of each curve (its factor) that puts both per character."""
    cid = "log.train_val_scale"
    div = {k: (f.value if f else 1.0) for k, f in factors.items()}
    if log.val is None:
        return _check(cid, "skip", {}, "the log has no val_loss column"), div
    both = np.flatnonzero(np.isfinite(log.train) & np.isfinite(log.val) & (log.train > 0) & (log.val > 0))
    if not len(both):
        return _check(cid, "skip", {}, "no row has both a finite positive train and val loss"), div
    i = int(both[0])
    recorded = float(log.val[i] / log.train[i])
    values = {"at": float(log.x[i]), "val_over_train_recorded": recorded, "factor": None, "corresponds_to": None}
    corrected = recorded * div["train"] / div["val"]
    where = f"at {log.x_name} {log.x[i]:g} val/train = {log.val[i]:.4g}/{log.train[i]:.4g} = {recorded:.3g}"
    erratic = [n for n, c in (("train", log.train), ("val", log.val)) if _largest_rise(c[~np.isnan(c)]) > JUMP]
    if erratic and abs(math.log(corrected)) > math.log(SCALE_RATIO):
        values["val_over_train_corrected"] = corrected
        return (_check(cid, "warn", values,
                       f"{where}, but {' and '.join(erratic)} {'jumps' if len(erratic) == 1 else 'jump'} by more than {100 * JUMP:.0f}% between points: a curve this "
                       "unstable cannot be compared with the other at one point, so no scale is claimed (see log.trend)",
                       "make training stable first (log.trend), then compare train and val"), div)
    if abs(math.log(corrected)) > math.log(SCALE_RATIO):  # log.scale did not explain the gap: try the factors on it
        cands = [Factor(1 / f.value, "train: " + f.label) for f in _factors(options, options.train_size)]
        cands += [Factor(f.value, "val: " + f.label) for f in _factors(options, options.val_size)]
        match = explaining(corrected, cands)
        if not match:
            values["val_over_train_corrected"] = corrected
            return (_check(cid, "warn", values,
                           f"{where}: before any overfitting the two are close, and no factor of this loop explains a gap of {corrected:.3g}x",
                           "compute train and val loss with the same function: summed NLL / characters scored"), div)
        which = match[0].label.split(":", 1)[0]
        div[which] *= match[0].value if which == "val" else 1 / match[0].value
    corrected = recorded * div["train"] / div["val"]
    values["val_over_train_corrected"] = corrected
    factor = div["val"] / div["train"]
    values |= _corrected_curves(log, div)
    if abs(math.log(factor)) < 1e-9:
        return _check(cid, "ok", values, f"{where}: train and val on one scale"), div
    name = "train" if abs(math.log(div["train"])) >= abs(math.log(div["val"])) else "val"
    label = next((f.label for f in _factors(options, options.train_size if name == "train" else options.val_size)
                  if abs(math.log(f.value / div[name])) < 1e-9), f"{div[name]:.4g}")
    values |= {"factor": factor, "corresponds_to": f"{name}: {label}"}
    return (_check(cid, "fail", values,
                   f"{where}: train and val are on different scales, {factor:.4g}x apart ({name} {label}); put back per "
                   f"character they are {corrected:.3g}x apart",
                   "compute both curves the same way: the epoch's summed NLL over the characters it scored (or the sum of "
                   "batch means over len(loader)), never over len(training_set)"), div)


def _corrected_curves(log: TrainingLog, div: dict[str, float]) -> dict:
    out = {"x": _series(log.x), "train_recorded": _series(log.train), "train_corrected": _series(log.train / div["train"])}
    if log.val is not None:
        out |= {"val_recorded": _series(log.val), "val_corrected": _series(log.val / div["val"])}
    return out


def _smoothed(curve: np.ndarray) -> np.ndarray:
    """A long log of per-batch losses averaged over windows of n/10 points, so that batch-to-batch noise is
    not read as jumps; short logs (epochs) as they are."""
    n = len(curve)
    if n < SMOOTH_FROM:
        return curve
    w = n // 10
    return np.convolve(curve, np.ones(w) / w, mode="valid")


def _largest_rise(curve: np.ndarray) -> float:
    """The largest relative rise between consecutive (smoothed) points; inf when a value is not finite."""
    if len(curve) < 2:
        return 0.0
    if not np.isfinite(curve).all():
        return math.inf
    smooth = _smoothed(curve)
    return float(np.max(smooth[1:] / smooth[:-1]) - 1) if len(smooth) >= 2 else 0.0


def _shape(curve: np.ndarray, lnV: float, floor: float) -> tuple[str, str, dict, str]:
    """The trend of one per-character curve: (status, label, values, message)."""
    n = len(curve)
    values: dict = {"points": n}
    bad = np.flatnonzero(~np.isfinite(curve))
    if len(bad):
        return "fail", "diverging", values, f"not finite from point {int(bad[0]) + 1} of {n}"
    smooth = _smoothed(curve)  # (m,) m = n for short logs
    m, k = len(smooth), max(1, n // 5)
    first, end = float(smooth[0]), float(curve[-k:].mean())
    i_min = int(np.argmin(smooth))
    jumps = int((smooth[1:] > smooth[:-1] * (1 + JUMP)).sum())
    values |= {"first": first, "end": end, "min": float(smooth[i_min]), "min_at_point": i_min + 1, "jumps": jumps,
               "smoothed_over": n - m + 1}
    span = f"{first:.4g} -> {end:.4g}"
    if m >= 3 and (np.diff(smooth) > 0).all() and end > first * (1 + CURVE_FLAT):
        return "fail", "rising", values, f"rises at every one of {m - 1} steps of the log: {span}"
    if end > CURVE_DIVERGE * first:
        return "fail", "diverging", values, f"diverging: {span}"
    if end > ABOVE_UNIFORM * lnV:
        return ("fail", "unstable", values, f"ends at {end:.4g}, above ln V = {lnV:.3f} (what uniform guessing scores): "
                "the weights are worse than untrained")
    if jumps >= 2:
        return "warn", "unstable", values, f"jumps up by more than {100 * JUMP:.0f}% {jumps} times ({span})"
    if end > smooth[i_min] * (1 + CURVE_RISE) and i_min < m - k:
        return "warn", "rising", values, f"rose {100 * (end / smooth[i_min] - 1):.0f}% after its minimum {smooth[i_min]:.4g} ({span})"
    if (first - end) / first < CURVE_FLAT:
        if end >= UNIGRAM_FLAT * floor:
            return ("fail", "flat", values, f"flat at {end:.4g} nats/char, no better than character frequencies ({floor:.3f}): "
                    "a real plateau, nothing learned")
        return "warn", "flat", values, f"flat: {span} (less than {100 * CURVE_FLAT:.0f}% lower)"
    return "ok", "falling", values, f"falls {span}"


_TREND_ADVICE = {
    "diverging": "lower the learning rate (3-10x) and clip the gradient norm (e.g. torch.nn.utils.clip_grad_norm_(params, 1.0) "
                 "or rescale NumPy grads when their global norm exceeds 1)",
    "unstable": "lower the learning rate and clip the gradient norm before each update",
    "rising": "lower the learning rate, clip gradients, and check that the optimiser steps against the gradient (params -= lr * grad)",
    "flat": "check that the gradients reach the parameters and the update is applied (params change between epochs), that "
            "the hidden state is reset per sequence, and that the learning rate is not tiny",
    "cumulative": "reset the running loss at the start of every epoch (epoch_loss = 0.0 inside the epoch loop, before the batch loop)",
    "overfitting": "keep the weights of the best val epoch; use more text, a smaller model or dropout",
}


def check_trend(log: TrainingLog, div: dict[str, float], lnV: float, unigram: float | None) -> Check:
    """log.trend on the curves put back per character, plus the logged gradient norms."""
    cid = "log.trend"
    train = (log.train / div["train"])[~np.isnan(log.train)]  # rows without a train value left out
    if len(train) < 3:
        return _check(cid, "skip", {"points": len(train)}, "fewer than 3 training-loss points: no trend to judge")
    floor = unigram if unigram is not None else lnV
    status, label, values, msg = _shape(train, lnV, floor)
    values = {"train_trend": label, **{f"train_{k}": v for k, v in values.items()}, "floor": floor,
              "floor_is": "unigram entropy of --text" if unigram is not None else "ln V"}
    found = [(status, label, f"train {msg}")]
    if label == "rising" and (inc := _cumulative(train)) is not None:
        values |= {"train_trend": "cumulative", "train_per_epoch": [float(v) for v in inc]}
        label, found = "cumulative", [("fail", "cumulative", _cumulative_message("train", train, inc))]
    if div["train"] != 1.0 and label != "cumulative":
        rec = log.train[np.isfinite(log.train)]
        found[0] = (status, label, found[0][2] + f" per character (recorded {rec[0]:.4g} -> {rec[-1]:.4g}, the same shape "
                    f"{div['train']:.4g}x {'larger' if div['train'] > 1 else 'smaller'})")
    if log.val is not None:
        found += _val_trend(log, div, lnV, floor, values)
    found += _grad_trend(log, values)
    order = {"ok": 0, "warn": 1, "fail": 2}
    worst = max(found, key=lambda f: order[f[0]])
    bad = [f for f in found if f[0] != "ok"]
    if not bad:
        return _check(cid, "ok", values, "; ".join(f[2] for f in found) + ": learning")
    bad.sort(key=lambda f: -order[f[0]])
    advice = " ".join(dict.fromkeys(_TREND_ADVICE[f[1]] for f in bad if f[1] in _TREND_ADVICE))
    return _check(cid, worst[0], values, "; ".join(f[2] for f in bad), advice)


def _cumulative(curve: np.ndarray) -> np.ndarray | None:
    """The increments of a curve that is a running total never reset between points (each point the sum
    of every loss so far), or None. Such a total rises at every point by a similar or shrinking amount,
    starting with the first value itself: each increment 0.3 to 1.05 times the one before. A loss that
    really rises grows by small steps from a large first value, or by growing steps."""
    inc = np.diff(np.concatenate([[0.0], curve]))
    if len(inc) < 3 or not (inc > 0).all():
        return None
    ratios = inc[1:] / inc[:-1]
    return inc if ((ratios >= CUMULATIVE_MIN) & (ratios <= 1 + SMOOTH_RISE)).all() else None


def _cumulative_message(name: str, curve: np.ndarray, inc: np.ndarray) -> str:
    return (f"{name} rises at every point ({curve[0]:.4g} -> {curve[-1]:.4g}) by a shrinking amount that starts at the first "
            f"value itself: a running total never reset, each point the sum of all losses so far; per point it is "
            f"{inc[0]:.4g} -> {inc[-1]:.4g}, falling")


def _val_trend(log, div, lnV, floor, values) -> list[tuple[str, str, str]]:
    """The val curve's own trend, or overfitting: its end (the last fifth) 5% above its minimum while train
    kept falling."""
    rows = np.flatnonzero(~np.isnan(log.val))  # rows with a val value
    if len(rows) < 3:
        return []
    v = log.val[rows] / div["val"]
    status, label, vv, msg = _shape(v, lnV, floor)
    values |= {"val_trend": label, **{f"val_{k}": x for k, x in vv.items()}}
    if label == "rising" and (inc := _cumulative(v)) is not None:
        values |= {"val_trend": "cumulative", "val_per_epoch": [float(x) for x in inc]}
        return [("fail", "cumulative", _cumulative_message("val", v, inc))]
    if status == "fail" or not np.isfinite(v).all():
        return [(status, label, f"val {msg}")]
    k, j = max(1, len(v) // 5), int(np.argmin(v))
    t = log.train[rows] / div["train"]
    end_v, end_t = float(v[-k:].mean()), float(np.nanmean(t[-k:]))
    if j < len(v) - k and end_v > v[j] * (1 + OVERFIT_RISE) and end_t < t[j]:
        values["val_trend"] = "overfitting"
        return [("warn", "overfitting", f"val rose {100 * (end_v / v[j] - 1):.0f}% from its minimum {v[j]:.4g} at "
                 f"{log.x_name} {log.x[rows[j]]:g} while train kept falling: overfitting, not a bug")]
    return [(status, label, f"val {msg}")]


def _grad_trend(log, values) -> list[tuple[str, str, str]]:
    if log.grad_norm is None or not (~np.isnan(log.grad_norm)).any():
        return []
    gn = log.grad_norm[~np.isnan(log.grad_norm)]
    if not np.isfinite(gn).all():
        values["grad_norm_finite"] = False
        return [("fail", "diverging", "logged gradient norms are not finite: the gradients overflowed")]
    med, top = float(np.median(gn)), float(gn.max())
    values |= {"grad_norm_median": med, "grad_norm_max": top}
    if med > 0 and top > SPIKE_RATIO * med:
        return [("warn", "unstable", f"the gradient norm spikes to {top:.3g}, {top / med:.0f}x its median {med:.3g}")]
    return []


# ---------------------------------------------------------------------------------------------------
# the report


def diagnose_log(path, options: LogOptions) -> Diagnosis:
    """Read a training log and run log.scale, log.train_val_scale and log.trend on it."""
    t0 = time.perf_counter()
    log = read_log(path)
    V, unigram = _vocab(options)
    lnV = math.log(V)
    scale, factors = check_scale(log, lnV, options)
    tv, div = check_train_val(log, factors, options)
    trend = check_trend(log, div, lnV, unigram)
    subject = {"kind": "log", "log": log.path, "format": log.format, "rows": len(log.x), "x": log.x_name,
               "vocab_size": V, "ln_vocab": lnV, "unigram_entropy": unigram, "batch_size": options.batch_size,
               "seq_len": options.seq_len, "train_size": options.train_size, "val_size": options.val_size,
               "divisors": div, "curves": _corrected_curves(log, div)}
    report = Diagnosis(subject, [scale, tv, trend])
    report.seconds = time.perf_counter() - t0
    return report
