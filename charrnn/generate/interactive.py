"""The engine of `charrnn sample --interactive`: type a prefix, get a continuation, again and again.

    session = Session(model, vocab, Turns(length=200, stop=("\n\n",)), carry=True)
    for event in session.turn("ROMEO:"):     # lists of shown characters, then a Finished
        ...
    session.command("/reset")                # -> a message for the user (None: not a command)
    for event in converse(session, lines):   # the whole loop: Messages, shown characters, Finished turns
        ...

Each turn feeds the typed prefix once and generates with the carried state, as `charrnn sample` does.
With `carry` the next turn continues the text so far (the typed prefix is fed after the last generated
character, and a stop string that was generated but not shown is part of it); without, every turn starts
again from the starting text (`start`, e.g. --prefix-file), or from nothing. `converse` runs the loop
over any iterable of lines: a command's answer or a prompt's error is a `Message` and the session goes
on. The CLI reads the lines and prints; this module neither reads nor prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from charrnn.generate.beam import beam_search
from charrnn.core.errors import CharRNNError
from charrnn.core.vocab import Vocab
from charrnn.generate.sample import Context, Finished, inference, prime, stream, unescape

HELP = ("type a prefix and press Enter to continue it (escapes such as \\n are understood); "
        "commands: /carry (continue the text so far), /fresh (each prefix starts afresh), "
        "/reset (forget the text so far), /help; a line starting with // is a prefix beginning with /; "
        "Ctrl-D or Ctrl-C leaves")


@dataclass(frozen=True)
class Turns:
    """How each turn generates: the options of `charrnn sample` that apply to one continuation."""

    length: int = 200
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    beam: int = 0  # > 0: beam search with this width instead of sampling
    stop: Sequence[str] = ()
    include_stop: bool = False
    score: bool = False  # log-probabilities in the Finished samples (always with beam search)


class Session:
    """The text so far (a `Context`) and whether the next prefix continues it."""

    def __init__(self, model, vocab: Vocab, turns: Turns, *, carry: bool = False, start: str = "",
                 generator: torch.Generator | None = None, normalize=lambda text: text):
        self.model, self.vocab, self.turns, self.carry = model, vocab, turns, carry
        self.generator, self.normalize = generator, normalize
        self.start: Context | None = None  # where a fresh turn begins
        if start:
            with inference(model):
                self.start = prime(model, vocab, start)
        self.context = self.start

    def command(self, line: str) -> str | None:
        """Carry out an in-loop command and say what it did; None when the line is a prefix."""
        if not line.startswith("/") or line.startswith("//"):
            return None
        name = line.strip()
        if name == "/reset":
            self.context = self.start
            return "forgot the text so far"
        if name in ("/carry", "/fresh"):
            self.carry = name == "/carry"
            return "each prefix continues the text so far" if self.carry else "each prefix starts afresh"
        if name == "/help":
            return HELP
        return f"unknown command {name!r}; {HELP}"

    def prefix(self, line: str) -> str:
        """The prefix a typed line stands for: escapes decoded, '//' for a leading '/', preprocessed."""
        line = line.rstrip("\r\n")
        return self.normalize(unescape(line[1:] if line.startswith("//") else line))

    def turn(self, line: str, echo: bool = False) -> Iterator[list[str] | Finished]:
        """Continue the typed line: what to show, step by step (the prefix first with `echo`, once it
        is known to be valid), then the Finished turn."""
        prefix, t = self.prefix(line), self.turns
        context = self.context if self.carry else self.start
        if t.beam > 0:
            result = beam_search(self.model, self.vocab, prefix, t.length, t.beam, t.stop, t.include_stop, context)
            events = iter([[result.samples[0].text], result])
        else:
            events = stream(self.model, self.vocab, prefix, t.length, temperature=t.temperature, top_k=t.top_k,
                            top_p=t.top_p, stop=t.stop, include_stop=t.include_stop, score=t.score,
                            generator=self.generator, context=context)
        if echo:
            yield [prefix]
        for event in events:
            if isinstance(event, Finished):
                self.context = event.context
            yield event


@dataclass(frozen=True)
class Message:
    """What the session says instead of continuing a line: a command's answer, or the error of one prompt
    (`error`), after which the session goes on."""

    text: str
    error: bool = False


def converse(session: Session, lines: Iterable[str], echo: bool = False) -> Iterator[Message | list[str] | Finished]:
    """The loop of `sample --interactive`, over the lines typed: per line a `Message` (a command, or a
    prompt the model cannot read), or the turn's events (`Session.turn`) ending with its Finished."""
    for line in lines:
        message = session.command(line)
        if message is not None:
            yield Message(message)
            continue
        try:
            yield from session.turn(line, echo=echo)
        except CharRNNError as e:
            yield Message(str(e), error=True)
