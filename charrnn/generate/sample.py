"""Generate text from a model after warming its state up on a prefix.

The prefix is fed through the network once (forward calls of up to 4,096 characters); each generated
character then costs exactly one step with the carried state, so the cost per character does not grow
with the length. `num_samples` continuations are generated together as one batch, and all randomness
comes from an explicit torch.Generator: the same seed gives the same text.

    for chars in generate(model, vocab, "ROMEO:", 200):           # one list of N characters per step
    result = sample(model, vocab, "ROMEO:", 500, stop=["\n\n"], score=True)   # -> Finished
    result.samples[0].text, result.samples[0].logprob_per_char

    prefix, note = prepare_prefix("ROMEO:", ck.preprocessing)      # as the training text was prepared
    seed, generator = seeded(None)                                  # a fresh seed, reported to the user

`stream` is the same with stop strings (each row ends at its own first one; `StopWatch` decides what
may be shown), log-probabilities under the model, and a `Context` to continue from: the state after
all the text but its last character, and that character. Beam search lives in `charrnn.generate.beam`, the
interactive loop in `charrnn.generate.interactive`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from charrnn.core.checkpoint import Preprocessing
from charrnn.core.vocab import Vocab
from charrnn.core.errors import CharRNNError
from charrnn.core.models import State


def check_prefix(vocab: Vocab, prefix: str, what: str = "the prefix", listed: str = "`charrnn info` lists them") -> None:
    missing = vocab.unknown(prefix)
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise CharRNNError(
            f"{what} has {len(missing)} character(s) the model never saw: {shown} "
            f"(its vocabulary has {len(vocab)} characters; {listed})"
        )


def prepare_prefix(prefix: str, preprocessing: Preprocessing, vocab: Vocab | None = None,
                   what: str = "the prefix", listed: str = "`charrnn info` lists them") -> tuple[str, str | None]:
    """A prefix prepared as the model's training text was (the model only ever read text prepared so):
    -> (the prepared prefix, a note for the user when that changed it, else None). With `vocab` it is
    checked now, before any work: a character the model never saw is an error naming `what`."""
    prepared = preprocessing.prefix(prefix)
    note = None if prepared == prefix else f"{what} was preprocessed as the training corpus was: {prepared!r}"
    if vocab is not None:
        check_prefix(vocab, prepared, what, listed)
    return prepared, note


def seeded(seed: int | None) -> tuple[int, torch.Generator]:
    """The generator a sampling command draws from, and its seed: `seed`, or a fresh random one (reported,
    so that the same text can be had again with --seed)."""
    if seed is None:
        seed = int(torch.seed() % (2**31))
    return seed, torch.Generator().manual_seed(seed)


def seed_char(vocab: Vocab) -> str:
    """What an empty prefix starts from: a newline, else a space, else the first character."""
    for c in ("\n", " "):
        if c in vocab.chars:
            return c
    return vocab.chars[0]


def next_ids(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
             generator: torch.Generator | None) -> torch.Tensor:
    """logits (N, V) -> one id per row (N,). temperature 0 is greedy; top-k and top-p (nucleus) keep
    the k most likely / the smallest set whose probability reaches p, then renormalise."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    cum = sampling_cdf(logits, temperature, top_k, top_p)
    u = torch.rand(cum.shape[0], 1, generator=generator, dtype=cum.dtype)  # (N, 1)
    return draw(cum, u).to(logits.device)


