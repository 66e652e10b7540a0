"""An exponential moving average of the weights (`--ema DECAY`), which evaluation and sampling use.

    avg = WeightAverage(model, decay=0.999)
    ... optimizer.step(); avg.update(step)      # step: optimizer steps taken so far (1 after the first)
    with avg.applied(): evaluate(model)         # the averaged weights in the model, the trained ones after

After step t the average moves towards the trained weights by 1 - d_t, with d_t = min(decay,
(1 + t) / (10 + t)): early on the average follows the weights closely (d_1 = 0.18), so it is not held
back by the random initialisation; later it averages over about 1 / (1 - decay) steps.

A checkpoint of a run with --ema holds the averaged weights as "model" (what every consumer loads:
sample, eval, serve, export, fine-tuning) and the trained weights as "trained_model" (what --resume
trains on); "weights" says which is which. The average is kept in the parameters' dtype (fp32), and
resume restores it bit for bit.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


def weights_label(decay: float) -> str:
    """What a checkpoint's "model" entry holds: "trained" or "ema 0.999"."""
    return f"ema {decay:g}" if decay else "trained"


class WeightAverage:
    """The average of `model`'s parameters (buffers are none in CharRNN; they would be kept as trained)."""

    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.avg = [p.detach().clone() for p in self.params]

    def rate(self, step: int) -> float:
        """d_t, the weight the old average keeps at step `step` (>= 1)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After optimizer step `step`: avg <- avg + (1 - d_t) * (weights - avg), for every parameter."""
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 - self.rate(step))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the duration; the trained ones restored exactly after."""
        with torch.no_grad():
            kept = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(self.params, kept):
                    p.copy_(k)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state_dict with the averaged parameters in place of the trained ones."""
        sd = self.model.state_dict()
        sd.update({n: a.detach().clone() for n, a in zip(self.names, self.avg)})
        return sd

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, a in zip(self.names, self.avg):
                a.copy_(sd[n])


def averaged(avg: WeightAverage | None):
    """`avg.applied()`, or nothing to do when the run keeps no average."""
    return avg.applied() if avg is not None else contextlib.nullcontext()
