"""Per-character loss of a model on a text: the one number every report in charrnn is made of.

The text is laid out as contiguous streams, one per batch row, and fed in chunks of `chunk` characters
with the state carried from chunk to chunk (no grad), so every character but the first is scored with
all the context its stream has seen. Every target is scored exactly once (the ragged end of the last
rows is padded and masked out), and the result is total NLL / characters scored:

    loss = sum_t -log p(x_{t+1} | x_<=t)  /  chars        (nats per character)
    bpc  = loss / ln 2                                     (bits per character)
    perplexity = exp(loss)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.data.batches import stream_layout
from charrnn.core.models import detach_state


MAX_STREAMS = 64  # rows evaluated in parallel
MIN_STREAM = 2048  # characters per row, so that cold starts weigh little in the average


def perplexity(loss: float) -> float:
    """exp(loss), capped where a float64 would overflow (an untrained or diverged model)."""
    return math.exp(min(loss, 700.0))


def bits_per_char(loss: float) -> float:
    """A loss in nats per character, in bits per character."""
    return loss / math.log(2)


def loss_numbers(loss: float) -> dict:
    """{loss, bpc, perplexity} of a per-character loss in nats: the three numbers every report prints,
    computed here only (a `LossReport`, or a loss some other scoring averaged)."""
    return {"loss": loss, "bpc": bits_per_char(loss), "perplexity": perplexity(loss)}


@dataclass(frozen=True)
class LossReport:
    """A per-character loss with the count it was averaged over."""

    nll: float  # total negative log-likelihood, nats
    chars: int  # characters scored

    @property
    def loss(self) -> float:
        return self.nll / self.chars if self.chars else float("nan")

    @property
    def bpc(self) -> float:
        return bits_per_char(self.loss)

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)

    def to_dict(self) -> dict:
        return {**loss_numbers(self.loss), "chars": self.chars}


def scan_chunks(model, state, cols: int, chunk: int, take: Callable[[int, int], torch.Tensor],
                forward: Callable | None = None, detach: Callable = detach_state) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Feed columns [s, e) of a (rows, cols) layout chunk by chunk, the state carried from chunk to chunk
    (detached: no graph across chunks). `take(s, e)` returns the input ids (rows, e - s) on the model's
    device; yields (s, e, logits (rows, e - s, V)). The one place charrnn scores streams with carried
    state: `evaluate_ids`, `char_nll` (eval --ngram, diagnose's yardstick), `score_streams` (diagnose's
    `score_rows`, the by-position profile) and surprisal's `score_ids` (eval --show, explore) all walk it."""
    forward = forward or model
    for s in range(0, cols, chunk):
        e = min(s + chunk, cols)
        logits, state = forward(take(s, e), state)
        yield s, e, logits
        state = detach(state)


@torch.no_grad()
def score_streams(model, x: torch.Tensor, y: torch.Tensor, device, chunk: int, forward: Callable | None = None,
                  detach: Callable = detach_state) -> torch.Tensor:
    """Per-character NLL (rows, cols), float64 on the CPU, of rows x -> y scored from a fresh state carried
    across chunks: column t of every row is scored with exactly t characters of context."""
    chunks = scan_chunks(model, model.begin_state(x.shape[0], device), x.shape[1], chunk,
                         take=lambda s, e: x[:, s:e].to(device), forward=forward, detach=detach)
    out = []
    for s, e, logits in chunks:
        nll = F.cross_entropy(logits.float().flatten(0, 1), y[:, s:e].to(device).flatten(), reduction="none")
        out.append(nll.view(logits.shape[:2]).double().cpu())
    return torch.cat(out, dim=1)


