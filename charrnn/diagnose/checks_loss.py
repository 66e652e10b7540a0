"""Loss-normalisation checks of `charrnn diagnose`: is the reported number a per-character loss, and is
the model better than the baselines a flat curve is measured against?

    loss.recorded_match   loss.batch_invariance   loss.baselines   loss.curves   loss.worked_example
    loss.trained_horizon
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from charrnn.diagnose import measure as m
from charrnn.diagnose.context import Context, Verdict, check, worst
from charrnn.training.evaluate import char_nll, perplexity
from charrnn.analysis.ngram import YARDSTICK_MARGIN, YARDSTICK_ORDER, KneserNey

RECORDED_OK = 1e-3  # relative difference between recomputed and recorded val loss: ok below ...
RECORDED_FAIL = 0.02  # ... fail above (between: warn; another device or precision can explain it)
PARTITION_TOL = 1e-5  # relative: batch sizes 1, 7 and full must give the same per-character loss
UNIGRAM_WARN = 0.05  # a loss less than 5% below the unigram entropy has learned little beyond it
CURVE_FLAT = 0.02  # training loss fell by less than 2% from the first log to the end: flat
CURVE_RISE = 0.10  # the end of training is 10% above the minimum: rising
CURVE_DIVERGE = 1.5  # the end of training is 1.5x the first logged loss (or not finite): diverging
FIRST_LOSS_MAX = 2.0  # an untrained model scores about ln V per character: a first log above 2 ln V is not per character
SCALE_RATIO = 2.0  # at the first evaluation train and val must agree within this factor
OVERFIT_RISE = 0.05  # val 5% above its minimum while train kept falling
HORIZON_RISE = 0.05  # past the trained horizon the loss is 5% (and ...
HORIZON_NATS = 0.01  # ... 0.01 nats/char) above its level within it: the model degrades past it


def _recorded_part(ckpt: dict, metrics, step) -> int:
    """How many val characters the recorded loss is of when it is of a part of the split (training scores a
    fixed part, --eval-chars, at every evaluation but the last); 0 when it is of the whole split. The
    checkpoint says so (val_scope, val_chars); older checkpoints, through metrics.jsonl's eval at their step."""
    if ckpt.get("val_scope"):
        return int(ckpt.get("val_chars") or 0) if ckpt["val_scope"] == "part" else 0
    for e in metrics or []:
        if e.get("event") == "eval" and e.get("step") == step and e.get("val_scope") == "part":
            return int(e.get("val_chars") or 0)
    return 0


