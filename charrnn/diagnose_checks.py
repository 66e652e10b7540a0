"""The checks of `charrnn diagnose`: each turns measurements (`charrnn.diagnose_measure`) into a
status, the numbers, one sentence of meaning and one of advice.

Check ids are stable (scripts read them from --json):

    loss.recorded_match   loss.batch_invariance   loss.baselines   loss.ngram_yardstick   loss.curves   loss.worked_example
    state.row_independence   state.call_independence   state.reset_vs_carry   state.warmup
    state.memory_horizon   grad.bptt_norms   grad.spectral_radius   grad.saturation   grad.training_record

Every threshold is a named constant below; README ("diagnose") says what each check means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charrnn import diagnose_measure as m
from charrnn.errors import CharRNNError
from charrnn.ngram import check_ngram_yardstick

SECTIONS = {"loss": "Loss normalisation", "state": "Hidden-state reset", "grad": "Gradient health"}
STATUSES = ("ok", "warn", "fail", "skip")

# loss
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
# state
ROW_TOL = 1e-6  # max |logit change| in other rows (relative to max(1, |logits|))
CALL_TOL = 1e-6
SIGNIFICANT = 3.0  # a paired difference counts when it exceeds 3 standard errors ...
MATERIAL = 0.005  # ... and 0.5% of the loss
WARMUP_TOL_NATS = 0.01  # warm-up ends where the reset loss is within max(0.01 nats, 1%) of the carried loss
WARMUP_TOL_REL = 0.01
KL_AGREE = 1e-3  # nats: two next-character distributions agree below this
WARMUP_LEN = 256  # positions profiled after a reset
# gradients
GRAD_LEN = 128  # steps of the BPTT window
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


@dataclass
class Check:
    """One verdict: status ok | warn | fail | skip, the numbers, what they mean and what to do."""

    id: str
    section: str
    status: str
    values: dict[str, Any]
    message: str
    advice: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "section": self.section, "status": self.status, "values": plain(self.values),
                "message": self.message, "advice": self.advice}




def plain(v):
    """JSON-ready: tensors and numpy values to floats and lists; inf/nan to None."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return plain(v.tolist())
    if isinstance(v, np.generic):
        return plain(v.item())
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return v


