"""Find, download and verify the text corpora that charrnn trains on.

A corpus is one UTF-8 text file, `<data dir>/<name>.txt`. The catalog names three:

    timemachine      d2l's H. G. Wells text (the default), fetched from its origin or a mirror
    tinyshakespeare  karpathy's char-rnn Shakespeare, fetched likewise
    pystdlib         the .py sources of the running Python's standard library, built locally: the
                     fallback that lets training work on a machine with no network

Every file is checked before use: the downloaded ones against the sha1 and size in the catalog, pystdlib
against the `pystdlib.txt.sha1` sidecar written when it was built (its content depends on the Python).
Transfers are written to a hidden temporary file next to the target and renamed into place only once
complete and verified, so an interrupted or corrupt transfer never leaves a bad file under a corpus's name.

Usage:

    directory = data_dir()                           # --dir > $CHARRNN_DATA > ./corpora
    path = download("timemachine", directory, mirror="file:///srv/corpora")
    name, path = resolve_corpus(None, directory, notice=print)   # what `charrnn train` does

Nothing here prints or exits: failures raise `CharRNNError` (a `DownloadError` when a transfer fails),
progress goes to a `progress(done_bytes, total_bytes_or_None)` callback and remarks to `notice(text)`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import socket
import sysconfig
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charrnn import __version__
from charrnn.data import documents
from charrnn.core.errors import CharRNNError

Progress = Callable[[int, "int | None"], None]

TIMEOUT = 30.0  # seconds without an answer before a download gives up (per blocking socket call)
CHUNK = 1 << 16
# Directory names left out of pystdlib: the test suites (not representative code, and some of their files
# are deliberately broken), installed third-party packages and bytecode caches.
PYSTDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class CorpusEntry:
    """One catalog entry. `url`, `sha1` and `size` are None for pystdlib, which is built, not fetched."""

    name: str
    url: str | None
    sha1: str | None
    size: int | None
    description: str


CATALOG: dict[str, CorpusEntry] = {
    e.name: e
    for e in (
        CorpusEntry(
            "timemachine",
            "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
            "090b5e7e70c295757f55df93cb0a180b9691891a",
            178_979,
            "H. G. Wells, The Time Machine (d2l's text)",
        ),
        CorpusEntry(
            "tinyshakespeare",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "04486597058d11dcc2c556b1d0433891eb639d2e",
            1_115_394,
            "Shakespeare's plays (karpathy's char-rnn)",
        ),
        CorpusEntry(
            "pystdlib",
            None,
            None,
            None,
            "this Python's standard library source, built locally (no network)",
        ),
    )
}
DEFAULT_CORPUS = "timemachine"
FALLBACK_CORPUS = "pystdlib"


class DownloadError(CharRNNError):
    """A corpus could not be fetched, or what arrived failed its checksum.

    `reason` is the short "source: why" that `resolve_corpus` quotes when it falls back to pystdlib.
    """

    def __init__(self, name: str, source: str, why: str, verb: str = "download", hint: bool = True):
        self.reason = f"{source}: {why}"
        tail = " (try --mirror or --from)" if hint else ""
        super().__init__(f"cannot {verb} {name} from {source}: {why}{tail}")


def lookup(name: str) -> CorpusEntry:
    """The catalog entry called `name`; an unknown name is an error that lists the catalog."""
    try:
        return CATALOG[name]
    except KeyError:
        raise CharRNNError(f"unknown corpus {name!r}; catalog: {', '.join(CATALOG)}") from None


def data_dir(override: str | None = None) -> Path:
    """Where corpora live: `override` (--dir), else $CHARRNN_DATA, else ./corpora. Not created here."""
    raw = override or os.environ.get("CHARRNN_DATA") or "corpora"
    return Path(raw).expanduser().absolute()


def corpus_path(name: str, directory: Path) -> Path:
    return Path(directory) / f"{name}.txt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha1")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, entry: CorpusEntry) -> bool:
    """Whether `path` holds exactly `entry`'s text: size and sha1 from the catalog, or pystdlib's sidecar."""
    path = Path(path)
    try:
        if not path.is_file():
            return False
        if entry.sha1 is None:
            # Built locally: the expected sha1 is whatever this machine's build produced, kept beside it.
            expected = _sidecar(path).read_text(encoding="ascii").split()[0]
        else:
            if entry.size is not None and path.stat().st_size != entry.size:
                return False  # cheaper than hashing, and the common shape of a truncated file
            expected = entry.sha1
        return _sha1(path) == expected
    except (OSError, UnicodeDecodeError, IndexError):
        return False


def status(directory: Path) -> list[tuple[CorpusEntry, Path, bool]]:
    """Every catalog entry with its path under `directory` and whether it is there and verified."""
    paths = [(e, corpus_path(e.name, directory)) for e in CATALOG.values()]
    return [(e, p, verify(p, e)) for e, p in paths]


def _why(e: BaseException) -> str:
    """One short line saying why a transfer failed, without the exception class noise."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return _why(e.reason) if isinstance(e.reason, BaseException) else str(e.reason)
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed after {len(e.partial)} bytes of the body"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror  # the file name, if any, is already in the caller's message
    return " ".join(str(e).split()) or type(e).__name__


