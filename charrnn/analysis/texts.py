"""What `charrnn eval` scores and what it reports: a checkpoint on a file (prepared as its training text
was) or on a split of its own corpus, with the layout scored and the trained-horizon warning.

    ck = load("runs/x", device)
    ids, source = text_ids(ck, text="other.txt")        # or split="val" | "train" | "test"
    result = evaluate_text("runs/x", split="val")       # {"loss", "bpc", "perplexity", "chars", "layout", ...}

This module sits above the scoring functions (`charrnn.training.evaluate`), the horizon (`charrnn.analysis.horizon`), the
loader and the corpus pipeline, and ties them together for the command; nothing below imports it.
"""

from __future__ import annotations

from dataclasses import replace

from charrnn.core.checkpoint import Checkpoint, load
from charrnn.data.dataset import prepare_corpus
from charrnn.core.device import resolve_device
from charrnn.core.errors import CharRNNError
from charrnn.training.evaluate import eval_layout, evaluate_ids
from charrnn.analysis.horizon import by_position as profile_by_position, horizon_of, past_horizon_note


def corpus_of(ck: Checkpoint, data_dir: str | None = None, why: str = "use --text FILE"):
    """The run's corpus, re-read and re-split with the recorded fractions and preprocessing, in the
    checkpoint's vocabulary."""
    if ck.train_config is None:
        raise CharRNNError(f"{ck.path} records no training corpus; {why}")
    cfg = ck.train_config
    corpus_name = (ck.raw.get("corpus") or {}).get("path") or cfg.corpus
    return prepare_corpus(replace(cfg, corpus=corpus_name, data_dir=data_dir or cfg.data_dir), vocab=ck.vocab)


def text_ids(ck: Checkpoint, text=None, split: str | None = "val", data_dir: str | None = None, corpus=None):
    """(ids, a name for them): a file preprocessed as in training, or a split of the checkpoint's own
    corpus (`corpus_of`, or the `corpus` given); both in the checkpoint's vocabulary."""
    if text is not None:
        return ck.vocab.encode(ck.preprocessing.read(text)), str(text)
    if split not in ("train", "val", "test"):
        raise CharRNNError(f"--split must be train, val or test (got {split!r})")
    corpus = corpus or corpus_of(ck, data_dir)
    ids = getattr(corpus, split)
    if len(ids) < 2:
        frac = getattr(ck.train_config, split + "_frac", 0)
        raise CharRNNError(f"the {split} split of {corpus.name} is empty (the run used --{split}-frac {frac})")
    return ids, f"{corpus.name} {split} split"


def evaluate_text(ckpt_path, text=None, split: str | None = "val", device: str = "auto", impl: str | None = None,
                  data_dir: str | None = None, by_position: bool = False, progress=None) -> dict:
    """`charrnn eval`: the per-character loss of a checkpoint on `text_ids`. The result says which layout
    was scored, and warns when its streams run past the run's trained horizon; with `by_position`, the
    same streams' loss against characters since the zero state (`charrnn.analysis.horizon`)."""
    dev = resolve_device(device)
    ck = load(ckpt_path, dev, impl=impl)
    ids, source = text_ids(ck, text, split, data_dir)
    report = evaluate_ids(ck.model, ids, dev, chunk=256, progress=progress)  # progress(fraction scored)
    rows, cols = eval_layout(report.chars)
    horizon = horizon_of(ck.raw)
    result = {**report.to_dict(), "source": source, "checkpoint": ck.path, "step": ck.position.get("step"),
              "layout": {"streams": rows, "stream_chars": cols, "start": "zero state", "chunk": 256},
              "horizon": horizon, "warning": past_horizon_note(cols, horizon)}
    if by_position:
        result["by_position"] = profile_by_position(ck.model, ids, dev, horizon).to_dict()
    return result
