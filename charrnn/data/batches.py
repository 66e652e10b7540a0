"""Train/val/test splits and minibatches: d2l section 8.3's random and sequential schemes.

Minibatches follow d2l section 8.3's two schemes. Both return (X, Y) LongTensors of shape (B, T) with
Y = X shifted one character ahead.

random: the corpus is cut into non-overlapping windows of T characters starting at a random offset
in [0, T); the windows are shuffled and taken B at a time. Neighbouring batches are unrelated text, so
the hidden state must be reset for every batch.

sequential: the corpus (from a random offset in [0, T]) is laid out as B contiguous streams, one per
batch row, and each batch is the next T columns:

    row 0: | batch 0 | batch 1 | batch 2 | ...     each row is one stream of text;
    row 1: | batch 0 | batch 1 | batch 2 | ...     batch k+1 continues batch k in every row,
    ...                                            so state can be carried (and detached)

An epoch's plan is a pure function of (seed, epoch), so a resumed run sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from charrnn.core.errors import CharRNNError


def split(ids: np.ndarray, val_frac: float, test_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous train / val / test slices, in that order (views, no copy)."""
    n = len(ids)
    n_val, n_test = int(n * val_frac), int(n * test_frac)
    n_train = n - n_val - n_test
    return ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :]


class Batches:
    """d2l's random and sequential minibatch schemes over one split, epoch by epoch.

    `epoch(e)` returns that epoch's plan, deterministic given (seed, e); `batch(plan, k)` materialises
    batch k as (X, Y) LongTensors (B, T). Only full batches are produced, so every step scores exactly
    B*T characters. `ids` may be any 1-D integer array, a read-only memmap included: each batch gathers
    only its own B*(T+1) characters with numpy. With pin_memory the batch lands in page-locked memory,
    so that `.to("cuda", non_blocking=True)` overlaps the copy with compute."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, sampling: str, seed: int,
                 pin_memory: bool = False):
        self.ids = np.asarray(ids)
        self.B, self.T, self.sampling, self.seed = batch_size, seq_len, sampling, seed
        self.pin_memory = pin_memory
        self._rows, self._cols = np.arange(batch_size), np.arange(seq_len + 1)
        n, B, T = len(ids), batch_size, seq_len
        # the worst-case offset is T, and one more character is needed for the last target
        need = B * T + T + 1
        if n < need:
            raise CharRNNError(
                f"the training text has {n:,} characters, but one batch of --batch-size {B} x --seq-len {T} "
                f"needs at least {need:,}; use a longer corpus or smaller --batch-size / --seq-len"
            )

    def _generator(self, epoch: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return g

    def epoch(self, epoch: int) -> dict:
        """The plan of one epoch: its offset, and for random sampling the shuffled window starts."""
        g = self._generator(epoch)
        n, B, T = len(self.ids), self.B, self.T
        if self.sampling == "random":
            offset = int(torch.randint(0, T, (1,), generator=g))
            windows = (n - offset - 1) // T
            starts = offset + T * torch.randperm(windows, generator=g)
            return {"offset": offset, "starts": starts, "num_batches": windows // B}
        offset = int(torch.randint(0, T + 1, (1,), generator=g))
        stream_len = (n - offset - 1) // B  # characters per row
        return {"offset": offset, "stream_len": stream_len, "num_batches": stream_len // T}

    def batch(self, plan: dict, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.B, self.T
        if self.sampling == "random":
            starts = plan["starts"][k * B : (k + 1) * B].numpy()  # (B,)
        else:
            starts = plan["offset"] + plan["stream_len"] * self._rows + k * T  # (B,) batch k of each stream
        xy = torch.from_numpy(self.ids[starts[:, None] + self._cols].astype(np.int64))  # (B, T+1)
        if self.pin_memory:
            xy = xy.pin_memory()
        return xy[:, :-1], xy[:, 1:]


def stream_layout(n_targets: int, streams: int) -> tuple[int, int]:
    """How many rows and columns lay out n_targets characters as contiguous evaluation streams."""
    rows = max(1, min(streams, n_targets))
    return rows, math.ceil(n_targets / rows)


def trained_horizon(train_config: dict, train_chars: int) -> dict[str, Any] | None:
    """The horizon of a run from its training config and train-split length (what train.py records in
    the checkpoint; old checkpoints get it derived here). None when the layout gives none."""
    B, T = int(train_config.get("batch_size", 0)), int(train_config.get("seq_len", 0))
    sampling, state = train_config.get("sampling", "sequential"), train_config.get("state", "auto")
    policy = state if state != "auto" else ("reset" if sampling == "random" else "carry")
    if B < 1 or T < 1 or train_chars < 2:
        return None
    if policy == "reset":
        return {"chars": T, "layout": f"the state was reset every window of --seq-len {T}"}
    # sequential + carry: offset 0 gives the longest epoch; each row runs num_batches * T characters
    steps = (train_chars - 1) // B // T
    if sampling == "random":  # carried across unrelated windows: no stream longer than one window is real text
        return {"chars": T, "layout": f"random windows of {T}: each stretch of real text was {T} characters long"}
    return {"chars": steps * T, "layout": f"{B} streams of {steps} x {T} = {steps * T} characters from a zero state, "
            "reset every epoch"}
