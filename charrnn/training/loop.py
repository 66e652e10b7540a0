"""The training loop itself, and the events it publishes to its subscribers.

    for each epoch's plan of batches, until the budget is spent:
        x, y = next batch                                   (B, T) each
        state = zero, or the last batch's final state, detached (truncated BPTT)
        loss, grad_norm, state = train_step(...)            per-character NLL; clip; optimizer step
        publish "step"                                      -> log line, evaluation, checkpoint, sample
    publish "epoch" at each epoch's end, "finish" when the budget is spent, "stop" after Ctrl-C / SIGTERM

Everything the loop and its subscribers share is a `Trainer`; where the run is, is its `RunState`
(which is what a checkpoint saves). A subscriber is any callable taking an `Event`; adding one is

    trainer.subscribers.append(my_subscriber)     # its close(), if it has one, runs when the run ends

Events whose kind is in REPORTED (start, notice, warning, log, scoring, eval, sample, epoch, checkpoint,
end) are the run's reports ("scoring": how far an evaluation that takes a while has got), shown by the CLI; log, eval and epoch also go to metrics.jsonl. "step", "finish" and
"stop" are the loop's own signals to its subscribers. An event's `data` is plain values; `carried`
(eval and stop only) is the hidden state of every stream, for the checkpoint.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from charrnn.training import distributed
from charrnn.core.config import ModelConfig, TrainConfig
from charrnn.data.batches import Batches
from charrnn.data.dataset import Corpus
from charrnn.training.evaluate import LossReport
from charrnn.core.models import CharRNN, detach_state
from charrnn.core.regularise import ar_tar
from charrnn.training.ema import WeightAverage
from charrnn.training.optim import lr_at
from charrnn.training.runstate import Budget, RunState

REPORTED = {"start", "notice", "warning", "log", "scoring", "eval", "sample", "epoch", "checkpoint", "end"}


@dataclass
class Event:
    """Something the training loop reports: kind is start | notice | warning | log | eval | sample |
    epoch | checkpoint | end (and step | finish | stop between the loop and its subscribers); data
    holds plain values."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    carried: Any = None  # eval, stop: the state of all B streams (gathered from the ranks)


@dataclass
class Trainer:
    """One training run's working set, shared by the loop and its subscribers."""

    cfg: TrainConfig
    mcfg: ModelConfig
    corpus: Corpus
    model: CharRNN
    fwd: Callable  # the model, possibly wrapped by DDP and torch.compile
    optimizer: torch.optim.Optimizer
    batches: Batches
    budget: Budget
    run: RunState
    run_dir: Path
    device: torch.device
    ddp: distributed.DistContext | None = None
    autocast: Any = None  # a context manager: bf16 autocast or a no-op
    subscribers: list[Callable[[Event], None]] = field(default_factory=list)
    last_val: LossReport | None = None  # the latest evaluation (the whole val split at the end of a run)
    selection: LossReport | None = None  # the latest evaluation of the fixed part best.pt is chosen on
    last_epoch: LossReport | None = None  # the latest complete epoch's training loss
    best_step: int | None = None  # the step best.pt was saved at in this session
    t_start: float = field(default_factory=time.perf_counter)
    t_log: float = 0.0  # when the current log interval began (evaluation time is moved out of it)
    reserve: float = 0.0  # seconds of a --minutes budget kept for the final evaluation (set by Evaluation)
    synced: dict = field(default_factory=dict)  # rank 0's progress / clock / stop, under DDP
    steps_per_epoch: int = 0  # of the epoch the session started in: what fractional epochs count in
    params: list = field(default_factory=list)  # the trained parameters, for clipping
    ema: WeightAverage | None = None  # --ema: the average that evaluation, checkpoints and samples use

    def __post_init__(self):
        self.t_log = self.t_start
        self.steps_per_epoch = self.batches.epoch(self.run.epoch)["num_batches"]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.synced = {"progress": self.local_progress(), "time_up": False, "stop": False}

    @property
    def main(self) -> bool:
        return self.ddp is None or self.ddp.is_main  # the one process that writes the run directory

    @property
    def rows(self) -> slice:
        return self.ddp.rows(self.cfg.batch_size) if self.ddp else slice(None)  # this process's rows

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_len

    def publish(self, kind: str, data: dict | None = None, carried: Any = None) -> None:
        event = Event(kind, data or {}, carried)
        for subscriber in self.subscribers:
            subscriber(event)

    def elapsed(self) -> float:
        return self.run.elapsed + time.perf_counter() - self.t_start

    def epochs_done(self) -> float:
        """Epochs completed, fractional: what every metrics event calls "epoch"."""
        return round(self.run.epoch + self.run.batch / max(self.steps_per_epoch, 1), 4)

    def local_progress(self) -> float:
        return self.budget.progress(self.run.step, self.elapsed() + self.reserve)  # 1 when training must end

    # With several processes, rank 0's clock decides (see `_agree`): every rank must set the same
    # learning rate and stop at the same step.
    def progress(self) -> float:
        return self.synced["progress"] if self.ddp else self.local_progress()

    def time_up(self) -> bool:
        """The --minutes budget, less the time kept for the final evaluation, is spent (this process's clock)."""
        return self.budget.time_up(self.elapsed() + self.reserve)

    def budget_done(self) -> bool:
        time_up = self.synced["time_up"] if self.ddp else self.time_up()
        return self.budget.steps_done(self.run.step) or time_up

    def epoch_complete(self) -> bool:
        """The current epoch's last batch has been trained (its bookkeeping, `_end_epoch`, comes next)."""
        return self.run.batch >= self.batches.epoch(self.run.epoch)["num_batches"]

    def gathered_state(self):
        """The carried state of all B streams (a collective call under DDP: every rank makes it)."""
        return self.ddp.gather_rows(self.run.carried) if self.ddp else self.run.carried


