"""Hidden-state checks of `charrnn diagnose`: is the state per row, per call, and used as trained?

    state.shape   state.row_independence   state.call_independence   state.reset_vs_carry   state.warmup
    state.memory_horizon

State kept between calls (self.h) also moves every row of a batch and makes the loss depend on how
windows are batched, and a returned state in another layout than begin_state's (one row's state, a
mean over rows) is carried into every later call, so `state.shape` and `state.call_independence` have the
lowest headline rank: they name the root cause when the row, carry and gradient checks fail with them.
Advice speaks in the user's own layout (`Context.begin_layout`: "a tensor (B, 32)").
"""

from __future__ import annotations


import torch

from charrnn.diagnose import measure as m
from charrnn.diagnose import measure_state as ms
from charrnn.diagnose.context import CALL_TOL, Context, Verdict, at_positions, check, paired, worst

ROW_TOL = 1e-6  # max |logit change| in other rows (relative to max(1, |logits|))
SIGNIFICANT = 3.0  # a paired difference counts when it exceeds 3 standard errors ...
MATERIAL = 0.005  # ... and 0.5% of the loss
WARMUP_TOL_NATS = 0.01  # warm-up ends where the reset loss is within max(0.01 nats, 1%) of the carried loss
WARMUP_TOL_REL = 0.01
KL_AGREE = 1e-3  # nats: two next-character distributions agree below this


def _material(mean: float, se: float, ref: float) -> bool:
    return abs(mean) > SIGNIFICANT * se and abs(mean) > MATERIAL * ref


@check("state.shape", cause=0)
def check_state_shape(ctx: Context) -> Verdict:
    res = ctx.state_layout
    if res["same_layout"]:
        return Verdict("ok", res, f"forward returns the state in begin_state's layout: {res['returned']} for a batch of "
                       f"{res['rows']}", "nothing to do")
    return Verdict("fail", res,
                   f"forward returns the state in another layout than begin_state({res['rows']}): "
                   f"{'; '.join(res['differences'])}. The next call receives it, so every row continues from whatever "
                   "this state holds (one row's past broadcast to all, or a mean over rows)",
                   f"return the state exactly as computed, in the layout of your begin_state(B): {res['begin_state_layout']} "
                   "(no H[-1], H[0] or H.mean(0) over the batch; H[-1] is the top layer only for nn.RNN's (layers, B, H) "
                   "state)")


@check("state.row_independence", cause=1, symptom_of=("state.shape",))
def check_row_independence(ctx: Context) -> Verdict:
    res = ms.row_independence(ctx.model, ctx.ids, ctx.device, ctx.gen(5))
    tol = ROW_TOL * max(1.0, res["logit_scale"])
    values = res | {"tolerance": tol}
    shared = [i for i, d in enumerate(res["state_batch_dims"]) if d is None]
    shapes = [tuple(t.shape) for t in m.state_leaves(m.begin(ctx.model, 3, ctx.device))]
    values["state_shapes_batch_3"] = shapes
    rows, r = res["rows"], res["worst_row"]
    which = f"row {r} of {rows}" + (" (the last)" if r == rows - 1 else " (the first)" if r == 0 else "")
    tried = ", ".join(map(str, res["perturbed_rows"]))
    if res["max_diff_same_input_again"] > tol or ctx.keeps_state:
        return Verdict("skip", values,
                       f"not judged: the same input and state gave different logits on a second run (up to "
                       f"{res['max_diff_same_input_again']:.3g}) because the model keeps state between calls "
                       "(state.call_independence), which moves every row; fix that first and run diagnose again",
                       "see state.call_independence")
    if res["max_diff_within_call"] > tol:
        return Verdict("fail", values,
                       f"changing the input and state of {which} moved the logits of the other rows within the same call by up to "
                       f"{res['max_diff_within_call']:.3g}: forward mixes the sequences of a batch",
                       "keep the batch dimension separate in every operation of forward: no mean, norm or statistic over "
                       "the batch, no reshape that moves values between rows (d2l: transpose X to time-major, not the state)")
    if res["max_diff_through_state"] > tol:
        return Verdict("fail", values,
                       f"changing {which} did not move the other rows during the call, but moved them by up to "
                       f"{res['max_diff_through_state']:.3g} in the next call, fed the returned state: the state forward "
                       "returns mixes the rows (one row's state given to all, pooled or reshaped across the batch)",
                       f"return the state with one row per sequence, exactly as computed, in the layout of your "
                       f"begin_state(B): {ctx.begin_layout}; no H[-1], H[0], mean or reshape over the batch")
    if shared:
        return Verdict("warn", values,
                       f"begin_state(3) returns state tensor(s) {', '.join(str(shapes[i]) for i in shared)} with no batch dimension: "
                       "one initial state is broadcast to every row (harmless only while it is zeros and never carried)",
                       f"give each sequence its own row: your begin_state(B) returns {ctx.begin_layout}; add a batch "
                       "dimension of size B")
    return Verdict("ok", values, f"rows are independent: changing rows {tried} one at a time moved the other rows by "
                   f"{res['max_diff_other_rows']:.1e} (the changed row itself by at least {res['max_diff_perturbed_row']:.3g})",
                   "nothing to do")


