"""The watch's checks on the loss, the update and the gradients, each fed one `Step` at a time.

    watch.loss_scale     the reported loss against the cross-entropy of the logits: a factor (T, B, B·T,
                         1/len(dataset), ...) found by `charrnn.diagnose.scale`, the search `diagnose --log` uses
    watch.flat           after `flat_after` steps the per-character loss is not below the unigram entropy
                         of the targets seen so far (or ln V), or it is rising; the likeliest cause ranked
    watch.update_ratio   ‖Δp‖/‖p‖ per weight matrix between calls: about 1e-3 is healthy
    watch.grad_spike     one parameter's gradient norm far above its recent median
    watch.nonfinite      a loss, gradient or weight that is inf or NaN: which one, at which step

Each observer's `observe(step, w)` reads one `Step` and the `Watch` itself (w: its checks, observers,
V, dataset_size, factor). A check is stated once, when it is certain: `observe` returns a finding the first time and then only
keeps its summary (the report's row) up to date. A check whose inputs never came stays "not checked",
and the report names the argument that would enable it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.diagnose.scale import explaining, known_factors

if TYPE_CHECKING:
    from charrnn.watch.params import Norms

RATIO_OK = 1.01  # the reported loss and the recomputed cross-entropy agree within 1%: per character
FACTOR_TOL = 1.02  # one step's ratio is exact: a factor explains it within 2% (float32 sums, clipping of logs)
SIZE_ROUNDING = 0.01  # an inferred len(training_set) is an integer to within this (float32 ratios are exact to 1e-6)
UNEXPLAINED = 1.1  # a ratio off by more than this that no factor explains is a warning (regularisation terms are smaller)
CONFIRM = 2  # steps in a row that must agree before a scale is certain
DRIFT_AFTER = 30  # steps of a ratio that changes all the time: the loss does not follow the logits
DECIDE_AFTER = 20  # a ratio within UNEXPLAINED of 1 for this many steps is accepted (an extra loss term)
UPDATE_WINDOW, UPDATE_EVERY = 20, 25  # the update ratio is judged every 25 steps on the last 20
UPDATE_LOW, UPDATE_HIGH = 1e-4, 0.3  # the fastest weight below this: nothing moves; the typical one above this: unstable
SPIKE, SPIKE_HISTORY = 30.0, 20  # a gradient norm 30x its median over the last (at least 20) steps
FLAT_WINDOW, FLAT_EVERY = 100, 50  # flat: the mean of the last 100 steps, judged every 50 steps
FLAT_RISE = 0.10  # the recent level 10% above the first steps': rising


@dataclass
class Step:
    """What one call of Watch.step gave, in the checks' terms."""

    n: int  # 1-based call number
    loss: float
    ce: float | None = None  # recomputed per-character cross-entropy
    B: int | None = None
    T: int | None = None
    x: np.ndarray | None = None  # (B, T) input ids, rows = streams
    y: np.ndarray | None = None  # (B, T) target ids
    target_ids: np.ndarray | None = None  # the targets as ids, any layout (for the unigram entropy)
    norms: "Norms | None" = None
    lr: float | None = None
    time: float = 0.0  # perf_counter at the call
    state_in: Any = None  # (B, D) rows (torch or numpy), a copy
    state_out: Any = None
    state_in_graph: bool | None = None  # torch only: state_in is the output of a recorded operation
    has_state: bool = False


@dataclass
class Check:
    """One check's standing: status "not checked" | "pending" | "ok" | "warn" | "fail"."""

    id: str
    enable: str  # the arguments that would enable it
    status: str = "not checked"
    summary: str = ""  # the report's one-line account
    step: int | None = None  # when it was stated (or decided ok)
    finding: dict | None = None
    explained_by: str | None = None  # a failing finding found by another check that accounts for this one

    def ran(self) -> None:
        if self.status == "not checked":
            self.status = "pending"

    def ok(self, n: int, summary: str) -> None:
        if self.finding is None:
            self.status, self.summary = "ok", summary
            self.step = self.step or n

    def state(self, n: int, status: str, values: dict, message: str, advice: str) -> dict | None:
        """The finding, the first time; None when it was already stated (or another check's finding
        accounts for it: then only the summary says so)."""
        if self.finding is not None:
            return None
        self.status, self.step, self.summary = status, n, message
        if self.explained_by:
            self.summary = f"{message} (explained by {self.explained_by})"
            self.finding = {}
            return None
        self.finding = {"id": self.id, "step": n, "status": status, "values": values, "message": message, "advice": advice}
        return self.finding


