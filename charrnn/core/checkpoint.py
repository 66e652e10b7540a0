"""Checkpoints: tensors and plain Python values only, written atomically, loaded with weights_only=True.

Loading a checkpoint never runs code: `torch.load(path, weights_only=True)` reads it. A checkpoint is a
dict with a format name and version, the charrnn version, the model config, the vocabulary, the
preprocessing, the training config, model / optimizer / schedule state, RNG states, the data position
(epoch, batch, carried hidden state) and the best validation loss.

`load` is the one loader, for resume, sample, eval, info, gradcheck and diagnose alike. It returns a
typed `Checkpoint`: the model (when a device is given), the vocabulary, both configs, the preprocessing
(which also prepares any text or prefix the model is given) and the position:

    ck = load("runs/x", device)        # ck.model, ck.vocab, ck.model_config, ck.train_config, ...
    ids = ck.vocab.encode(ck.preprocessing.text(raw))

`load_checkpoint` (the validated dict) and `load_model` (model, dict) remain as thin entry points.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from charrnn import __version__
from charrnn.core.config import ModelConfig, TrainConfig
from charrnn.core.vocab import Vocab, preprocess, read_text
from charrnn.core.errors import CharRNNError, write_failed
from charrnn.core.models import CharRNN, resolve_impl

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write atomically: temporary file in the same directory, fsync, rename. A crash at any moment
    leaves the previous checkpoint under `path` intact; an OS error (disk full, permission) is one
    CharRNNError that says so (exit code 4). A save killed between the two leaves `.NAME.*.tmp`
    behind, which the next run in the directory removes (`rundir.remove_stale_temps`)."""
    path = Path(path)
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "charrnn_version": __version__, **obj}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        buffer = io.BytesIO()  # serialised in memory first: torch's writer turns a failed write into an
        torch.save(obj, buffer)  # opaque RuntimeError, a plain file write raises the OSError (ENOSPC) itself
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            intact = "the previous checkpoint there is intact" if path.exists() else "no checkpoint was written there"
            raise write_failed(path, e, intact) from None
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
    """A .pt file, or a run directory (its best.pt, else last.pt; `prefer='last'` for resuming); ~ expanded."""
    p = Path(target).expanduser()
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
    cfg.setdefault("dropout_kind", "elementwise")  # saved before --dropout-kind: trained elementwise
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ModelConfig(**cfg)
    except TypeError as e:
        raise CharRNNError(f"{ckpt['path']}: no usable model_config in the checkpoint ({e})") from None


@dataclass(frozen=True)
class Preprocessing:
    """What training did to its text; everything a checkpoint's model is given must go through it."""

    lowercase: bool = False
    letters_only: bool = False
    max_chars: int = 0
    encoding_errors: str = "strict"
    newline: str = "keep"  # "normalize": \r\n and \r became \n (checkpoints before --newline kept them)

    def text(self, raw: str) -> str:
        """A text to score, prepared as the training text was (all of it: max_chars cut the corpus only)."""
        return preprocess(raw, self.lowercase, self.letters_only, newline=self.newline)

    def read(self, path: str | Path) -> str:
        return self.text(read_text(path, self.encoding_errors))

    def prefix(self, prefix: str) -> str:
        """A sampling prefix, prepared exactly as the training text was (lower-cased; with letters_only,
        runs of non-letters to one space and the ends stripped, as d2l's corpus)."""
        return self.text(prefix)


@dataclass
class Checkpoint:
    """A loaded checkpoint: what every consumer needs, typed. `raw` is the validated dict."""

    path: str
    raw: dict[str, Any]
    model_config: ModelConfig
    train_config: TrainConfig | None
    vocab: Vocab
    preprocessing: Preprocessing
    position: dict[str, Any] = field(default_factory=dict)
    model: CharRNN | None = None

    def build_model(self, device: str | torch.device = "cpu", impl: str | None = None) -> CharRNN:
        """The network with the saved weights, on `device`, in eval mode; `impl` may switch between the
        torch and scratch engines (they share parameter names and layout)."""
        cfg = self.model_config if impl is None else replace(self.model_config, impl=impl)
        model = CharRNN(replace(cfg, impl=resolve_impl(cfg.model, cfg.impl, device)))
        try:
            model.load_state_dict(self.raw["model"])
        except RuntimeError as e:
            raise CharRNNError(f"{self.path}: weights do not match the recorded model config: {str(e).splitlines()[0]}") from None
        self.model = model.to(device).eval()
        return self.model


