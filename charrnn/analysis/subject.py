"""The one loader of the analyses: a model on its device, its vocabulary, its preprocessing and the ids of
the text to measure it on, from a charrnn checkpoint or from a user's `--model-factory`.

    s = open_checkpoint("runs/x", device="cpu")              # the model, vocabulary, preprocessing; no text yet
    s = s.with_text("other.txt")                             # on a file, prepared as the training text was
    s = s.with_split("val")                                  # or on a split of the run's corpus (s.corpus)
    s.model, s.device, s.ids, s.source, s.text               # ids (N,) in the model's vocabulary
    ids = s.encode("any text")                               # prepared and encoded the same way
    s = open_factory("my_rnn.py:build").with_text("in.txt")  # a user's model (tokens: its `vocab`)

`charrnn eval` (plain, `--show`, `--by-position`, `--ngram`), `probe`, `explore` and `diagnose` all start
here, so a text reaches every one of them prepared and encoded the same way. The loader stands on
`charrnn.core.checkpoint` (the model, vocabulary and preprocessing) and `charrnn.data.dataset` (the run's
corpus, re-read and re-split as training split it); nothing in this stage loads a model another way.
A user's model is taken as the factory returns it: `adapt` puts it behind another interface first
(diagnose passes its NumPy adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from charrnn.core.checkpoint import Checkpoint, Preprocessing, load
from charrnn.core.device import resolve_device
from charrnn.core.errors import CharRNNError
from charrnn.core.userfile import call, import_file, import_module
from charrnn.core.vocab import Vocab, read_text
from charrnn.data.dataset import Corpus, prepare_corpus

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Subject:
    """A model ready to measure, and the text it is measured on (empty until `with_text` / `with_split`)."""

    model: Any  # a CharRNN in eval mode, or the user's model (moved to `device` when it is a torch Module)
    device: torch.device
    tokens: tuple[str, ...]  # the vocabulary in id order
    preprocessing: Preprocessing  # what training did to its text (nothing, for a user's model)
    ids: np.ndarray  # (N,) ids of the text
    source: str = ""  # a name for the text: the file, or "<corpus> <split> split"
    checkpoint: Checkpoint | None = None  # None for a user's model
    corpus: Corpus | None = None  # the run's corpus, once read
    factory: str | None = None  # "module:function" of a user's model
    unknown: int = 0  # characters of the text outside a user's vocabulary, read as its '<unk>'
    prepared: str | None = None  # the text as the model reads it, when it was read from a file

    @property
    def vocab(self) -> Vocab | None:
        """The charrnn Vocab of a checkpoint (None for a user's model: see `tokens`)."""
        return self.checkpoint.vocab if self.checkpoint is not None else None

    @property
    def text(self) -> str:
        """The text as the model reads it, one character per id."""
        if self.prepared is not None:
            return self.prepared
        return "".join(self.tokens[i] for i in np.asarray(self.ids).tolist())

    def encode(self, raw: str) -> np.ndarray:
        """ids (N,) of a text, prepared as the training text was (checkpoint) or mapped through the user's
        vocabulary (factory: unknown characters to its '<unk>', an error without one)."""
        if self.checkpoint is not None:
            return self.checkpoint.vocab.encode(self.preprocessing.text(raw))
        return encode_for(self.tokens, raw)[0]

    def with_text(self, path: str | Path) -> "Subject":
        """The subject on a UTF-8 file, read and prepared as the model's training text was."""
        if self.checkpoint is not None:
            text = self.preprocessing.read(path)
            return replace(self, ids=self.checkpoint.vocab.encode(text), source=str(path), prepared=text, unknown=0)
        text = read_text(path)
        ids, unknown = encode_for(self.tokens, text)
        return replace(self, ids=ids, source=str(path), prepared=text, unknown=unknown)

    def with_split(self, split: str = "val", data_dir: str | None = None, corpus: Corpus | None = None) -> "Subject":
        """The subject on a split of its run's corpus (read once: `corpus`, or the one read before)."""
        if split not in SPLITS:
            raise CharRNNError(f"--split must be train, val or test (got {split!r})")
        corpus = corpus or self.with_corpus(data_dir).corpus
        ids = getattr(corpus, split)
        if len(ids) < 2:
            frac = getattr(self.checkpoint.train_config, split + "_frac", 0)
            raise CharRNNError(f"the {split} split of {corpus.name} is empty (the run used --{split}-frac {frac})")
        return replace(self, ids=ids, source=f"{corpus.name} {split} split", corpus=corpus, prepared=None, unknown=0)

    def with_corpus(self, data_dir: str | None = None, why: str = "use --text FILE") -> "Subject":
        """The subject with its run's corpus read (`corpus`), for measurements that need the training split."""
        if self.checkpoint is None:
            raise CharRNNError(f"a model from --model-factory ({self.factory}) has no training corpus: give --text FILE")
        return self if self.corpus is not None else replace(self, corpus=corpus_of(self.checkpoint, data_dir, why))

    def first(self, n: int) -> "Subject":
        """The subject on the first n characters of its text, the source saying so when that cuts it."""
        if len(self.ids) <= n:
            return self
        source = f"{self.source}, first {n:,} of {len(self.ids):,} characters"
        prepared = self.prepared[:n] if self.prepared is not None else None
        return replace(self, ids=np.asarray(self.ids[:n]), source=source, prepared=prepared)


def corpus_of(ck: Checkpoint, data_dir: str | None = None, why: str = "use --text FILE") -> Corpus:
    """The run's corpus, re-read and re-split with the recorded fractions and preprocessing, in the
    checkpoint's vocabulary."""
    if ck.train_config is None:
        raise CharRNNError(f"{ck.path} records no training corpus; {why}")
    cfg = ck.train_config
    corpus_name = (ck.raw.get("corpus") or {}).get("path") or cfg.corpus
    return prepare_corpus(replace(cfg, corpus=corpus_name, data_dir=data_dir or cfg.data_dir), vocab=ck.vocab)


def open_checkpoint(target, device: str | torch.device = "cpu", impl: str | None = None) -> Subject:
    """A checkpoint's model on `device` (`impl` may switch its engine), on no text yet: follow with
    `with_text` or `with_split`."""
    dev = resolve_device(device) if isinstance(device, str) else device
    ck = load(target, dev, impl=impl)
    return Subject(ck.model, dev, ck.vocab.chars, ck.preprocessing, np.zeros(0, dtype=ck.vocab.dtype), checkpoint=ck)


def open_factory(spec: str, device: str | torch.device = "cpu", adapt: Callable[[Any], Any] | None = None) -> Subject:
    """A user's model from `module:function` (see `load_factory`), on no text yet: follow with `with_text`."""
    dev = resolve_device(device) if isinstance(device, str) else device
    return user_subject(load_factory(spec, adapt), dev, source=spec)


def user_subject(model, device: torch.device, source: str | None = None) -> Subject:
    """A user's model object (forward(x, state), begin_state, vocab) as a subject: a torch Module is moved
    to `device`; its `vocab` gives the tokens."""
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    tokens = tuple(vocab_chars(model.vocab))
    return Subject(model, device, tokens, Preprocessing(), np.zeros(0, dtype=np.int64), factory=source)


def load_factory(spec: str, adapt: Callable[[Any], Any] | None = None):
    """`module:function` (importable from the current directory) or `path/to/file.py:function`; the
    function is called with no arguments and returns the model, passed through `adapt` when given."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise CharRNNError(f"--model-factory must be module:function or path/to/file.py:function (got {spec!r})")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        if not Path(module_name).is_file():
            raise CharRNNError(f"--model-factory: file not found: {module_name}")
        module = import_file(module_name, "--model-factory")
    else:
        module = import_module(module_name, "--model-factory")
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise CharRNNError(f"--model-factory: {module_name} has no function {func_name!r}")
    model = call(fn, f"--model-factory: {spec}()")
    for attr in ("begin_state", "vocab"):
        if not hasattr(model, attr):
            raise CharRNNError(f"--model-factory: the model from {spec} has no {attr!r} (needed: forward(x, state) -> "
                               "(logits, state), begin_state(batch_size, device), vocab)")
    if adapt is not None:  # the interface the caller measures through: model(x, state) must work
        model = adapt(model)
        if not callable(model):
            raise CharRNNError(f"--model-factory: {spec} returned {type(model).__name__}, which cannot be called as model(x, state)")
    return model


def vocab_chars(vocab) -> list[str]:
    """A user model's vocabulary in id order: a string, a list of tokens, a d2l Vocab (idx_to_token) or a
    charrnn Vocab."""
    for attr in ("idx_to_token", "chars", "itos"):
        if hasattr(vocab, attr):
            vocab = getattr(vocab, attr)
            break
    if isinstance(vocab, str):
        return list(vocab)
    try:
        tokens = [str(t) for t in vocab]
    except TypeError:
        raise CharRNNError("the model's vocab must be its characters in id order (a string or a list)") from None
    if not tokens:
        raise CharRNNError("the model's vocab is empty")
    return tokens


def encode_for(tokens, text: str) -> tuple[np.ndarray, int]:
    """Ids of `text` in a user vocabulary; unknown characters map to '<unk>' when it has one. Returns
    (ids, how many characters were unknown)."""
    index = {t: i for i, t in enumerate(tokens) if len(t) == 1}
    unk = next((i for i, t in enumerate(tokens) if t == "<unk>"), None)
    ids = np.fromiter((index.get(c, -1) for c in text), dtype=np.int64, count=len(text))
    unknown = int((ids < 0).sum())
    if unknown:
        if unk is None:
            missing = list(dict.fromkeys(c for c in text if c not in index))
            shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise CharRNNError(f"the text has {len(missing)} character(s) not in the model's vocab and it has no '<unk>' entry: {shown}")
        ids[ids < 0] = unk
    return ids, unknown