@check("loss.recorded_match", cause=3)
def check_recorded(ctx: Context) -> Verdict:
    s = ctx.subject
    if s.ckpt is None:
        return Verdict("skip", {}, "no recorded val loss to compare with: a model from --model-factory has no training record")
    step = (s.ckpt.get("position") or {}).get("step")
    recorded = s.ckpt.get("val_loss")
    logged = None
    for e in s.metrics or []:
        if e.get("event") == "eval" and e.get("step") == step and e.get("val_loss") is not None:
            logged = float(e["val_loss"])
    if recorded is None and logged is None:
        return Verdict("skip", {"step": step}, "the checkpoint records no val loss (the run had no val split)")
    reference = float(recorded if recorded is not None else logged)
    if s.val_ids is None:
        return Verdict("skip", {"recorded": reference}, f"cannot recompute the val loss: {s.val_note}")
    ids = s.val_ids
    n = len(ids) - 1
    chunk = max(s.train_config.seq_len, 128) if s.train_config else 256
    cap = 2 * ctx.options.max_chars  # beyond this, a stratified sample of the split
    values: dict[str, Any] = {"recorded_checkpoint": recorded, "recorded_metrics": logged, "step": step, "val_chars": n}
    recorded_chars = (s.ckpt.get("corpus") or {}).get("val_chars")
    part = _recorded_part(s.ckpt, s.metrics, step)
    if part and part < n:  # like with like: the recorded loss is of the fixed part training scored
        from charrnn.training.evaluate import evaluate_ids

        recomputed = evaluate_ids(ctx.model, ids, ctx.device, chunk=chunk, max_chars=part).loss
        se, mode = 0.0, f"the part of the val split training scored, {part:,} characters"
    elif n <= cap:
        # exactly what training recorded: the whole val split through charrnn's evaluation
        from charrnn.training.evaluate import evaluate_ids

        recomputed = evaluate_ids(ctx.model, ids, ctx.device, chunk=chunk).loss
        se, mode = 0.0, "full val split"
    else:
        rows, cols = 64, cap // 64
        starts = torch.arange(rows) * (n // rows)
        x, y = m.streams(ids, rows, cols, starts)
        nll = m.score_rows(ctx.model, x, y, ctx.device, chunk)
        per_row = nll.mean(dim=1)
        recomputed, se, mode = float(nll.mean()), float(per_row.std() / math.sqrt(rows)), f"{rows} stretches of {cols} characters"
    rel = abs(recomputed - reference) / max(abs(reference), 1e-12)
    values |= {"recomputed": recomputed, "rel_diff": rel, "ratio": reference / recomputed if recomputed else None,
               "mode": mode, "standard_error": se, "recorded_val_chars": recorded_chars}
    notes = []
    status = "ok"
    if recorded is not None and logged is not None and abs(recorded - logged) > 1e-6 * max(abs(logged), 1):
        status = "fail"
        notes.append(f"the checkpoint says {recorded:.4f} but metrics.jsonl says {logged:.4f} at step {step}")
    if recorded_chars is not None and recorded_chars != len(ids):
        status = worst([status, "warn"])
        notes.append(f"the val split now has {len(ids):,} characters, {recorded_chars:,} when trained: the corpus file changed")
    tol_ok = RECORDED_OK * reference + 4 * se
    if abs(recomputed - reference) <= tol_ok:
        verdict = "ok"
    elif rel <= RECORDED_FAIL or (se > 0 and rel <= 0.1):
        verdict = "warn"
    else:
        verdict = "fail"
    status = worst([status, verdict])
    head = (f"recomputed val loss {recomputed:.4f} nats/char ({mode}) vs recorded {reference:.4f} "
            f"(relative difference {rel:.1e})")
    ratio = reference / recomputed if recomputed else float("inf")
    if verdict == "fail" and not 0.5 <= ratio <= 2.0:
        message = (f"{head}: the recorded loss is {ratio:.3g}x the per-character loss, so the bookkeeping does not divide "
                   "the summed loss by the characters scored")
        advice = "sum the NLL over every character scored and divide by their count, for train and val alike"
    elif verdict == "fail":
        message = (f"{head}: the recorded number does not describe these weights on this val split: the bookkeeping is "
                   "wrong, or the weights or the text changed after it was recorded")
        advice = "re-evaluate with charrnn eval; record the loss as sum(NLL) / characters scored of the saved weights"
    elif verdict == "warn":
        message = f"{head}: close but not equal; another device, precision or --impl can explain a small difference"
        advice = "recompute on the device and precision used in training to confirm"
    else:
        message = f"{head}: the recorded number is a true per-character loss"
        advice = "nothing to do"
    if notes:
        message += "; " + "; ".join(notes)
        advice += "; check that the corpus and the metrics belong to this checkpoint"
    return Verdict(status, values, message, advice)


@check("loss.batch_invariance", cause=2, symptom_of=("state.call_independence", "state.row_independence"))
def check_batch_invariance(ctx: Context) -> Verdict:
    T = min(ctx.seq_len, 64, (len(ctx.ids) - 1) // 2)
    n_windows = 24
    starts = torch.randint(0, len(ctx.ids) - T - 1, (n_windows,), generator=ctx.gen(2))
    x, y = m.streams(ctx.ids, n_windows, T, starts)
    res = m.batch_partition(ctx.model, x, y, ctx.device, (1, 7, n_windows))
    full = res[n_windows]["loss"]
    rel = {bs: abs(res[bs]["loss"] - full) / max(abs(full), 1e-12) for bs in (1, 7)}
    worst_diff = max(rel.values())
    values = {"windows": n_windows, "seq_len": T, "loss_batch_1": res[1]["loss"], "loss_batch_7": res[7]["loss"],
              f"loss_batch_{n_windows}": full, "max_rel_diff": worst_diff, "tolerance": PARTITION_TOL}
    if worst_diff <= PARTITION_TOL:
        return Verdict("ok", values, f"the same {n_windows} windows give the same per-character loss at batch sizes 1, 7 "
                      f"and {n_windows} (max relative difference {worst_diff:.1e})", "nothing to do")
    if ctx.keeps_state:
        return Verdict("fail", values,
                       f"the per-character loss of the same windows depends on how they are batched (relative difference "
                       f"{worst_diff:.2e}), explained by state kept between calls (state.call_independence): each batch starts "
                       "from what the previous one left", "fix state.call_independence first, then run diagnose again")
    return Verdict("fail", values,
                  f"the per-character loss of the same windows depends on how they are batched (relative difference {worst_diff:.2e} "
                  f"between batch sizes): rows of a batch influence each other, so losses and gradients mix sequences",
                  "make every operation act within a row: no statistics over the batch dimension (BatchNorm, a norm or mean "
                  "over dim 0), no state shared between rows; see state.row_independence")


@check("loss.baselines", symptom_of=("state.shape", "state.call_independence"))
def check_baselines(ctx: Context) -> Verdict:
    scored = ctx.reset_vs_carry
    V = ctx.subject.vocab_size
    loss_reset, loss_carry = float(scored["reset"].mean()), float(scored["carry"].mean())
    loss = min(loss_reset, loss_carry)
    targets = scored["targets"].flatten().numpy()
    inputs = scored["inputs"].flatten().numpy()
    uni = m.unigram_entropy(targets, V)
    bi = m.bigram_entropy(inputs, targets, V)
    lnV = math.log(V)
    values = {"loss": loss, "loss_reset": loss_reset, "loss_carry": loss_carry, "bpc": loss / math.log(2),
              "uniform": lnV, "unigram_entropy": uni, "bigram_entropy_in_sample": bi,
              "gain_over_unigram": uni - loss, "gain_over_unigram_frac": (uni - loss) / uni if uni else None,
              "chars": int(scored["targets"].numel())}
    base = f"loss {loss:.3f} nats/char; uniform ln V = {lnV:.3f}, unigram entropy {uni:.3f}, in-sample bigram {bi:.3f}"
    if loss >= uni:
        worse = " (worse than uniform guessing)" if loss > lnV else ""
        return Verdict("fail", values,
                      f"{base}: the model does no better than character frequencies{worse}; it has learned nothing from context "
                      "(the flat-loss symptom)",
                      "check that the output depends on the input and the state (state.memory_horizon), that the learning rate "
                      "is not tiny and the loss is per character (loss.curves, loss.recorded_match); then train longer")
    if loss > uni * (1 - UNIGRAM_WARN):
        return Verdict("warn", values,
                      f"{base}: only {100 * (uni - loss) / uni:.1f}% below the unigram entropy; barely more than character frequencies",
                      "train longer or with a larger learning rate; if the loss stays here, see loss.curves and grad.*")
    tail = "beyond a bigram table fitted to this text" if loss < bi else "not yet as good as a bigram table fitted to this text (which is optimistic)"
    return Verdict("ok", values, f"{base}: the model uses context, {tail}", "nothing to do")


@check("loss.ngram_yardstick", symptom_of=("state.shape", "state.call_independence"))
def check_ngram_yardstick(ctx: Context) -> Verdict:
    """The model's per-character loss against an interpolated Kneser-Ney 3-gram on the same characters,
    fitted on the run's training split, or, for a model without one (--model-factory), on the first half
    of the measured text with both scored on the second half."""
    s, order = ctx.subject, YARDSTICK_ORDER
    ids = np.asarray(ctx.ids.cpu()).astype(np.int64)
    train, where = s.train_ids, "the run's training split"
    if train is None or len(train) < 10 * order:
        half = len(ids) // 2
        train, ids, where = ids[:half], ids[half:], "the first half of the measured text (scored on the second half)"
    ngram = float(KneserNey(train, s.vocab_size, order).char_nll(ids)[-1].mean())
    with torch.no_grad():
        loss = float(char_nll(ctx.model, ids, ctx.device, forward=lambda x, st: m.logits_of(ctx.model, x, st)).mean())
    values = {"loss": loss, "ngram_loss": ngram, "order": order, "fitted_on": where,
              "gain_frac": (ngram - loss) / ngram if ngram else None, "chars": len(ids) - 1}
    base = f"loss {loss:.3f} nats/char against {ngram:.3f} for a Kneser-Ney {order}-gram fitted on {where}"
    if loss < ngram * (1 - YARDSTICK_MARGIN):
        return Verdict("ok", values, f"{base}: the model uses more context than the last {order - 1} characters", "nothing to do")
    return Verdict("warn", values,
                   f"{base}: the model does no better than counting {order}-character sequences, so it is not using "
                   "its state for anything a short window cannot see",
                   "this usually means the state is reset every window (or every call), the sequence length is too short to "
                   "learn anything longer, or the recurrence has a bug (h_t not fed into step t+1): see state.reset_vs_carry, "
                   "state.memory_horizon and `charrnn gradcheck`; otherwise train longer")


def _curve_points(metrics, kind: str, key: str) -> list[tuple[int, float]]:
    return [(int(e.get("step", 0)), float(e[key])) for e in metrics if e.get("event") == kind and e.get(key) is not None]


@check("loss.curves")
def check_curves(ctx: Context) -> Verdict:
    if ctx.subject.metrics is None:
        why = "no metrics.jsonl next to the checkpoint" if ctx.subject.ckpt is not None else "a model from --model-factory has no recorded curves"
        return Verdict("skip", {}, f"no training curves: {why}")
    logs = _curve_points(ctx.subject.metrics, "log", "train_loss")
    evals = [(int(e["step"]), float(e["val_loss"]), e.get("train_loss")) for e in ctx.subject.metrics
             if e.get("event") == "eval" and e.get("val_loss") is not None]
    epochs = _curve_points(ctx.subject.metrics, "epoch", "train_loss")
    if len(logs) < 3:
        return Verdict("skip", {"log_points": len(logs)}, "too few logged training losses to judge the curve (fewer than 3)")
    lnV = math.log(ctx.subject.vocab_size)
    steps = [s for s, _ in logs]
    losses = np.array([l for _, l in logs])
    n = len(losses)
    k = max(1, n // 5)
    first, end = float(losses[0]), float(np.mean(losses[-k:])) if np.all(np.isfinite(losses[-k:])) else float("nan")
    i_min = int(np.nanargmin(losses)) if np.any(np.isfinite(losses)) else 0
    values: dict[str, Any] = {"ln_vocab": lnV, "first_train_loss": first, "end_train_loss": end,
                              "min_train_loss": float(losses[i_min]), "min_step": steps[i_min], "log_points": n,
                              "drop_frac": (first - end) / first if first else None}
    findings: list[tuple[str, str, str]] = []
    if not np.all(np.isfinite(losses)):
        bad = steps[int(np.argmax(~np.isfinite(losses)))]
        findings.append(("fail", f"the training loss is not finite from step {bad}: training diverged",
                         "lower --lr, keep --clip on (1.0), check for log(0) in a hand-written loss"))
    else:
        if first > FIRST_LOSS_MAX * lnV:
            findings.append(("fail", f"the first logged training loss {first:.3g} is {first / lnV:.1f}x ln V = {lnV:.3f}; an untrained "
                             "model scores about ln V per character, so the logged number is not a per-character loss",
                             "divide the summed NLL by the number of characters scored, not by sequences or batches"))
        if end > CURVE_DIVERGE * first:
            findings.append(("fail", f"the training loss diverged: {first:.3f} at the start, {end:.3f} at the end",
                             "lower --lr (by 3-10x) and keep --clip on"))
        elif end > losses[i_min] * (1 + CURVE_RISE) and i_min < n - k:
            findings.append(("warn", f"the training loss rose {100 * (end / losses[i_min] - 1):.0f}% after its minimum "
                             f"{losses[i_min]:.3f} at step {steps[i_min]}", "lower --lr or use --schedule cosine; keep --clip on"))
        if (first - end) / first < CURVE_FLAT:
            findings.append(("warn", f"the training loss is flat: {first:.3f} at the start, {end:.3f} at the end "
                             f"(less than {100 * CURVE_FLAT:.0f}% lower)", "raise --lr if it is tiny; see loss.baselines and grad.*"))
    if len(epochs) >= 3 and all(b[1] > a[1] for a, b in zip(epochs, epochs[1:])):
        findings.append(("fail", f"the training loss rose at every one of {len(epochs)} epochs ({epochs[0][1]:.3f} -> {epochs[-1][1]:.3f})",
                         "lower --lr; keep --clip on; check the epoch loss is per character"))
    values["epoch_losses"] = [l for _, l in epochs]
    if evals:
        v = np.array([e[1] for e in evals])
        j = int(np.argmin(v))
        values |= {"first_val_loss": float(v[0]), "min_val_loss": float(v[j]), "min_val_step": evals[j][0],
                   "last_val_loss": float(v[-1]), "eval_points": len(evals)}
        first_pair = next(((e[1], float(e[2])) for e in evals if e[2] is not None), None)
        if first_pair:
            ratio = first_pair[0] / first_pair[1] if first_pair[1] else float("inf")
            values["first_eval_val_over_train"] = ratio
            if not (1 / SCALE_RATIO <= ratio <= SCALE_RATIO):
                findings.append(("fail", f"at the first evaluation val is {ratio:.3g}x train ({first_pair[0]:.3f} vs {first_pair[1]:.3f}): "
                                 "before any overfitting the two must be close, so they are on different scales",
                                 "compute both as summed NLL / characters scored (the same function for train and val)"))
        if len(evals) >= 3 and v[-1] > v[j] * (1 + OVERFIT_RISE):
            tr_at_min, tr_last = evals[j][2], evals[-1][2]
            if tr_at_min is not None and tr_last is not None and tr_last < tr_at_min:
                findings.append(("warn", f"val rose {100 * (v[-1] / v[j] - 1):.0f}% from its minimum {v[j]:.3f} at step {evals[j][0]} "
                                 "while train kept falling: overfitting", "best.pt keeps the minimum; add --dropout, use more text or a smaller model"))
    if not findings:
        msg = f"training loss fell from {first:.3f} to {end:.3f}"
        if evals:
            msg += f"; val {values['first_val_loss']:.3f} -> {values['last_val_loss']:.3f} (best {values['min_val_loss']:.3f})"
        return Verdict("ok", values, msg + ": no flat, rising or diverging stretch, train and val on one scale", "nothing to do")
    status = worst([f[0] for f in findings])
    ordered = sorted(findings, key=lambda f: f[0] != status)
    return Verdict(status, values, "; ".join(f[1] for f in ordered), "; ".join(dict.fromkeys(f[2] for f in ordered)))


@check("loss.worked_example", symptom_of=("state.shape", "state.call_independence"))
def check_worked_example(ctx: Context) -> Verdict:
    """What this run would report under the two classic bookkeeping mistakes."""
    scored = ctx.reset_vs_carry
    T = scored["seq_len"]
    tc = ctx.subject.train_config
    B = tc.batch_size if tc else 32
    per_window = scored["reset"].mean(dim=1)  # (W,) in text order: each window from a fresh state, as a val loop scores it
    L = float(scored["reset"].mean())
    corpus = (ctx.subject.ckpt or {}).get("corpus") or {}
    N = int(corpus.get("val_chars") or 0) if ctx.subject.val_ids is not None else 0
    N = N or len(ctx.subject.ids)
    what = "val split" if ctx.subject.val_ids is not None and corpus.get("val_chars") else "text"
    W = max((N - 1) // T, 1)
    nb = math.ceil(W / B)
    r = W - (nb - 1) * B
    r_shown = r if r < B else 1  # with no ragged batch, show what a last batch of one window would do
    L_last = float(per_window[-r_shown:].mean())
    nb_shown = nb if r < B else nb + 1
    mean_of_means = ((nb_shown - 1) * L + L_last) / nb_shown
    values = {"split": what, "chars": N, "seq_len": T, "batch_size": B, "windows": W, "batches": nb,
              "last_batch_windows": r, "per_char": L,
              "div_sequences": L * T,  # NLL summed over each window's T characters, averaged over windows
              "div_dataset_len_sequences": L * nb / W,  # batch means summed, / number of windows
              "div_dataset_len_chars": L * nb / N,  # batch means summed, / characters in the split
              "mean_of_batch_means": mean_of_means, "last_batch_loss": L_last, "last_batch_weight": B / r_shown}
    train_loss = None
    for e in ctx.subject.metrics or []:
        if e.get("event") == "eval" and e.get("train_loss") is not None:
            train_loss = float(e["train_loss"])
    if tc is not None and train_loss is not None and corpus.get("train_chars"):
        Nt = int(corpus["train_chars"])
        Wt = max((Nt - 1) // T, 1)
        nbt = math.ceil(Wt / B)
        values |= {"train_per_char": train_loss, "train_div_sequences": train_loss * T,
                   "train_div_dataset_len_chars": train_loss * nbt / Nt}
    ragged = (f"a last batch of {r} window{'s' if r != 1 else ''}" if r < B else
              "no ragged batch at these sizes; a last batch of 1 window")
    message = (f"this {what} scores {L:.4f} nats/char; ÷ sequences instead of characters would report {L * T:.3f} ({T}x: it "
               f"moves with --seq-len); batch means summed ÷ dataset length would report {L * nb / N:.2e} (÷ B·T ≈ {B * T}: it moves "
               f"with --batch-size and split size); the mean of batch means with {ragged} reports {mean_of_means:.4f} "
               f"(those windows weigh {B / r_shown:.1f}x, bias {mean_of_means - L:+.4f})")
    return Verdict("ok", values, message,
                  "report sum(NLL) / characters scored for every curve: one number per character, comparable across "
                  "--seq-len, --batch-size, train and val")



@check("loss.trained_horizon")
def check_trained_horizon(ctx: Context) -> Verdict:
    """The training loop's last-epoch loss against `charrnn eval --split train` on the same weights: the
    loop scores streams no longer than the trained horizon, eval reads longer ones."""
    from charrnn.analysis.horizon import by_position, horizon_of

    s = ctx.subject
    if s.ckpt is None:
        return Verdict("skip", {}, "no training layout to compare with: a model from --model-factory has no training record")
    horizon = horizon_of(s.ckpt)
    if horizon is None or s.train_ids is None or len(s.train_ids) < 2:
        return Verdict("skip", {}, "the checkpoint records no training layout or its train split cannot be read")
    prof = by_position(ctx.model, s.train_ids, ctx.device, horizon, max_chars=ctx.options.max_chars)
    epochs = [e for e in s.metrics or [] if e.get("event") == "epoch" and e.get("train_loss") is not None]
    recorded = float(epochs[-1]["train_loss"]) if epochs else None
    H, within, beyond = horizon["chars"], prof.within, prof.beyond
    values = {"horizon": H, "layout": horizon["layout"], "recorded_last_epoch_loss": recorded,
              "eval_streams": prof.rows, "eval_stream_chars": prof.cols, "eval_layout_loss": prof.loss,
              "loss_within_horizon": within, "loss_beyond_horizon": beyond,
              "bins": prof.bins}
    rec = f"the training loop's last epoch reported {recorded:.4f} (perplexity {perplexity(recorded):.3f}); " if recorded is not None else ""
    head = (f"{rec}the train split read as `charrnn eval --split train` does ({prof.rows} stream(s) of {prof.cols:,} characters "
            f"from a zero state) scores {prof.loss:.4f} (perplexity {perplexity(prof.loss):.3f})")
    if beyond is None:
        return Verdict("ok", values, f"{head}: eval's streams end within the trained horizon of {H:,} characters "
                       f"({horizon['layout']})", "nothing to do")
    split = (f"within the first {H:,} characters (the trained horizon: {horizon['layout']}) the loss is {within:.4f} "
             f"(perplexity {perplexity(within):.3f}), past them {beyond:.4f} (perplexity {perplexity(beyond):.3f})")
    if beyond > within * (1 + HORIZON_RISE) and beyond - within > HORIZON_NATS:
        return Verdict("warn", values,
                       f"{head}; {split}: both numbers are honest, the gap is where the streams run past what training ever "
                       "ran, so the model learned the training layout rather than the text",
                       "judge the model on streams no longer than the horizon, or train so it holds up on long streams: "
                       "longer training streams (a smaller --batch-size gives each stream more characters), or random offsets "
                       "(--sampling random); `charrnn eval --by-position` shows the loss against position")
    return Verdict("ok", values, f"{head}; {split}: the model holds up past the horizon", "nothing to do")
