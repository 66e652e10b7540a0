"""Which device a command runs on: one function shared by train, sample, eval and diagnose.

    device = resolve_device("auto")   # CUDA, then MPS, then CPU

It lives below every stage (it imports nothing from charrnn but the error type), so that scoring and
sampling do not have to import the training loop to find a device.
"""

from __future__ import annotations

import torch

from charrnn.core.errors import CharRNNError


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, then MPS, then CPU. Asking for a device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CharRNNError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharRNNError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)