def failing(w: Any, *ids: str) -> str | None:
    """The first of these checks that has stated a failure, or None."""
    return next((i for i in ids if w.checks[i].finding and w.checks[i].status == "fail"), None)


@dataclass
class LossScale:
    check: Check = field(default_factory=lambda: Check("watch.loss_scale", "logits= and targets="))
    run: tuple[str, int] = ("", 0)  # (what explains the ratio, steps in a row)
    ratios: deque = field(default_factory=lambda: deque(maxlen=CONFIRM + 1))
    factor: float | None = None  # the factor found: reported = factor x per-character loss
    seen: int = 0

    @property
    def decided(self) -> bool:
        """Stated, or known to be fine: the cross-entropy need not be recomputed every step any more."""
        return self.check.finding is not None or self.check.status == "ok"

    def observe(self, s: Step, w: Any) -> dict | None:
        if s.ce is None or not (math.isfinite(s.loss) and math.isfinite(s.ce)) or s.ce <= 0 or self.decided:
            return None
        self.check.ran()
        r = s.loss / s.ce
        self.ratios.append(r)
        self.seen += 1
        steady = max(self.ratios) / min(self.ratios) < 1.05 if min(self.ratios) > 0 else False
        if self.seen >= DECIDE_AFTER and steady and 0 < r and abs(math.log(r)) <= math.log(UNEXPLAINED):
            self.factor = float(np.median(self.ratios))
            self.check.ok(s.n, f"the reported loss is {self.factor:.4g} x the per-character cross-entropy: a small extra "
                          "term (regularisation?), no bookkeeping factor")
            return None
        if abs(math.log(abs(r) or 1e-300)) <= math.log(RATIO_OK):
            self.run = ("1", self.run[1] + 1 if self.run[0] == "1" else 1)
            if self.run[1] >= CONFIRM:
                self.check.ok(s.n, f"the reported loss is the per-character cross-entropy (ratio {r:.4f})")
            return None
        if r <= 0:
            return self._negative(s, r)
        factors = known_factors(s.B, s.T, w.dataset_size, per="step", vocab_size=w.V)
        match = explaining(r, factors, tol=FACTOR_TOL)
        inferred = None
        if not match and w.dataset_size is None:
            inferred, match = _inferred_size(r, s, w)
        key = (match[0].label.split(" =")[0] + (f" {inferred}" if inferred else "")) if match else "?"
        self.run = (key, self.run[1] + 1 if self.run[0] == key else 1)
        if self.run[1] < CONFIRM:
            return None
        values = {"reported": s.loss, "per_char": s.ce, "ratio": r, "factor": None, "corresponds_to": None,
                  "B": s.B, "T": s.T, "dataset_size": w.dataset_size}
        where = f"the reported loss {s.loss:.4g} is {r:.4g} x the per-character cross-entropy of the logits ({s.ce:.4g} nats)"
        if match:
            f = match[0]
            self.factor = f.value
            values |= {"factor": f.value, "corresponds_to": f.label, "dataset_size_inferred": inferred}
            if inferred:
                f = replace(f, label=f"{f.label} (len(training_set) inferred as {inferred}, the divisor that makes every "
                                     "step's ratio exact; pass dataset_size= to confirm)")
                values["corresponds_to"] = f.label
            others = "; the numbers cannot tell it from " + "; ".join(m.label.split(":")[0] for m in match[1:]) if len(match) > 1 else ""
            return self.check.state(s.n, "fail", values, f"{where}: factor {f.value:.4g} = {f.label}{others}",
                                    f.advice + _gradient_note(f.value, w))
        if abs(math.log(r)) > math.log(UNEXPLAINED) and steady and len(self.ratios) > CONFIRM:
            self.factor = r
            return self.check.state(s.n, "warn", values, f"{where}, steadily, and no bookkeeping factor of this loop "
                                    f"(B = {s.B}, T = {s.T}, len(dataset) = {w.dataset_size}) explains it",
                                    "report the mean NLL over the batch's characters (cross_entropy(logits.reshape(-1, V), "
                                    "targets.reshape(-1))); pass dataset_size=len(training_set) to test that factor too")
        if self.seen >= DRIFT_AFTER:
            return self.check.state(s.n, "warn", values, f"{where}, and the ratio keeps changing (the last three: "
                                    f"{', '.join(f'{x:.3g}' for x in self.ratios)}): the reported loss does not follow "
                                    "these logits and targets", "pass the logits and targets the loss is computed from, "
                                    "in the same order (a (T·B, V) output needs d2l's y = Y.T.reshape(-1)); if they are, "
                                    "the loss is not a cross-entropy of them")
        return None


    def _negative(self, s: Step, r: float) -> dict | None:
        self.run = ("negative", self.run[1] + 1 if self.run[0] == "negative" else 1)
        if self.run[1] < CONFIRM or s.loss >= 0:
            return None
        return self.check.state(s.n, "fail", {"reported": s.loss, "per_char": s.ce, "ratio": r},
                                f"the reported loss {s.loss:.4g} is negative, while the cross-entropy of the logits is "
                                f"{s.ce:.4g}: a negative log-likelihood is never below 0",
                                "take log_softmax of the logits before NLLLoss (or use cross_entropy on the raw logits), "
                                "and keep the minus sign in -log p[target]")


