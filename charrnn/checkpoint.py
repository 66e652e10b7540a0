"""Checkpoints: tensors and plain Python values only, written atomically, loaded with weights_only=True.

Loading a checkpoint never runs code: `torch.load(path, weights_only=True)` reads it. A checkpoint is a
dict with a format name and version, the charrnn version, the model config, the vocabulary, the
preprocessing, the training config, model / optimizer / schedule state, RNG states, the data position
(epoch, batch, carried hidden state) and the best validation loss.

`load_model` is the one function that builds a model from a checkpoint, for resume, sample, eval,
info, gradcheck and diagnose alike.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from charrnn import __version__
from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.models import CharRNN, resolve_impl

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write atomically: temporary file in the same directory, fsync, rename. A crash at any moment
    leaves the previous checkpoint under `path` intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "charrnn_version": __version__, **obj}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def checkpoint_path(target: str | Path, prefer: str = "best") -> Path:
    """A .pt file, or a run directory (its best.pt, else last.pt; `prefer='last'` for resuming)."""
    p = Path(target)
    if p.is_dir():
        order = ["best.pt", "last.pt"] if prefer == "best" else ["last.pt", "best.pt"]
        for name in order:
            if (p / name).is_file():
                return p / name
        raise CharRNNError(f"{p} is a directory without a checkpoint (no best.pt or last.pt)")
    if not p.exists():
        raise CharRNNError(f"checkpoint not found: {p}")
    return p


def load_checkpoint(target: str | Path, prefer: str = "best") -> dict[str, Any]:
    """Read and validate a checkpoint (weights_only=True: no code runs). One clear error for anything
    that is not a readable charrnn checkpoint of a format this version understands."""
    path = checkpoint_path(target, prefer)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise CharRNNError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a torch file, or an object weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CharRNNError(f"{path} is not a readable charrnn checkpoint (corrupt, truncated or another format): {first[:160]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CharRNNError(f"{path} is not a charrnn checkpoint")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CharRNNError(
            f"{path} has checkpoint format {version}, newer than this charrnn {__version__} reads "
            f"(format {FORMAT_VERSION}); upgrade charrnn"
        )
    for key in ("model_config", "model", "vocab"):
        if key not in ckpt:
            raise CharRNNError(f"{path} is an incomplete charrnn checkpoint (no {key!r})")
    ckpt["path"] = str(path)
    return ckpt


def model_config(ckpt: dict[str, Any], **overrides) -> ModelConfig:
    cfg = dict(ckpt["model_config"])
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**cfg)


def load_model(target: str | Path, device: str | torch.device = "cpu", impl: str | None = None,
               prefer: str = "best") -> tuple[CharRNN, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights. `impl` may switch between the
    torch and scratch engines: they share parameter names and layout."""
    ckpt = load_checkpoint(target, prefer)
    cfg = model_config(ckpt, impl=impl)
    model = CharRNN(replace(cfg, impl=resolve_impl(cfg.model, cfg.impl, device)))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CharRNNError(f"{ckpt['path']}: weights do not match the recorded model config: {str(e).splitlines()[0]}") from None
    return model.to(device).eval(), ckpt


def describe(target: str | Path) -> dict[str, Any]:
    """What `charrnn info` shows: plain values only (JSON-ready)."""
    ckpt = load_checkpoint(target)
    n_params = sum(t.numel() for t in ckpt["model"].values())
    pos = ckpt.get("position") or {}
    tcfg = ckpt.get("train_config") or {}
    best = ckpt.get("best_val_loss")
    vocab = ckpt["vocab"]
    return {
        "path": ckpt["path"],
        "format_version": ckpt["format_version"],
        "charrnn_version": ckpt.get("charrnn_version"),
        "model": dict(ckpt["model_config"]),
        "parameters": n_params,
        "vocab_size": len(vocab),
        "vocab": repr("".join(vocab)),
        "corpus": dict(ckpt.get("corpus") or {}),
        "preprocessing": dict(ckpt.get("preprocessing") or {}),
        "steps": pos.get("step"),
        "epoch": pos.get("epochs_completed", pos.get("epoch")),  # epochs completed, as users count them
        "train_seconds": pos.get("elapsed"),
        "best_val_loss": best if best is not None and best != float("inf") else None,
        "val_loss": ckpt.get("val_loss"),
        "training": {k: tcfg.get(k) for k in ("batch_size", "seq_len", "sampling", "state", "optimizer", "lr",
                                                "schedule", "clip", "seed") if k in tcfg},
    }
