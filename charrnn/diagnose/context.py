"""The machinery of `charrnn diagnose`, apart from the checks: the report types, the registry every
check enters once (its id, section, what it needs, how fundamental a cause it names), and the
`Context` that measures what several checks share, each measurement made once.

    @check("state.call_independence", cause=0)     # registers id, section ("state") and headline rank
    def call_independence(ctx: Context) -> Verdict:
        res = ctx.call_independence                 # measured once, shared with other checks
        return Verdict("ok", res, "...", "nothing to do")

The runner (`charrnn.diagnose.subjects.run_checks`) calls the registered checks in registration order
(the report order) and turns each `Verdict` into a `Check` carrying the registered id and section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from charrnn.diagnose import measure as m
from charrnn.core.errors import CharRNNError

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


REGISTRY: list[Registered] = []


def check(cid: str, *, needs_torch: bool = False, cause: int = 100, after: str | None = None):
    """Register a check under its stable id (section = the part before the dot). It is reported in
    registration order, or right after the check `after` (a check defined in another module). `cause`
    orders the headline when several checks fail: a check whose failure explains others' gets a lower
    number (state kept between calls also moves every row of a batch, so it outranks row independence)."""
    section = cid.split(".")[0]
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} in check id {cid!r}")
    if any(r.id == cid for r in REGISTRY):
        raise ValueError(f"check {cid!r} registered twice")

    def register(fn):
        entry = Registered(cid, section, fn, needs_torch, cause)
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
        if key not in self._cache:
            self._cache[key] = measure()
        return self._cache[key]

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
            return m.bptt_gradient_norms(self.model, self.ids, self.device, self.gen(7), L=L)
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
                          lambda: m.call_independence(self.model, self.ids, self.device, self.gen(6)))

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
    """One small call before anything is measured: a model that breaks the interface is bad input."""
    V = ctx.subject.vocab_size
    if int(ctx.subject.ids.max()) >= V:
        raise CharRNNError(f"the text encodes to ids up to {int(ctx.subject.ids.max())}, beyond the model's {V} outputs")
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