def _inferred_size(r: float, s: Step, w: Any) -> tuple[int | None, list]:
    """A loss divided by a constant the watch was not told (len(training_set), most often): the N for
    which ratio = (T, B·T or 1) / N to within float rounding, and the shared search's factors with it."""
    for g in (s.T, (s.B or 1) * (s.T or 1), 1):
        if not g or r <= 0:
            continue
        n = g / r
        if n >= 2 and abs(n - round(n)) < SIZE_ROUNDING:
            match = explaining(r, known_factors(s.B, s.T, round(n), per="step", vocab_size=w.V), tol=FACTOR_TOL)
            if match and "len(dataset)" in match[0].label:
                return round(n), match
    return None, []


def _gradient_note(factor: float, w: Any) -> str:
    kind = w.optimizer_kind
    if kind == "sgd":
        return (f"; with SGD the gradients carry the same factor, so every update is {factor:.3g} x what the learning "
                "rate says")
    if kind == "adam":
        return "; Adam's updates do not depend on it, but the curve you read and any gradient clipping threshold do"
    return ""


@dataclass
class UpdateRatio:
    check: Check = field(default_factory=lambda: Check("watch.update_ratio", "a model or params= (and call w.step every step)"))
    window: deque = field(default_factory=lambda: deque(maxlen=UPDATE_WINDOW))
    last: dict = field(default_factory=dict)  # name -> median ratio over the last window

    def observe(self, s: Step, w: Any) -> dict | None:
        nm = s.norms
        if nm is None or nm.d is None:
            return None
        self.check.ran()
        judged = [i for i, m in enumerate(nm.matrices) if m] or list(range(len(nm.names)))
        self.window.append([nm.d[i] / nm.p[i] if nm.p[i] > 0 else math.nan for i in judged])
        if len(self.window) < UPDATE_WINDOW or s.n % UPDATE_EVERY:
            return None
        med = np.nanmedian(np.array(self.window, dtype=float), axis=0)
        names = [nm.names[i] for i in judged]
        self.last = {n: float(v) for n, v in zip(names, med) if np.isfinite(v)}
        if not self.last:
            return None
        fastest = max(self.last, key=self.last.get)
        typical = float(np.median(list(self.last.values())))
        values = {"median_ratio": self.last, "fastest": fastest, "typical": typical, "lr": s.lr}
        lr = f" (learning rate {s.lr:.3g})" if s.lr is not None else ""
        if self.last[fastest] < UPDATE_LOW:
            self.check.explained_by = failing(w, "watch.loss_scale") if (w.factor or 1) < 1 else None
            if self.last[fastest] == 0:
                if all(not g for g, m in zip(nm.g, nm.matrices) if m):
                    return self.check.state(s.n, "fail", values, f"no weight changed over the last {UPDATE_WINDOW} steps, "
                                            "and their gradients are zero: the loss does not reach them",
                                            "look for a .detach(), .data, .item() or numpy() between the weights and the "
                                            "loss, inputs that are all zeros, or requires_grad=False")
                return self.check.state(s.n, "fail", values, "no weight changed between calls over the last "
                                        f"{UPDATE_WINDOW} steps{lr}", "call optimizer.step() (or params -= lr * grads) "
                                        "every step, and give the optimizer model.parameters()")
            return self.check.state(s.n, "fail", values,
                                    f"each step moves the weights by {self.last[fastest]:.2g} of their size at most "
                                    f"({fastest}; the median weight {typical:.2g}){lr}: about 1e-3 is healthy, so they "
                                    "barely move", "raise the learning rate (10x at a time, until the ratio nears 1e-3), "
                                    "and check that the loss is not divided by a large number before backward")
        if typical > UPDATE_HIGH:
            self.check.explained_by = failing(w, "watch.nonfinite") or (failing(w, "watch.loss_scale") if (w.factor or 1) > 1 else None)
            return self.check.state(s.n, "warn", values,
                                    f"each step moves the typical weight by {typical:.2g} of its size{lr}: about 1e-3 is "
                                    "healthy, so training is unstable", "lower the learning rate (3-10x) and clip the "
                                    "gradient norm (torch.nn.utils.clip_grad_norm_(params, 1.0))")
        self.check.ok(s.n, f"update ratio of the weights: median {typical:.2g}, fastest {self.last[fastest]:.2g} ({fastest})")
        return None