@check("state.call_independence", cause=0)
def check_call_independence(ctx: Context) -> Verdict:
    res = ctx.call_independence
    tol = CALL_TOL * max(1.0, res["logit_scale"])
    values = res | {"tolerance": tol}
    bad_fresh = res["max_diff_fresh_state"] > tol
    bad_none = res["max_diff_state_none"] is not None and res["max_diff_state_none"] > tol
    if bad_fresh or bad_none:
        how = "from a fresh begin_state" if bad_fresh else "with state=None"
        d = res["max_diff_fresh_state"] if bad_fresh else res["max_diff_state_none"]
        return Verdict("fail", values,
                       f"state kept between calls: the same input {how} gives different logits after another call (up to "
                       f"{d:.3g}), so every sequence is contaminated by the previous one",
                       "do not store the hidden state on the model (self.h): take it as an argument and return it; a None "
                       "state must mean zeros")
    return Verdict("ok", values, "two calls on the same input from a fresh state give identical logits: no state is kept "
                   "between calls", "nothing to do")


@check("state.reset_vs_carry", symptom_of=("state.shape", "state.call_independence"))
def check_reset_vs_carry(ctx: Context) -> Verdict:
    scored = ctx.reset_vs_carry
    reset, carry, shuf = (scored[k].mean(dim=1) for k in ("reset", "carry", "shuffled"))
    ref = float(reset.mean())
    gain_c, se_c = paired(reset - carry)
    gain_s, se_s = paired(reset - shuf)
    tc = ctx.subject.train_config
    values = {"seq_len": scored["seq_len"], "windows": scored["windows"], "loss_reset": ref, "loss_carry": float(carry.mean()),
              "loss_carry_shuffled": float(shuf.mean()), "gain_carry": gain_c, "gain_carry_se": se_c,
              "gain_shuffled": gain_s, "gain_shuffled_se": se_s}
    carry_helps = gain_c > 0 and _material(gain_c, se_c, ref)
    carry_hurts = gain_c < 0 and _material(gain_c, se_c, ref)
    shuf_beats = gain_s > 0 and _material(gain_s, se_s, ref)
    nums = (f"reset {ref:.4f}, carried {float(carry.mean()):.4f}, carried from unrelated windows {float(shuf.mean()):.4f} "
            f"nats/char over {scored['windows']} windows of {scored['seq_len']}")
    findings: list[tuple[str, str, str]] = []
    policy = None
    if tc is not None:
        policy = tc.state_policy()
        values |= {"sampling": tc.sampling, "state_policy": policy}
        if tc.sampling == "random" and policy == "carry":
            findings.append(("warn", f"trained on random windows with carried state: each window began from the state of unrelated "
                             f"text{' (and here such a state beats a reset by %.3f nats/char: the model learned to expect it)' % gain_s if shuf_beats else ''}",
                             "train with --sampling random --state reset, or --sampling sequential --state carry"))
        elif tc.sampling == "sequential" and policy == "reset":
            findings.append(("warn", f"trained on sequential streams with the state reset every batch: carrying it would have "
                             f"{'lowered' if gain_c > 0 else 'changed'} the loss by {abs(gain_c):.3f} nats/char here",
                             "use --state carry (the default for sequential sampling)"))
    if carry_hurts:
        findings.append(("warn", f"carrying the state across contiguous windows raises the loss by {-gain_c:.3f} nats/char: the carried "
                         "state drifts where the model was not trained (evaluation and sampling carry it over long text)",
                         "train with carried state (--sampling sequential) or keep windows short and reset at evaluation"))
    elif policy == "carry" and not carry_helps:
        findings.append(("warn", f"carrying the state across contiguous windows helps little ({gain_c:+.4f} ± {se_c:.4f} nats/char, "
                         f"under {100 * MATERIAL:.1f}% of the loss) although the model was trained to carry it: it hardly uses "
                         "context beyond one window",
                         "check that the state is really passed from batch to batch in training; see state.memory_horizon"))
    if shuf_beats and policy != "carry":
        findings.append(("warn", f"a state left by unrelated text beats a fresh begin_state by {gain_s:.3f} nats/char: the model has "
                         "learned to expect a non-zero state, so zero is out of distribution for it",
                         "warm the state up before sampling (see state.warmup); reset more often in training if this matters"))
    if not findings:
        if policy is None:
            tail = "carrying contiguous state " + ("helps" if carry_helps else "changes little") + ", an unrelated state does not beat a reset"
        else:
            tail = f"consistent with training (--sampling {tc.sampling}, state {policy})"
        if shuf_beats:  # trained to carry: a zero state is rare in training (each epoch's first batch)
            tail += (f"; even an unrelated state beats a fresh zero state by {gain_s:.3f}, as expected of a model trained "
                     "with carried state: warm up before sampling (state.warmup)")
        return Verdict("ok", values, f"{nums}: {tail}", "nothing to do")
    status = worst([f[0] for f in findings])
    return Verdict(status, values, nums + ": " + "; ".join(f[1] for f in findings),
                  "; ".join(dict.fromkeys(f[2] for f in findings)))


