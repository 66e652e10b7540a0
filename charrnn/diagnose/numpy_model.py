"""A user's NumPy model behind the interface every diagnose measurement uses.

A NumPy model from --model-factory follows the same protocol as a PyTorch one, with arrays:

    state = model.begin_state(batch_size, device)    # an array or (nested) tuple/list of arrays
    logits, state = model.forward(X, state)          # X: int array (B, T) -> logits (B, T, V)
    model.vocab                                      # its characters in id order

`NumpyModel` converts at the boundary (torch ids in, NumPy to the user's code, torch logits and state
out), so the loss and state measurements run on it unchanged. Nothing here can differentiate the user's
code: checks registered with `needs_torch` are skipped with "needs a PyTorch model".
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.userfile import blame, call_user


def _to_numpy(state):
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().numpy()
    if isinstance(state, (tuple, list)):
        return type(state)(_to_numpy(s) for s in state)
    return state


def _to_torch(state):
    if isinstance(state, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(state))
    if isinstance(state, (tuple, list)):
        return type(state)(_to_torch(s) for s in state)
    return state


def _has_array(state) -> bool:
    if isinstance(state, np.ndarray):
        return True
    return isinstance(state, (tuple, list)) and any(_has_array(s) for s in state)


class NumpyModel:
    """Wraps a NumPy model so that diagnose can call it like a PyTorch one (no autograd)."""

    is_numpy = True

    def __init__(self, user: Any):
        self.user = user
        self.vocab = user.vocab
        if hasattr(user, "vocab_size"):
            self.vocab_size = user.vocab_size
        self._forward = getattr(user, "forward", None) or user
        if not callable(self._forward):
            raise CharRNNError(f"the NumPy model {type(user).__name__} has no forward(X, state) method")

    def begin_state(self, batch_size: int, device=None):
        return _to_torch(call_user(self.user.begin_state, batch_size, device))

    def __call__(self, x: torch.Tensor, state):
        out = call_user(self._forward, x.detach().cpu().numpy(), _to_numpy(state))  # X: int64 (B, T)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise CharRNNError("the model's forward must return (logits, state)")
        logits, new_state = out
        return torch.from_numpy(np.ascontiguousarray(np.asarray(logits))), _to_torch(new_state)

    def eval(self):
        return self

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The float arrays the model holds as attributes (or in a dict attribute such as self.params),
        as tensors: enough for the spectral radius of a matrix named like W_hh."""
        for name, value in vars(self.user).items():
            if isinstance(value, dict):
                for key, v in value.items():
                    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                        yield f"{name}.{key}", torch.from_numpy(v)
            elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
                yield name, torch.from_numpy(value)

    def parameters(self) -> Iterator[torch.Tensor]:
        return (t for _, t in self.named_parameters())


def as_torch_model(model):
    """The model itself when it speaks torch; a `NumpyModel` around it when its begin_state returns arrays."""
    if isinstance(model, (torch.nn.Module, NumpyModel)):
        return model
    try:
        state = call_user(model.begin_state, 1, torch.device("cpu"))
    except Exception as e:
        b = blame(e)
        if b.party != "user":
            raise
        raise CharRNNError(f"the model's begin_state(1, device) raised {type(e).__name__}: {e} at {b.where()}") from e
    return NumpyModel(model) if _has_array(state) else model
