"""The parameters a watch follows and what it measures on them each step: ‖p‖, ‖grad‖ and ‖Δp‖ (the change
since the previous call, from a snapshot the watch keeps), per parameter.

    tracker = Params.of(model)                  # a torch module: its trained parameters, grads from .grad
    tracker = Params.of({"W_xh": W_xh, ...})    # a NumPy loop's dict (or a list); grads passed per step
    norms = tracker.measure(params=None, grads=None)    # Norms(names, p, g, d), plain floats

For torch all norms of a step come back in one transfer (torch._foreach_norm, then one tolist), so a
small model's step pays for a handful of kernel calls, not one per parameter per quantity. The snapshot
is the watch's own copy; the user's tensors are only read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charrnn.core.errors import CharRNNError


@dataclass
class Norms:
    """One step's measurements, one entry per parameter; None where there is nothing to measure."""

    names: list[str]
    p: list[float]  # ‖p‖
    g: list[float | None]  # ‖grad‖; None: no gradient for it this step
    d: list[float] | None  # ‖p - p at the previous call‖; None on the first call
    matrices: list[bool]  # two axes longer than 1: what the update ratio is judged on

    def first_nonfinite(self) -> tuple[str, str] | None:
        """(name, "gradient" | "value") of the first parameter whose gradient, else value, is not finite."""
        for kind, values in (("gradient", self.g), ("value", self.p)):
            for name, v in zip(self.names, values):
                if v is not None and not math.isfinite(v):
                    return name, kind
        return None


def _named(params: Any) -> list[tuple[str, Any]]:
    if isinstance(params, torch.nn.Module):
        return [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    if isinstance(params, dict):
        return list(params.items())
    if isinstance(params, (list, tuple)):
        return [(f"params[{i}]", p) for i, p in enumerate(params)]
    raise CharRNNError(f"params must be a torch module, a dict of arrays or a list of arrays, not {type(params).__name__}")


class Params:
    """The parameters followed, their previous values, and the per-step norms."""

    def __init__(self, named: list[tuple[str, Any]]):
        self.names = [n for n, _ in named]
        self.tensors = [p for _, p in named]
        self.torch = bool(self.tensors) and isinstance(self.tensors[0], torch.Tensor)
        self.prev: list | None = None
        # weight matrices: what the update ratio is judged on (biases start at 0; NumPy's are (n, 1) columns)
        self.matrices = [sum(n > 1 for n in getattr(p, "shape", ())) >= 2 for p in self.tensors]

    @classmethod
    def of(cls, params: Any) -> "Params":
        return cls(_named(params))

    def measure(self, params: Any = None, grads: Any = None) -> Norms:
        """Norms of this step. `params`: the current values when the loop rebinds them (a NumPy
        update_parameters that returns new arrays); `grads`: a dict or list matching them."""
        if params is not None:
            named = _named(params)
            if [n for n, _ in named] != self.names:
                self.__init__(named)
            self.tensors = [p for _, p in named]
        g = self._grads(grads)
        if self.torch:
            return self._measure_torch(g)
        values = [np.asarray(p) for p in self.tensors]
        with np.errstate(invalid="ignore", over="ignore"):  # an inf weight is reported by watch.nonfinite, not here
            pn = [float(np.sqrt(np.vdot(v, v).real)) for v in values]
            gn = [None if x is None else float(np.sqrt(np.vdot(a := np.asarray(x), a).real)) for x in g]
            dn = None
            if self.prev is not None and len(self.prev) == len(values):
                dn = [float(np.sqrt(np.vdot(a := v - q, a).real)) if v.shape == q.shape else math.nan
                      for v, q in zip(values, self.prev)]
        self.prev = [v.copy() for v in values]
        return Norms(self.names, pn, gn, dn, self.matrices)

    def _grads(self, grads: Any) -> list:
        if grads is None:
            return [getattr(p, "grad", None) for p in self.tensors]
        if isinstance(grads, dict):
            return [grads.get(n) for n in self.names]
        if isinstance(grads, (list, tuple)) and len(grads) == len(self.tensors):
            return list(grads)
        raise CharRNNError("grads must be a dict with the names of params, or a list in their order")

    def _measure_torch(self, grads: list) -> Norms:
        with torch.no_grad():
            ps = [p.detach() for p in self.tensors]
            have = [i for i, x in enumerate(grads) if x is not None]
            norms = list(torch._foreach_norm(ps))
            if have:
                norms += list(torch._foreach_norm([grads[i].detach() for i in have]))
            first = self.prev is None or len(self.prev) != len(ps) or any(a.shape != b.shape for a, b in zip(ps, self.prev))
            if first:
                self.prev = [p.clone() for p in ps]
            else:
                norms += list(torch._foreach_norm(torch._foreach_sub(ps, self.prev)))
                torch._foreach_copy_(self.prev, ps)
            try:
                flat = torch.stack(norms).tolist()  # one transfer
            except RuntimeError:  # parameters of several dtypes or devices
                flat = torch.stack([n.float().to(norms[0].device) for n in norms]).tolist()
        n = len(ps)
        gn: list[float | None] = [None] * n
        for k, i in enumerate(have):
            gn[i] = flat[n + k]
        dn = None if first else flat[n + len(have):]
        return Norms(self.names, flat[:n], gn, dn, self.matrices)
