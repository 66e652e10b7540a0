"""The continuous batcher: every active request to one model steps together, one character per row.

One `Batcher` (a thread) per model. A request is a `Job`: one prompt, `n` rows, its own sampling options,
stop strings and torch.Generator. Jobs wait in a bounded queue; at each step boundary the batcher feeds
the waiting jobs' prompts (`prime`, exactly as `charrnn sample` does) and appends their rows to the batch;
then one `model.step` advances every row, (B,) ids -> (B, V) logits, and each row draws its next character.
A row that reaches a stop string or its length leaves the batch at once; a cancelled job's rows leave at
the next step.

Why a seeded request's text equals `charrnn sample` with the same seed and options: the state after the
prompt comes from the same `prime` call; each job draws `n` uniforms per step from its own generator, as
`next_ids` does for `--num-samples n`, whichever of its rows are still running (a row's draw does not
depend on the other rows, `draw`); and the per-row maths (`sampling_cdf`, the step) is the same whatever
else is in the batch, up to the float rounding of a batched matrix product.

    batcher = Batcher(model, vocab, max_rows=64, max_waiting=256)
    batcher.start()
    job = Job("ROMEO:", n=1, max_chars=100, sampling=Sampling(0.8), on_update=print)
    batcher.submit(job)        # -> the engine thread calls on_update(job, [Delta, ...]) after each step
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from charrnn.core.vocab import Vocab
from charrnn.generate.sample import StopWatch, draw, inference, prime, sampling_cdf, stepper


UNIFORM_BLOCK = 64  # steps of uniforms a job draws at once


class QueueFull(Exception):
    """The bounded queue of waiting jobs is full (the server answers 429)."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@dataclass(frozen=True)
class CharLogprob:
    """One character's log-probability under the model (temperature 1), and the `top` most likely
    characters at that position with theirs."""

    char: str
    logprob: float | None
    top: dict[str, float] | None


@dataclass(frozen=True)
class Delta:
    """What one row of a job shows after a step: new text (may be empty while characters that could
    begin a stop string are held back), their log-probabilities when asked for, and the finish reason
    ("stop" or "length") on the row's last delta."""

    row: int
    text: str
    logprobs: list[CharLogprob]
    finish: str | None = None


@dataclass(eq=False)
class Job:
    """One prompt's `n` rows. `prompt` is already preprocessed and checked against the vocabulary;
    `stops` as `check_stops` returns them. `on_update(job, deltas)` runs on the engine thread after
    every step that changed something (a streaming client) or only once, with everything, when the job
    is done (`stream=False`). `top_logprobs` None asks for no log-probabilities."""

    prompt: str
    n: int
    max_chars: int
    sampling: Sampling
    stops: tuple[str, ...] = ()
    top_logprobs: int | None = None
    generator: torch.Generator | None = None
    stream: bool = True
    on_update: Callable[["Job", list[Delta]], None] | None = None
    index: int = 0  # the caller's tag (the prompt's place in its request)
    texts: list[str] = field(default_factory=list)
    finish: list[str | None] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)  # characters generated per row, stop strings included
    error: str | None = None  # an internal failure; the job ends with it
    cancelled: bool = False
    _watches: list[StopWatch] = field(default_factory=list)
    _pending: list[list[CharLogprob]] = field(default_factory=list)  # generated, not yet shown
    _held: list[Delta] = field(default_factory=list)
    _block: list[list[float]] = field(default_factory=list)  # uniforms drawn ahead, the next step's last

    def __post_init__(self):
        self.texts, self.finish, self.generated = [""] * self.n, [None] * self.n, [0] * self.n
        self._watches = [StopWatch(self.stops, include=False, before=self.prompt) for _ in range(self.n)]
        self._pending = [[] for _ in range(self.n)]

    @property
    def done(self) -> bool:
        return self.cancelled or self.error is not None or all(f is not None for f in self.finish)

    def cancel(self) -> None:
        """Free the job's rows at the next step boundary (a client that went away, a timeout)."""
        self.cancelled = True

    def _uniforms(self) -> list[float]:
        """This step's n uniforms from the job's generator: the numbers `torch.rand(n, 1)` would give,
        drawn 64 steps at a time (torch.rand(64, n) yields the same sequence as 64 draws of n; one
        call per 64 steps instead of one per step). float32 values, exact as Python floats."""
        if not self._block:
            self._block = torch.rand(UNIFORM_BLOCK, self.n, generator=self.generator).tolist()[::-1]
        return self._block.pop()

    def _advance(self, row: int, char: str, lp: CharLogprob | None) -> Delta | None:
        """One generated character for `row`: what it shows now, and whether the row is finished."""
        watch = self._watches[row]
        self.generated[row] += 1
        if lp is not None:
            self._pending[row].append(lp)
        shown = watch.push(char)
        finish = "stop" if watch.stop is not None else "length" if self.generated[row] >= self.max_chars else None
        if finish == "length":
            shown += watch.flush()
        if finish is not None:
            self.finish[row] = finish
        if not shown and finish is None:
            return None
        self.texts[row] += shown
        # the shown characters are the oldest generated ones; a stop string's own characters are dropped
        lps, self._pending[row] = self._pending[row][: len(shown)], self._pending[row][len(shown):]
        return Delta(row, shown, lps if lp is not None else [], finish)

    def _emit(self, deltas: list[Delta]) -> None:
        if not self.stream:
            self._held.extend(deltas)
            if not self.done:
                return
            deltas, self._held = self._held, []
        if self.on_update is not None:
            self.on_update(self, deltas)