class Context:
    """The subject, options and the measurements several checks share (each computed once)."""

    def __init__(self, subject, options):
        self.s, self.o = subject, options
        self.model = subject.model
        self.device = _param_device(subject.model)  # the model was moved to --device when loaded
        self.ids = subject.ids[: options.max_chars + 1]
        tc = subject.train_config
        self.T = options.seq_len or (tc.seq_len if tc else 64)
        self._cache: dict[str, Any] = {}

    def gen(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.o.seed * 1000 + salt)

    def rows_for(self, T: int, budget: int) -> int:
        """Streams for a layout of windows of T: up to 32, at least 4 windows per stream."""
        n = min(budget, len(self.ids) - 1)
        return int(max(2, min(32, n // (4 * T))))

    @property
    def rc(self) -> dict:
        if "rc" not in self._cache:
            T = min(self.T, max((len(self.ids) - 1) // 8, 1))
            budget = max(self.o.max_chars // 2, 1000)  # per pass; three passes score the same windows
            rows = self.rows_for(T, budget)
            self._cache["rc"] = m.reset_vs_carry(self.model, self.ids, self.device, self.gen(3), rows, T, budget)
        return self._cache["rc"]

    @property
    def bptt(self) -> dict:
        if "bptt" not in self._cache:
            L = min(GRAD_LEN, (len(self.ids) - 1) // 2 - 32)
            self._cache["bptt"] = m.bptt_gradient_norms(self.model, self.ids, self.device, self.gen(7), L=L)
        return self._cache["bptt"]

    @property
    def wu(self) -> dict:
        if "wu" not in self._cache:
            budget = max(self.o.max_chars // 2, 1000)
            n = min(budget, len(self.ids) - 1)
            L = min(WARMUP_LEN, max(n // 8, 4))
            rows = self.rows_for(L, budget) if n // (4 * L) >= 2 else 2
            self._cache["wu"] = m.warmup_and_horizon(self.model, self.ids, self.device, rows, L, budget)
        return self._cache["wu"]


def _param_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")



def _check(cid: str, status: str, values: dict, message: str, advice: str = "") -> Check:
    return Check(cid, cid.split(".")[0], status, values, message, advice)


def _worst(statuses) -> str:
    order = {"skip": -1, "ok": 0, "warn": 1, "fail": 2}
    return max(statuses, key=order.__getitem__, default="ok")


def _paired(diff: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of per-window paired differences."""
    d = diff.double()
    return float(d.mean()), float(d.std() / math.sqrt(max(len(d), 1))) if len(d) > 1 else float("inf")


def _material(mean: float, se: float, ref: float) -> bool:
    return abs(mean) > SIGNIFICANT * se and abs(mean) > MATERIAL * ref


def _at_positions(curve: torch.Tensor) -> dict[str, float]:
    """A curve over positions/distances 1..L (index 0 = 1) at 1, 2, 4, 8, ... and the last."""
    L = len(curve)
    pos = sorted({p for p in [2**k for k in range(12)] if p <= L} | {L})
    return {str(p): float(curve[p - 1]) for p in pos}


def probe(ctx: Context) -> None:
    """One small call before anything is measured: a model that breaks the interface is bad input."""
    V = ctx.s.vocab_size
    if int(ctx.s.ids.max()) >= V:
        raise CharRNNError(f"the text encodes to ids up to {int(ctx.s.ids.max())}, beyond the model's {V} outputs")
    x = ctx.ids[:16].view(2, 8).to(ctx.device)
    try:
        with torch.no_grad():
            logits, _ = m.logits_of(ctx.model, x, ctx.model.begin_state(2, ctx.device))
    except CharRNNError:
        raise
    except Exception as e:
        raise CharRNNError(f"the model fails on a (2, 8) batch: {type(e).__name__}: {e}") from None
    if logits.shape[-1] != V:
        raise CharRNNError(f"the model returns {logits.shape[-1]} logits per character but its vocabulary has {V} entries")


# ---------------------------------------------------------------------------------------------------
# loss normalisation


def check_recorded(ctx: Context) -> Check:
    cid = "loss.recorded_match"
    s = ctx.s
    if s.ckpt is None:
        return _check(cid, "skip", {}, "no recorded val loss to compare with: a model from --model-factory has no training record")
    step = (s.ckpt.get("position") or {}).get("step")
    recorded = s.ckpt.get("val_loss")
    logged = None
    for e in s.metrics or []:
        if e.get("event") == "eval" and e.get("step") == step and e.get("val_loss") is not None:
            logged = float(e["val_loss"])
    if recorded is None and logged is None:
        return _check(cid, "skip", {"step": step}, "the checkpoint records no val loss (the run had no val split)")
    reference = float(recorded if recorded is not None else logged)
    if s.val_ids is None:
        return _check(cid, "skip", {"recorded": reference}, f"cannot recompute the val loss: {s.val_note}")
    ids = s.val_ids
    n = len(ids) - 1
    chunk = max(s.train_config.seq_len, 128) if s.train_config else 256
    cap = 2 * ctx.o.max_chars  # beyond this, a stratified sample of the split
    values: dict[str, Any] = {"recorded_checkpoint": recorded, "recorded_metrics": logged, "step": step, "val_chars": n}
    recorded_chars = (s.ckpt.get("corpus") or {}).get("val_chars")
    if n <= cap:
        # exactly what training recorded: the whole val split through charrnn's evaluation
        from charrnn.evaluate import evaluate_ids

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
        status = _worst([status, "warn"])
        notes.append(f"the val split now has {len(ids):,} characters, {recorded_chars:,} when trained: the corpus file changed")
    tol_ok = RECORDED_OK * reference + 4 * se
    if abs(recomputed - reference) <= tol_ok:
        verdict = "ok"
    elif rel <= RECORDED_FAIL or (se > 0 and rel <= 0.1):
        verdict = "warn"
    else:
        verdict = "fail"
    status = _worst([status, verdict])
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
    return _check(cid, status, values, message, advice)


def check_batch_invariance(ctx: Context) -> Check:
    cid = "loss.batch_invariance"
    T = min(ctx.T, 64, (len(ctx.ids) - 1) // 2)
    n_windows = 24
    starts = torch.randint(0, len(ctx.ids) - T - 1, (n_windows,), generator=ctx.gen(2))
    x, y = m.streams(ctx.ids, n_windows, T, starts)
    res = m.batch_partition(ctx.model, x, y, ctx.device, (1, 7, n_windows))
    full = res[n_windows]["loss"]
    rel = {bs: abs(res[bs]["loss"] - full) / max(abs(full), 1e-12) for bs in (1, 7)}
    worst = max(rel.values())
    values = {"windows": n_windows, "seq_len": T, "loss_batch_1": res[1]["loss"], "loss_batch_7": res[7]["loss"],
              f"loss_batch_{n_windows}": full, "max_rel_diff": worst, "tolerance": PARTITION_TOL}
    if worst <= PARTITION_TOL:
        return _check(cid, "ok", values, f"the same {n_windows} windows give the same per-character loss at batch sizes 1, 7 "
                      f"and {n_windows} (max relative difference {worst:.1e})", "nothing to do")
    return _check(cid, "fail", values,
                  f"the per-character loss of the same windows depends on how they are batched (relative difference {worst:.2e} "
                  f"between batch sizes): rows of a batch influence each other, so losses and gradients mix sequences",
                  "make every operation act within a row: no statistics over the batch dimension (BatchNorm, a norm or mean "
                  "over dim 0), no state shared between rows; see state.row_independence")


def check_baselines(ctx: Context) -> Check:
    cid = "loss.baselines"
    rc = ctx.rc
    V = ctx.s.vocab_size
    loss_reset, loss_carry = float(rc["reset"].mean()), float(rc["carry"].mean())
    loss = min(loss_reset, loss_carry)
    targets = rc["targets"].flatten().numpy()
    inputs = rc["inputs"].flatten().numpy()
    uni = m.unigram_entropy(targets, V)
    bi = m.bigram_entropy(inputs, targets, V)
    lnV = math.log(V)
    values = {"loss": loss, "loss_reset": loss_reset, "loss_carry": loss_carry, "bpc": loss / math.log(2),
              "uniform": lnV, "unigram_entropy": uni, "bigram_entropy_in_sample": bi,
              "gain_over_unigram": uni - loss, "gain_over_unigram_frac": (uni - loss) / uni if uni else None,
              "chars": int(rc["targets"].numel())}
    base = f"loss {loss:.3f} nats/char; uniform ln V = {lnV:.3f}, unigram entropy {uni:.3f}, in-sample bigram {bi:.3f}"
    if loss >= uni:
        worse = " (worse than uniform guessing)" if loss > lnV else ""
        return _check(cid, "fail", values,
                      f"{base}: the model does no better than character frequencies{worse}; it has learned nothing from context "
                      "(the flat-loss symptom)",
                      "check that the output depends on the input and the state (state.memory_horizon), that the learning rate "
                      "is not tiny and the loss is per character (loss.curves, loss.recorded_match); then train longer")
    if loss > uni * (1 - UNIGRAM_WARN):
        return _check(cid, "warn", values,
                      f"{base}: only {100 * (uni - loss) / uni:.1f}% below the unigram entropy; barely more than character frequencies",
                      "train longer or with a larger learning rate; if the loss stays here, see loss.curves and grad.*")
    tail = "beyond a bigram table fitted to this text" if loss < bi else "not yet as good as a bigram table fitted to this text (which is optimistic)"
    return _check(cid, "ok", values, f"{base}: the model uses context, {tail}", "nothing to do")


def _curve_points(metrics, kind: str, key: str) -> list[tuple[int, float]]:
    return [(int(e.get("step", 0)), float(e[key])) for e in metrics if e.get("event") == kind and e.get(key) is not None]


def check_curves(ctx: Context) -> Check:
    cid = "loss.curves"
    if ctx.s.metrics is None:
        why = "no metrics.jsonl next to the checkpoint" if ctx.s.ckpt is not None else "a model from --model-factory has no recorded curves"
        return _check(cid, "skip", {}, f"no training curves: {why}")
    logs = _curve_points(ctx.s.metrics, "log", "train_loss")
    evals = [(int(e["step"]), float(e["val_loss"]), e.get("train_loss")) for e in ctx.s.metrics
             if e.get("event") == "eval" and e.get("val_loss") is not None]
    epochs = _curve_points(ctx.s.metrics, "epoch", "train_loss")
    if len(logs) < 3:
        return _check(cid, "skip", {"log_points": len(logs)}, "too few logged training losses to judge the curve (fewer than 3)")
    lnV = math.log(ctx.s.vocab_size)
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
        return _check(cid, "ok", values, msg + ": no flat, rising or diverging stretch, train and val on one scale", "nothing to do")
    status = _worst([f[0] for f in findings])
    ordered = sorted(findings, key=lambda f: f[0] != status)
    return _check(cid, status, values, "; ".join(f[1] for f in ordered), "; ".join(dict.fromkeys(f[2] for f in ordered)))


def check_worked_example(ctx: Context) -> Check:
    """What this run would report under the two classic bookkeeping mistakes."""
    cid = "loss.worked_example"
    rc = ctx.rc
    T = rc["seq_len"]
    tc = ctx.s.train_config
    B = tc.batch_size if tc else 32
    per_window = rc["reset"].mean(dim=1)  # (W,) in text order: each window from a fresh state, as a val loop scores it
    L = float(rc["reset"].mean())
    corpus = (ctx.s.ckpt or {}).get("corpus") or {}
    N = int(corpus.get("val_chars") or 0) if ctx.s.val_ids is not None else 0
    N = N or len(ctx.s.ids)
    what = "val split" if ctx.s.val_ids is not None and corpus.get("val_chars") else "text"
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
    for e in ctx.s.metrics or []:
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
    return _check(cid, "ok", values, message,
                  "report sum(NLL) / characters scored for every curve: one number per character, comparable across "
                  "--seq-len, --batch-size, train and val")


# ---------------------------------------------------------------------------------------------------
# hidden state


def check_row_independence(ctx: Context) -> Check:
    cid = "state.row_independence"
    res = m.row_independence(ctx.model, ctx.ids, ctx.device, ctx.gen(5))
    tol = ROW_TOL * max(1.0, res["logit_scale"])
    values = res | {"tolerance": tol}
    shared = [i for i, d in enumerate(res["state_batch_dims"]) if d is None]
    shapes = [tuple(t.shape) for t in m.state_leaves(ctx.model.begin_state(3, ctx.device))]
    values["state_shapes_batch_3"] = shapes
    if res["max_diff_other_rows"] > tol:
        return _check(cid, "fail", values,
                      f"changing the input and state of row 0 moved the logits of the other rows by up to "
                      f"{res['max_diff_other_rows']:.3g}: state leaks between the sequences of a batch",
                      "keep the batch dimension separate everywhere: state shaped (layers, B, H) from begin_state(B), no mean, "
                      "norm or reshape across rows (d2l: transpose X to time-major, not the state)")
    if shared:
        return _check(cid, "warn", values,
                      f"begin_state(3) returns state tensor(s) {', '.join(str(shapes[i]) for i in shared)} with no batch dimension: "
                      "one initial state is broadcast to every row (harmless only while it is zeros and never carried)",
                      "return a state with one row per sequence: zeros(layers, batch_size, hidden)")
    return _check(cid, "ok", values, f"rows are independent: changing row 0 moved the other rows by "
                  f"{res['max_diff_other_rows']:.1e} (row 0 itself by {res['max_diff_perturbed_row']:.3g})", "nothing to do")


def check_call_independence(ctx: Context) -> Check:
    cid = "state.call_independence"
    res = m.call_independence(ctx.model, ctx.ids, ctx.device, ctx.gen(6))
    tol = CALL_TOL * max(1.0, res["logit_scale"])
    values = res | {"tolerance": tol}
    bad_fresh = res["max_diff_fresh_state"] > tol
    bad_none = res["max_diff_state_none"] is not None and res["max_diff_state_none"] > tol
    if bad_fresh or bad_none:
        how = "from a fresh begin_state" if bad_fresh else "with state=None"
        d = res["max_diff_fresh_state"] if bad_fresh else res["max_diff_state_none"]
        return _check(cid, "fail", values,
                      f"the same input {how} gives different logits after another call (up to {d:.3g}): the model keeps state "
                      "between calls, so every sequence is contaminated by the previous one",
                      "do not store the hidden state on the module (self.h); take it as an argument and return it; a None state "
                      "must mean zeros")
    return _check(cid, "ok", values, "two calls on the same input from a fresh state give identical logits: no state is kept "
                  "between calls", "nothing to do")


def check_reset_vs_carry(ctx: Context) -> Check:
    cid = "state.reset_vs_carry"
    rc = ctx.rc
    reset, carry, shuf = (rc[k].mean(dim=1) for k in ("reset", "carry", "shuffled"))
    ref = float(reset.mean())
    gain_c, se_c = _paired(reset - carry)
    gain_s, se_s = _paired(reset - shuf)
    tc = ctx.s.train_config
    values = {"seq_len": rc["seq_len"], "windows": rc["windows"], "loss_reset": ref, "loss_carry": float(carry.mean()),
              "loss_carry_shuffled": float(shuf.mean()), "gain_carry": gain_c, "gain_carry_se": se_c,
              "gain_shuffled": gain_s, "gain_shuffled_se": se_s}
    carry_helps = gain_c > 0 and _material(gain_c, se_c, ref)
    carry_hurts = gain_c < 0 and _material(gain_c, se_c, ref)
    shuf_beats = gain_s > 0 and _material(gain_s, se_s, ref)
    nums = (f"reset {ref:.4f}, carried {float(carry.mean()):.4f}, carried from unrelated windows {float(shuf.mean()):.4f} "
            f"nats/char over {rc['windows']} windows of {rc['seq_len']}")
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
        return _check(cid, "ok", values, f"{nums}: {tail}", "nothing to do")
    status = _worst([f[0] for f in findings])
    return _check(cid, status, values, nums + ": " + "; ".join(f[1] for f in findings),
                  "; ".join(dict.fromkeys(f[2] for f in findings)))


def check_warmup(ctx: Context) -> Check:
    cid = "state.warmup"
    wu = ctx.wu
    gap, carried = wu["gap"], wu["carried_loss"]
    L = wu["length"]
    tol = max(WARMUP_TOL_NATS, WARMUP_TOL_REL * float(carried.mean()))
    tail_max = torch.flip(torch.cummax(torch.flip(gap, [0]), 0).values, [0])  # max of gap over [t, L)
    ok_from = torch.nonzero(tail_max <= tol)
    warm = int(ok_from[0]) if len(ok_from) else None  # characters consumed before the loss is within tol
    T = ctx.T
    excess = float(gap[: min(T, L)].mean())
    values = {"length": L, "windows": wu["windows"], "tolerance": tol, "warmup_chars": warm,
              "excess_in_first_seq_len": excess, "seq_len": T, "gap_at_position": _at_positions(gap),
              "carried_loss": float(carried.mean())}
    if warm is None:
        return _check(cid, "warn", values,
                      f"after a reset the loss is still {float(gap[-1]):.3f} nats/char above its carried-state loss at position {L}: "
                      "the model never recovers within the profiled window",
                      f"warm up with more than {L} characters before sampling; prefer carried state (--sampling sequential)")
    msg = (f"after a reset the model needs {warm} character{'s' if warm != 1 else ''} of prefix to come within {tol:.3f} nats/char "
           f"of its carried-state loss (excess over the first {min(T, L)}: {excess:.3f} nats/char)")
    policy = ctx.s.train_config.state_policy() if ctx.s.train_config else None
    if policy == "reset" and warm > T / 2:
        return _check(cid, "warn", values, msg + f"; with the state reset every {T} characters most of each window is warm-up",
                      f"raise --seq-len well above {warm} or carry state (--sampling sequential)")
    return _check(cid, "ok", values, msg, f"warm the state up with at least {max(warm, 1)} characters before sampling; "
                  f"keep --seq-len well above {max(warm, 1)}")


def check_memory_horizon(ctx: Context) -> Check:
    cid = "state.memory_horizon"
    wu = ctx.wu
    kl = wu["kl"]
    L = wu["length"]
    tail_max = torch.flip(torch.cummax(torch.flip(kl, [0]), 0).values, [0])
    agree = torch.nonzero(tail_max < KL_AGREE)
    horizon = int(agree[0]) if len(agree) else None
    values = {"length": L, "kl_threshold": KL_AGREE, "horizon_chars": horizon, "kl_at_position": _at_positions(kl)}
    if horizon == 0:
        return _check(cid, "warn", values,
                      "the output is the same whatever the initial state: the model ignores its state (no memory at all)",
                      "check that each step's state feeds the next step and the output; see loss.baselines")
    if horizon is None:
        k0, kL = float(kl[0]), float(kl[-1])
        if kL >= 0.5 * k0:  # no decay at all: the input never overwrites the initial state
            return _check(cid, "warn", values,
                          f"the output depends on the initial state as much after {L} characters as at the start (KL {k0:.2g} -> "
                          f"{kL:.2g} nats): the input never overwrites the state (it is not updated from the input, or the "
                          "dynamics are chaotic)", "check that each step computes the new state from the input and the "
                          "previous state and that the output reads the new state; see grad.bptt_norms")
        return _check(cid, "warn", values,
                      f"two initial states still give different outputs after {L} characters (KL {k0:.2g} -> {kL:.2g} nats): the "
                      "state never forgets its start, a sign of chaotic (exploding) dynamics",
                      "see grad.bptt_norms and grad.spectral_radius; lower --lr, keep --clip on")
    return _check(cid, "ok", values,
                  f"outputs from two different initial states agree (KL < {KL_AGREE:g} nats) after {horizon} characters: "
                  f"the state carries about {horizon} characters of context", "nothing to do")


# ---------------------------------------------------------------------------------------------------
# gradients


def check_bptt_norms(ctx: Context) -> Check:
    cid = "grad.bptt_norms"
    res = ctx.bptt
    norms = res["norms"]
    values: dict[str, Any] = {"length": res["length"], "rows": res["rows"]}
    if not res["finite"]:
        return _check(cid, "fail", values, "dL/dh is not finite within the window: gradients overflow",
                      "keep --clip on, lower --lr, check for exploding recurrent weights (grad.spectral_radius)")
    g0 = float(norms[0])
    if not bool(res["reached"][1:].any()) or g0 == 0:
        return _check(cid, "warn", values | {"norm_at_loss": g0},
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
               "ratio_at_distance": _at_positions(ratio[1:]) if len(ratio) > 1 else {}}
    far = float(ratio[-1])
    nums = (f"||dL/dh|| at distance {len(ratio) - 1} is {far:.1e}x its value at the loss (per-step factor {factor:.3f}")
    if growth > GRAD_EXPLODE or (factor > GRAD_FACTOR and growth > GRAD_GROW):
        return _check(cid, "fail", values, f"{nums}, up to {growth:.2g}x): gradients explode through time",
                      "clip gradients (--clip 1.0), lower --lr, and shrink the recurrent weights (see grad.spectral_radius)")
    if growth > GRAD_GROW:
        return _check(cid, "warn", values, f"{nums}, up to {growth:.2g}x): gradients grow through time, close to exploding",
                      "keep --clip on and watch grad.training_record for spikes")
    if vanish is not None and vanish <= GRAD_VANISH_STEPS:
        return _check(cid, "warn", values, f"{nums}): gradients vanish within {vanish} steps, so training cannot learn "
                      "dependencies longer than that", "if longer context matters: a gated cell (LSTM/GRU, forget-gate bias near 1), "
                      "W_hh initialised near orthogonal, and more training, which usually lengthens the reach")
    reach = f"falls below {GRAD_VANISH:g}x after {vanish} steps" if vanish is not None else f"stays above {GRAD_VANISH:g}x over the window"
    return _check(cid, "ok", values, f"{nums}): it {reach}; neither exploding nor vanishing fast", "nothing to do")


def check_spectral_radius(ctx: Context) -> Check:
    cid = "grad.spectral_radius"
    mats, kind = m.recurrent_matrices(ctx.model)
    if not mats:
        return _check(cid, "skip", {}, "no recurrent matrix found (a square 2-D parameter named like *hh*, e.g. W_hh)")
    radii = m.spectral_radii(mats)
    values: dict[str, Any] = {"kind": kind, "matrices": radii}
    top_name = max(radii, key=lambda k: radii[k]["spectral_radius"])
    top = radii[top_name]["spectral_radius"]
    values["max_spectral_radius"] = top
    listing = ", ".join(f"{k} {v['spectral_radius']:.2f}" for k, v in radii.items())
    growth = ctx.bptt["norms"].max() / ctx.bptt["norms"][0] if float(ctx.bptt["norms"][0]) > 0 else torch.tensor(0.0)
    values["bptt_max_growth"] = float(growth)
    if kind in ("rnn", "user") and top > RADIUS_WARN and float(growth) > 1.0:
        return _check(cid, "warn", values,
                      f"spectral radius {top:.2f} > 1 ({top_name}): the linearised recurrence expands along its top eigenvector, "
                      "so gradients can explode unless tanh saturation holds them back (see grad.bptt_norms)",
                      "keep --clip on; if grad.bptt_norms grows, lower --lr or re-initialise W_hh with spectral radius below 1")
    if kind in ("rnn", "user") and top > RADIUS_WARN:
        return _check(cid, "ok", values, f"spectral radius {top:.2f} > 1 ({top_name}), but the measured gradients do not grow "
                      "through time (grad.bptt_norms): tanh saturation holds the expansion back", "nothing to do")
    if kind in ("rnn", "user"):
        sn = max(v["spectral_norm"] for v in radii.values())
        tail = " and norm < 1, so gradients through a tanh recurrence must vanish geometrically" if sn < 1 else ""
        return _check(cid, "ok", values, f"spectral radius {top:.2f} <= 1{tail} ({listing})", "nothing to do" if not tail else
                      "if long dependencies matter, an LSTM or GRU keeps gradients alive")
    return _check(cid, "ok", values, f"largest spectral radius {top:.2f} ({top_name}); gates bound how much of it acts on the state "
                  f"({listing})", "nothing to do")


def check_saturation(ctx: Context) -> Check:
    cid = "grad.saturation"
    res = m.saturation(ctx.model, ctx.ids, ctx.device)
    shares = {k: v for k, v in res["shares"].items() if v is not None}
    values = res
    # The units whose slope every gradient through time passes: a tanh RNN's h, an LSTM's cell input g,
    # a GRU's candidate n (or a user model's state). An LSTM's tanh(c) only gates the output: reported, not judged.
    tanh = {k: v for k, v in shares.items() if k in ("h (tanh)", "cell input g (tanh)", "candidate n (tanh)", "state |h|>0.99")}
    listing = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    if not tanh:
        return _check(cid, "skip", values, "no state values to measure")
    worst_name = max(tanh, key=tanh.get)
    worst = tanh[worst_name]
    proxy = " (taking the state as a tanh output)" if res["kind"] == "user" else ""
    if worst > SATURATION_WARN:
        return _check(cid, "warn", values,
                      f"{100 * worst:.0f}% of {worst_name} units are saturated{proxy}: they pass almost no gradient ({listing})",
                      "lower --lr, clip gradients, scale down the recurrent weights or inputs")
    return _check(cid, "ok", values, f"saturated share: {listing}{proxy}", "nothing to do")


def check_training_record(ctx: Context) -> Check:
    cid = "grad.training_record"
    tc = ctx.s.train_config
    if ctx.s.metrics is None or tc is None:
        why = "a model from --model-factory has no training record" if ctx.s.ckpt is None else "no metrics.jsonl or training config recorded"
        return _check(cid, "skip", {}, f"no recorded gradient norms: {why}")
    logs = [e for e in ctx.s.metrics if e.get("event") == "log" and e.get("grad_norm") is not None]
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
        return _check(cid, "ok", values, msg, "nothing to do")
    status = _worst([f[0] for f in findings])
    return _check(cid, status, values, "; ".join(f[1] for f in findings), "; ".join(dict.fromkeys(f[2] for f in findings)))


CHECKS = [check_recorded, check_batch_invariance, check_baselines, check_curves, check_worked_example,
          check_row_independence, check_call_independence, check_reset_vs_carry, check_warmup, check_memory_horizon,
          check_bptt_norms, check_spectral_radius, check_saturation, check_training_record]
CHECKS.insert(CHECKS.index(check_baselines) + 1, check_ngram_yardstick)  # issue 15: the n-gram yardstick
CHECK_IDS = {
    "check_recorded": ("loss.recorded_match", "loss"), "check_batch_invariance": ("loss.batch_invariance", "loss"),
    "check_baselines": ("loss.baselines", "loss"), "check_curves": ("loss.curves", "loss"),
    "check_worked_example": ("loss.worked_example", "loss"), "check_row_independence": ("state.row_independence", "state"),
    "check_call_independence": ("state.call_independence", "state"), "check_reset_vs_carry": ("state.reset_vs_carry", "state"),
    "check_warmup": ("state.warmup", "state"), "check_memory_horizon": ("state.memory_horizon", "state"),
    "check_bptt_norms": ("grad.bptt_norms", "grad"), "check_spectral_radius": ("grad.spectral_radius", "grad"),
    "check_saturation": ("grad.saturation", "grad"), "check_training_record": ("grad.training_record", "grad"),
    "check_ngram_yardstick": ("loss.ngram_yardstick", "loss"),
}
