"""What kind of bug a failed `gradcheck --user` is, read from the measurements at T = 1, 2, 3, ... alone.

    findings(measures, vocab_size) -> [Finding(id, message, values)]

Layout-free: nothing here knows the user's gate order or cache layout, only which tensors are wrong at
which sequence length and how their gradients relate to the finite differences. In order of precedence:

    float32    the loss or gradients carry float32 precision though float64 went in (the rest is then noise)
    shape      a gradient shaped unlike its parameter
    scale      at every length, every gradient = k(T) x the truth, one k for all tensors; k named if it is
               T, 1/T, V, 1/V, T*V or 1/(T*V); when it fires, local and recurrent do not (it explains all)
    local      wrong at T = 1 (no later step exists to send anything back): named tensors; two exact
               signatures are told apart, a gradient that is 0 where the truth is not, and one that is
               non-zero where the loss does not depend on the tensor at T = 1 at all
    recurrent  every tensor right at T = 1, some wrong from T = 2 on
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.gradcheck.engine import REL_FLOOR

REL_TOL = 1e-5  # an element passes within this relative error (or the absolute tolerance): see usergrad


@dataclass
class Finding:
    id: str
    message: str
    values: dict


def errors(got: np.ndarray, want: np.ndarray, abs_tol: float) -> tuple[float, float, bool]:
    """max abs error, max rel error, and whether every element is within abs_tol or REL_TOL."""
    err = np.abs(got - want)
    rel = err / np.maximum(np.maximum(np.abs(got), np.abs(want)), REL_FLOOR)
    ok = (err <= abs_tol) | (rel <= REL_TOL)
    return (float(err.max(initial=0.0)), float(rel.max(initial=0.0)),
            bool(ok.all() and np.isfinite(got).all() and np.isfinite(want).all()))

# a loss computed in float64 is exactly representable in float32 with probability ~2^-29; float32's always is
F32_SHARE = 0.8  # of the non-integer values seen
F32_MIN_VALUES = 8


def findings(measures: dict, vocab: int) -> list:
    out = [f for f in (_float32(measures), _shape(measures)) if f is not None]
    if any(f.id == "float32" for f in out):
        return out  # finite differences of a float32 loss are rounding noise: no fingerprint is trustworthy
    scale = _scale(measures, vocab)
    if scale is not None:
        return out + [scale]
    return out + [f for f in (_local(measures), _recurrent(measures)) if f is not None]


def _f32_exact(values: np.ndarray) -> np.ndarray:
    """Which non-integer values survive a round trip through float32 unchanged."""
    values = values[np.isfinite(values) & (values != np.round(values))]
    return values.astype(np.float32).astype(np.float64) == values


def _float32(measures: dict):
    losses = np.concatenate([np.asarray(m.losses) for m in measures.values()])
    exact = _f32_exact(losses)
    loss_f32 = any(m.loss_dtype in ("float32", "float16", "bfloat16") for m in measures.values()) or (
        len(exact) >= F32_MIN_VALUES and exact.mean() >= F32_SHARE)
    m = measures[max(measures)]
    tensors = [n for n, g in m.full.items() if m.dtypes[n] in ("float32", "float16", "bfloat16")
               or (len(_f32_exact(g.reshape(-1))) >= 3 and _f32_exact(g.reshape(-1)).all())]
    if not loss_f32 and not tensors:
        return None
    parts = []
    if loss_f32:
        parts.append("your loss is computed in float32 (its values are exactly float32 numbers)")
    if tensors:
        parts.append(f"your gradients of {', '.join(tensors)} are float32")
    msg = (f"{' and '.join(parts)}, although the parameters went in as float64: somewhere your code computes in "
           "float32 (np.float32 arrays, torch's default dtype, .float()). Finite differences need float64 "
           "(float32 rounding, ~1e-7 of the loss, divided by eps = 1e-6 swamps the gradient), so nothing "
           "can be concluded: keep the dtype of the params you are given and run again.")
    return Finding("float32", msg, {"loss": bool(loss_f32), "tensors": tensors})


def _shape(measures: dict):
    bad = {}
    for m in measures.values():
        bad.update({n: {"got": got, "want": want} for n, (got, want) in m.bad_shapes.items()})
    if not bad:
        return None
    listed = "; ".join(f"{n} is {tuple(v['got'])}, its parameter {tuple(v['want'])}" for n, v in bad.items())
    return Finding("shape", f"gradients with the wrong shape: {listed}. A gradient must have its parameter's "
                   "shape (a (H, 1) column and an (H,) vector are different shapes); these were not compared.",
                   {"tensors": bad})


def _wrong(m) -> list[str]:
    return [n for n in m.user if not errors(m.user[n], m.fd[n], m.abs_tol)[2]]


# ---------------------------------------------------------------------------------------------- scale

_NAMED = {  # name -> k(T, V), and what it means
    "T": (lambda T, V: T, "the loss is a mean over time but the gradients are of the sum: divide the "
          "gradients by T too, or report the summed loss"),
    "1/T": (lambda T, V: 1 / T, "the loss is a sum over time but the gradients are of the mean (divided "
            "by T): make both sums, or both means"),
    "V": (lambda T, V: V, "the loss is divided by the vocabulary size V but the gradients are not: "
          "-np.mean(np.log(y_hat) * y) averages over the V entries of a one-hot row, of which one is "
          "non-zero; use -np.log(y_hat[target]) (or np.sum)"),
    "1/V": (lambda T, V: 1 / V, "the gradients are divided by the vocabulary size V but the loss is not"),
    "T*V": (lambda T, V: T * V, "the loss is divided by T and by V (np.mean over time and over a one-hot "
            "row) but the gradients by neither: use -np.log(y_hat[target]) summed over time"),
    "1/(T*V)": (lambda T, V: 1 / (T * V), "the gradients are divided by T and by V but the loss is not"),
    "-1": (lambda T, V: -1, "the gradients have the opposite sign of your loss's derivative (y - y_hat where "
           "y_hat - y is meant?): a descent step with them climbs the loss"),
}


def _scale(measures: dict, vocab: int):
    """One common factor k per length explains every tensor's gradient at every length."""
    factors = {}
    for T, m in measures.items():
        if m.bad_shapes or not m.user:
            return None
        u = np.concatenate(list(m.user.values()))
        d = np.concatenate([m.fd[n] for n in m.user])
        if not (d @ d) > 0:
            return None
        k = float(u @ d / (d @ d))  # least squares: u ~ k d
        if not np.isfinite(k) or k == 0:
            return None
        if any(not errors(m.user[n] / k, m.fd[n], m.abs_tol)[2] for n in m.user):
            return None  # some tensor is not just scaled
        factors[T] = k
    if all(abs(k - 1) <= REL_TOL for k in factors.values()):
        return None  # not a scale bug (the gradients are right, or wrong otherwise)
    longest = max(factors)
    shown = ", ".join(f"x{k:.4g} at T = {T}" for T, k in factors.items())
    for name, (fn, meaning) in _NAMED.items():
        if all(abs(k / fn(T, vocab) - 1) <= 1e-4 for T, k in factors.items()):
            msg = (f"every gradient is {name} times the derivative of your loss ({shown}; V = {vocab}): "
                   f"{meaning}. The directions are right; only the size is off.")
            return Finding("scale", msg, {"factor": factors[longest], "factors": _keys(factors), "matches": name})
    constant = all(abs(k / factors[longest] - 1) <= 1e-4 for k in factors.values())
    if constant:
        msg = (f"every gradient is {factors[longest]:.6g} times the derivative of your loss, at every length "
               f"({shown}): one constant factor between the loss you return and the one you differentiate.")
    else:
        msg = (f"at each length every gradient is one common multiple of the derivative of your loss ({shown}), "
               "by a factor charrnn does not recognise: the loss you return and the one you differentiate "
               "are normalised differently.")
    return Finding("scale", msg, {"factor": factors[longest], "factors": _keys(factors), "matches": None})


