"""The watch's checks on the hidden state between batches.

    watch.state_not_detached     state_in still carries the previous batch's graph (PyTorch); without
                                 state_in, a step time that grows linearly with the step number
    watch.state_across_random    state carried into batches that do not continue the previous ones (fail)
    watch.state_reset_contiguous state reset although each batch continues the previous one (warn)
    watch.state_leak             state carried from one independent sequence into the next (fail)

Whether batch k+1 continues batch k is read from the data: with contiguous streams the first input of
each row is the last target of the same row before, `inputs[k+1][:, 0] == targets[k][:, -1]`, in
nearly every row; between shuffled windows or unrelated sequences only by chance (about 1 row in 15 of
English text). Whether the state was carried or reset is read from the state: `state_in` of batch k+1
equal to `state_out` of batch k (carried), or all zeros (reset). Independent sequences are told from
windows of one text by what windows never show: a length that changes from batch to batch, or every
row starting with the same token (a start marker) or ending with one (an end marker).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charrnn.watch.arrays import row_relations
from charrnn.watch.checks import Check, Step


MIN_PAIRS, MIN_ROWS = 8, 16  # consecutive batch pairs (and rows in them) before the data can say anything
CONTIGUOUS, UNRELATED = 0.9, 0.3  # fractions of rows that continue the row before
DECIDED = 0.9  # fraction of rows carried (or reset) for the state policy to be clear
MARKER = 0.9  # fraction of rows starting (or ending) with the same token: a sequence marker
TIME_AT = (50, 100, 150, 200)  # steps at which the step time is judged when no state_in is given
TIME_GROWTH = 4.0  # the last 10 steps' median time this many times the first 10 steps'


@dataclass
class NotDetached:
    check: Check = field(default_factory=lambda: Check(
        "watch.state_not_detached", "state_in= and state_out= (PyTorch tensors), or a torch model (step times)"))
    times: list = field(default_factory=list)
    clean: int = 0  # steps whose state_in carried no graph

    def observe(self, s: Step, w: Any, carried: np.ndarray | None) -> dict | None:
        if s.state_in_graph is not None:
            self.check.ran()
            if s.state_in_graph and carried is not None and carried.all():
                return self.check.state(s.n, "fail", {"step": s.n},
                                        "state_in carries the autograd graph of the previous batch: each backward "
                                        "runs back through every batch so far, so steps get slower and memory grows",
                                        "detach the state between batches: state = state.detach() (for LSTM "
                                        "state = tuple(s.detach() for s in state)) before the forward pass, and drop "
                                        "retain_graph=True from backward")
            self.clean += 1
            if self.clean >= MIN_PAIRS:
                self.check.ok(s.n, f"state_in carries no graph ({self.clean} steps)")
            return None
        if not w.params_torch or len(self.times) >= TIME_AT[-1]:
            return None
        return self._timing(s)

    def _timing(self, s: Step) -> dict | None:
        """No state_in: judge the time between calls over the first 200 steps. Backpropagating through
        every batch so far makes step k cost about k times step 1: growth that is large and steady."""
        self.check.ran()
        self.times.append(s.time)
        k = len(self.times)
        if k not in TIME_AT:
            return None
        dt = np.diff(self.times)  # (k-1,) seconds between calls
        start, end = float(np.median(dt[2:12])), float(np.median(dt[-10:]))
        tenths = [float(np.median(c)) for c in np.array_split(dt[2:], 5)]
        steady = all(b >= 0.9 * a for a, b in zip(tenths, tenths[1:]))
        r2 = float(np.corrcoef(np.arange(len(dt) - 2), dt[2:])[0, 1] ** 2) if dt[2:].std() > 0 else 0.0
        values = {"first_ms": 1e3 * start, "last_ms": 1e3 * end, "r2": r2, "steps": k}
        if end > TIME_GROWTH * start and steady and r2 > 0.8:
            return self.check.state(s.n, "fail", values,
                                    f"the time per step grew steadily from {1e3 * start:.3g} ms to {1e3 * end:.3g} ms "
                                    f"over {k} steps: each backward runs further into the past, as when the hidden "
                                    "state is carried without being detached",
                                    "detach the state between batches: state = state.detach() (for LSTM a tuple of "
                                    "detached tensors), and drop retain_graph=True from backward")
        self.check.ok(s.n, f"the time per step did not grow over {k} steps ({1e3 * start:.3g} -> {1e3 * end:.3g} ms)"
                      + ("; pass state_in= to check the graph itself" if k == TIME_AT[-1] else ""))
        return None


@dataclass
class Carry:
    """The three carry checks share their observations: rows continuing, carried, reset."""

    checks: dict = field(default_factory=lambda: {
        i: Check(i, "inputs=, targets=, state_in= and state_out=") for i in
        ("watch.state_across_random", "watch.state_reset_contiguous", "watch.state_leak")})
    prev: tuple | None = None  # (targets (B, T), state_out rows) of the previous call
    counts: Counter = field(default_factory=Counter)
    firsts: Counter = field(default_factory=Counter)
    lasts: Counter = field(default_factory=Counter)
    lengths: set = field(default_factory=set)

    @property
    def decided(self) -> bool:
        """All three have a verdict: the data need not be read any more (only the carried rows are)."""
        return all(c.status in ("ok", "warn", "fail") for c in self.checks.values())

    def observe(self, s: Step, w: Any) -> tuple[list[dict], np.ndarray | None]:
        """(new findings, which rows of state_in were carried from the previous state_out, or None when
        not compared: once the three are decided, only a state_in that carries a graph is compared)."""
        if s.state_in is None or s.state_out is None:
            return [], None
        prev, self.prev = self.prev, (s.y, s.state_out)
        if s.x is None or s.y is None or self.decided:
            if s.state_in_graph and prev is not None and prev[1].shape == s.state_in.shape:
                return [], row_relations(s.state_in, prev[1])[0]
            return [], None
        for c in self.checks.values():
            c.ran()
        carried = self._pair(s, prev) if prev is not None and prev[0] is not None else None
        self.firsts.update(s.x[:, 0].tolist())
        self.lasts.update(s.y[:, -1].tolist())
        self.lengths.add(s.T)
        return self._judge(s), carried

    def _pair(self, s: Step, prev: tuple) -> np.ndarray | None:
        prev_y, prev_out = prev
        if prev_y.shape[0] != s.x.shape[0] or prev_out.shape != s.state_in.shape:
            return None
        same, zero, was_zero = row_relations(s.state_in, prev_out)
        cont = prev_y[:, -1] == s.x[:, 0]
        seen = ~was_zero  # a zero final state cannot tell carried from reset
        c = self.counts
        c["pairs"] += 1
        c["rows"] += int(seen.sum())
        c["continue"] += int((cont & seen).sum())
        c["carried"] += int((same & seen).sum())
        c["reset"] += int((zero & ~same & seen).sum())
        return same

    def sequences(self) -> str | None:
        """Why the batches look like independent sequences rather than windows of one text, or None."""
        rows = sum(self.firsts.values())
        if len(self.lengths) > 1:
            return f"the sequence length changes between batches ({min(self.lengths)} to {max(self.lengths)})"
        for what, counter in (("starts", self.firsts), ("ends", self.lasts)):
            token, n = counter.most_common(1)[0]
            if rows >= MIN_ROWS and n >= MARKER * rows:
                return f"{n} of {rows} rows {what} with the same token ({token}), a sequence marker"
        return None

    def _judge(self, s: Step) -> list[dict]:
        c = self.counts
        if c["pairs"] < MIN_PAIRS or c["rows"] < MIN_ROWS or any(ch.finding is not None for ch in self.checks.values()):
            return []
        cont, carried, reset = (c[k] / c["rows"] for k in ("continue", "carried", "reset"))
        values = {"pairs": c["pairs"], "rows": c["rows"], "rows_continuing": cont, "rows_carried": carried, "rows_reset": reset}
        seen = f"over {c['pairs']} pairs of batches, {100 * cont:.0f}% of rows continue the row before, state carried in " \
               f"{100 * carried:.0f}% and reset in {100 * reset:.0f}%"
        found = []
        if cont >= CONTIGUOUS and reset >= DECIDED:
            found.append(self.checks["watch.state_reset_contiguous"].state(
                s.n, "warn", values, f"each batch continues the one before (inputs[k+1][:, 0] == targets[k][:, -1]), but "
                f"the state is reset every batch ({seen}): the model never sees context older than T = {s.T}",
                "carry the state between these batches: pass the last batch's final state, detached, instead of zeros "
                "(reset only at the start of an epoch)"))
        elif cont <= UNRELATED and carried >= DECIDED:
            why = self.sequences()
            if why:
                found.append(self.checks["watch.state_leak"].state(
                    s.n, "fail", values, f"the final state of one sequence starts the next, unrelated one ({why}; {seen}): "
                    "each sequence begins with the previous one's memory",
                    "reset the state before each independent sequence: hidden_state = np.zeros((hidden_size, batch_size)) "
                    "(or model.begin_state) inside the batch loop, before the forward pass"))
            else:
                found.append(self.checks["watch.state_across_random"].state(
                    s.n, "fail", values, f"the state is carried across batches that do not continue each other ({seen}), "
                    "as with shuffled windows: the carried state belongs to a different place in the text",
                    "with random windows start every batch from a zero state (d2l: begin_state when use_random_iter), "
                    "or switch to sequential batches to keep carrying it"))
        elif (cont >= CONTIGUOUS and carried >= DECIDED) or (cont <= UNRELATED and reset >= DECIDED):
            how = "carried between contiguous batches" if cont >= CONTIGUOUS else "reset between unrelated batches"
            for ch in self.checks.values():
                ch.ok(s.n, f"state {how} ({seen})")
        found = [f for f in found if f]
        for ch in self.checks.values():
            if found and ch.finding is None:
                ch.status, ch.step, ch.summary = "ok", s.n, f"not this: see {found[0]['id']}"
        return found