@dataclass
class GradSpike:
    check: Check = field(default_factory=lambda: Check(
        "watch.grad_spike", "a torch model with w.step after loss.backward() and before optimizer.zero_grad(), or grads="))
    history: dict = field(default_factory=dict)  # name -> deque of recent gradient norms
    medians: dict = field(default_factory=dict)  # name -> median of its history, refreshed every 10 steps

    def observe(self, s: Step, w: Any) -> dict | None:
        nm = s.norms
        if nm is None or all(g is None or g == 0 for g in nm.g):
            return None
        self.check.ran()
        worst = None
        refresh = s.n % 10 == 0
        for name, g in zip(nm.names, nm.g):
            if g is None or not math.isfinite(g):
                continue
            h = self.history.setdefault(name, deque(maxlen=5 * SPIKE_HISTORY))
            if len(h) >= SPIKE_HISTORY:
                if refresh or name not in self.medians:
                    self.medians[name] = float(np.median(h))
                med = self.medians[name]
                if med > 0 and g > SPIKE * med and (worst is None or g / med > worst[1] / worst[2]):
                    worst = (name, g, med)
            h.append(g)
        if worst is None:
            if len(self.history) and min(len(h) for h in self.history.values()) >= SPIKE_HISTORY:
                self.check.ok(s.n, f"no gradient above {SPIKE:g}x its recent median")
            return None
        name, g, med = worst
        return self.check.state(s.n, "warn", {"parameter": name, "grad_norm": g, "median": med, "ratio": g / med},
                                f"the gradient of {name} spiked to {g:.3g}, {g / med:.0f}x its median {med:.3g} over "
                                "the steps before", "clip the gradient norm before each update "
                                "(torch.nn.utils.clip_grad_norm_(params, 1.0), or rescale NumPy grads whose global norm "
                                "exceeds 1), and lower the learning rate if spikes repeat")


@dataclass
class NonFinite:
    check: Check = field(default_factory=lambda: Check("watch.nonfinite", "the loss (always checked)"))

    def observe(self, s: Step, w: Any) -> dict | None:
        self.check.ran()
        bad = s.norms.first_nonfinite() if s.norms is not None else None
        loss_bad = not math.isfinite(s.loss)
        ce_bad = s.ce is not None and not math.isfinite(s.ce)
        if not (bad or loss_bad or ce_bad):
            self.check.ok(s.n, "loss, logits, gradients and weights finite")
            return None
        parts = ([f"the loss is {s.loss}"] if loss_bad else []) + (["the logits are not finite"] if ce_bad else [])
        if bad:
            parts.append(f"the {bad[1]} of {bad[0]} is not finite" + (" (the first parameter that is)" if len(s.norms.names) > 1 else ""))
        return self.check.state(s.n, "fail", {"loss": s.loss, "parameter": bad[0] if bad else None,
                                              "what": bad[1] if bad else None},
                                "; ".join(parts), "lower the learning rate and clip the gradient norm; look for log(0) "
                                "or a division by zero in a hand-written loss (add 1e-12 inside the log)")


