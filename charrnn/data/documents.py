"""A corpus of many files: a directory or a glob pattern, joined into one text in a stable order.

    name, files = list_documents("letters/")            # or "letters/*.txt"
    path = join_documents(name, files)                   # one UTF-8 file; training reads it as any corpus

Which files: for a directory, every regular file below it (recursively) whose path has no hidden part
(".git", ".charrnn-cache", ...); for a pattern (it holds *, ? or [), the files it matches, with ** for
any depth. Order: sorted by path, component by component, so the same tree always gives the same text.

How they are joined: each document is decoded as UTF-8 (its byte-order mark dropped), ended with a
newline when it lacks one, and followed by one empty line (DOCUMENT_BREAK), so no document's last line
runs into the next one's first and a model learns where documents end.

The validation split is then what it is for one file: the last --val-frac of the joined text, which is
the last documents in path order (and the end of the one that straddles the cut). The joined text
sits in the encoded-corpus cache (`charrnn.data.cache.cache_dir`), named after the corpus and a key hashing
every file's path, size and mtime and the decoding option; adding, removing or editing a file joins
again, and a big joined text is encoded and memory-mapped like any big corpus.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from pathlib import Path

from charrnn.data.cache import cache_dir
from charrnn.core.vocab import decode_utf8
from charrnn.core.errors import CharRNNError

DOCUMENT_BREAK = "\n"  # after each document's final newline: one empty line between documents


def is_pattern(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)


def list_documents(spec: str) -> tuple[str, list[Path]]:
    """A directory or glob pattern -> (corpus name, files in a stable order). Nothing found is an error."""
    if is_pattern(spec):
        lead = re.split(r"[*?\[]", spec, maxsplit=1)[0]  # "texts/ch*.txt" -> "texts/ch"
        base = (Path(lead) if not lead or lead.endswith(("/", os.sep)) else Path(lead).parent).expanduser()
        files = [Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
        # hidden below the folder the pattern looks in; the folder's own path may hold "..", "~/.x"
        files = [p for p in files if p.is_file() and _visible(p.relative_to(base))]
        name = base.resolve().name or "corpus"  # named after the folder the pattern looks in
    else:
        root = Path(spec).expanduser()
        files = [p for p in root.rglob("*") if p.is_file() and _visible(p.relative_to(root))]
        name = root.resolve().name or "corpus"
    if not files:
        raise CharRNNError(f"corpus {spec}: no files there" + ("" if is_pattern(spec) else " (hidden files are skipped)"))
    return name, sorted(files, key=lambda p: p.parts)


def _key(files: list[Path], encoding_errors: str) -> str:
    parts = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps({"files": parts, "errors": encoding_errors}).encode()).hexdigest()[:16]


def join_documents(name: str, files: list[Path], encoding_errors: str = "strict", notice=None) -> Path:
    """The joined text as one UTF-8 file in the cache, written once per set of file versions."""
    folder = cache_dir()
    dest = folder / f"{name}-joined-{_key(files, encoding_errors)}.txt"
    if dest.is_file():
        if notice:
            notice(f"corpus {name}: {len(files)} files, joined before -> {dest}")
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    total = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            for path in files:
                try:
                    raw = path.read_bytes()
                except OSError as e:
                    raise CharRNNError(f"cannot read {path}: {e.strerror or e}") from None
                text = decode_utf8(raw, path, encoding_errors).removeprefix("\ufeff")
                if text and not text.endswith("\n"):
                    text += "\n"
                out.write(text + DOCUMENT_BREAK)
                total += len(raw)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if notice:
        notice(f"corpus {name}: {len(files)} files ({total:,} bytes) joined in path order, an empty line after "
               f"each; validation is the end of the joined text (the last files) -> {dest}")
    return dest
