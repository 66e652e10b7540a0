"""`charrnn.watch`: two lines in a learner's own training loop, and the bug is named while it trains.

    w = charrnn.watch(model, optimizer=opt, vocab_size=V)       # PyTorch; or charrnn.watch(params=params_dict)
    for x, y in batches:
        ...                                                      # the loop as it is: forward, loss, backward, step
        w.step(loss, logits=logits, targets=y, state_in=h0, state_out=h, inputs=x)   # all but loss optional
    print(w.report())                                            # the table; w.findings: the list of dicts

Each call measures what its arguments allow (see `charrnn.watch.checks` and `charrnn.watch.state` for
the checks and their ids) and says each finding once, when it is certain, through `output`. The watch
only reads: it never changes a tensor it is given, never calls backward, and keeps its own copies of
what it compares between calls (the previous weights, the previous final state).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from charrnn.core.errors import CharRNNError
from charrnn.diagnose.scale import known_factors
from charrnn.watch import arrays
from charrnn.watch.checks import Flat, GradSpike, LossScale, NonFinite, Step, UpdateRatio
from charrnn.watch.output import MetricsFile, channel, finding_line, table
from charrnn.watch.params import Params
from charrnn.watch.state import Carry, NotDetached

ORDER = ("watch.loss_scale", "watch.flat", "watch.update_ratio", "watch.grad_spike", "watch.nonfinite",
         "watch.state_not_detached", "watch.state_across_random", "watch.state_reset_contiguous", "watch.state_leak")


class Watch:
    """Watches one training loop; see the module docstring. Also a context manager: on leaving the block
    the report is said through `output` and the metrics file is closed."""

    def __init__(self, model: Any = None, *, optimizer: Any = None, vocab_size: int | None = None, params: Any = None,
                 dataset_size: int | None = None, output: str | Callable[[str], None] | None = "log",
                 metrics: str | None = None, log_every: int = 10, flat_after: int = 300):
        if model is not None and params is not None:
            raise CharRNNError("give the model or params=, not both")
        for name, v in (("vocab_size", vocab_size), ("dataset_size", dataset_size), ("flat_after", flat_after)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise CharRNNError(f"{name} must be a positive integer, not {v!r}")
        source = model if model is not None else params
        self.params = Params.of(source) if source is not None else None
        self.params_torch = bool(self.params and self.params.torch)
        self.optimizer = optimizer
        self.optimizer_kind = _optimizer_kind(optimizer)
        self.V, self.dataset_size, self.flat_after = vocab_size, dataset_size, flat_after
        self.say = channel(output)
        self.metrics = MetricsFile(metrics, log_every) if metrics else None
        self.ce = arrays.CharLoss(vocab_size)
        self.observers = {o.check.id: o for o in (LossScale(), Flat(), UpdateRatio(), GradSpike(), NonFinite(), NotDetached())}
        self.carry = Carry()
        self.checks = {i: self.observers[i].check if i in self.observers else self.carry.checks[i] for i in ORDER}
        self.findings: list[dict] = []
        self.steps = 0
        self.chars = 0
        self.shape: tuple[int, int] | None = None  # (B, T) as last read from inputs and targets
        self.layout = 0  # which (B, T) reading of inputs and targets worked last (see arrays.batch_time)
        self.closed = False

    @property
    def factor(self) -> float | None:
        """The loss-scale factor found (reported = factor x per-character loss), or None."""
        return self.observers["watch.loss_scale"].factor

    def step(self, loss: Any, *, logits: Any = None, targets: Any = None, state_in: Any = None, state_out: Any = None,
             inputs: Any = None, lr: float | None = None, grads: Any = None, params: Any = None) -> list[dict]:
        """Watch one training step; returns the findings it made certain (also said through `output`).
        logits: (B, T, V), (T·B, V), ... or probabilities; targets: ids or one-hot, as given to the loss;
        inputs: the batch's input ids (or one-hot); state_in / state_out: the state before and after the
        forward pass (a tensor, an array or a tuple); lr: the learning rate (read from the optimizer when
        one was given); grads / params: for a NumPy loop, dicts (or lists) of the gradients and of the
        current weights when the loop rebinds them."""
        if self.closed:
            raise CharRNNError("this watch is closed; start a new one with charrnn.watch(...)")
        s = self._measure(loss, logits, targets, state_in, state_out, inputs, lr, grads, params)
        new = []
        for cid in ("watch.nonfinite", "watch.loss_scale", "watch.update_ratio", "watch.grad_spike"):
            new.append(self.observers[cid].observe(s, self))
        found, carried = self.carry.observe(s, self)
        new += found
        new.append(self.observers["watch.state_not_detached"].observe(s, self, carried))
        new.append(self.observers["watch.flat"].observe(s, self))
        new = [f for f in new if f]
        for f in new:
            self.findings.append(f)
            self.say(finding_line(f))
        if self.metrics:
            self._log(s, new)
        return new

    def _measure(self, loss, logits, targets, state_in, state_out, inputs, lr, grads, params) -> Step:
        self.steps += 1
        s = Step(n=self.steps, loss=arrays.scalar(loss), time=time.perf_counter())
        if self.V is None and logits is not None:
            shape = tuple(arrays.to_tensor(logits).shape)
            self.V = shape[-1] if len(shape) >= 2 else None
            self.ce.V = self.V
        scale = self.observers["watch.loss_scale"]
        log_step = self.metrics is not None and self.steps % self.metrics.every == 0
        if logits is not None and targets is not None and (not scale.decided or log_step):
            s.ce = self.ce.of(logits, targets, s.loss, self._factor_values(targets))
        elif logits is not None and scale.check.status == "not checked":
            scale.check.enable = "targets= next to logits="
        if targets is not None:
            s.target_ids = arrays.ids(targets, self.V)
        if inputs is not None and targets is not None and not self.carry.decided:
            s.x, s.y, self.layout = arrays.batch_time(inputs, targets, self.V, self.layout)
        if s.x is not None:
            self.shape = s.x.shape
        elif self.shape and s.target_ids is not None and s.target_ids.size == self.shape[0] * self.shape[1]:
            s.B, s.T = self.shape  # the layout is known: the data are no longer read into (B, T)
        s.B, s.T = (s.B, s.T) if s.B else _batch_shape(s, state_in)
        if self.params is not None or params is not None:
            if self.params is None:
                self.params = Params.of(params)
                self.params_torch = self.params.torch
            s.norms = self.params.measure(params, grads)
        s.lr = lr if lr is not None else _optimizer_lr(self.optimizer)
        if state_in is not None:
            s.has_state = True
            s.state_in = arrays.state_rows(state_in, s.B)
            s.state_out = arrays.state_rows(state_out, s.B) if state_out is not None else None
            s.state_in_graph = arrays.carries_graph(state_in) if arrays.is_torch(arrays.state_parts(state_in)) else None
        if s.B and s.T:
            self.chars += s.B * s.T
        return s

    def _factor_values(self, targets: Any) -> tuple[float, ...]:
        """The bookkeeping factors a loss over these targets may carry (B, T from their shape, as a guess)."""
        if self.ce.pick is not None:
            return ()
        shape = tuple(arrays.to_tensor(targets).shape)
        if len(shape) != 2:
            return ()
        found = known_factors(shape[0], shape[1], self.dataset_size, per="step", vocab_size=self.V)
        return tuple(f.value for f in found)

    def _log(self, s: Step, new: list[dict]) -> None:
        ratio = self.observers["watch.update_ratio"].window
        gn = None
        if s.norms is not None and any(g is not None for g in s.norms.g):
            gn = math.sqrt(sum(g * g for g in s.norms.g if g is not None))
        self.metrics.add(s.n, self.chars or None, train_loss=s.loss, char_loss=s.ce, grad_norm=gn, lr=s.lr,
                         update_ratio=max(ratio[-1]) if ratio and ratio[-1] else None)
        for f in new:
            self.metrics.write({"event": "finding", **f})

    @property
    def statuses(self) -> dict[str, str]:
        return {cid: c.status for cid, c in self.checks.items()}

    def report(self) -> str:
        """The summary table (also said through `output`)."""
        text = table(list(self.checks.values()), self.steps)
        self.say(text)
        return text

    def close(self) -> None:
        if self.metrics and not self.closed:
            self.metrics.flush(self.steps, self.chars or None)
            self.metrics.close()
        self.closed = True

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        if not self.closed:
            self.report()
        self.close()


def watch(model: Any = None, **kwargs) -> Watch:
    """A `Watch` on a training loop: `watch(model, optimizer=opt, vocab_size=V)` for PyTorch, or
    `watch(params=params_dict)` for NumPy. Options: dataset_size (len(training_set), to test that
    factor), output ("log" | "warnings" | "print" | None | a callable taking each line), metrics (a path:
    metrics.jsonl for `charrnn plot` and `charrnn diagnose --log`), log_every (its interval),
    flat_after (steps before the loss is judged flat)."""
    return Watch(model, **kwargs)


def _optimizer_kind(optimizer: Any) -> str | None:
    name = type(optimizer).__name__.lower() if optimizer is not None else ""
    return "adam" if "adam" in name else "sgd" if "sgd" in name else None


def _optimizer_lr(optimizer: Any) -> float | None:
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        lr = groups[0].get("lr")
        return float(lr) if lr is not None else None
    return None


def _batch_shape(s: Step, state_in: Any) -> tuple[int | None, int | None]:
    """B and T: from the inputs and targets when their layout was found, else from the targets' shape
    (a (B, T) matrix, or (T, B) when the state says B is its second axis; one flat sequence is B = 1)."""
    if s.x is not None:
        return s.x.shape
    t = s.target_ids
    if t is None:
        return None, None
    parts = arrays.state_parts(state_in)
    B_state = None
    if parts:
        shape = tuple(parts[0].shape)
        B_state = shape[arrays.batch_axis(shape, None)] if len(shape) >= 2 else None
    if t.ndim == 2:
        return (t.shape[1], t.shape[0]) if B_state == t.shape[1] != t.shape[0] else t.shape
    if t.ndim == 1:
        if B_state and t.size % B_state == 0:
            return B_state, t.size // B_state
        return (1, t.size) if not parts else (None, None)
    return None, None
