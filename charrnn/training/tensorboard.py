"""TensorBoard logging of a training run: a subscriber to the training loop's events.

    logger = TensorBoardLogger()                   # or TensorBoardLogger("logs/exp1")
    train(options, on_event=fan_out(display, logger))

It writes, at each event's step: train/loss, train/bpc, train/lr, train/grad_norm,
train/clipped_fraction and train/chars_per_sec (every log line); val/loss, val/bpc, val/perplexity and
train/epoch_loss (every evaluation); the periodic samples as text. The event files go to
<run dir>/tensorboard unless a directory is given; a resumed run purges what the first run logged
after the checkpoint's step, so curves do not double back. Under torchrun only rank 0 receives events,
so only rank 0 writes.

Needs the optional tensorboard package (`pip install 'charrnn[tensorboard]'`); the constructor says so
in one line when it is missing, before any training starts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from charrnn.core.errors import CharRNNError

# metrics.jsonl key -> TensorBoard tag, per event kind
_LOG_TAGS = {"train_loss": "train/loss", "bpc": "train/bpc", "lr": "train/lr", "grad_norm": "train/grad_norm",
             "clipped": "train/clipped_fraction", "chars_per_sec": "train/chars_per_sec"}
_EVAL_TAGS = {"val_loss": "val/loss", "bpc": "val/bpc", "perplexity": "val/perplexity", "train_loss": "train/epoch_loss"}


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CharRNNError("--tensorboard needs the tensorboard package: pip install 'charrnn[tensorboard]'") from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(log_dir).expanduser() if log_dir else None
        self.writer = None

    def __call__(self, event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event.data)

    def _on_start(self, d: dict) -> None:
        if self.log_dir is None:
            self.log_dir = Path(d["run_dir"]) / "tensorboard"
        # on resume, drop what the first run wrote after the checkpoint's step (it is computed again);
        # TensorBoard purges events at steps >= purge_step, and the checkpoint's own step stays
        purge = d["step"] + 1 if d.get("resumed") else None
        self.writer = self._writer_class(log_dir=str(self.log_dir), purge_step=purge)

    def _scalars(self, d: dict, tags: dict[str, str]) -> None:
        for key, tag in tags.items():
            value = d.get(key)
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=d["step"])

    def _on_log(self, d: dict) -> None:
        self._scalars(d, _LOG_TAGS)

    def _on_eval(self, d: dict) -> None:
        self._scalars(d, _EVAL_TAGS)
        self.writer.flush()  # an evaluation is a natural moment for TensorBoard to see new points

    def _on_sample(self, d: dict) -> None:
        # markdown: a code block keeps the text's newlines and spaces as they are
        self.writer.add_text("sample", "```\n" + d["text"] + "\n```", global_step=d["step"])

    def _on_checkpoint(self, d: dict) -> None:
        if d.get("interrupted"):
            self.close()

    def _on_end(self, d: dict) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def fan_out(*subscribers: Callable | None) -> Callable:
    """One on_event callback that hands each event to every subscriber, in order."""
    active = [s for s in subscribers if s is not None]

    def emit(event) -> None:
        for s in active:
            s(event)

    return emit
