"""Gradient-health checks of `charrnn diagnose`: how dL/dh behaves through time, the recurrent
matrices, saturated units and the recorded gradient norms.

    grad.bptt_norms   grad.spectral_radius   grad.saturation   grad.training_record
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from charrnn.diagnose import measure_grad as mg
from charrnn.diagnose.context import Context, Verdict, at_positions, check, worst

GRAD_EXPLODE = 1e3  # ||dL/dh|| grows by more than this over the window: exploding (fail) ...
GRAD_FACTOR = 1.02  # ... or by a per-step factor above this (with growth past GRAD_GROW): geometric growth
GRAD_GROW = 10.0  # ||dL/dh|| grows by more than this: growing (warn)
GRAD_VANISH = 1e-3  # ||dL/dh|| below this fraction of its value at the loss ...
GRAD_VANISH_STEPS = 10  # ... within this many steps: vanishing (warn)
RADIUS_WARN = 1.0  # a tanh RNN's W_hh with spectral radius above 1 can expand along its top eigenvector
SATURATION_WARN = 0.5  # more than half of the tanh units past +-0.99
CLIPPED_WARN = 0.5  # more than half of the late steps clipped
SPIKE_RATIO = 100.0  # a recorded grad norm 100x the median
ADAM_LR_HIGH = 1e-2


@check("grad.bptt_norms", needs_torch=True, symptom_of=("state.shape", "state.call_independence"))
def check_bptt_norms(ctx: Context) -> Verdict:
    layout = ctx.state_layout
    if not layout["same_layout"]:
        return Verdict("skip", {"differences": layout["differences"]},
                       "not measured: ||dL/dh_t|| is read row by row from the state forward returns, which is not in "
                       f"begin_state's layout ({'; '.join(layout['differences'])}; state.shape)", "fix state.shape first")
    res = ctx.gradient_norms
    norms = res["norms"]
    values: dict[str, Any] = {"length": res["length"], "rows": res["rows"]}
    if not res["finite"]:
        return Verdict("fail", values, "dL/dh is not finite within the window: gradients overflow",
                      "keep --clip on, lower --lr, check for exploding recurrent weights (grad.spectral_radius)")
    g0 = float(norms[0])
    if not bool(res["reached"][1:].any()) or g0 == 0:
        return Verdict("warn", values | {"norm_at_loss": g0},
                      "no gradient reaches the state of earlier steps: the loss does not depend on the past state",
                      "check that each step's new state is computed from the previous one and returned")
    ratio = norms / g0
    d = torch.arange(len(ratio), dtype=torch.float64)
    ok = ratio > 0
    slope = float(np.polyfit(d[ok].numpy(), ratio[ok].log().numpy(), 1)[0]) if int(ok.sum()) > 2 else float("-inf")
    factor = math.exp(slope)
    growth = float(ratio.max())
    below = torch.nonzero(ratio < GRAD_VANISH)
    vanish = int(below[0]) if len(below) else None
    values |= {"norm_at_loss": g0, "per_step_factor": factor, "max_growth": growth, "vanish_distance": vanish,
               "ratio_at_distance": at_positions(ratio[1:]) if len(ratio) > 1 else {}}
    far = float(ratio[-1])
    nums = (f"||dL/dh|| at distance {len(ratio) - 1} is {far:.1e}x its value at the loss (per-step factor {factor:.3f}")
    if growth > GRAD_EXPLODE or (factor > GRAD_FACTOR and growth > GRAD_GROW):
        return Verdict("fail", values, f"{nums}, up to {growth:.2g}x): gradients explode through time",
                      "clip gradients (--clip 1.0), lower --lr, and shrink the recurrent weights (see grad.spectral_radius)")
    if growth > GRAD_GROW:
        return Verdict("warn", values, f"{nums}, up to {growth:.2g}x): gradients grow through time, close to exploding",
                      "keep --clip on and watch grad.training_record for spikes")
    if vanish is not None and vanish <= GRAD_VANISH_STEPS:
        return Verdict("warn", values, f"{nums}): gradients vanish within {vanish} steps, so training cannot learn "
                      "dependencies longer than that", "if longer context matters: a gated cell (LSTM/GRU, forget-gate bias near 1), "
                      "W_hh initialised near orthogonal, and more training, which usually lengthens the reach")
    reach = f"falls below {GRAD_VANISH:g}x after {vanish} steps" if vanish is not None else f"stays above {GRAD_VANISH:g}x over the window"
    return Verdict("ok", values, f"{nums}): it {reach}; neither exploding nor vanishing fast", "nothing to do")


@check("grad.spectral_radius")
def check_spectral_radius(ctx: Context) -> Verdict:
    """From the weights alone; the measured growth through time (grad.bptt_norms) judges a radius above 1
    when it could be measured, and is reported as missing when it could not."""
    mats, kind = mg.recurrent_matrices(ctx.model)
    if not mats:
        return Verdict("skip", {}, "no recurrent matrix found (a square 2-D parameter named like *hh*, e.g. W_hh, or as "
                       "wide as the state)")
    radii = mg.spectral_radii(mats)
    values: dict[str, Any] = {"kind": kind, "matrices": radii}
    top_name = max(radii, key=lambda k: radii[k]["spectral_radius"])
    top = radii[top_name]["spectral_radius"]
    values["max_spectral_radius"] = top
    listing = ", ".join(f"{k} {v['spectral_radius']:.2f}" for k, v in radii.items())
    growth, why_not = _bptt_growth(ctx)
    values["bptt_max_growth"] = growth
    if growth is None:  # the radius alone, without the measured growth that judges it
        expands = "can expand along its top eigenvector" if top > RADIUS_WARN else "is contracting"
        return Verdict("ok", values, f"largest spectral radius {top:.2f} ({listing}): the linearised recurrence {expands}; "
                       f"whether gradients grow was not measured ({why_not})", "nothing to do")
    if kind in ("rnn", "user") and top > RADIUS_WARN and growth > 1.0:
        return Verdict("warn", values,
                      f"spectral radius {top:.2f} > 1 ({top_name}): the linearised recurrence expands along its top eigenvector, "
                      "so gradients can explode unless tanh saturation holds them back (see grad.bptt_norms)",
                      f"keep --clip on; if grad.bptt_norms grows, lower --lr or re-initialise {top_name} with spectral radius below 1")
    if kind in ("rnn", "user") and top > RADIUS_WARN:
        return Verdict("ok", values, f"spectral radius {top:.2f} > 1 ({top_name}), but the measured gradients do not grow "
                      "through time (grad.bptt_norms): tanh saturation holds the expansion back", "nothing to do")
    if kind in ("rnn", "user"):
        sn = max(v["spectral_norm"] for v in radii.values())
        tail = " and norm < 1, so gradients through a tanh recurrence must vanish geometrically" if sn < 1 else ""
        return Verdict("ok", values, f"spectral radius {top:.2f} <= 1{tail} ({listing})", "nothing to do" if not tail else
                      "if long dependencies matter, an LSTM or GRU keeps gradients alive")
    return Verdict("ok", values, f"largest spectral radius {top:.2f} ({top_name}); gates bound how much of it acts on the state "
                  f"({listing})", "nothing to do")


def _bptt_growth(ctx: Context) -> tuple[float | None, str]:
    """The largest growth of ||dL/dh|| through time, or None and why it is not available."""
    if ctx.is_numpy:
        return None, "it needs a PyTorch model: grad.bptt_norms"
    try:
        if not ctx.state_layout["same_layout"]:
            return None, "the returned state is not in begin_state's layout: state.shape"
        norms = ctx.gradient_norms["norms"]
    except Exception as e:  # reported, and blamed, by grad.bptt_norms itself
        return None, f"the measurement raised {type(e).__name__}: see grad.bptt_norms"
    return (float(norms.max() / norms[0]) if float(norms[0]) > 0 else 0.0), ""


@check("grad.saturation", symptom_of=("state.shape", "state.call_independence"))
def check_saturation(ctx: Context) -> Verdict:
    res = mg.saturation(ctx.model, ctx.ids, ctx.device)
    shares = {k: v for k, v in res["shares"].items() if v is not None}
    values = res
    # The units whose slope every gradient through time passes: a tanh RNN's h, an LSTM's cell input g,
    # a GRU's candidate n (or a user model's state). An LSTM's tanh(c) only gates the output: reported, not judged.
    tanh = {k: v for k, v in shares.items() if k in ("h (tanh)", "cell input g (tanh)", "candidate n (tanh)", "state |h|>0.99")}
    listing = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    if not tanh:
        return Verdict("skip", values, "no state values to measure")
    worst_name = max(tanh, key=tanh.get)
    worst = tanh[worst_name]
    proxy = " (taking the state as a tanh output)" if res["kind"] == "user" else ""
    if worst > SATURATION_WARN:
        return Verdict("warn", values,
                      f"{100 * worst:.0f}% of {worst_name} units are saturated{proxy}: they pass almost no gradient ({listing})",
                      "lower --lr, clip gradients, scale down the recurrent weights or inputs")
    return Verdict("ok", values, f"saturated share: {listing}{proxy}", "nothing to do")


@check("grad.training_record")
def check_training_record(ctx: Context) -> Verdict:
    tc = ctx.subject.train_config
    if ctx.subject.metrics is None or tc is None:
        why = "a model from --model-factory has no training record" if ctx.subject.ckpt is None else "no metrics.jsonl or training config recorded"
        return Verdict("skip", {}, f"no recorded gradient norms: {why}")
    logs = [e for e in ctx.subject.metrics if e.get("event") == "log" and e.get("grad_norm") is not None]
    values: dict[str, Any] = {"clip": tc.clip, "optimizer": tc.optimizer, "lr": tc.lr, "schedule": tc.schedule, "log_points": len(logs)}
    findings: list[tuple[str, str, str]] = []
    if logs:
        gn = np.array([float(e["grad_norm"]) for e in logs])
        clipped = np.array([float(e.get("clipped", 0.0)) for e in logs])
        late = clipped[len(clipped) // 2:]
        finite = np.isfinite(gn)
        med = float(np.median(gn[finite])) if finite.any() else float("nan")
        values |= {"grad_norm_median": med, "grad_norm_max": float(np.max(gn[finite])) if finite.any() else None,
                   "grad_norm_first": float(gn[0]), "grad_norm_last": float(gn[-1]),
                   "clipped_frac": float(clipped.mean()), "clipped_frac_late": float(late.mean()),
                   "lr_first": float(logs[0].get("lr", tc.lr)), "lr_last": float(logs[-1].get("lr", tc.lr))}
        if not finite.all():
            findings.append(("fail", "recorded gradient norms are not finite: the gradients overflowed",
                             "lower --lr and keep --clip on"))
        elif med > 0 and float(np.max(gn)) > SPIKE_RATIO * med:
            findings.append(("warn" if tc.clip > 0 else "fail",
                             f"gradient norm spikes to {float(np.max(gn)):.3g}, {float(np.max(gn)) / med:.0f}x its median {med:.3g}"
                             + ("" if tc.clip > 0 else ", with no clipping to stop them"),
                             "keep --clip 1.0 on and lower --lr"))
        if tc.clip > 0 and late.mean() > CLIPPED_WARN:
            findings.append(("warn", f"{100 * late.mean():.0f}% of the steps in the second half were clipped (median norm {med:.3g} vs "
                             f"--clip {tc.clip:g}): " + ("with SGD the step size is set by the clip, not the learning rate"
                                                         if tc.optimizer == "sgd" else "the learning rate may be too high"),
                             "lower --lr until clipping is occasional, or raise --clip"))
    if tc.clip == 0:
        findings.append(("warn", "trained without gradient clipping (--clip 0): one exploding step can undo training",
                         "use --clip 1.0"))
    if tc.optimizer in ("adam", "adamw") and tc.lr > ADAM_LR_HIGH:
        findings.append(("warn", f"--lr {tc.lr:g} is high for Adam on a character RNN (usual: 1e-3 to 3e-3)",
                         "lower --lr to 2e-3"))
    if not findings:
        msg = f"clip {tc.clip:g}, {tc.optimizer} lr {tc.lr:g}"
        if logs:
            msg += f"; grad norm median {values['grad_norm_median']:.3g}, max {values['grad_norm_max']:.3g}; {100 * values['clipped_frac']:.0f}% of steps clipped"
        return Verdict("ok", values, msg, "nothing to do")
    status = worst([f[0] for f in findings])
    return Verdict(status, values, "; ".join(f[1] for f in findings), "; ".join(dict.fromkeys(f[2] for f in findings)))

