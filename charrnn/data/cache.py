"""Encoded-corpus cache: a big text file is encoded once, in chunks, and memory-mapped afterwards.

    vocab, ids = cached_ids(path, lowercase=False, letters_only=False, max_chars=0)
    # ids: read-only np.memmap (uint8 / uint16 / uint32), len(ids) characters after preprocessing

`dataset.prepare_corpus` uses it for files of at least CACHE_MIN_BYTES, so a corpus bigger than memory
trains with a small resident set (the OS pages the ids in and out) and starts in seconds the second
time. In the user cache folder ($XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn; never beside the corpus,
in the user's own folder), each cached encoding is two files:

    <stem>-<key>.npy    the ids, a plain .npy file (np.load(..., mmap_mode="r") reads it)
    <stem>-<key>.json   the vocabulary and what the key was made of

The key hashes the file's absolute path, size and mtime, the preprocessing (lowercase, letters_only, max_chars,
encoding_errors) and, when a checkpoint's vocabulary is imposed, that vocabulary: editing the file or
changing any option encodes again instead of reading stale ids.

The first encode streams: the file is read in chunks cut after a newline byte, so no chunk splits a
UTF-8 sequence or a line, and `data.preprocess` applied chunk by chunk gives exactly what it gives on
the whole text (letters_only works line by line; lowercase is per character except the final sigma,
whose context never crosses a line break). Pass one collects the vocabulary and the length, pass two
encodes into the .npy file. Memory stays at a few chunks whatever the file's size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charrnn.core.vocab import Vocab, _code_points, decode_utf8, preprocess
from charrnn.core.errors import CharRNNError

CACHE_MIN_BYTES = 32 << 20  # smaller files are read into memory: encoding them takes well under a second
CHUNK_BYTES = 4 << 20
CACHE_VERSION = 1


def cache_dir(corpus: Path | None = None) -> Path:
    """The user cache folder, $XDG_CACHE_HOME/charrnn (else ~/.cache/charrnn): never the user's own folder,
    which may be a source tree under version control or read-only. `corpus` is not used (entries are keyed
    on its absolute path, `cache_key`); it is kept for callers that pass it."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "charrnn"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharRNNError(f"cannot create the corpus cache {base}: {e.strerror or e}; point XDG_CACHE_HOME "
                           "at a writable folder") from None
    return base


def cache_key(path: Path, lowercase: bool, letters_only: bool, max_chars: int, encoding_errors: str,
              newline: str = "keep", vocab: Vocab | None = None) -> str:
    st = path.stat()
    parts = {"version": CACHE_VERSION, "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "lowercase": lowercase,
             "letters_only": letters_only, "max_chars": max_chars, "encoding_errors": encoding_errors,
             "vocab": None if vocab is None else "".join(vocab.chars), **({"newline": newline} if newline != "keep" else {})}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def text_chunks(path: Path, lowercase: bool = False, letters_only: bool = False, max_chars: int = 0,
                encoding_errors: str = "strict", newline: str = "keep", chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The preprocessed text of `path` in pieces whose concatenation equals
    preprocess(read_text(path), lowercase, letters_only, max_chars, newline) (a piece ends after a \n
    byte, so no \r\n pair is split)."""
    left = max_chars if max_chars > 0 else None
    offset = 0  # byte offset of `pending` in the file, for decode errors
    pending = b""
    first = True
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CharRNNError(f"cannot read {path}: {e.strerror}") from None
    with f:
        while left is None or left > 0:
            block = f.read(chunk_bytes)
            data = pending + block
            if not data:
                break
            cut = data.rfind(b"\n") + 1 if block else len(data)  # whole lines only, until the end
            if cut == 0:  # one line longer than a chunk: keep reading
                pending = data
                continue
            piece, pending = data[:cut], data[cut:]
            text = decode_utf8(piece, path, encoding_errors, offset)
            offset += cut
            if first:
                text, first = text.removeprefix("\ufeff"), False
            text = preprocess(text, lowercase, letters_only, newline=newline)
            if left is not None:
                text = text[:left]
                left -= len(text)
            if text:
                yield text


def cached_ids(path: str | Path, lowercase: bool = False, letters_only: bool = False, max_chars: int = 0,
               encoding_errors: str = "strict", vocab: Vocab | None = None,
               notice=None, newline: str = "keep") -> tuple[Vocab, np.ndarray]:
    """The corpus's vocabulary (or `vocab`, a checkpoint's) and its ids as a read-only memmap, encoding
    into the cache first when no valid entry exists."""
    path = Path(path)
    opts = dict(lowercase=lowercase, letters_only=letters_only, max_chars=max_chars, encoding_errors=encoding_errors,
                newline=newline)
    folder = cache_dir(path)
    # The corpus's own encoding first: a checkpoint trained on this file usually has exactly its vocabulary.
    own = folder / f"{path.stem}-{cache_key(path, **opts)}"
    found = _load(own)
    if found is None:
        if notice:
            notice(f"encoding {path.name} into the cache {folder} (once; later runs memory-map it)")
        found = _encode(path, own, opts, None)
    if vocab is None or found[0] == vocab:
        return found
    other = folder / f"{path.stem}-{cache_key(path, **opts, vocab=vocab)}"
    return _load(other) or _encode(path, other, opts, vocab)


def _load(stem: Path) -> tuple[Vocab, np.ndarray] | None:
    meta_path, ids_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    if not (meta_path.is_file() and ids_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ids = np.load(ids_path, mmap_mode="r")
    except (OSError, ValueError):
        return None  # a damaged entry is encoded again
    if len(ids) != meta.get("chars"):
        return None
    return Vocab(tuple(meta["vocab"])), ids


def _encode(path: Path, stem: Path, opts: dict, vocab: Vocab | None) -> tuple[Vocab, np.ndarray]:
    # pass 1: how many characters, and which (a bincount over code points is much cheaper than np.unique)
    n, seen = 0, np.zeros(0, dtype=np.int64)
    for text in text_chunks(path, **opts):
        counts = np.bincount(_code_points(text))
        if len(counts) > len(seen):
            counts[: len(seen)] += seen
            seen = counts
        else:
            seen[: len(counts)] += counts
        n += len(text)
    if n < 2:
        raise CharRNNError(f"corpus {path.name} has {n} character(s) after preprocessing; a language model needs at least 2")
    vocab = vocab or Vocab(tuple(chr(c) for c in np.flatnonzero(seen).tolist()))
    # pass 2: encode into a temporary .npy, renamed into place when complete
    ids_path = stem.with_suffix(".npy")
    tmp = ids_path.with_name(f".{ids_path.name}.{os.getpid()}.tmp")
    try:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=vocab.dtype, shape=(n,))
        start = header.offset  # where the data begins, after the .npy header
        del header
        # Plain writes, not a writable memmap: written pages of a mapping count as this process's resident
        # memory (the whole corpus by the end), written pages of a file only as the OS's cache.
        with open(tmp, "r+b") as f:
            f.seek(start)
            for text in text_chunks(path, **opts):
                f.write(vocab.encode(text).tobytes())  # raises on characters outside a given vocab
        os.replace(tmp, ids_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {"corpus": str(path), "chars": n, "vocab": list(vocab.chars), "options": opts, "version": CACHE_VERSION}
    stem.with_suffix(".json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return vocab, np.load(ids_path, mmap_mode="r")