@check("state.warmup", symptom_of=("state.shape", "state.call_independence"))
def check_warmup(ctx: Context) -> Verdict:
    profile = ctx.warmup_profile
    gap, carried = profile["gap"], profile["carried_loss"]
    L = profile["length"]
    tol = max(WARMUP_TOL_NATS, WARMUP_TOL_REL * float(carried.mean()))
    tail_max = torch.flip(torch.cummax(torch.flip(gap, [0]), 0).values, [0])  # max of gap over [t, L)
    ok_from = torch.nonzero(tail_max <= tol)
    warm = int(ok_from[0]) if len(ok_from) else None  # characters consumed before the loss is within tol
    T = ctx.seq_len
    excess = float(gap[: min(T, L)].mean())
    values = {"length": L, "windows": profile["windows"], "tolerance": tol, "warmup_chars": warm,
              "excess_in_first_seq_len": excess, "seq_len": T, "gap_at_position": at_positions(gap),
              "carried_loss": float(carried.mean())}
    if warm is None:
        return Verdict("warn", values,
                      f"after a reset the loss is still {float(gap[-1]):.3f} nats/char above its carried-state loss at position {L}: "
                      "the model never recovers within the profiled window",
                      f"warm up with more than {L} characters before sampling; prefer carried state (--sampling sequential)")
    msg = (f"after a reset the model needs {warm} character{'s' if warm != 1 else ''} of prefix to come within {tol:.3f} nats/char "
           f"of its carried-state loss (excess over the first {min(T, L)}: {excess:.3f} nats/char)")
    policy = ctx.subject.train_config.state_policy() if ctx.subject.train_config else None
    if policy == "reset" and warm > T / 2:
        return Verdict("warn", values, msg + f"; with the state reset every {T} characters most of each window is warm-up",
                      f"raise --seq-len well above {warm} or carry state (--sampling sequential)")
    return Verdict("ok", values, msg, f"warm the state up with at least {max(warm, 1)} characters before sampling; "
                  f"keep --seq-len well above {max(warm, 1)}")


@check("state.memory_horizon", symptom_of=("state.shape", "state.call_independence"))
def check_memory_horizon(ctx: Context) -> Verdict:
    profile = ctx.warmup_profile
    kl = profile["kl"]
    L = profile["length"]
    tail_max = torch.flip(torch.cummax(torch.flip(kl, [0]), 0).values, [0])
    agree = torch.nonzero(tail_max < KL_AGREE)
    horizon = int(agree[0]) if len(agree) else None
    values = {"length": L, "kl_threshold": KL_AGREE, "horizon_chars": horizon, "kl_at_position": at_positions(kl)}
    if horizon == 0:
        return Verdict("warn", values,
                      "the output is the same whatever the initial state: the model ignores its state (no memory at all)",
                      "check that each step's state feeds the next step and the output; see loss.baselines")
    if horizon is None:
        k0, kL = float(kl[0]), float(kl[-1])
        if kL >= 0.5 * k0:  # no decay at all: the input never overwrites the initial state
            return Verdict("warn", values,
                          f"the output depends on the initial state as much after {L} characters as at the start (KL {k0:.2g} -> "
                          f"{kL:.2g} nats): the input never overwrites the state (it is not updated from the input, or the "
                          "dynamics are chaotic)", "check that each step computes the new state from the input and the "
                          "previous state and that the output reads the new state; see grad.bptt_norms")
        return Verdict("warn", values,
                      f"two initial states still give different outputs after {L} characters (KL {k0:.2g} -> {kL:.2g} nats): the "
                      "state never forgets its start, a sign of chaotic (exploding) dynamics",
                      "see grad.bptt_norms and grad.spectral_radius; lower --lr, keep --clip on")
    return Verdict("ok", values,
                  f"outputs from two different initial states agree (KL < {KL_AGREE:g} nats) after {horizon} characters: "
                  f"the state carries about {horizon} characters of context", "nothing to do")