def _keys(factors: dict) -> dict:
    return {str(T): k for T, k in factors.items()}  # JSON object keys are strings


# ---------------------------------------------------------------------------------------- local / recurrent


def _local(measures: dict):
    if 1 not in measures:
        return None
    m = measures[1]
    wrong = _wrong(m)
    if not wrong:
        return None
    tol = m.abs_tol
    zero = [n for n in wrong if np.abs(m.full[n]).max(initial=0) <= tol < np.abs(m.fd[n]).max(initial=0)]
    spurious = [n for n in wrong if np.abs(m.fd[n]).max(initial=0) <= tol < np.abs(m.user[n]).max(initial=0)]
    later = {n: min(T for T, mm in measures.items() if n in _wrong(mm))
             for n in sorted({n for mm in measures.values() for n in _wrong(mm)} - set(wrong))}
    msg = (f"already wrong at T = 1: {', '.join(wrong)}. With one step nothing flows back through time, so the "
           "error is in a per-step derivative: the lines of your backward that compute these tensors' "
           "gradients (a gate's nonlinearity: sigma'(x) = sigma(1 - sigma) with sigma the stored gate, "
           "tanh'(x) = 1 - tanh(x)^2; the output layer; or the value they are multiplied by).")
    if zero:
        msg += (f" Your gradient of {', '.join(zero)} is exactly 0 at T = 1 where it should not be: it is "
                "multiplied by something that is zero at the first step, such as the initial state h_s[0] or "
                "C_s[0] (with the initial state pushed first, h_s[t+1] is h_t and C_s[t+1] is C_t).")
    if spurious:
        msg += (f" Your gradient of {', '.join(spurious)} is non-zero at T = 1 although your loss does not "
                "depend on them there: your backward reads a step that does not exist, such as C[t-1] at "
                "t = 0, which NumPy wraps around to the last entry (C_prev is C[t] when C_s starts with the "
                "initial state).")
    if later:
        msg += (" Wrong from a longer length on: "
                + ", ".join(f"{n} (T = {T})" for n, T in later.items())
                + "; fix the T = 1 error first, what flows back through time may carry it.")
    return Finding("local", msg, {"tensors": wrong, "zero_at_T1": zero, "nonzero_where_none": spurious,
                                  "wrong_later": later})


def _recurrent(measures: dict):
    if 1 in measures and _wrong(measures[1]):
        return None  # local
    first = {}
    for T, m in measures.items():
        for n in _wrong(m):
            first.setdefault(n, T)
    if not first:
        return None
    T0 = min(first.values())
    listed = ", ".join(f"{n} (T = {T})" for n, T in first.items())
    # T = 1 from a zero state cannot see a per-step derivative that multiplies the previous state (df = dC *
    # C_prev * f(1 - f) is 0 there whatever f' is), so that one is named beside what flows back through time
    msg = (f"right at T = 1, wrong from T = {T0} on: {listed}. At T = 1 nothing flows back from a later step, so "
           "the error is in what flows back through time: dh_next / dC_next (what is carried to the previous "
           "step, e.g. dC_next = dC * f), or which step's h or C the backward reads (with the initial state "
           "pushed first, h_s[t+1] is h_t and C_prev is C[t]); in PyTorch, a .detach() or .data on the state "
           "inside the sequence. Or it is a per-step derivative that T = 1 cannot test because it is multiplied "
           "by the zero initial state: the forget gate's, df = dC * C_prev * f * (1 - f).")
    return Finding("recurrent", msg, {"from_T": T0, "tensors": first})
