"""Where a model is surprised: score a text character by character.

    scored = score_ids(model, ids, device)     # one stream, state carried from a zero start
    scored.bits[i]                             # -log2 p(x_i | x_<i); nan for i = 0 (nothing predicts it)
    scored.top_ids[i], scored.top_probs[i]     # the model's 5 most likely characters for position i
    scored.loss                                # total NLL / characters scored (nats), as `charrnn eval`
    scored.summary                             # "899 characters scored: loss 1.9 nats/char, ..."
    score_ids(model, ids, device, tokens=vocab.chars)   # with the vocabulary: scored.text, and a notebook
                                                         # shows the text coloured (_repr_html_)

This is the one scoring function behind `charrnn eval --show/--html` and `charrnn explore`. The text runs
as a single stream through `evaluate.scan_chunks` (state carried, no grad), exactly as `evaluate_ids` scores a text
that fits one stream, so the surprisal of a text sums to its eval loss x characters.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.core.errors import CharRNNError
from charrnn.training.evaluate import LossReport, scan_chunks

TOP_K = 5
MAX_BITS = 8.0  # colour scale of the terminal map and the page: 0 bits white, MAX_BITS or more the strongest red
DEPTH = 200  # the strongest colour is 255 - DEPTH from white, so that text stays readable on it


@dataclass
class Scored:
    """A text scored by a model. Arrays have one row per character of the text."""

    ids: np.ndarray  # (n,) character ids
    bits: np.ndarray  # (n,) float64 surprisal in bits; bits[0] is nan
    top_ids: np.ndarray  # (n, k) most likely ids for position i, given x_<i (row 0: -1)
    top_probs: np.ndarray  # (n, k) their probabilities (row 0: nan)
    tokens: tuple[str, ...] = ()  # the vocabulary in id order, when known: the text and its picture need it

    @property
    def chars(self) -> int:
        """Characters scored (every one but the first)."""
        return max(len(self.ids) - 1, 0)

    @property
    def nll(self) -> float:
        """Total negative log-likelihood in nats."""
        return float(np.nansum(self.bits) * math.log(2))

    @property
    def report(self) -> LossReport:
        """Loss, bits per character and perplexity, as `charrnn eval` reports them."""
        return LossReport(self.nll, self.chars)

    @property
    def loss(self) -> float:
        return self.report.loss

    @property
    def text(self) -> str:
        """The scored text (needs `tokens`)."""
        return "".join(self.tokens[i] for i in self.ids.tolist())

    @property
    def summary(self) -> str:
        r = self.report
        return (f"{r.chars:,} characters scored: loss {r.loss:.4f} nats/char, {r.bpc:.3f} bits/char, "
                f"perplexity {r.perplexity:.3f}")

    def _repr_html_(self) -> str:
        """The text coloured by surprisal, as `eval --show` and the explore page colour it; hovering a
        character shows its bits and the model's top guesses for it. Jupyter shows this inline."""
        head = f"<div>{html.escape(self.summary)}</div>"
        if not self.tokens:
            return f'<div style="font-family:monospace">{head}</div>'
        spans = []
        for i, c in enumerate(self.text):
            if i == 0:
                tip, rgb = "the first character: nothing predicts it", (255, 255, 255)
            else:
                guesses = ", ".join(f"{self.tokens[j]!r} {p:.0%}" for j, p in zip(self.top_ids[i].tolist(), self.top_probs[i].tolist()))
                tip, rgb = f"{self.bits[i]:.2f} bits; the model expected {guesses}", surprisal_rgb(self.bits[i])
            shown = "\u21b5\n" if c == "\n" else c
            spans.append(f'<span style="background:rgb{rgb}" title="{html.escape(tip)}">{html.escape(shown)}</span>')
        return (f'<div style="font-family:monospace">{head}'
                f'<div style="white-space:pre-wrap;color:#000;line-height:1.5">{"".join(spans)}</div></div>')

    def worst(self, n: int = 10) -> list[int]:
        """Positions of the n most surprising characters, most surprising first (ties: earliest first)."""
        order = np.argsort(-np.nan_to_num(self.bits, nan=-1.0), kind="stable")
        return [int(i) for i in order[: min(n, self.chars)]]


@torch.no_grad()
def score_ids(model, ids, device, top_k: int = TOP_K, chunk: int = 256, tokens: tuple[str, ...] = ()) -> Scored:
    """Score ids[1:] given ids[:-1] as one stream from a zero state (see the module docstring); `tokens`,
    the vocabulary in id order, travels with the result for its text and picture."""
    ids = np.asarray(ids).astype(np.int64)
    n = len(ids)
    k = min(top_k, model.vocab_size)
    bits = np.full(n, np.nan)
    top_ids = np.full((n, k), -1, dtype=np.int64)
    top_probs = np.full((n, k), np.nan)
    was_training = model.training
    model.eval()
    take = lambda s, e: torch.from_numpy(ids[s:e])[None].to(device)  # (1, t): inputs x_s .. x_{s+t-1}
    for s, e, logits in scan_chunks(model, model.begin_state(1, device), n - 1, chunk, take):
        # logits (1, t, V): predictions of x_{s+1} .. x_{s+t}
        logp = torch.log_softmax(logits[0].double(), dim=-1).cpu()  # (t, V), float64 for the sums
        y = torch.from_numpy(ids[s + 1 : e + 1])
        bits[s + 1 : e + 1] = (-logp.gather(1, y[:, None])[:, 0] / math.log(2)).numpy()
        best = logp.topk(k, dim=-1)
        top_ids[s + 1 : e + 1] = best.indices.numpy()
        top_probs[s + 1 : e + 1] = best.values.exp().numpy()
    model.train(was_training)
    return Scored(ids=ids, bits=bits, top_ids=top_ids, top_probs=top_probs, tokens=tuple(tokens))


def surprisal_rgb(bits: float) -> tuple[int, int, int]:
    """The background of a character of this surprisal (explore.html computes the same in JS)."""
    g = 255 - math.floor(DEPTH * min(max(bits, 0.0) / MAX_BITS, 1.0) + 0.5)
    return 255, g, g


def context(text: str, i: int, width: int = 12) -> tuple[str, str]:
    """The `width` characters before and after position i, newlines shown as ↵ (for the worst spots)."""
    def flat(s):
        return s.replace("\n", "\u21b5")

    return flat(text[max(0, i - width) : i]), flat(text[i + 1 : i + 1 + width])


def load_for_scoring(ckpt_path, text=None, split: str | None = "val", device: str = "cpu", impl: str | None = None,
                     data_dir: str | None = None, max_chars: int = 2000):
    """The model and the first `max_chars` ids of what `charrnn eval` would score (a file or a split).
    Returns (model, device, ids, source, the loaded Checkpoint)."""
    from charrnn.analysis.subject import open_checkpoint

    if max_chars < 2:
        raise CharRNNError(f"--max-chars must be at least 2 (got {max_chars})")
    s = scored_part(open_checkpoint(ckpt_path, device, impl), text, split, data_dir, max_chars)
    return s.model, s.device, np.asarray(s.ids), s.source, s.checkpoint


def scored_part(subject, text, split: str | None, data_dir: str | None, max_chars: int):
    """The subject on the first `max_chars` characters of a file (`text`) or of its run's `split`: what a
    surprisal map shows. Fewer than 2 characters is an error (nothing would be scored)."""
    s = (subject.with_text(text) if text is not None else subject.with_split(split, data_dir)).first(max_chars)
    if len(s.ids) < 2:
        raise CharRNNError(f"{s.source}: {len(s.ids)} character(s); scoring needs at least 2")
    return s