def _ensure_dir(directory: Path) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharRNNError(f"cannot create data directory {directory}: {_why(e)}") from None


@contextmanager
def _staging(final: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """(open file, its path): a temporary file beside `final`, deleted on any failure.

    The caller closes it and renames it over `final` once it is complete and verified; being in the same
    directory makes that rename atomic.
    """
    _ensure_dir(final.parent)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
    try:
        # os.open rather than tempfile.mkstemp: mkstemp makes the file 0600, and the corpus should get the
        # usual permissions (0666 less the umask) like any file the user creates.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise CharRNNError(f"cannot write to data directory {final.parent}: {_why(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    except BaseException:  # KeyboardInterrupt too: never leave a partial file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def _local_path(source: str) -> Path | None:
    """The local file that a file:// URL or a plain path names; None for http(s) URLs."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise CharRNNError(f"file:// URL must name a local path (file:///abs/path), got {source}")
        return Path(urllib.request.url2pathname(parsed.path))
    if len(parsed.scheme) > 1:  # one letter is a Windows drive, i.e. a plain path
        raise CharRNNError(f"unsupported mirror or source {source!r}: use http://, https://, file:// or a directory")
    return Path(source).expanduser()


def _mirror_source(base: str, name: str) -> str:
    """`BASE/<name>.txt` for a mirror given as an http(s)/file URL or a directory path."""
    if urllib.parse.urlparse(base).scheme in ("http", "https", "file"):
        return f"{base.rstrip('/')}/{urllib.parse.quote(name)}.txt"
    return str(_local_path(base) / f"{name}.txt")


@contextmanager
def _open(source: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """Open an http(s) URL, file:// URL or path for reading: (stream, total bytes or None if unknown)."""
    local = _local_path(source)
    if local is not None:
        with open(local, "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
        return
    request = urllib.request.Request(source, headers={"User-Agent": f"charrnn/{__version__}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None


def _fetch(entry: CorpusEntry, source: str, dest: Path, progress: Progress | None, verb: str, hint: bool) -> Path:
    """Copy `source` to `dest` through a staging file, checking length and sha1 before the rename."""
    with _staging(dest) as (out, tmp):
        h = hashlib.sha1()
        done = 0
        try:
            with _open(source) as (stream, total):
                if progress:
                    progress(0, total)
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(entry.name, source, _why(e), verb, hint) from None
        # http.client ends a body cut short by the peer with a quiet b"" rather than an error, so a
        # short count against Content-Length is the only sign of a dropped connection.
        if total is not None and done < total:
            raise DownloadError(entry.name, source, f"connection closed after {done:,} of {total:,} bytes", verb, hint)
        got = h.hexdigest()
        if got != entry.sha1 or (entry.size is not None and done != entry.size):
            why = f"checksum mismatch: expected sha1 {entry.sha1} ({entry.size:,} bytes), got {got} ({done:,} bytes)"
            raise DownloadError(entry.name, source, why, verb, hint)
        out.close()
        os.replace(tmp, dest)
    return dest


def download(
    name: str,
    directory: Path,
    mirror: str | None = None,
    source: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Make `<directory>/<name>.txt` present and verified, and return its path.

    A verified file is left alone unless `force`. Otherwise the text comes from `source` (a local copy,
    --from), else `mirror` (or $CHARRNN_MIRROR) as `BASE/<name>.txt`, else the catalog URL; pystdlib is
    built instead. A present but corrupt file stays in place until its verified replacement is renamed
    over it. Raises `DownloadError` when the transfer fails or the text fails its checksum.
    """
    entry = lookup(name)
    dest = corpus_path(name, directory)
    if not force and verify(dest, entry):
        return dest
    if entry.url is None:
        if source is not None:
            raise CharRNNError(f"{name} is built from this Python's standard library; it cannot be imported with --from")
        return build_pystdlib(directory, progress)
    if source is not None:
        local = _local_path(source)
        if local is None or not local.is_file():
            raise CharRNNError(f"--from needs an existing local file; {source} is not one")
        return _fetch(entry, str(local), dest, progress, verb="import", hint=False)
    mirror = mirror or os.environ.get("CHARRNN_MIRROR") or None
    url = _mirror_source(mirror, name) if mirror else entry.url
    return _fetch(entry, url, dest, progress, verb="download", hint=True)


def stdlib_root() -> Path:
    """The running Python's standard library directory (pure-Python part)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _pystdlib_sources(root: Path) -> list[Path]:
    """The .py files under `root`, minus PYSTDLIB_SKIP directories, in sorted path order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending; only components below `root` are judged, so a
        # stdlib installed under, say, /home/test/ is not skipped whole.
        dirnames[:] = [d for d in dirnames if d not in PYSTDLIB_SKIP]
        found.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    # Sorting on path parts (not the joined string) keeps a package's files together before its siblings.
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def build_pystdlib(directory: Path, progress: Progress | None = None) -> Path:
    """Build `<directory>/pystdlib.txt` from this Python's standard library and write its sha1 sidecar.

    The text is the UTF-8 .py files concatenated in sorted path order (each ended with a newline), so the
    same Python always builds the same bytes. Files that are not valid UTF-8 or cannot be read are skipped.
    `progress(done, total)` counts source bytes read.
    """
    root = stdlib_root()
    files = _pystdlib_sources(root)
    if not files:
        raise CharRNNError(f"no standard-library sources found under {root}; cannot build {FALLBACK_CORPUS}")
    sizes = []
    for p in files:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    dest = corpus_path(FALLBACK_CORPUS, directory)
    with _staging(dest) as (out, tmp):
        h = hashlib.sha1()
        done = written = 0
        if progress:
            progress(0, total)
        for p, size in zip(files, sizes):
            done += size
            try:
                data = p.read_bytes()
                data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if data and not data.endswith(b"\n"):
                data += b"\n"  # keep the next file's first line from joining this file's last
            out.write(data)
            h.update(data)
            written += len(data)
            if progress:
                progress(done, total)
        if progress:
            progress(total, total)  # skipped files count as read, so the bar ends full
        out.close()
        if not written:
            raise CharRNNError(f"no UTF-8 standard-library sources under {root}; cannot build {FALLBACK_CORPUS}")
        # The sidecar goes first: if we stop between the two renames, it disagrees with the old text and
        # the next use rebuilds, never trusting a stale pair.
        sidecar_tmp = _sidecar(tmp)
        sidecar_tmp.write_text(f"{h.hexdigest()}  {dest.name}\n", encoding="ascii")
        try:
            os.replace(sidecar_tmp, _sidecar(dest))
        except BaseException:
            sidecar_tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
    return dest


def resolve_corpus(
    corpus: str | None,
    directory: Path,
    mirror: str | None = None,
    notice: Callable[[str], None] | None = None,
    progress: Progress | None = None,
    encoding_errors: str = "strict",
) -> tuple[str, Path]:
    """Turn what the user asked to train on into (name, path of a verified or user-given text file).

    `corpus` is a catalog name (downloaded if missing, from `mirror` or $CHARRNN_MIRROR), a path to an
    existing file (returned as is, named after its stem), or a directory or glob pattern of many files
    (joined into one text, `charrnn.data.documents`); catalog names win, so write ./timemachine for a
    file of that name. None means timemachine, falling back to pystdlib with a `notice` when timemachine
    cannot be had. A corpus named explicitly never falls back: its failure is the error.
    """
    if corpus is None:
        try:
            return DEFAULT_CORPUS, _ensure(DEFAULT_CORPUS, directory, mirror, notice, progress)
        except DownloadError as e:
            if notice:
                notice(
                    f"{DEFAULT_CORPUS} is not available ({e.reason}); training on {FALLBACK_CORPUS}, the Python "
                    f"standard library's source. Get {DEFAULT_CORPUS} with: charrnn download {DEFAULT_CORPUS} "
                    "[--mirror URL | --from FILE]"
                )
            return FALLBACK_CORPUS, _ensure(FALLBACK_CORPUS, directory, mirror, notice, progress)
    if corpus in CATALOG:
        return corpus, _ensure(corpus, directory, mirror, notice, progress)
    path = Path(corpus).expanduser()
    if path.is_file():
        return path.stem, path
    if path.is_dir() or documents.is_pattern(corpus):
        name, files = documents.list_documents(corpus)
        return name, documents.join_documents(name, files, encoding_errors, notice)
    if path.exists():
        raise CharRNNError(f"corpus {corpus} is not a regular file")
    raise CharRNNError(f"no such corpus or file: {corpus}; catalog: {', '.join(CATALOG)}")


def _ensure(name: str, directory: Path, mirror: str | None, notice, progress) -> Path:
    """The verified catalog corpus `name`, fetched or built first if it is missing or corrupt."""
    entry = CATALOG[name]
    path = corpus_path(name, directory)
    if verify(path, entry):
        return path
    if notice and path.exists():
        notice(f"{path} failed its checksum; replacing it")
    return download(name, directory, mirror=mirror, progress=progress, force=True)
