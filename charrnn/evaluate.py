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

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.data import stream_layout
from charrnn.models import detach_state


MAX_STREAMS = 64  # rows evaluated in parallel
MIN_STREAM = 2048  # characters per row, so that cold starts weigh little in the average


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
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    def to_dict(self) -> dict:
        return {"loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity, "chars": self.chars}


def window_layout(n_targets: int, max_chars: int) -> tuple[np.ndarray, int]:
    """A fixed, representative part of a split too long to score whole during training: rows windows of
    cols targets each (rows * cols <= max_chars), evenly spaced from the split's start to its end, so
    every region of the text is represented and the same characters are scored at every evaluation.
    -> starts (rows, 1), cols."""
    rows = max(1, min(MAX_STREAMS, max_chars // MIN_STREAM))
    cols = max(1, min(max_chars // rows, n_targets))
    starts = np.linspace(0, n_targets - cols, rows).round().astype(np.int64)[:, None]
    return starts, cols


@torch.no_grad()
def evaluate_ids(model, ids, device, streams: int | None = None, chunk: int = 256, max_chars: int = 0) -> LossReport:
    """Score ids[1:] given ids[:-1] with carried state; returns total NLL and the number scored.

    Each stream starts from zero state, and its first characters are scored with little context, so
    by default streams are at least MIN_STREAM characters long (and at most MAX_STREAMS run at once).
    With max_chars > 0 and more targets than that, only the windows of `window_layout` are scored (each
    from zero state): a bounded, fixed estimate for evaluations during training. A split that fits in
    max_chars is scored whole, exactly as without the bound."""
    arr = np.asarray(ids)  # may be a read-only memmap: gathered chunk by chunk, never converted whole
    n = len(arr) - 1
    if n < 1:
        return LossReport(0.0, 0)
    if max_chars and n > max_chars:
        starts, cols = window_layout(n, max_chars)
        rows = len(starts)
    else:
        if streams is None:
            streams = max(1, min(MAX_STREAMS, n // MIN_STREAM))
        rows, cols = stream_layout(n, streams)
        starts = np.arange(rows)[:, None] * cols  # (rows, 1): row r is the stretch [r*cols, (r+1)*cols)
    was_training = model.training
    model.eval()
    state = model.begin_state(rows, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s in range(0, cols, chunk):
        pos = starts + np.arange(s, min(s + chunk, cols))  # (rows, t) input positions
        valid = pos < n  # the ragged end of the last rows scores nothing
        pos = np.minimum(pos, n - 1)
        xb = torch.from_numpy(arr[pos].astype(np.int64)).to(device)
        yb = torch.from_numpy(arr[pos + 1].astype(np.int64)).to(device)
        mb = torch.from_numpy(valid).to(device)
        logits, state = model(xb, state)  # (rows, t, V)
        nll = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
        total += (nll * mb.flatten()).sum(dtype=torch.float64)
        state = detach_state(state)
    model.train(was_training)
    return LossReport(float(total), min(n, rows * cols) if max_chars and n > max_chars else n)


def evaluate_text(ckpt_path, text=None, split: str | None = "val", device: str = "auto", impl: str | None = None,
                  data_dir: str | None = None) -> dict:
    """`charrnn eval`: score a file, or a split of the checkpoint's own training corpus (re-split with
    the recorded fractions and preprocessing, encoded with the checkpoint's vocabulary)."""
    from dataclasses import replace

    from charrnn.checkpoint import load_model
    from charrnn.config import TrainConfig
    from charrnn.data import Vocab, prepare_corpus, preprocess, read_text
    from charrnn.errors import CharRNNError
    from charrnn.train import resolve_device

    dev = resolve_device(device)
    model, ckpt = load_model(ckpt_path, dev, impl=impl)
    vocab = Vocab(tuple(ckpt["vocab"]))
    tcfg = ckpt.get("train_config") or {}
    pre = ckpt.get("preprocessing") or {}
    if text is not None:
        raw = read_text(text, pre.get("encoding_errors", "strict"))
        ids = vocab.encode(preprocess(raw, pre.get("lowercase", False), pre.get("letters_only", False)))
        source = str(text)
    else:
        if split not in ("train", "val", "test"):
            raise CharRNNError(f"--split must be train, val or test (got {split!r})")
        if not tcfg:
            raise CharRNNError(f"{ckpt['path']} records no training corpus; use --text FILE")
        cfg = TrainConfig(**tcfg)
        corpus_name = (ckpt.get("corpus") or {}).get("path") or cfg.corpus
        cfg = replace(cfg, corpus=corpus_name, data_dir=data_dir or cfg.data_dir)
        corpus = prepare_corpus(cfg, vocab=vocab)
        ids = getattr(corpus, split)
        if len(ids) < 2:
            raise CharRNNError(f"the {split} split of {corpus.name} is empty (the run used --{split}-frac {getattr(cfg, split + '_frac', 0)})")
        source = f"{corpus.name} {split} split"
    report = evaluate_ids(model, ids, dev, chunk=256)
    return {**report.to_dict(), "source": source, "checkpoint": ckpt["path"]}
