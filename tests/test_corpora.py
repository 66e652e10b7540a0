"""The corpus engine (charrnn.data.corpora) and `charrnn download`, without the internet.

Mirrors are ../shared/corpora as a file:// URL, as a directory, or served by a local HTTP server on
127.0.0.1; misbehaving servers (wrong bytes, a connection cut mid-body) are small handlers below.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.data import corpora
from charrnn.cli.app import app, main
from charrnn.data.corpora import CATALOG, CorpusEntry, DownloadError
from charrnn.core.errors import CharRNNError

TM = CATALOG["timemachine"]


# --- helpers -------------------------------------------------------------------------------------------


class _Quiet:
    def log_message(self, *args):  # keep the server's access log out of the test output
        pass


class FilesHandler(_Quiet, SimpleHTTPRequestHandler):
    pass


class WrongBytesHandler(_Quiet, BaseHTTPRequestHandler):
    """Serves well-formed but wrong text under every name."""

    body = b"this is not the corpus you are looking for\n" * 100

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


class CutHandler(_Quiet, BaseHTTPRequestHandler):
    """Promises the whole timemachine in Content-Length, sends half of it and closes the connection."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        self.close_connection = True


@contextmanager
def serve(handler):
    """An HTTP server on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(directory: Path) -> list[str]:
    """Everything in `directory`, hidden staging files included."""
    return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.fixture
def fake_stdlib(tmp_path, monkeypatch):
    """A tiny standard library; its root sits below a directory named `test`, which must not matter."""
    root = tmp_path / "test" / "lib" / "python3"
    files = {
        "os.py": b"import sys\n",
        "json/__init__.py": b"x = 1",  # no final newline: the builder adds one
        "json/decoder.py": b"y = 2\n",
        "abc.py": "# caf\u00e9\n".encode(),
        "latin1.py": b"# caf\xe9\n",  # not UTF-8: skipped
        "test/test_os.py": b"EXCLUDED\n",
        "json/tests/test_json.py": b"EXCLUDED\n",
        "idlelib/idle_test/test_x.py": b"EXCLUDED\n",
        "site-packages/pkg.py": b"EXCLUDED\n",
        "dist-packages/pkg.py": b"EXCLUDED\n",
        "__pycache__/os.py": b"EXCLUDED\n",
        "README.txt": b"EXCLUDED\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    monkeypatch.setattr(corpora, "stdlib_root", lambda: root)
    # Sorted by path parts: abc.py, json/__init__.py, json/decoder.py, (latin1.py skipped), os.py.
    return "# caf\u00e9\n".encode() + b"x = 1\n" + b"y = 2\n" + b"import sys\n"


# --- catalog and data directory ------------------------------------------------------------------------


def test_catalog_matches_the_published_corpora():
    assert list(CATALOG) == ["timemachine", "tinyshakespeare", "pystdlib"]
    assert corpora.DEFAULT_CORPUS == "timemachine" and corpora.FALLBACK_CORPUS == "pystdlib"
    assert (TM.sha1, TM.size) == ("090b5e7e70c295757f55df93cb0a180b9691891a", 178_979)
    ts = CATALOG["tinyshakespeare"]
    assert (ts.sha1, ts.size) == ("04486597058d11dcc2c556b1d0433891eb639d2e", 1_115_394)
    assert CATALOG["pystdlib"].url is None
    with pytest.raises(CharRNNError, match="unknown corpus 'nope'; catalog: timemachine, tinyshakespeare, pystdlib"):
        corpora.lookup("nope")


def test_data_dir_prefers_flag_then_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARRNN_DATA", str(tmp_path / "env"))
    assert corpora.data_dir("flag") == tmp_path / "flag"
    assert corpora.data_dir() == tmp_path / "env"
    monkeypatch.delenv("CHARRNN_DATA")
    assert corpora.data_dir() == tmp_path / "corpora"
    assert not (tmp_path / "corpora").exists()  # resolving the directory does not create it
    assert corpora.corpus_path("timemachine", tmp_path) == tmp_path / "timemachine.txt"


# --- mirrors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file-url", "directory"])
def test_mirror_installs_both_corpora_then_does_nothing(shared_corpora, tmp_path, form):
    base = shared_corpora.as_uri() if form == "file-url" else str(shared_corpora)
    data = tmp_path / "data"  # created on demand
    for name in ("timemachine", "tinyshakespeare"):
        path = corpora.download(name, data, mirror=base)
        assert path == data / f"{name}.txt"
        assert corpora.verify(path, CATALOG[name])
    assert leftovers(data) == ["timemachine.txt", "tinyshakespeare.txt"]
    # A second run must not fetch anything: from a mirror that is gone, fetching would fail.
    gone = (tmp_path / "gone").as_uri()
    for name in ("timemachine", "tinyshakespeare"):
        assert corpora.download(name, data, mirror=gone) == data / f"{name}.txt"
    assert [ok for _, _, ok in corpora.status(data)] == [True, True, False]


def test_mirror_from_environment(shared_corpora, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_MIRROR", str(shared_corpora))
    assert corpora.verify(corpora.download("timemachine", tmp_path), TM)


def test_http_download_reports_progress_with_total(shared_corpora, tmp_path):
    seen = []
    with serve(partial(FilesHandler, directory=str(shared_corpora))) as base:
        path = corpora.download("timemachine", tmp_path, mirror=base + "/", progress=lambda d, t: seen.append((d, t)))
    assert corpora.verify(path, TM)
    assert seen[0] == (0, TM.size) and seen[-1] == (TM.size, TM.size)
    assert {t for _, t in seen} == {TM.size}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert leftovers(tmp_path) == ["timemachine.txt"]


def test_http_404_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with serve(partial(FilesHandler, directory=str(tmp_path / "empty"))) as base:
        with pytest.raises(DownloadError, match=r"from http://127\.0\.0\.1:\d+/timemachine\.txt: HTTP 404"):
            corpora.download("timemachine", tmp_path / "data", mirror=base)
    assert leftovers(tmp_path / "data") == []


def test_wrong_content_fails_checksum_and_leaves_nothing(tmp_path):
    with serve(WrongBytesHandler) as base:
        with pytest.raises(DownloadError) as err:
            corpora.download("timemachine", tmp_path, mirror=base)
    message = str(err.value)
    got = hashlib.sha1(WrongBytesHandler.body).hexdigest()
    assert f"expected sha1 {TM.sha1}" in message and f"got {got}" in message
    assert "\n" not in message
    assert leftovers(tmp_path) == []  # neither the final name nor a staging file


def test_connection_cut_mid_transfer_is_an_error(shared_corpora, tmp_path):
    handler = type("Cut", (CutHandler,), {"body": (shared_corpora / "timemachine.txt").read_bytes()})
    with serve(handler) as base:
        with pytest.raises(DownloadError, match=rf"connection closed after {TM.size // 2:,} of {TM.size:,} bytes"):
            corpora.download("timemachine", tmp_path, mirror=base)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["closed-port", "missing-dir", "missing-file-url"])
def test_unreachable_mirror_is_a_clear_error(tmp_path, kind):
    base = {
        "closed-port": f"http://127.0.0.1:{closed_port()}",
        "missing-dir": str(tmp_path / "nowhere"),
        "missing-file-url": (tmp_path / "nowhere").as_uri(),
    }[kind]
    with pytest.raises(DownloadError) as err:
        corpora.download("timemachine", tmp_path / "data", mirror=base)
    message = str(err.value)
    assert message.startswith(f"cannot download timemachine from {base}/timemachine.txt: ")
    assert message.endswith("(try --mirror or --from)") and "\n" not in message
    assert ("Connection refused" if kind == "closed-port" else "No such file or directory") in message
    assert leftovers(tmp_path / "data") == []


def test_unsupported_mirror_scheme(tmp_path):
    with pytest.raises(CharRNNError, match="unsupported mirror"):
        corpora.download("timemachine", tmp_path, mirror="ftp://example.org/corpora")


# --- --from and cached files ---------------------------------------------------------------------------


def test_from_imports_a_good_copy_and_rejects_a_bad_one(shared_corpora, tmp_path):
    good = corpora.download("timemachine", tmp_path / "a", source=str(shared_corpora / "timemachine.txt"))
    assert corpora.verify(good, TM)

    bad = tmp_path / "my-timemachine.txt"
    bad.write_text("The Time Traveller (for so it will be convenient to speak of him)\n")
    with pytest.raises(DownloadError, match=rf"cannot import timemachine from {bad}: checksum mismatch: expected sha1 {TM.sha1}") as err:
        corpora.download("timemachine", tmp_path / "b", source=str(bad))
    assert "try --mirror" not in str(err.value)
    assert leftovers(tmp_path / "b") == []

    with pytest.raises(CharRNNError, match="--from needs an existing local file"):
        corpora.download("timemachine", tmp_path / "c", source=str(tmp_path / "missing.txt"))
    with pytest.raises(CharRNNError, match="cannot be imported with --from"):
        corpora.download("pystdlib", tmp_path / "c", source=str(bad))


def test_corrupt_cached_file_is_detected_and_replaced(shared_corpora, tmp_path):
    path = corpora.corpus_path("timemachine", tmp_path)
    path.write_bytes(b"x" * TM.size)  # the right size, so only the sha1 can catch it
    assert not corpora.verify(path, TM)
    path.write_bytes((shared_corpora / "timemachine.txt").read_bytes()[:-10])  # truncated
    assert not corpora.verify(path, TM)
    assert corpora.download("timemachine", tmp_path, mirror=shared_corpora.as_uri()) == path
    assert corpora.verify(path, TM)
    assert leftovers(tmp_path) == ["timemachine.txt"]


def test_verify_rejects_missing_and_non_files(tmp_path):
    assert not corpora.verify(tmp_path / "timemachine.txt", TM)
    assert not corpora.verify(tmp_path, TM)
    assert not corpora.verify(tmp_path / "x.txt", CorpusEntry("x", None, None, None, "no sidecar"))


# --- pystdlib ------------------------------------------------------------------------------------------


def test_pystdlib_build_is_deterministic_excludes_tests_and_uses_its_sidecar(fake_stdlib, tmp_path):
    entry = CATALOG["pystdlib"]
    a = corpora.build_pystdlib(tmp_path / "a")
    b = corpora.build_pystdlib(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes() == fake_stdlib
    sidecar = a.with_name("pystdlib.txt.sha1")
    assert sidecar.read_text().split() == [hashlib.sha1(fake_stdlib).hexdigest(), "pystdlib.txt"]
    assert corpora.verify(a, entry)
    assert leftovers(tmp_path / "a") == ["pystdlib.txt", "pystdlib.txt.sha1"]

    a.write_bytes(fake_stdlib + b"tampered\n")
    assert not corpora.verify(a, entry)
    assert corpora.download("pystdlib", tmp_path / "a") == a  # rebuilt, since it no longer verifies
    assert a.read_bytes() == fake_stdlib
    sidecar.unlink()
    assert not corpora.verify(a, entry)


def test_pystdlib_real_build(tmp_path):
    path = corpora.build_pystdlib(tmp_path)
    text = path.read_bytes()
    assert len(text) > 1_000_000 and b"\ndef " in text
    assert corpora.verify(path, CATALOG["pystdlib"])
    sources = corpora._pystdlib_sources(corpora.stdlib_root())
    assert any(p.name == "os.py" for p in sources)
    assert not any(set(p.relative_to(corpora.stdlib_root()).parts) & corpora.PYSTDLIB_SKIP for p in sources)


# --- resolve_corpus ------------------------------------------------------------------------------------


def test_resolve_a_path_returns_it_as_is(tmp_path):
    text = tmp_path / "my notes.txt"
    text.write_text("hello\n")
    assert corpora.resolve_corpus(str(text), tmp_path / "data") == ("my notes", text)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # neither a file nor a directory of files (a directory is a many-file corpus)
    with pytest.raises(CharRNNError, match="not a regular file"):
        corpora.resolve_corpus(str(fifo), tmp_path / "data")


def test_resolve_a_name_downloads_it(shared_corpora, tmp_path):
    name, path = corpora.resolve_corpus("tinyshakespeare", tmp_path, mirror=str(shared_corpora))
    assert name == "tinyshakespeare" and corpora.verify(path, CATALOG[name])


def test_resolve_replaces_a_corrupt_copy_with_a_notice(shared_corpora, tmp_path):
    corpora.corpus_path("timemachine", tmp_path).write_text("corrupt")
    notices = []
    name, path = corpora.resolve_corpus("timemachine", tmp_path, mirror=str(shared_corpora), notice=notices.append)
    assert corpora.verify(path, TM)
    assert len(notices) == 1 and "failed its checksum" in notices[0]


def test_resolve_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CharRNNError, match="no such corpus or file: nope; catalog: timemachine, tinyshakespeare, pystdlib"):
        corpora.resolve_corpus("nope", tmp_path)


def test_resolve_default_is_timemachine_when_it_can_be_had(shared_corpora, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_MIRROR", shared_corpora.as_uri())
    notices = []
    assert corpora.resolve_corpus(None, tmp_path, notice=notices.append) == ("timemachine", tmp_path / "timemachine.txt")
    assert notices == []


def test_resolve_default_falls_back_to_pystdlib_with_a_notice(fake_stdlib, tmp_path, monkeypatch):
    unreachable = (tmp_path / "no-mirror").as_uri()
    monkeypatch.setenv("CHARRNN_MIRROR", unreachable)
    notices = []
    name, path = corpora.resolve_corpus(None, tmp_path / "data", notice=notices.append)
    assert (name, path.read_bytes()) == ("pystdlib", fake_stdlib)
    assert len(notices) == 1
    assert notices[0].startswith(f"timemachine is not available ({unreachable}/timemachine.txt: No such file")
    assert notices[0].endswith(
        "training on pystdlib, the Python standard library's source. "
        "Get timemachine with: charrnn download timemachine [--mirror URL | --from FILE]"
    )


def test_resolve_an_explicit_name_never_falls_back(fake_stdlib, tmp_path):
    unreachable = (tmp_path / "no-mirror").as_uri()
    with pytest.raises(DownloadError, match="cannot download timemachine"):
        corpora.resolve_corpus("timemachine", tmp_path / "data", mirror=unreachable, notice=pytest.fail)
    assert leftovers(tmp_path / "data") == []


# --- the command line ----------------------------------------------------------------------------------


def test_cli_list_shows_the_catalog_and_what_is_present(shared_corpora, tmp_path):
    corpora.download("timemachine", tmp_path, mirror=str(shared_corpora))
    result = CliRunner().invoke(app, ["download", "--list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for word in ("timemachine", "tinyshakespeare", "pystdlib", "090b5e7e", "verified", "missing"):
        assert word in result.stderr
    assert result.stdout == ""  # reports go to stderr


def test_cli_downloads_from_a_mirror_then_skips(shared_corpora, tmp_path):
    args = ["download", "timemachine", "--mirror", shared_corpora.as_uri(), "--dir", str(tmp_path)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "timemachine: downloaded and verified" in first.stderr
    assert corpora.verify(tmp_path / "timemachine.txt", TM)
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and "already present and verified" in second.stderr

    (tmp_path / "timemachine.txt").write_text("corrupt")
    third = CliRunner().invoke(app, args)
    assert third.exit_code == 0 and "failed its checksum" in third.stderr
    assert corpora.verify(tmp_path / "timemachine.txt", TM)


def test_cli_unknown_name_is_a_one_line_usage_error(tmp_path):
    # The app itself turns CharRNNError into one stderr line and its exit code, so CliRunner sees them.
    result = CliRunner().invoke(app, ["download", "nope", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "charrnn: error: unknown corpus 'nope'; catalog: timemachine, tinyshakespeare, pystdlib\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["download", "nope"], "charrnn: error: unknown corpus 'nope'; catalog: timemachine, tinyshakespeare, pystdlib"),
        (["download"], "charrnn: error: name a corpus to download (timemachine, tinyshakespeare, pystdlib) or use --list"),
        (["download", "timemachine", "tinyshakespeare", "--from", "x.txt"], "charrnn: error: --from imports one corpus: name exactly one"),
    ],
)
def test_main_turns_errors_into_one_line_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == message + "\n" and "Traceback" not in err


def test_main_reports_a_bad_from_file(capsys, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("not it\n")
    with pytest.raises(SystemExit) as exit_:
        main(["download", "timemachine", "--from", str(bad), "--dir", str(tmp_path / "data")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: cannot import timemachine from")
    assert f"expected sha1 {TM.sha1}" in lines[0]
    assert leftovers(tmp_path / "data") == []


def test_a_missing_corpus_mirror_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_CORPORA", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.require_shared_corpora()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        conftest.require_shared_corpora()
