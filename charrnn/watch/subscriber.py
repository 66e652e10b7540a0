"""`charrnn train --watch`: the watch's checks on charrnn's own loop, as one more subscriber of its events.

    from charrnn.watch.subscriber import TrainWatch
    train(options, on_event=display, subscribers=[TrainWatch])     # TrainWatch(trainer) is made once the run is set up

Training never imports the watch; the caller hands this factory to `charrnn.training.train.train`.
What a learner passes to `w.step` is collected here without touching the loop:

    inputs, state_in, logits, state_out    a forward hook on the model (training mode, grad enabled:
                                           evaluation and sampling run in eval mode and are not seen)
    targets                                the batch just trained, fetched again from the epoch's plan
    loss                                   the step's share of the log accumulator (per character)
    gradients, weights, learning rate      the model's .grad (still there after optimizer.step), the optimizer

Each finding is published as a "warning" event (the CLI shows it as it comes); at the end the report
table is published as a "notice".
"""

from __future__ import annotations

from typing import Any

import torch

from charrnn.watch.core import Watch


class TrainWatch:
    """A subscriber of the training loop (see `charrnn.training.loop`) that runs a Watch on each step."""

    def __init__(self, tr: Any, **watch_kw):
        self.tr = tr
        self.watch = Watch(tr.model, optimizer=tr.optimizer, vocab_size=len(tr.corpus.vocab), output=self._warn,
                           **watch_kw)
        self.seen: tuple | None = None  # (inputs, state_in, logits, state_out) of the last training forward
        self.plan: tuple[int, dict] | None = None  # (epoch, its plan): targets are fetched from it
        self.acc = (0.0, 0)  # the log accumulator's (nll, chars) after the previous step
        self.hook = tr.model.register_forward_hook(self._forward)

    def _forward(self, module, args, output) -> None:
        if module.training and torch.is_grad_enabled() and len(args) >= 1:
            self.seen = (args[0], args[1] if len(args) > 1 else None, output[0], output[1])

    def _warn(self, text: str) -> None:
        self.tr.publish("warning", {"message": text})

    def __call__(self, e) -> None:
        if e.kind == "step":
            self._step()
        elif e.kind in ("finish", "stop") and not self.watch.closed:
            self.watch.say = lambda text: None  # the table goes out once, as a notice
            self.tr.publish("notice", {"message": self.watch.report()})
            self.close()

    def _targets(self) -> torch.Tensor:
        run, batches = self.tr.run, self.tr.batches
        if self.plan is None or self.plan[0] != run.epoch:
            self.plan = (run.epoch, batches.epoch(run.epoch))
        _, y = batches.batch(self.plan[1], run.batch - 1)  # run.batch already points at the next batch
        return y[self.tr.rows]

    def _loss(self) -> float:
        """This step's per-character loss: the log accumulator's growth (it restarts after a log line)."""
        acc = self.tr.run.acc
        nll, chars = (acc["nll"], acc["chars"]) if acc["steps"] == 1 else (acc["nll"] - self.acc[0], acc["chars"] - self.acc[1])
        self.acc = (acc["nll"], acc["chars"])
        return nll / chars if chars else float("nan")

    def _step(self) -> None:
        loss = self._loss()
        if self.seen is None:
            self.watch.step(loss)
            return
        x, state_in, logits, state_out = self.seen
        self.seen = None
        self.watch.step(loss, logits=logits, targets=self._targets().to(logits.device), inputs=x, state_in=state_in,
                        state_out=state_out, lr=self.tr.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        self.hook.remove()
        self.watch.close()
