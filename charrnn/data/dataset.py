"""The corpus of a run, ready to train on: located (`charrnn.data.corpora`), read and encoded (`charrnn.data`,
or `charrnn.data.cache` for big files), split into train / val / test.

    corpus = prepare_corpus(train_config)               # a new run: builds the vocabulary
    corpus = prepare_corpus(train_config, vocab=vocab)  # resume, eval: encodes with a checkpoint's

It sits above `data` and `cache` (both of which it uses), so that neither has to reach up to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from charrnn.data import cache
from charrnn.data import corpora
from charrnn.core.vocab import Vocab, preprocess, read_text
from charrnn.data.batches import split
from charrnn.core.errors import CharRNNError


@dataclass
class Corpus:
    """A corpus ready for training: its name and file, vocabulary and the three encoded splits."""

    name: str
    path: str  # absolute
    vocab: Vocab
    train: Any
    val: Any
    test: Any
    as_typed: str | None = None  # --corpus as the user wrote it (relative, with ~), for display


def prepare_corpus(cfg, vocab: Vocab | None = None, notice: Callable[[str], None] | None = None) -> Corpus:
    """Resolve (download if needed), read, preprocess, encode and split the corpus of a TrainConfig.
    With `vocab` given (a checkpoint's), encode with it instead of building a new one. Files of at least
    cache.CACHE_MIN_BYTES are encoded once, in chunks, into a cache beside them and memory-mapped
    (`charrnn.data.cache`); the splits are then read-only memmap views."""
    name, path = corpora.resolve_corpus(cfg.corpus, corpora.data_dir(cfg.data_dir), cfg.mirror, notice=notice,
                                        encoding_errors=cfg.encoding_errors)
    if Path(path).stat().st_size >= cache.CACHE_MIN_BYTES:  # big: encode once in chunks, then memory-map
        vocab, ids = cache.cached_ids(path, cfg.lowercase, cfg.letters_only, cfg.max_chars, cfg.encoding_errors,
                                      vocab=vocab, notice=notice, newline=cfg.newline)
        _note_carriage_returns(name, "\r" in vocab.chars, cfg, notice)
        return Corpus(name, str(Path(path).absolute()), vocab, *split(ids, cfg.val_frac, cfg.test_frac))
    text = preprocess(read_text(path, cfg.encoding_errors), cfg.lowercase, cfg.letters_only, cfg.max_chars, cfg.newline)
    _note_carriage_returns(name, "\r" in text, cfg, notice)
    if not text:
        raise CharRNNError(f"corpus {name} ({path}) is empty (after preprocessing)")
    if len(text) < 2:
        raise CharRNNError(f"corpus {name} has 1 character (after preprocessing); a language model needs at least 2")
    vocab = vocab or Vocab.from_text(text)
    train_ids, val_ids, test_ids = split(vocab.encode(text), cfg.val_frac, cfg.test_frac)
    return Corpus(name, str(Path(path).absolute()), vocab, train_ids, val_ids, test_ids)


def _note_carriage_returns(name: str, found: bool, cfg, notice) -> None:
    """A text with Windows line endings puts \r into the vocabulary and the samples: say so, once."""
    if found and cfg.newline == "keep" and not cfg.letters_only and notice:
        notice(f"corpus {name} has carriage returns (Windows line endings, \\r\\n): '\\r' is one of its characters "
               "and will appear in samples; --newline normalize trains on \\n alone")