@dataclass
class _Rows:
    """The running batch: for each of its B rows, the job and the job's row number; the state
    (L, B, H) (a pair for an LSTM) and the last ids (B,), the next step's input."""

    owners: list[tuple[Job, int]] = field(default_factory=list)
    state: object = None
    last: torch.Tensor | None = None


class Batcher:
    """The engine thread of one model (see the module docstring). `on_step(rows)` is told each step's
    batch size (the metrics); `max_rows` caps the rows stepped together, `max_waiting` the queue."""

    def __init__(self, model, vocab: Vocab, max_rows: int = 64, max_waiting: int = 256,
                 on_step: Callable[[int], None] | None = None):
        self.model, self.vocab = model.eval(), vocab
        self.max_rows, self.max_waiting, self.on_step = max_rows, max_waiting, on_step
        self.waiting: collections.deque[Job] = collections.deque()
        self.rows = _Rows()
        self.peak_rows = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="charrnn-batcher", daemon=True)
        self._step = stepper(model)

    @property
    def active_rows(self) -> int:
        return len(self.rows.owners)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the running and waiting jobs, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job; QueueFull when `max_waiting` jobs already wait."""
        if job.n > self.max_rows:
            raise ValueError(f"a job of {job.n} rows can never fit a batch of {self.max_rows}")
        with self._wake:
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append(job)
            self._wake.notify()

    def _run(self) -> None:
        with inference(self.model):
            while True:
                with self._wake:
                    while not self.waiting and not self.rows.owners and not self._stopping:
                        self._wake.wait()
                    if self._stopping and not self.waiting and not self.rows.owners:
                        return
                    admitted = self._admissible()
                try:
                    self._admit(admitted)
                    if self.rows.owners:
                        self._advance()
                except Exception as e:  # a bug: end the jobs in the batch with it, keep serving
                    self._fail(admitted, e)

    def _admissible(self) -> list[Job]:
        """The waiting jobs, in order, whose rows fit beside the running ones (call holding the lock)."""
        out, free = [], self.max_rows - len(self.rows.owners)
        while self.waiting and (self.waiting[0].n <= free or self.waiting[0].cancelled):
            job = self.waiting.popleft()
            if not job.cancelled:
                out.append(job)
                free -= job.n
        return out

    def _admit(self, jobs: list[Job]) -> None:
        """Feed each job's prompt (as `charrnn sample` does) and append its rows to the batch."""
        for job in jobs:
            if job.max_chars == 0:  # nothing to generate: done before the first step
                job.finish = ["length"] * job.n
                job._emit([Delta(i, "", [], "length") for i in range(job.n)])
                continue
            context = prime(self.model, self.vocab, job.prompt, job.n)
            r = self.rows
            if r.owners:
                r.state = _cat(r.state, context.state)
                r.last = torch.cat([r.last, context.last])
            else:
                r.state, r.last = context.state, context.last
            r.owners.extend((job, i) for i in range(job.n))

    def _advance(self) -> None:
        """One step of every row: draw, show, retire the finished rows."""
        r = self.rows
        self.peak_rows = max(self.peak_rows, len(r.owners))
        if self.on_step is not None:
            self.on_step(len(r.owners))
        logits, state = self._step(r.last, r.state)  # (B, V)
        ids = self._choose(logits)  # (B,)
        logps = self._logprobs(logits, ids)
        chars = [self.vocab.chars[i] for i in ids.tolist()]
        deltas: dict[Job, list[Delta]] = {}
        for b, ((job, row), char) in enumerate(zip(r.owners, chars)):
            if job.cancelled:
                continue
            delta = job._advance(row, char, logps[b] if logps is not None else None)
            if delta is not None:
                deltas.setdefault(job, []).append(delta)
        keep = [b for b, (job, row) in enumerate(r.owners) if job.finish[row] is None and not job.cancelled]
        for job, ds in deltas.items():
            job._emit(ds)
        if len(keep) < len(r.owners):
            index = torch.tensor(keep, dtype=torch.long, device=ids.device)
            state, ids = _rows(state, index), ids.index_select(0, index)
            r.owners = [r.owners[b] for b in keep]
        r.state, r.last = state, ids

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next id of every row (B,): rows grouped by their sampling options, each group's
        distribution computed at once, and each job's uniforms drawn from its own generator, `n` per
        step as `next_ids` draws them for `charrnn sample --num-samples n` (`Job._uniforms`)."""
        groups: dict[Sampling, list[int]] = {}
        drawn: dict[Job, list[float]] = {}
        u_rows = []  # row b -> its uniform this step (0.0 for a greedy row)
        for b, (job, row) in enumerate(self.rows.owners):
            groups.setdefault(job.sampling, []).append(b)
            if job.sampling.temperature > 0:
                if job not in drawn:
                    drawn[job] = job._uniforms()
                u_rows.append(drawn[job][row])
            else:
                u_rows.append(0.0)
        ids = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        for sampling, rows in groups.items():
            every = len(rows) == logits.shape[0]
            index = torch.tensor(rows, dtype=torch.long, device=logits.device)
            part = logits if every else logits.index_select(0, index)  # (G, V)
            if sampling.temperature <= 0:
                chosen = part.argmax(dim=-1)
            else:
                cum = sampling_cdf(part, sampling.temperature, sampling.top_k, sampling.top_p)  # (G, V)
                u = torch.tensor(u_rows if every else [u_rows[b] for b in rows], dtype=cum.dtype)[:, None]  # (G, 1)
                chosen = draw(cum, u).to(logits.device)
            if every:
                return chosen
            ids[index] = chosen
        return ids

    def _logprobs(self, logits: torch.Tensor, ids: torch.Tensor) -> list[CharLogprob | None] | None:
        """Per row, the chosen character's log-probability (temperature 1) and the top k, for the rows
        whose job asked; None when no row did."""
        ks = [job.top_logprobs for job, _ in self.rows.owners]
        if all(k is None for k in ks):
            return None
        logp = logits.float().log_softmax(-1).cpu()  # (B, V)
        chosen = logp.gather(1, ids.cpu()[:, None]).squeeze(1).tolist()
        kmax = max(k for k in ks if k is not None)
        top_v, top_i = logp.topk(min(kmax, logp.shape[1]), dim=-1) if kmax else (None, None)
        out: list[CharLogprob | None] = []
        for b, k in enumerate(ks):
            if k is None:
                out.append(None)
                continue
            top = {self.vocab.chars[i]: v for i, v in zip(top_i[b, :k].tolist(), top_v[b, :k].tolist())} if k else {}
            out.append(CharLogprob(self.vocab.chars[int(ids[b])], chosen[b], top))
        return out

    def _fail(self, admitted: list[Job], error: Exception) -> None:
        """End every job in the batch (and those being admitted) with `error`; start an empty batch."""
        jobs = dict.fromkeys([job for job, _ in self.rows.owners] + admitted)
        self.rows = _Rows()
        for job in jobs:
            job.error = f"{type(error).__name__}: {error}"
            if job.on_update is not None:
                job.on_update(job, [])


def _cat(a, b):
    """Two states side by side along the batch: (L, B1, H) + (L, B2, H) -> (L, B1 + B2, H)."""
    if isinstance(a, tuple):
        return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b))
    return torch.cat([a, b], dim=1)


def _rows(state, index: torch.Tensor):
    """The rows `index` of a state, (L, B, H) -> (L, len(index), H)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def prompt_logprobs(model, vocab: Vocab, prompt: str, top: int) -> list[CharLogprob]:
    """The prompt's characters scored by the model (for `echo` with `logprobs`): the first has no
    log-probability (nothing precedes it), each later one is scored given the characters before it."""
    if not prompt:
        return []
    index = vocab.index()
    ids = torch.tensor([[index[c] for c in prompt]], dtype=torch.long, device=next(model.parameters()).device)
    out = [CharLogprob(prompt[0], None, None)]
    if len(prompt) == 1:
        return out
    with inference(model):
        logits, _ = model(ids[:, :-1])  # (1, P - 1, V): the prediction of each next character
    logp = logits[0].float().log_softmax(-1).cpu()  # (P - 1, V)
    chosen = logp.gather(1, ids[0, 1:].cpu()[:, None]).squeeze(1).tolist()
    top_v, top_i = logp.topk(min(top, logp.shape[1]), dim=-1)
    for t, c in enumerate(prompt[1:]):
        out.append(CharLogprob(c, chosen[t], {vocab.chars[i]: v for i, v in zip(top_i[t].tolist(), top_v[t].tolist())}))
    return out
