"""The machinery of `charrnn diagnose`, apart from the checks: the report types, the registry every
check enters once (its id, section, what it needs, how fundamental a cause it names), and the
`Context` that measures what several checks share, each measurement made once.

    @check("state.call_independence", cause=0)     # registers id, section ("state") and headline rank
    def call_independence(ctx: Context) -> Verdict:
        res = ctx.call_independence                 # measured once, shared with other checks
        return Verdict("ok", res, "...", "nothing to do")

The runner (`charrnn.diagnose.subjects.run_checks`) calls the registered checks in registration order
(the report order) and turns each `Verdict` into a `Check` carrying the registered id and section. A
check that raises is skipped with the blame where it belongs (`measurement_failed`: the user's model, at
their line, or charrnn itself, an internal error); a symptom whose root cause failed says so
(`link_symptoms`, from the `symptom_of` each check registers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.userfile import blame
from charrnn.diagnose import measure as m
from charrnn.diagnose import measure_grad as mg
from charrnn.diagnose import measure_state as ms

SECTIONS = {"loss": "Loss normalisation", "state": "Hidden-state reset", "grad": "Gradient health"}
STATUSES = ("ok", "warn", "fail", "skip")

WARMUP_LEN = 256  # positions profiled after a reset
GRAD_LEN = 128  # steps of the BPTT window
CALL_TOL = 1e-6  # max |logit change| between two calls on the same input (relative to max(1, |logits|))


@dataclass
class Check:
    """One verdict: status ok | warn | fail | skip, the numbers, what they mean and what to do."""

    id: str
    section: str
    status: str
    values: dict[str, Any]
    message: str
    advice: str = ""
    cause: int = 100  # headline rank: lower names a more fundamental cause (see `check`)

    def to_dict(self) -> dict:
        return {"id": self.id, "section": self.section, "status": self.status, "values": plain(self.values),
                "message": self.message, "advice": self.advice}


@dataclass
class Verdict:
    """What a check function returns; the runner adds the registered id and section."""

    status: str
    values: dict[str, Any]
    message: str
    advice: str = ""


@dataclass(frozen=True)
class Registered:
    id: str
    section: str
    fn: Callable[["Context"], Verdict]
    needs_torch: bool  # needs autograd or torch parameters: skipped for a NumPy model
    cause: int
    symptom_of: tuple[str, ...] = ()  # root-cause checks whose failure this check's finding follows from


REGISTRY: list[Registered] = []


def check(cid: str, *, needs_torch: bool = False, cause: int = 100, after: str | None = None,
          symptom_of: tuple[str, ...] = ()):
    """Register a check under its stable id (section = the part before the dot). It is reported in
    registration order, or right after the check `after` (a check defined in another module). `cause`
    orders the headline when several checks fail: a check whose failure explains others' gets a lower
    number (state kept between calls also moves every row of a batch, so it outranks row independence).
    `symptom_of` names the checks whose failure explains a bad finding of this one (see `link_symptoms`)."""
    section = cid.split(".")[0]
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} in check id {cid!r}")
    if any(r.id == cid for r in REGISTRY):
        raise ValueError(f"check {cid!r} registered twice")

    def register(fn):
        entry = Registered(cid, section, fn, needs_torch, cause, tuple(symptom_of))
        ids = [r.id for r in REGISTRY]
        if after is not None and after not in ids:
            raise ValueError(f"check {cid!r}: no registered check {after!r} to follow")
        REGISTRY.insert(ids.index(after) + 1 if after else len(REGISTRY), entry)
        return fn

    return register


def plain(v):
    """JSON-ready: tensors and numpy values to floats and lists; inf/nan to None."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return plain(v.tolist())
    if isinstance(v, np.ndarray):
        return plain(v.tolist())
    if isinstance(v, np.generic):
        return plain(v.item())
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return v