class _Stop(Exception):
    """Raised at a step boundary after Ctrl-C or SIGTERM asked the run to stop."""


def train_step(fwd, optimizer, params, x, y, state, clip: float, autocast,
               ar: float = 0.0, tar: float = 0.0) -> tuple[torch.Tensor, float, Any]:
    """One optimizer step on a batch x, y (B, T) from `state`; returns (mean NLL per character,
    gradient norm before clipping, final state with its graph). With `ar`/`tar` the gradient is of the
    NLL plus AWD-LSTM's activation penalties (`regularise.ar_tar`); the loss returned is the NLL alone."""
    with autocast:
        if ar or tar:
            logits, state, (raw, dropped) = fwd(x, state, outputs=True)  # (B, T, V); (B, T, H) twice
        else:
            logits, state = fwd(x, state)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  # mean NLL per character
    optimizer.zero_grad(set_to_none=True)
    (loss + ar_tar(raw, dropped, ar, tar) if ar or tar else loss).backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    optimizer.step()
    return loss, grad_norm, state


def run_loop(tr: Trainer) -> bool:
    """Train until the budget is spent or a stop is asked for; returns True when interrupted."""
    stop = {"requested": False}
    old_handlers = _install_signal_handlers(stop)
    tr.model.train()
    try:
        while not tr.budget_done():
            plan = tr.batches.epoch(tr.run.epoch)
            while tr.run.batch < plan["num_batches"] and not tr.budget_done():
                if tr.synced["stop"] if tr.ddp else stop["requested"]:
                    raise _Stop()
                _step(tr, plan, stop)
            if tr.run.batch >= plan["num_batches"]:  # the epoch is complete
                _end_epoch(tr)
        tr.publish("finish")
        return False
    except _Stop:
        tr.publish("stop", carried=tr.gathered_state())
        return True
    finally:
        _restore_signal_handlers(old_handlers)


def _step(tr: Trainer, plan: dict, stop: dict) -> None:
    run, policy = tr.run, tr.cfg.state_policy()
    x, y = tr.batches.batch(plan, run.batch)  # (B, T) each
    x, y = x[tr.rows], y[tr.rows]  # (B/W, T): this process's streams
    x = x.to(tr.device, non_blocking=True)
    y = y.to(tr.device, non_blocking=True)
    if policy == "reset" or run.batch == 0 or run.carried is None:
        state = tr.model.begin_state(x.shape[0], tr.device)
    else:
        state = detach_state(run.carried)  # truncated BPTT: values carry on, the graph stops here
    for group in tr.optimizer.param_groups:
        group["lr"] = lr_at(tr.cfg, run.step, tr.progress())
    clip = tr.cfg.clip if tr.cfg.clip > 0 else float("inf")
    loss, gn, state = train_step(tr.fwd, tr.optimizer, tr.params, x, y, state, clip, tr.autocast, tr.cfg.ar, tr.cfg.tar)
    if tr.ema is not None:
        tr.ema.update(run.step + 1)
    run.carried = state if policy == "carry" else None
    run.step, run.batch = run.step + 1, run.batch + 1
    if tr.ddp:  # one all-reduce: the global batch's loss, rank 0's progress and clock, anyone's Ctrl-C
        loss_value, tr.synced["progress"], tr.synced["time_up"], tr.synced["stop"] = tr.ddp.agree(
            loss, tr.local_progress(), tr.time_up(), stop["requested"])
    else:
        loss_value = loss.item()
    nll = loss_value * tr.tokens_per_step
    run.count(nll, tr.tokens_per_step, gn, clip)
    if not math.isfinite(gn) or not math.isfinite(nll):
        tr.publish("warning", {"message": f"step {run.step}: loss or gradient is not finite (loss {nll / tr.tokens_per_step:.4g}, "
                                          f"grad norm {gn:.4g}); lower --lr or keep --clip on"})
    tr.publish("step")


def _end_epoch(tr: Trainer) -> None:
    tr.last_epoch = LossReport(tr.run.epoch_acc["nll"], tr.run.epoch_acc["chars"])
    tr.publish("epoch", {"step": tr.run.step, "epoch": tr.run.epoch + 1, "train_loss": tr.last_epoch.loss,
                         "train_perplexity": tr.last_epoch.perplexity, "time": tr.elapsed()})
    tr.run.next_epoch()


def _install_signal_handlers(stop: dict):
    """Ctrl-C and SIGTERM ask the loop to stop at the next step boundary, where it saves last.pt (so the
    saved state is always consistent). A second Ctrl-C interrupts at once. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if stop["requested"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop["requested"] = True

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(old) -> None:
    if old is not None:
        for sig, h in old.items():
            signal.signal(sig, h)