def sampling_cdf(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """logits (N, V) -> the cumulative (unnormalised) distribution each row is drawn from, (N, V) on
    the CPU: the temperature, top-k and top-p of `next_ids` applied row by row."""
    logits = logits.float() / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep tokens until the mass before them reaches p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits.softmax(dim=-1).cpu().cumsum(dim=-1)  # (N, V)


def draw(cum: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: one uniform in [0, 1) per row, u (N, 1), -> the first id (N,) whose cumulative
    probability exceeds u times the row's total (right=True never picks a zero-probability id); cheaper
    than torch.multinomial for one draw per row. Rows are independent: a row's id depends on its own
    cum and u only, whatever the other rows are (the server draws many requests' rows at once)."""
    ids = torch.searchsorted(cum, u * cum[:, -1:], right=True).clamp_(max=cum.shape[1] - 1)
    return ids.squeeze(1)


def generate(model, vocab: Vocab, prefix: str = "", length: int = 200, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, num_samples: int = 1,
             generator: torch.Generator | None = None) -> Iterator[list[str]]:
    """Yield `length` steps, each a list of `num_samples` new characters (one per sample).
    The prefix is checked here, before the first character is generated."""
    check_prefix(vocab, prefix)
    return _generate(model, vocab, prefix, length, temperature, top_k, top_p, num_samples, generator)


def _generate(model, vocab, prefix, length, temperature, top_k, top_p, num_samples, generator):
    with inference(model):
        context = prime(model, vocab, prefix, num_samples)
        choose = chooser(temperature, top_k, top_p, generator)
        for x, _, _ in steps(model, context, length, choose):
            yield [vocab.chars[i] for i in x.tolist()]


@dataclass(frozen=True)
class Context:
    """Where generation resumes: the state after all the text but its last character, and that last
    character (N,), the next input. A further prefix or the next step starts by feeding `last`."""

    state: State
    last: torch.Tensor  # (N,) ids


@contextmanager
def inference(model):
    """Eval mode (no dropout) and no autograd for the duration; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def prime(model, vocab: Vocab, text: str, num_samples: int = 1, context: Context | None = None,
          chunk: int = 4096) -> Context:
    """Feed `text` after `context` (or from a zero state) and return where generation resumes.

    Everything but the last character goes through the network in forward calls of `chunk` characters
    (one call for a short prefix; a book-length prime never builds a (N, length, V) one-hot at once).
    From a zero state an empty text starts from `seed_char`. Call inside `inference(model)`."""
    device = next(model.parameters()).device
    if context is not None and not text:
        return context
    index = vocab.index()
    chars = text if (text or context is not None) else seed_char(vocab)
    ids = torch.tensor([index[c] for c in chars], dtype=torch.long, device=device).repeat(num_samples, 1)  # (N, P)
    if context is None:
        state = model.begin_state(num_samples, device)
    else:
        state = context.state
        ids = torch.cat([context.last.to(device)[:, None], ids], dim=1)  # (N, 1 + P): `last` is fed first
    for i in range(0, ids.shape[1] - 1, chunk):
        _, state = model(ids[:, i : min(i + chunk, ids.shape[1] - 1)], state)
    return Context(state, ids[:, -1])


def chooser(temperature: float, top_k: int, top_p: float, generator: torch.Generator | None):
    """The rule that turns a step's logits (N, V) into the next ids (N,): see next_ids."""
    return lambda logits: next_ids(logits, temperature, top_k, top_p, generator)


def steps(model, context: Context, length: int, choose, score: bool = False):
    """Yield (ids (N,), log-probabilities (N,) or None, state) for `length` steps; Context(state, ids)
    is where generation resumes after the step.

    One single-character step per generated character, with the carried state: the cost per
    character does not depend on how much text came before. With `score`, the log-probability of each
    chosen id under the model's own distribution (temperature 1, no top-k/p), in float32."""
    step = stepper(model)
    state, x = context.state, context.last
    for _ in range(length):
        logits, state = step(x, state)  # (N, V)
        x = choose(logits)  # (N,)
        logp = logits.float().log_softmax(-1).gather(1, x[:, None]).squeeze(1) if score else None
        yield x, logp, state


def stepper(model):
    """One character per row, (N,) ids -> (N, V) logits: `model.step` where the model has one
    (CharRNN's fast single-step path), else a forward call on an (N, 1) input."""
    if hasattr(model, "step"):
        return model.step

    def step(x, state):
        logits, state = model(x[:, None], state)  # (N, 1, V)
        return logits[:, -1], state

    return step


def sample_text(model, vocab: Vocab, prefix: str, length: int, generator: torch.Generator | None = None,
                temperature: float = 1.0) -> str:
    """One sample as a string: the prefix followed by `length` generated characters."""
    chars = [step[0] for step in generate(model, vocab, prefix, length, temperature, generator=generator)]
    return prefix + "".join(chars)


# ------------------------------------------------------------------------------ stop strings, scores

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unescape(text: str) -> str:
    r"""Turn the escape sequences a shell cannot easily pass into characters: \n \t \r \0 \\ \' \"
    \xHH \uHHHH. An unknown escape is an error (it would otherwise silently never match)."""
    def one(m: re.Match) -> str:
        body = m.group(1)
        if len(body) > 1:  # \xHH or \uHHHH
            return chr(int(body[1:], 16))
        if body in _ESCAPES:
            return _ESCAPES[body]
        if body in ("x", "u"):
            digits = "two" if body == "x" else "four"
            raise CharRNNError(f"--stop {text}: \\{body} needs {digits} hex digits (\\x0a, \\u00e9)")
        raise CharRNNError(f"--stop {text}: unknown escape \\{body} (known: \\n \\t \\r \\0 \\\\ \\xHH \\uHHHH)")

    return re.sub(r"(?s)\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.?)", one, text)


def check_stops(vocab: Vocab, stops: Sequence[str]) -> tuple[str, ...]:
    """The stop strings, longest first (of two that end at the same character the longer one wins);
    empty ones and ones the model can never generate are errors."""
    for s in stops:
        if not s:
            raise CharRNNError("a stop string is empty (--stop needs at least one character)")
        missing = vocab.unknown(s)
        if missing:
            raise CharRNNError(f"the stop string {s!r} can never occur: the model never generates "
                               f"{', '.join(repr(c) for c in missing)}")
    return tuple(sorted(dict.fromkeys(stops), key=len, reverse=True))


class StopWatch:
    """Watches one row's generated characters for the first stop string and says what may be shown.

    A stop string counts when it ends at a generated character, so one that begins in the text before
    (`before`, the prefix) and ends in the generated text counts, and one wholly inside it does not.
    When stop strings are not shown (`include=False`), characters that could still turn out to begin
    one are held back until it is clear; `push` returns what can be shown now, `flush` the rest."""

    def __init__(self, stops: tuple[str, ...], include: bool = False, before: str = ""):
        self.stops, self.include = stops, include
        self.keep = max((len(s) for s in stops), default=0)  # characters of context a match can span
        self.tail = before[len(before) - self.keep + 1 :] if self.keep > 1 else ""
        self.held = ""  # generated, not yet shown
        self.stop: str | None = None  # the stop string that ended the row

    def push(self, ch: str) -> str:
        if not self.stops:
            return ch
        self.tail = (self.tail + ch)[-self.keep :]
        self.held += ch
        for s in self.stops:
            if self.tail.endswith(s):
                self.stop = s
                shown = self.held if self.include else self.held[: max(0, len(self.held) - len(s))]
                self.held = ""
                return shown
        hold = 0 if self.include else self._pending()
        shown, self.held = self.held[: len(self.held) - hold], self.held[len(self.held) - hold :]
        return shown

    def _pending(self) -> int:
        """How many held characters end the text in a proper beginning of some stop string."""
        for k in range(min(self.keep - 1, len(self.tail)), 0, -1):
            if any(s.startswith(self.tail[-k:]) for s in self.stops):
                return min(k, len(self.held))
        return 0

    def flush(self) -> str:
        shown, self.held = self.held, ""
        return shown


@dataclass
class Sample:
    """One generated continuation and how likely the model finds it."""

    text: str  # the generated characters (without the stop string unless it is shown)
    logprob: float  # ln p(every generated character | what came before), the model at temperature 1
    scored: int  # characters in `logprob`: all generated ones, the stop string included even when not shown
    stop: str | None  # the stop string that ended it; None when it ran to the length limit

    @property
    def logprob_per_char(self) -> float:
        return self.logprob / self.scored if self.scored else float("nan")

    def as_dict(self) -> dict:
        lp = self.logprob_per_char
        return {"logprob": self.logprob, "chars_scored": self.scored, "logprob_per_char": lp,
                "bits_per_char": -lp / math.log(2), "stop": self.stop}


@dataclass
class Finished:
    """The last event of `stream`: every row's sample, and where a further turn resumes."""

    samples: list[Sample]
    context: Context


def stream(model, vocab: Vocab, prefix: str = "", length: int = 200, *, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, num_samples: int = 1, stop: Sequence[str] = (),
           include_stop: bool = False, score: bool = False, generator: torch.Generator | None = None,
           context: Context | None = None) -> Iterator[list[str] | Finished]:
    """Sample with stop strings: yield, per step, what each row shows now (a list of N strings, ""
    for a row that is holding characters back or has stopped), and last a `Finished`.

    Each row ends at its own first stop string; the batch stops stepping once every row has. Rows
    draw their random numbers in one batch, so a row's text does not depend on when the others stop.
    `context` continues from an earlier `Finished.context` (the prefix is then fed after it); the
    result's context is exact for one row (others keep stepping after they stop). The prefix and
    stop strings are checked before anything runs."""
    check_prefix(vocab, prefix)
    stops = check_stops(vocab, stop)
    return _stream(model, vocab, prefix, length, chooser(temperature, top_k, top_p, generator), num_samples,
                   stops, include_stop, score, context)


def _stream(model, vocab, prefix, length, choose, num_samples, stops, include_stop, score, context):
    watches = [StopWatch(stops, include_stop, prefix) for _ in range(num_samples)]
    texts, logprob, scored = [""] * num_samples, [0.0] * num_samples, [0] * num_samples
    with inference(model):
        context = prime(model, vocab, prefix, num_samples, context)
        x = None
        for x, logp, state in steps(model, context, length, choose, score):
            lps = logp.tolist() if score else None
            shown = [""] * num_samples
            for row, i in enumerate(x.tolist()):
                w = watches[row]
                if w.stop is None:
                    shown[row] = w.push(vocab.chars[i])
                    texts[row] += shown[row]
                    scored[row] += 1
                    logprob[row] += lps[row] if score else 0.0
            yield shown
            if all(w.stop is not None for w in watches):
                break
        if x is not None:  # the last step's: where a further turn resumes
            context = Context(state, x)
    rest = [w.flush() for w in watches]
    if any(rest):
        yield rest
    samples = [Sample(t + r, lp if score else 0.0, n if score else 0, w.stop)
               for t, r, lp, n, w in zip(texts, rest, logprob, scored, watches)]
    yield Finished(samples, context)


def sample(model, vocab: Vocab, prefix: str = "", length: int = 200, **options) -> Finished:
    """`stream` run to the end: every row's `Sample` and the context after it."""
    for event in stream(model, vocab, prefix, length, **options):
        pass
    return event
