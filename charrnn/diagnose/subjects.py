"""What `charrnn diagnose` is pointed at, and the runner: a charrnn checkpoint (its corpus, training
config and metrics), a user's model from --model-factory (PyTorch, or NumPy through `NumpyModel`), and
`run_checks`, which calls every registered check in report order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from charrnn.analysis import subject as loader
from charrnn.diagnose.context import (REGISTRY, STATUSES, Check, Context, link_symptoms, measurement_failed, plain, probe,
                                      speak_to_user)
from charrnn.diagnose.numpy_model import as_torch_model
from charrnn.core.errors import CharRNNError
from charrnn.training.rundir import read_metrics


@dataclass(frozen=True)
class DiagnoseOptions:
    """What to measure with: a sample of the text (characters scored per check), device and seed."""

    max_chars: int = 50_000
    device: str = "cpu"
    seed: int = 0
    seq_len: int | None = None  # reset-vs-carry window; default: the run's --seq-len, else 64
    data_dir: str | None = None

    def __post_init__(self):
        if self.max_chars < 1000:
            raise CharRNNError("--max-chars must be at least 1000")
        if self.seq_len is not None and self.seq_len < 1:
            raise CharRNNError("--seq-len must be at least 1")


@dataclass
class Diagnosis:
    subject: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        statuses = {c.status for c in self.checks}
        return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def headline(self) -> Check | None:
        """The check the one-line verdict names: the most fundamental failure (lowest registered cause
        rank, report order among equals), else the most fundamental warning."""
        for status in ("fail", "warn"):
            bad = [c for c in self.checks if c.status == status]
            if bad:
                return min(bad, key=lambda c: c.cause)  # min is stable: report order breaks ties
        return None

    @property
    def summary(self) -> str:
        """The one-line verdict: the root cause in plain words."""
        counts = {s: sum(c.status == s for c in self.checks) for s in STATUSES}
        tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        top = self.headline
        if top is None:
            return f"ok: no problem found ({tally})"
        return f"{self.verdict}: {top.message} [{top.id}] ({tally})"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "summary": self.summary, "subject": plain(self.subject),
                "seconds": self.seconds, "checks": [c.to_dict() for c in self.checks]}


# ---------------------------------------------------------------------------------------------------
# what is diagnosed


@dataclass
class Subject:
    """A model, the text to measure it on, and what its training recorded (None for a user's model)."""

    model: Any
    ids: torch.Tensor  # (N,) character ids of the text to score
    vocab_size: int
    description: dict[str, Any]
    ckpt: dict | None = None
    train_config: Any = None  # TrainConfig of a charrnn run
    metrics: list[dict] | None = None
    metrics_path: str | None = None
    val_ids: torch.Tensor | None = None  # the run's val split, for the recorded-loss check
    val_note: str | None = None  # why val_ids is None
    train_ids: np.ndarray | None = None  # the run's train split, for the trained-horizon check


def diagnose_checkpoint(target, text: str | Path | None = None, options: DiagnoseOptions = DiagnoseOptions(),
                        on_check: Callable[[Check], None] | None = None) -> Diagnosis:
    """Diagnose a charrnn checkpoint on its val split (train split when it has none) or on `text`."""
    s = loader.open_checkpoint(target, options.device)
    ck = s.checkpoint
    ckpt, vocab, tcfg, model = ck.raw, ck.vocab, ck.train_config, s.model
    corpus, corpus_error = None, None
    if tcfg is not None:
        try:
            corpus = s.with_corpus(options.data_dir).corpus
        except CharRNNError as e:
            corpus_error = str(e)
    if text is not None:
        s = s.with_text(text)
    elif corpus is not None:
        s = s.with_split("val" if len(corpus.val) > 1 else "train", corpus=corpus)
    else:
        raise CharRNNError(f"{ck.path}: cannot read its training corpus ({corpus_error or 'none recorded'}); use --text FILE")
    ids, source = s.ids, s.source
    metrics_path = Path(ckpt["path"]).parent / "metrics.jsonl"
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else None
    mc = ckpt["model_config"]
    pos = ckpt.get("position") or {}
    description = {
        "kind": "checkpoint", "checkpoint": ckpt["path"],
        "model": f"{mc['model']} {mc['layers']}x{mc['hidden']} ({mc.get('impl', 'torch')})",
        "vocab_size": len(vocab), "step": pos.get("step"), "text": source, "text_chars": int(len(ids)),
        "training": {k: getattr(tcfg, k) for k in ("sampling", "state", "seq_len", "batch_size", "optimizer", "lr", "clip")}
        | {"state_policy": tcfg.state_policy()} if tcfg else None,
        "metrics": str(metrics_path) if metrics is not None else None,
    }
    val_ids = None
    val_note = None
    if corpus is not None and len(corpus.val) > 1:
        val_ids = torch.as_tensor(np.asarray(corpus.val).astype(np.int64))
    else:
        val_note = corpus_error or ("the run has no val split (--val-frac 0)" if corpus is not None else "no training config recorded")
    subject = Subject(model, torch.as_tensor(np.asarray(ids).astype(np.int64)), len(vocab), description, ckpt, tcfg,
                      metrics, str(metrics_path) if metrics is not None else None, val_ids, val_note,
                      corpus.train if corpus is not None else None)
    return run_checks(subject, options, on_check)


def load_factory(spec: str):
    """`module:function` or `path/to/file.py:function` -> the user's model behind the torch interface (a
    NumPy model wrapped): the analysis loader's `load_factory` with diagnose's adapter."""
    return loader.load_factory(spec, adapt=as_torch_model)


def diagnose_factory(spec: str, text: str | Path, options: DiagnoseOptions = DiagnoseOptions(),
                     on_check: Callable[[Check], None] | None = None) -> Diagnosis:
    """Diagnose a user's own model (see `load_factory`) on a text file."""
    return diagnose_model(load_factory(spec), text, options, on_check, source=spec)


def diagnose_model(model, text: str | Path, options: DiagnoseOptions = DiagnoseOptions(),
                   on_check: Callable[[Check], None] | None = None, source: str | None = None) -> Diagnosis:
    """Diagnose a model object that follows the interface and has a `vocab`, on a text file. Checks that
    need a training record are skipped."""
    from charrnn.core.device import resolve_device

    s = loader.user_subject(as_torch_model(model), resolve_device(options.device), source).with_text(text)
    model, tokens, ids, unknown = s.model, s.tokens, s.ids, s.unknown
    vocab_size = int(getattr(model, "vocab_size", len(tokens)))
    user = getattr(model, "user", model)  # a NumpyModel's own class is the user's
    description = {"kind": "factory", "factory": source or type(user).__name__,
                   "model": type(user).__name__ + (" (NumPy)" if getattr(model, "is_numpy", False) else ""),
                   "vocab_size": vocab_size, "text": str(text), "text_chars": int(len(ids)), "unknown_chars": unknown,
                   "unknown_share": unknown / max(len(ids), 1)}
    subject = Subject(model, torch.as_tensor(ids), vocab_size, description, val_note="a model from --model-factory has no recorded training")
    return run_checks(subject, options, on_check)


# ---------------------------------------------------------------------------------------------------
# running the checks


def run_checks(subject: Subject, options: DiagnoseOptions = DiagnoseOptions(),
               on_check: Callable[[Check], None] | None = None) -> Diagnosis:
    """Run every registered check on a prepared subject, in report order."""
    t0 = time.perf_counter()
    if hasattr(subject.model, "eval"):
        subject.model.eval()  # dropout off: the model as evaluation and sampling see it
    if len(subject.ids) < 200:
        raise CharRNNError(f"the text has {len(subject.ids)} characters; diagnose needs at least 200")
    ctx = Context(subject, options)
    probe(ctx)
    report = Diagnosis(subject.description | {"chars_scored_max": options.max_chars, "seq_len": ctx.seq_len,
                                              "device": str(ctx.device), "seed": options.seed})
    for entry in REGISTRY:
        result = _run_one(entry, ctx)
        report.checks.append(result)
        if on_check:
            on_check(result)
    link_symptoms(report.checks)
    report.seconds = time.perf_counter() - t0
    return report


def _run_one(entry, ctx: Context) -> Check:
    """One check; a measurement that raises becomes a skip (blamed by `measurement_failed`), so it cannot
    hide the others."""
    if entry.needs_torch and ctx.is_numpy:
        return Check(entry.id, entry.section, "skip", {}, "needs a PyTorch model (autograd or torch parameters); "
                     "this one is NumPy, so the measurement is not possible, not failed", "", entry.cause)
    try:
        v = entry.fn(ctx)
    except CharRNNError:
        raise
    except Exception as e:
        if os.environ.get("CHARRNN_DEBUG", "") not in ("", "0"):
            raise  # the traceback the advice promises, the user's frames included
        return measurement_failed(entry, ctx, e)
    advice = speak_to_user(v.advice) if ctx.user_code else v.advice
    return Check(entry.id, entry.section, v.status, v.values, v.message, advice, entry.cause)