def load(target: str | Path, device: str | torch.device | None = None, impl: str | None = None,
         prefer: str = "best") -> Checkpoint:
    """The one loader. With `device`, the model is built too (`Checkpoint.model`)."""
    raw = load_checkpoint(target, prefer)
    tcfg = raw.get("train_config")
    try:
        train_config = TrainConfig(**tcfg) if isinstance(tcfg, dict) else None
        pre = Preprocessing(**(raw.get("preprocessing") or {}))
    except (TypeError, CharRNNError) as e:
        raise CharRNNError(f"{raw['path']}: unusable training config or preprocessing in the checkpoint ({e})") from None
    ck = Checkpoint(raw["path"], raw, model_config(raw), train_config, Vocab(tuple(raw["vocab"])), pre,
                    dict(raw.get("position") or {}))
    if device is not None:
        ck.build_model(device, impl)
    return ck


def load_model(target: str | Path, device: str | torch.device = "cpu", impl: str | None = None,
               prefer: str = "best") -> tuple[CharRNN, dict[str, Any]]:
    """(model, checkpoint dict): the older entry point, kept for callers that want the dict."""
    ck = load(target, device, impl, prefer)
    return ck.model, ck.raw


def describe(target: str | Path) -> dict[str, Any]:
    """What `charrnn info` shows: plain values only (JSON-ready)."""
    ck = load(target)
    ckpt = ck.raw
    n_params = sum(t.numel() for t in ckpt["model"].values())
    pos = ck.position
    tcfg = ckpt.get("train_config") or {}
    best = ckpt.get("best_val_loss")
    vocab = ckpt["vocab"]
    return {
        "path": ckpt["path"],
        "format_version": ckpt["format_version"],
        "charrnn_version": ckpt.get("charrnn_version"),
        "model": dict(ckpt["model_config"]),
        "parameters": n_params,
        "weights": ckpt.get("weights", "trained"),  # "model" holds the trained weights, or their average (--ema)
        "vocab_size": len(vocab),
        "vocab": repr("".join(vocab)),
        "corpus": dict(ckpt.get("corpus") or {}),
        "preprocessing": dict(ckpt.get("preprocessing") or {}),
        "steps": pos.get("step"),
        "epoch": pos.get("epochs_completed", pos.get("epoch")),  # epochs completed, as users count them
        "train_seconds": pos.get("elapsed"),
        "best_val_loss": best if best is not None and best != float("inf") else None,
        "best_val_scope": ckpt.get("best_val_scope"),  # what best.pt is chosen on: the whole val split or a part
        "val_loss": ckpt.get("val_loss"),  # this checkpoint's own evaluation...
        "val_scope": ckpt.get("val_scope"),  # ...of the whole split ("full") or a part ("part"; None: not recorded)
        "val_chars": ckpt.get("val_chars"),
        "run_checkpoints": _run_checkpoints(Path(ckpt["path"]).parent),
        "training": {k: tcfg.get(k) for k in ("batch_size", "seq_len", "sampling", "state", "optimizer", "lr",
                                                "schedule", "clip", "seed") if k in tcfg}
                    | {k: tcfg[k] for k in ("ar", "tar", "ema") if tcfg.get(k)},  # the regularisers in use
    }


def _run_checkpoints(run_dir: Path) -> dict[str, str]:
    """Both checkpoints of a run directory, one line each: "step 4,432, val loss 1.6180 (full)"."""
    out = {}
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            raw = load_checkpoint(run_dir / name)
            val, scope = raw.get("val_loss"), raw.get("val_scope")
            line = f"step {(raw.get('position') or {}).get('step', 0):,}"
            if val is not None:
                line += f", val loss {val:.4f}" + (f" ({'whole split' if scope == 'full' else 'part of the split'})" if scope else "")
            out[name] = line
    return out
