"""The trained horizon: how far from a zero state training ever ran a stream, and the per-character loss
against characters since the state was last reset.

A model trained on sequential streams with carried state still meets a zero state at every epoch start;
each of its B rows then runs steps_per_epoch x T characters before the next reset. It has never been
trained past that position, and often degrades beyond it. `charrnn eval` reads longer streams (at least
2,048 characters each), so the training loop's last-epoch loss and `eval --split train` on the same
weights can differ a lot, both honestly (d2l-8.5: perplexity 1.04 against 1.22):

    h = horizon_of(ckpt)                                  # {"chars": 280, "layout": "..."} or None
    prof = by_position(model, ids, device, horizon=h)     # eval's own layout, scored position by position
    prof.bins                                             # [{"from", "to", "loss", "perplexity", "chars"}]
    prof.within, prof.beyond                              # mean loss at positions <= / > the horizon

Position t (1-based) is the t-th character scored since the zero state: it was predicted from t
characters of context. `charrnn eval --by-position` prints the table; `diagnose`'s loss.trained_horizon
explains the training/eval gap with the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from charrnn.data.batches import trained_horizon
from charrnn.training.evaluate import eval_layout, perplexity, score_streams


def horizon_of(ckpt: dict) -> dict[str, Any] | None:
    """The recorded horizon of a checkpoint, or the one its training config implies (older checkpoints)."""
    if ckpt.get("horizon"):
        return dict(ckpt["horizon"])
    tcfg, corpus = ckpt.get("train_config"), ckpt.get("corpus") or {}
    if not tcfg or not corpus.get("train_chars"):
        return None
    return trained_horizon(tcfg, int(corpus["train_chars"]))


@dataclass
class PositionProfile:
    """Per-position loss of `rows` streams of `cols` characters, each from a zero state."""

    rows: int
    cols: int
    curve: torch.Tensor  # (cols,) float64: mean NLL at position t + 1 over the rows
    horizon: int | None
    bins: list[dict] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return float(self.curve.mean())

    def _mean(self, lo: int, hi: int) -> float | None:
        part = self.curve[lo:hi]
        return float(part.mean()) if len(part) else None

    @property
    def within(self) -> float | None:
        """Mean loss at positions 1..horizon (what training saw)."""
        return self._mean(0, self.horizon) if self.horizon else None

    @property
    def beyond(self) -> float | None:
        """Mean loss past the horizon (None when the streams end before it)."""
        return self._mean(self.horizon, self.cols) if self.horizon else None

    def to_dict(self) -> dict:
        return {"streams": self.rows, "stream_chars": self.cols, "horizon": self.horizon, "loss": self.loss,
                "loss_within_horizon": self.within, "loss_beyond_horizon": self.beyond, "bins": self.bins}


def bin_edges(cols: int, horizon: int | None, after: int = 12) -> list[int]:
    """Bin edges over positions 0..cols: doubling up to the horizon (or to the end when none), the horizon
    itself, then about `after` equal bins beyond it."""
    stop = min(horizon, cols) if horizon else cols
    edges = [0] + [2**k for k in range(32) if 2**k < stop] + [stop]
    if horizon and cols > horizon:
        step = max(math.ceil((cols - horizon) / after), 1)
        edges += list(range(horizon + step, cols, step)) + [cols]
    return sorted(set(edges))


@torch.no_grad()
def by_position(model, ids, device, horizon: dict | int | None = None, streams: int | None = None,
                chunk: int = 256, max_chars: int | None = None) -> PositionProfile:
    """Score `ids` in `charrnn eval`'s layout (the same streams, the same zero states) and keep the loss
    of every position: the eval number decomposed by characters since the reset. `max_chars` bounds the
    work by scoring only the first streams of that layout (each still as long as eval reads it)."""
    arr = np.asarray(ids)
    n = len(arr) - 1
    rows, cols = eval_layout(n, streams)
    cols = n // rows  # whole streams only: every position averages the same number of rows
    if max_chars:
        rows = max(1, min(rows, max_chars // max(cols, 1)))
    idx = np.arange(rows)[:, None] * cols + np.arange(cols + 1)  # (rows, cols + 1)
    xy = torch.from_numpy(arr[idx].astype(np.int64))
    was_training = model.training
    model.eval()
    nll = score_streams(model, xy[:, :-1], xy[:, 1:], device, chunk)  # (rows, cols)
    model.train(was_training)
    h = horizon.get("chars") if isinstance(horizon, dict) else horizon
    prof = PositionProfile(rows, cols, nll.mean(dim=0), h)
    edges = bin_edges(cols, h)
    for lo, hi in zip(edges, edges[1:]):
        loss = float(prof.curve[lo:hi].mean())
        prof.bins.append({"from": lo + 1, "to": hi, "loss": loss, "perplexity": perplexity(loss),
                          "chars": (hi - lo) * rows, "past_horizon": bool(h and lo >= h)})
    return prof


def past_horizon_note(stream_chars: int, horizon: dict | None) -> str | None:
    """What to tell a user whose evaluation reads streams longer than training ever ran (None if not)."""
    if not horizon or stream_chars <= horizon["chars"]:
        return None
    return (f"this evaluation reads streams of {stream_chars:,} characters from a zero state, past the run's trained horizon "
            f"of {horizon['chars']:,} ({horizon['layout']}): the model was never trained to continue beyond it, so its loss "
            "there may rise; when it does, the model learned the training layout rather than the text, and longer training "
            "streams or random offsets help. `charrnn eval --by-position` shows the loss against position")


def save_position_plot(profile: dict, path, required: bool = False):
    """The per-position curve as a PNG (matplotlib, the plot extra), the horizon as a vertical line.
    Returns the path, or None when matplotlib is absent and the picture was not asked for by name."""
    from charrnn.core.errors import CharRNNError
    from charrnn.analysis.plot import pyplot, write_figure

    try:
        plt = pyplot("--plot")
    except CharRNNError:
        if required:
            raise
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = profile["bins"]
    edges = [bins[0]["from"]] + [b["to"] + 1 for b in bins]  # bin k covers positions from..to
    ax.stairs([b["loss"] for b in bins], edges, label="loss, mean over the bin")
    if profile["horizon"]:
        ax.axvline(profile["horizon"] + 0.5, color="tab:red", linestyle="--", label=f"trained horizon {profile['horizon']}")
    ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("characters since the zero state")
    ax.set_ylabel("loss (nats/char)")
    ax.legend()
    fig.tight_layout()
    return write_figure(fig, path)
