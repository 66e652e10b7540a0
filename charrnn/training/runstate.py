"""Where a training run is, and how far it may go: the two pieces of state the loop reads.

`RunState` *is* the checkpoint's position: step, epoch, next batch of the epoch, seconds trained,
best validation loss, the loss accumulators and the carried hidden state. `position()` writes it into
a checkpoint and `RunState.from_checkpoint` reads it back, so a resumed run continues exactly where
the saved one stopped.

`Budget` is whichever of steps (from --max-steps or --epochs) and seconds (--minutes) ends first:

    budget = Budget.of(train_config, steps_per_epoch)
    budget.progress(step, elapsed)   # in [0, 1]: what the cosine schedule follows
    budget.done(step, elapsed)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from charrnn.core.config import DEFAULT_EPOCHS, TrainConfig

if TYPE_CHECKING:
    import torch


def _log_acc() -> dict:
    return {"nll": 0.0, "chars": 0, "gn": 0.0, "clipped": 0, "steps": 0}  # since the last log line


def _epoch_acc() -> dict:
    return {"nll": 0.0, "chars": 0}  # since the start of the epoch


@dataclass
class RunState:
    """The position of a run; everything here goes into the checkpoint."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batch: int = 0  # the next batch of the current epoch
    elapsed: float = 0.0  # seconds trained before this session started
    best_val: float = float("inf")
    acc: dict = field(default_factory=_log_acc)
    epoch_acc: dict = field(default_factory=_epoch_acc)
    carried: Any = None  # this process's (layers, B, H) state (a tuple for LSTM), or None

    def count(self, nll: float, chars: int, grad_norm: float, clip: float) -> None:
        """Add one step's total NLL (nats) over `chars` characters to both accumulators."""
        self.acc["nll"] += nll
        self.acc["chars"] += chars
        self.acc["gn"] += grad_norm
        self.acc["clipped"] += int(grad_norm > clip)
        self.acc["steps"] += 1
        self.epoch_acc["nll"] += nll
        self.epoch_acc["chars"] += chars

    def reset_log(self) -> None:
        self.acc = _log_acc()

    def next_epoch(self) -> None:
        """The epoch is complete: the next one starts at batch 0 from zero state."""
        self.epoch, self.batch, self.carried = self.epoch + 1, 0, None
        self.epoch_acc = _epoch_acc()

    def position(self, elapsed: float, epoch_complete: bool = False) -> dict:
        """The checkpoint's "position" entry; `elapsed` is the run's total seconds so far, and
        epoch_complete says the current epoch's last batch is done (so `info` counts it as completed)."""
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch, "elapsed": elapsed,
                "epochs_completed": self.epoch + int(epoch_complete),
                "acc": dict(self.acc), "epoch_acc": dict(self.epoch_acc)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, rows: slice, device: torch.device) -> "RunState":
        """Restore a saved position; `rows` picks this process's streams of the carried state."""
        pos = ckpt["position"]
        s = ckpt.get("carried_state")  # (layers, B, H): every stream of the global batch
        carried = None
        if s is not None:
            carried = tuple(t[:, rows].to(device) for t in s) if isinstance(s, (list, tuple)) else s[:, rows].to(device)
        return cls(step=pos["step"], epoch=pos["epoch"], batch=pos["batch"], elapsed=pos["elapsed"],
                   best_val=ckpt.get("best_val_loss", float("inf")), acc=dict(pos["acc"]),
                   epoch_acc=dict(pos["epoch_acc"]), carried=carried)


def carried_for_checkpoint(carried) -> Any:
    """The carried state as CPU tensors (a list for LSTM's (h, c)), as checkpoints store it."""
    if carried is None:
        return None
    return [t.detach().cpu() for t in carried] if isinstance(carried, tuple) else carried.detach().cpu()


@dataclass(frozen=True)
class Budget:
    """How far a run may go; 0 means no limit of that kind."""

    steps: int
    seconds: float

    @classmethod
    def of(cls, cfg: TrainConfig, steps_per_epoch: int) -> "Budget":
        """--epochs and --max-steps become one step budget; with no budget at all, DEFAULT_EPOCHS."""
        epochs = cfg.epochs or (0 if (cfg.max_steps or cfg.minutes) else DEFAULT_EPOCHS)
        steps = min(b for b in (cfg.max_steps, epochs * steps_per_epoch) if b) if (cfg.max_steps or epochs) else 0
        return cls(steps, cfg.minutes * 60.0)

    def progress(self, step: int, elapsed: float) -> float:
        return max(step / self.steps if self.steps else 0.0, elapsed / self.seconds if self.seconds else 0.0)

    def time_up(self, elapsed: float) -> bool:
        return bool(self.seconds and elapsed >= self.seconds)

    def steps_done(self, step: int) -> bool:
        return bool(self.steps and step >= self.steps)
