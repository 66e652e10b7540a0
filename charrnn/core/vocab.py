"""Text -> character ids: strict reading, d2l's preprocessing and the vocabulary every checkpoint carries.

    text = read_text(path)                      # strict UTF-8; the error names the byte offset
    text = preprocess(text, letters_only=True)  # d2l's read_time_machine, on request
    vocab = Vocab.from_text(text)               # sorted unique characters; travels in checkpoints
    ids = vocab.encode(text)                    # numpy array, smallest unsigned dtype that fits

Splits and minibatches are the data stage's (`charrnn.data.batches`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.core.errors import CharRNNError


def read_text(path: str | Path, encoding_errors: str = "strict") -> str:
    """Decode a file as UTF-8 (~ expanded); invalid bytes are an error naming the offset unless errors='replace'."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CharRNNError(f"file not found: {p}") from None
    except IsADirectoryError:
        raise CharRNNError(f"{p} is a directory, not a text file") from None
    except OSError as e:
        raise CharRNNError(f"cannot read {p}: {e.strerror}") from None
    return decode_utf8(raw, p, encoding_errors).removeprefix("\ufeff")  # a byte-order mark is not text


def decode_utf8(raw: bytes, path, encoding_errors: str = "strict", offset: int = 0) -> str:
    """Decode bytes read from `path` at `offset`; invalid UTF-8 names the file and the byte offset."""
    try:
        return raw.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise CharRNNError(
            f"{path} is not valid UTF-8: byte 0x{bad} at offset {offset + e.start} "
            "(fix the file, or pass --encoding-errors replace to replace invalid bytes with U+FFFD)"
        ) from None


_NON_LETTERS = re.compile(r"[\W\d_]+")  # any run of characters that are not letters (any script)


NEWLINES = ("keep", "normalize")


def preprocess(text: str, lowercase: bool = False, letters_only: bool = False, max_chars: int = 0,
               newline: str = "keep") -> str:
    """d2l's preprocessing, on request.

    newline "normalize" turns Windows (\r\n) and old Mac (\r) line endings into \n, so that \r is not a
    character the model must learn; "keep" leaves the text's own.

    letters_only follows d2l's read_time_machine: in each line every run of non-letters becomes one
    space, the line is stripped and lower-cased, and the lines are concatenated as d2l's corpus does
    (with nothing between them). Letters of any script count, so Chinese text survives it.
    max_chars keeps the first N characters (d2l's max_tokens)."""
    if newline == "normalize":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if letters_only:
        text = "".join(_NON_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines())
    elif lowercase:
        text = text.lower()
    if max_chars > 0:
        text = text[:max_chars]
    return text


def _smallest_uint(n: int) -> np.dtype:
    if n <= 1 << 8:
        return np.dtype(np.uint8)
    if n <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@dataclass(frozen=True)
class Vocab:
    """The unique characters of a corpus; id i is chars[i]. Built from a text they are sorted by code
    point; a fine-tuned model's vocabulary is an old one with new characters appended, so encode does
    not rely on the order."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        if not text:
            raise CharRNNError("the corpus is empty (after preprocessing)")
        points = np.unique(_code_points(text))  # sorted, so ids follow code-point order
        return cls(tuple(chr(c) for c in points.tolist()))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        return _smallest_uint(len(self.chars))

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, in order of first appearance."""
        known = set(self.chars)
        return list(dict.fromkeys(c for c in text if c not in known))

    def encode(self, text: str) -> np.ndarray:
        """Text -> ids (1-D array of the smallest unsigned dtype that holds len(vocab) ids)."""
        points = _code_points(text)
        table = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        order = np.argsort(table, kind="stable")  # identity for a sorted vocabulary
        pos = np.minimum(np.searchsorted(table[order], points), len(table) - 1)
        ids = order[pos]
        bad = table[ids] != points
        if bad.any():
            missing = self.unknown(text)
            shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise CharRNNError(f"the text has {len(missing)} character(s) not in the model's vocabulary: {shown}")
        return ids.astype(self.dtype)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
