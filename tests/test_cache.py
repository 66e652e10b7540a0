"""The encoded-corpus cache: chunked encoding gives the in-memory path's ids, the cache is keyed on the
file and the preprocessing, and a memmapped corpus trains through Batches."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from charrnn.data import cache
from charrnn.core.config import TrainConfig
from charrnn.core.vocab import Vocab, preprocess, read_text
from charrnn.data.batches import Batches
from charrnn.data.dataset import prepare_corpus

# Line breaks of every kind, a final sigma at a line end, letters of other scripts, digits and a BOM:
# whatever could behave differently when the text is cut into pieces.
TEXT = "\ufeffThe Time Machine, by H. G. Wells [1898]\r\nΟΔΥΣΣΕΥΣ\nιδού 42 фото_x\u2028Zeile\x0bend\n\n  中文 text  \n"


@pytest.fixture
def corpus_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text(TEXT * 50 + "no newline at the end", encoding="utf-8")
    return p


@pytest.mark.parametrize("opts", [
    {}, {"lowercase": True}, {"letters_only": True}, {"max_chars": 777}, {"letters_only": True, "max_chars": 500},
])
def test_chunked_encoding_equals_in_memory(corpus_file, opts, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_BYTES", 37)  # many chunks, most cut mid-line and so carried over
    text = preprocess(read_text(corpus_file), opts.get("lowercase", False), opts.get("letters_only", False),
                      opts.get("max_chars", 0))
    vocab, ids = cache.cached_ids(corpus_file, **opts)
    assert vocab == Vocab.from_text(text)
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    np.testing.assert_array_equal(ids, vocab.encode(text))


def test_cache_is_reused_and_keyed_on_file_and_options(corpus_file):
    _, first = cache.cached_ids(corpus_file)
    entries = sorted(p.name for p in cache.cache_dir().iterdir())
    assert len(entries) == 2  # <stem>-<key>.npy and .json
    npy = cache.cache_dir() / entries[1]
    mtime = npy.stat().st_mtime_ns
    cache.cached_ids(corpus_file)
    assert npy.stat().st_mtime_ns == mtime  # read, not written again
    cache.cached_ids(corpus_file, lowercase=True)
    assert len(list(cache.cache_dir().iterdir())) == 4
    corpus_file.write_text("a different text\n" * 10, encoding="utf-8")
    os.utime(corpus_file, ns=(mtime + 10**9, mtime + 10**9))
    vocab, ids = cache.cached_ids(corpus_file)
    assert vocab.decode(ids[:16]) == "a different text"


def test_checkpoint_vocabulary_is_imposed(corpus_file):
    own, _ = cache.cached_ids(corpus_file)
    bigger = Vocab(tuple(sorted(set(own.chars) | {"~", "@"})))
    vocab, ids = cache.cached_ids(corpus_file, vocab=bigger)
    assert vocab == bigger
    text = preprocess(read_text(corpus_file))
    np.testing.assert_array_equal(ids, bigger.encode(text))


def test_decode_error_names_the_file_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine line\n" * 10 + b"bad \xff byte\n")
    with pytest.raises(Exception, match="byte 0xff at offset 104"):
        cache.cached_ids(p)
    vocab, ids = cache.cached_ids(p, encoding_errors="replace")
    assert "\ufffd" in vocab.chars


def test_prepare_corpus_memmaps_big_files_and_batches_read_them(corpus_file, monkeypatch):
    cfg = TrainConfig(corpus=str(corpus_file), letters_only=True)
    in_memory = prepare_corpus(cfg)
    monkeypatch.setattr(cache, "CACHE_MIN_BYTES", 0)
    mapped = prepare_corpus(cfg)
    assert isinstance(mapped.train, np.memmap) and mapped.vocab == in_memory.vocab
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(mapped, part), getattr(in_memory, part))
    for sampling in ("random", "sequential"):
        a, b = (Batches(c.train, 4, 8, sampling, seed=3) for c in (in_memory, mapped))
        pa, pb = a.epoch(1), b.epoch(1)
        for k in (0, pa["num_batches"] - 1):
            for ta, tb in zip(a.batch(pa, k), b.batch(pb, k)):
                assert tb.dtype == torch.int64 and torch.equal(ta, tb)
    # resume / eval: the checkpoint's vocabulary comes back through the cache
    again = prepare_corpus(replace(cfg), vocab=in_memory.vocab)
    np.testing.assert_array_equal(again.val, in_memory.val)