class Context:
    """The subject, the options and the measurements several checks share (each computed once)."""

    def __init__(self, subject, options):
        self.subject, self.options = subject, options
        self.model = subject.model
        self.device = _param_device(subject.model)  # the model was moved to --device when loaded
        self.ids = subject.ids[: options.max_chars + 1]
        train_config = subject.train_config
        self.seq_len = options.seq_len or (train_config.seq_len if train_config else 64)
        self._cache: dict[str, Any] = {}

    @property
    def is_numpy(self) -> bool:
        return bool(getattr(self.model, "is_numpy", False))

    @property
    def user_code(self) -> bool:
        """A model from --model-factory: advice speaks about the user's code, not charrnn's flags."""
        return self.subject.ckpt is None

    def gen(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.options.seed * 1000 + salt)

    def rows_for(self, T: int, budget: int) -> int:
        """Streams for a layout of windows of T: up to 32, at least 4 windows per stream."""
        n = min(budget, len(self.ids) - 1)
        return int(max(2, min(32, n // (4 * T))))

    def _once(self, key: str, measure: Callable[[], Any]):
        """measure() the first time; later, its value, or the exception it raised, raised again (a
        measurement that failed once is not retried by every check that reads it)."""
        if key not in self._cache:
            try:
                self._cache[key] = measure()
            except Exception as e:
                self._cache[key] = e
                raise
        value = self._cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    @property
    def reset_vs_carry(self) -> dict:
        """The same windows scored with the state reset, carried, and carried from unrelated text."""
        def measure():
            T = min(self.seq_len, max((len(self.ids) - 1) // 8, 1))
            budget = max(self.options.max_chars // 2, 1000)  # per pass; three passes score the same windows
            rows = self.rows_for(T, budget)
            return m.reset_vs_carry(self.model, self.ids, self.device, self.gen(3), rows, T, budget)
        return self._once("reset_vs_carry", measure)

    @property
    def gradient_norms(self) -> dict:
        """||dL/dh_t|| against distance through time (needs autograd)."""
        def measure():
            L = min(GRAD_LEN, (len(self.ids) - 1) // 2 - 32)
            return mg.bptt_gradient_norms(self.model, self.ids, self.device, self.gen(7), L=L)
        return self._once("gradient_norms", measure)

    @property
    def warmup_profile(self) -> dict:
        """Loss gap and KL between a fresh and a carried state, by position after the reset."""
        def measure():
            budget = max(self.options.max_chars // 2, 1000)
            n = min(budget, len(self.ids) - 1)
            L = min(WARMUP_LEN, max(n // 8, 4))
            rows = self.rows_for(L, budget) if n // (4 * L) >= 2 else 2
            return m.warmup_and_horizon(self.model, self.ids, self.device, rows, L, budget)
        return self._once("warmup_profile", measure)

    @property
    def call_independence(self) -> dict:
        """Does a call depend on earlier calls? Read by the row and batch checks, whose measurements a
        model that keeps state between calls confounds."""
        return self._once("call_independence",
                          lambda: ms.call_independence(self.model, self.ids, self.device, self.gen(6)))

    @property
    def state_layout(self) -> dict:
        """begin_state(3) against the state forward returns from it (read by the checks that carry it)."""
        return self._once("state_layout", lambda: ms.returned_state(self.model, self.ids, self.device))

    @property
    def begin_layout(self) -> str:
        """The user's own state layout in words, batch dimension as B: 'a tensor (B, 32)'."""
        return self._once("begin_layout", lambda: m.describe(m.begin(self.model, 3, self.device),
                                                             m.batch_dims(self.model, self.device)))

    @property
    def keeps_state(self) -> bool:
        """Does the model keep state between calls? (Its measurement confounds the row and batch checks.)"""
        res = self.call_independence
        tol = CALL_TOL * max(1.0, res["logit_scale"])
        return res["max_diff_fresh_state"] > tol or (res["max_diff_state_none"] is not None and res["max_diff_state_none"] > tol)


def _param_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


# charrnn's flags in advice -> the same advice about a user's own training code (--model-factory)
USER_WORDS = [
    ("keep --clip on", "clip the gradient norm in your training loop (torch.nn.utils.clip_grad_norm_(params, 1.0))"),
    ("--clip 1.0", "gradient-norm clipping at 1.0 in your training loop"), ("--clip", "your gradient clipping"),
    ("--lr", "your learning rate"), ("--sampling sequential", "contiguous streams with the state carried between batches"),
    ("--seq-len", "your sequence length (num_steps)"), ("--schedule cosine", "a decaying learning-rate schedule"),
]


def speak_to_user(advice: str) -> str:
    """Advice for a --model-factory model: about the user's code, not charrnn's flags."""
    for flag, words in USER_WORDS:
        advice = advice.replace(flag, words)
    return advice


def worst(statuses) -> str:
    order = {"skip": -1, "ok": 0, "warn": 1, "fail": 2}
    return max(statuses, key=order.__getitem__, default="ok")


def paired(diff: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of per-window paired differences."""
    d = diff.double()
    return float(d.mean()), float(d.std() / math.sqrt(max(len(d), 1))) if len(d) > 1 else float("inf")


def at_positions(curve: torch.Tensor) -> dict[str, float]:
    """A curve over positions/distances 1..L (index 0 = 1) at 1, 2, 4, 8, ... and the last."""
    L = len(curve)
    pos = sorted({p for p in [2**k for k in range(12)] if p <= L} | {L})
    return {str(p): float(curve[p - 1]) for p in pos}


def probe(ctx: Context) -> None:
    """One small call before anything is measured: a model that breaks the interface is bad input. An
    exception raised in the user's code is theirs, named at their line (CHARRNN_DEBUG=1 shows their
    frames, chained); one raised in charrnn's own code passes on unchanged, an internal error."""
    V = ctx.subject.vocab_size
    if int(ctx.subject.ids.max()) >= V:
        raise CharRNNError(f"the text encodes to ids up to {int(ctx.subject.ids.max())}, beyond the model's {V} outputs")
    x = ctx.ids[:16].view(2, 8).to(ctx.device)
    try:
        with torch.no_grad():
            logits, _ = m.logits_of(ctx.model, x, m.begin(ctx.model, 2, ctx.device))
    except CharRNNError:
        raise
    except Exception as e:
        b = blame(e)
        if b.party != "user":
            raise  # ours: the CLI reports an internal error (exit 3) and CHARRNN_DEBUG=1 shows the traceback
        raise CharRNNError(f"your model fails on a (2, 8) batch: it raised {type(e).__name__}: {e} at {b.where()}"
                           f"{_unpack_hint(ctx, e)}") from e
    if logits.shape[-1] != V:
        raise CharRNNError(f"the model returns {logits.shape[-1]} logits per character but its vocabulary has {V} entries")


def _unpack_hint(ctx: Context, e: Exception) -> str:
    """d2l's `state, = state` given a bare tensor unpacks its rows: say what the state must be instead."""
    if not (isinstance(e, ValueError) and "values to unpack" in str(e)):
        return ""
    try:
        layout = ctx.begin_layout
    except Exception:
        return ""
    if not layout.startswith("a tensor"):
        return ""
    return (f"; your begin_state(B) returns {layout}, and code that unpacks its state (d2l: `state, = state`) "
            "expects a tuple: return (zeros(...),) from begin_state and (H,) from forward")


def measurement_failed(entry: Registered, ctx: Context, e: Exception) -> Check:
    """A check whose measurement raised: skipped, and the blame put where the traceback says. The user's
    code raised: 'your model raised ... at file:line'. charrnn's own code raised: an internal error,
    reported as ours (never as the model's)."""
    b = blame(e)
    why = f"{type(e).__name__}: {e}"
    values = {"error": why, "raised_by": b.party, "where": b.where()}
    if b.party == "user":
        try:
            layout = f": {ctx.begin_layout}"
        except Exception:
            layout = ""
        message = f"your model raised {why} at {b.where()} during this measurement"
        advice = ("check that forward(x, state) accepts any batch size and sequence length and returns (logits (B, T, V), "
                  f"state) with the state in the layout of your begin_state(B){layout}; run with CHARRNN_DEBUG=1 to see "
                  "the whole traceback")
    else:
        message = f"not measured: charrnn raised {why} at {b.where()}: an internal error in charrnn, not in your model"
        advice = "run with CHARRNN_DEBUG=1 and report the traceback (charrnn's bug)"
    return Check(entry.id, entry.section, "skip", values, message, advice, entry.cause)


def link_symptoms(checks: list[Check]) -> None:
    """A warning, failure or failed measurement whose root cause (a check it registered as `symptom_of`)
    failed points back to it: the message says so and the advice starts with fixing the root."""
    by_id = {c.id: c for c in checks}
    roots = {r.id: r.symptom_of for r in REGISTRY}
    for c in checks:
        if c.status not in ("warn", "fail") and not (c.status == "skip" and "error" in c.values):
            continue
        candidates = roots.get(c.id, ())
        if c.values.get("raised_by") == "user":  # a state in the wrong layout breaks whichever call is fed it next
            candidates = tuple(dict.fromkeys(("state.shape",) + tuple(candidates)))
        failed = [r for r in candidates if r in by_id and by_id[r].status == "fail" and r not in c.message]
        if not failed:
            continue
        names = " and ".join(failed)
        c.message += f" (likely a symptom of {names}, which failed: see there first)"
        if not all(r in c.advice for r in failed):
            rest = f"; {c.advice}" if c.advice and c.advice != "nothing to do" else ""
            c.advice = f"fix {names} first, then run diagnose again{rest}"
        c.values["symptom_of"] = failed
