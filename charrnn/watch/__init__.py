"""`charrnn.watch`: checks that run inside a learner's own training loop, NumPy or PyTorch, and name the bug
while it trains (issue 24; README "Watch your own loop").

    w = charrnn.watch(model, optimizer=opt, vocab_size=V)      # or charrnn.watch(params=params_dict)
    w.step(loss, logits=logits, targets=y, state_in=h0, state_out=h, inputs=x)

Its rooms, downstream first:

    `arrays`      tensors or arrays, ids or one-hot, (B, T) or (T, B), one state or a tuple: read into one form
    `params`      the weights followed, their snapshot, and the per-step norms of weights, gradients and updates
    `checks`      watch.loss_scale, watch.flat, watch.update_ratio, watch.grad_spike, watch.nonfinite
    `state`       watch.state_not_detached, watch.state_across_random, watch.state_reset_contiguous, watch.state_leak
    `output`      the line per finding, the report table, metrics.jsonl
    `core`        `Watch` and `watch(...)`: one step in, the checks run, the findings said once
    `subscriber`  `charrnn train --watch`: the same checks on charrnn's own loop, as a loop subscriber

The watch sits beside `charrnn.diagnose` (it shares `diagnose.scale`, the factor search of
`diagnose --log`) and above training, which never imports it: `charrnn train --watch` hands its
subscriber to `charrnn.training.train.train`.
"""

import sys
import types

from charrnn.watch.core import Watch, watch

__all__ = ["Watch", "watch"]


class _CallableModule(types.ModuleType):
    """`charrnn.watch(...)` is the API's function until this package is imported; importing it makes the
    attribute `charrnn.watch` this module (Python sets a package's submodules as its attributes). Calling
    the module calls `watch`, so `charrnn.watch(model, ...)` works whatever was imported first."""

    def __call__(self, *args, **kwargs) -> Watch:
        return watch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