def window_layout(n_targets: int, max_chars: int) -> tuple[np.ndarray, int]:
    """A fixed, representative part of a split too long to score whole during training: rows windows of
    cols targets each (rows * cols <= max_chars), evenly spaced from the split's start to its end, so
    every region of the text is represented and the same characters are scored at every evaluation.
    -> starts (rows, 1), cols."""
    rows = max(1, min(MAX_STREAMS, max_chars // MIN_STREAM))
    cols = max(1, min(max_chars // rows, n_targets))
    starts = np.linspace(0, n_targets - cols, rows).round().astype(np.int64)[:, None]
    return starts, cols


def _stream_starts(n: int, streams: int | None, max_chars: int) -> tuple[np.ndarray, int, int]:
    """Where each row of the evaluation layout starts: (starts (rows, 1), cols, characters scored).
    The windows of `window_layout` when max_chars bounds a longer text, else `eval_layout`'s streams."""
    if max_chars and n > max_chars:
        starts, cols = window_layout(n, max_chars)
        return starts, cols, min(n, len(starts) * cols)
    rows, cols = eval_layout(n, streams)
    return np.arange(rows)[:, None] * cols, cols, n  # row r is the stretch [r*cols, (r+1)*cols)


def _scored_chunks(model, arr: np.ndarray, device, starts: np.ndarray, cols: int, chunk: int,
                   forward: Callable | None, dtype: torch.dtype) -> Iterator[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    """Walk the layout `starts` x cols over arr (inputs arr[:-1], targets arr[1:]) with carried state;
    yields (pos (rows, t) input positions, valid (rows, t), nll (rows, t) in dtype on the device)."""
    n = len(arr) - 1

    def positions(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        pos = starts + np.arange(s, e)  # (rows, e - s) input positions
        return np.minimum(pos, n - 1), pos < n  # the ragged end of the last rows scores nothing

    def take(s: int, e: int) -> torch.Tensor:
        return torch.from_numpy(arr[positions(s, e)[0]].astype(np.int64)).to(device)

    state = model.begin_state(len(starts), device)
    for s, e, logits in scan_chunks(model, state, cols, chunk, take, forward=forward):
        pos, valid = positions(s, e)
        yb = torch.from_numpy(arr[pos + 1].astype(np.int64)).to(device)
        nll = F.cross_entropy(logits.to(dtype).flatten(0, 1), yb.flatten(), reduction="none")
        yield pos, valid, nll.view(pos.shape)


@torch.no_grad()
def evaluate_ids(model, ids, device, streams: int | None = None, chunk: int = 256, max_chars: int = 0,
                 progress: Callable[[float], None] | None = None) -> LossReport:
    """Score ids[1:] given ids[:-1] with carried state; returns total NLL and the number scored.

    Each stream starts from zero state, and its first characters are scored with little context, so
    by default streams are at least MIN_STREAM characters long (and at most MAX_STREAMS run at once).
    With max_chars > 0 and more targets than that, only the windows of `window_layout` are scored (each
    from zero state): a bounded, fixed estimate for evaluations during training. A split that fits in
    max_chars is scored whole, exactly as without the bound. `progress(fraction)` is called after each
    chunk with the share of the layout's columns scored so far."""
    arr = np.asarray(ids)  # may be a read-only memmap: gathered chunk by chunk, never converted whole
    n = len(arr) - 1
    if n < 1:
        return LossReport(0.0, 0)
    starts, cols, scored = _stream_starts(n, streams, max_chars)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for pos, valid, nll in _scored_chunks(model, arr, device, starts, cols, chunk, None, torch.float32):
        total += (nll * torch.from_numpy(valid).to(device)).sum(dtype=torch.float64)
        if progress is not None:
            progress(int(pos[0, -1] - starts[0, 0] + 1) / cols)
    model.train(was_training)
    return LossReport(float(total), scored)


@torch.no_grad()
def char_nll(model, ids, device, chunk: int = 256, forward: Callable | None = None) -> np.ndarray:
    """-log p(ids[t+1] | ids[:t+1]) for every t, float64 (len - 1,) in text order, scored in the layout and
    with the carried state of `evaluate_ids` (whose loss is the mean of this, up to its float32 terms).
    `forward(x, state)` defaults to the model itself; the model is left in eval mode."""
    arr = np.asarray(ids)
    n = len(arr) - 1
    out = np.zeros(max(n, 0))
    if n < 1:
        return out
    starts, cols, _ = _stream_starts(n, None, 0)
    if hasattr(model, "eval"):
        model.eval()
    for pos, valid, nll in _scored_chunks(model, arr, device, starts, cols, chunk, forward, torch.float64):
        out[pos[valid]] = nll.cpu().numpy()[valid]
    return out


def eval_layout(n_targets: int, streams: int | None = None) -> tuple[int, int]:
    """(rows, cols) in which `evaluate_ids` lays out n_targets characters: contiguous streams, each from
    a zero state, at least MIN_STREAM characters long by default and at most MAX_STREAMS of them."""
    if streams is None:
        streams = max(1, min(MAX_STREAMS, n_targets // MIN_STREAM))
    return stream_layout(n_targets, streams)