@dataclass
class Flat:
    check: Check = field(default_factory=lambda: Check("watch.flat", "the loss (always); targets= for the unigram floor"))
    levels: list = field(default_factory=list)  # the per-character loss of each step
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def observe(self, s: Step, w: Any) -> dict | None:
        level = s.ce if s.ce is not None else s.loss / (w.factor or 1.0)
        if not math.isfinite(level):
            return None
        self.check.ran()
        self.levels.append(level)
        if s.target_ids is not None and s.target_ids.size:
            t = s.target_ids.reshape(-1)
            if t.min() >= 0:
                c = np.bincount(t)
                if len(c) > len(self.counts):
                    self.counts = np.pad(self.counts, (0, len(c) - len(self.counts)))
                self.counts[: len(c)] += c
        n = len(self.levels)
        if n < w.flat_after or (n - w.flat_after) % FLAT_EVERY:
            return None
        return self._judge(s, w)

    def floor(self, w: Any) -> tuple[float | None, str]:
        if self.counts.sum():
            p = self.counts[self.counts > 0] / self.counts.sum()
            return float(-(p * np.log(p)).sum()), "the unigram entropy of the targets seen"
        if w.V:
            return math.log(w.V), "ln V"
        return None, ""

    def _judge(self, s: Step, w: Any) -> dict | None:
        first = float(np.mean(self.levels[: min(20, w.flat_after // 5 or 1)]))
        recent = float(np.mean(self.levels[-min(FLAT_WINDOW, w.flat_after // 2 or 1):]))
        floor, floor_is = self.floor(w)
        values = {"first": first, "recent": recent, "floor": floor, "floor_is": floor_is, "steps": len(self.levels)}
        if recent > first * (1 + FLAT_RISE):
            what = f"the per-character loss rose from {first:.4g} to {recent:.4g} over {len(self.levels)} steps"
        elif floor is not None and recent >= floor * 0.99:
            what = (f"after {len(self.levels)} steps the per-character loss is {recent:.4g}, not below {floor:.4g}, "
                    f"{floor_is}: the model has learned no more than character frequencies")
        elif floor is None and recent > first * 0.98:
            what = f"after {len(self.levels)} steps the loss has not fallen: {first:.4g} -> {recent:.4g}"
        else:
            self.check.ok(s.n, f"falling: {first:.4g} -> {recent:.4g}" + (f", below {floor_is} {floor:.3f}" if floor else ""))
            return None
        self.check.explained_by = next((i for i in w.checks if i != self.check.id and w.checks[i].finding
                                        and w.checks[i].status == "fail"), None)
        causes = likeliest_causes(w, s)
        values["causes"] = causes
        return self.check.state(s.n, "fail", values, what + (f"; likeliest cause: {causes[0]}" if causes else ""),
                                "; ".join(causes[1:2]) or "check the learning rate, the loss normalisation and the state reset")


def likeliest_causes(w: Any, s: Step) -> list[str]:
    """What the other checks have measured that would keep a loss flat, the strongest first."""
    out = []
    ratio = w.observers["watch.update_ratio"].last
    if ratio:
        fastest = max(ratio.values())
        if fastest < 1e-3:
            out.append(f"the weights barely move (update ratio {fastest:.2g}, healthy about 1e-3): raise the learning rate")
        elif float(np.median(list(ratio.values()))) > 0.1:
            out.append(f"the updates are large (update ratio {float(np.median(list(ratio.values()))):.2g}): lower the learning rate")
    nm = s.norms
    if nm is not None and any(g is not None for g in nm.g):
        total = math.sqrt(sum(g * g for g in nm.g if g is not None and math.isfinite(g)))
        if total < 1e-6:
            out.append(f"the gradients are almost zero (norm {total:.2g}): check that backward reaches the parameters")
    if (w.factor or 1) < 1:
        out.append(f"the loss is scaled by {w.factor:.3g} before backward, so are the gradients")
    if w.checks["watch.update_ratio"].status == "not checked":
        out.append("unknown: pass the model (or params=) so that the watch can see whether the weights move")
    return out
