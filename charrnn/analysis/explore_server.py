"""`charrnn explore --serve`: the explore page from a local HTTP server, scoring what a user types.

    score, first, path = explore_scorer("runs/x", max_chars=5000)   # the model, loaded once
    server = make_server(score, page, host="127.0.0.1", port=8000, max_chars=5000)
    server.serve_forever()          # the CLI stops it on Ctrl-C and closes the socket

Two routes: GET / returns the page; POST /score takes {"text": "..."} and returns the page's data for
that text (or {"error": "..."} with status 400 or 413). The request body is only ever parsed as JSON and
the text only ever scored: nothing a client sends is executed. Texts longer than `max_chars` characters
are refused before any work (the page refuses them too, with the same message); the body is refused
unread when its announced length could not hold a text within the bound.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from charrnn.core.errors import CharRNNError

BYTES_PER_CHAR = 12  # the most JSON needs for one character: a surrogate pair as \\uXXXX\\uXXXX


def too_long(n: int, max_chars: int) -> str:
    return f"the text has {n:,} characters; this server scores at most {max_chars:,} (charrnn explore --serve --max-chars)"


class _Handler(BaseHTTPRequestHandler):
    server: "ExploreServer"

    def do_GET(self):
        if self.path.split("?")[0] not in ("/", "/index.html"):
            return self._send(404, b"not found\n", "text/plain; charset=utf-8")
        self._send(200, self.server.page.encode("utf-8"), "text/html; charset=utf-8")

    def do_POST(self):
        if self.path != "/score":
            return self._json(404, {"error": f"no such endpoint: {self.path}"})
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length > srv.max_chars * BYTES_PER_CHAR + 1024:
            self.close_connection = True  # the body stays unread
            return self._json(413, {"error": too_long(length // BYTES_PER_CHAR, srv.max_chars)})
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'send JSON {"text": "..."}'})
        if len(text) > srv.max_chars:
            return self._json(413, {"error": too_long(len(text), srv.max_chars)})
        try:
            with srv.lock:  # one scoring at a time: the model is shared and CPU time is too
                data = srv.score(text)
        except CharRNNError as e:
            return self._json(400, {"error": str(e)})
        self._json(200, data)

    def _json(self, status: int, obj: dict):
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, kind: str):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never keeps Ctrl-C from ending the process


def make_server(score: Callable[[str], dict], page: str, host: str = "127.0.0.1", port: int = 8000,
                max_chars: int = 5000, log: Callable[[str], None] | None = None) -> ExploreServer:
    """A server (not yet serving) for the page and the scoring function; port 0 picks a free port."""
    try:
        server = ExploreServer((host, port), _Handler)
    except OSError as e:
        raise CharRNNError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    server.score, server.page, server.max_chars, server.log = score, page, max_chars, log
    server.lock = threading.Lock()
    return server


def explore_scorer(ckpt, text=None, split: str | None = None, max_chars: int = 3000, device: str = "cpu",
                   impl: str | None = None, data_dir: str | None = None) -> tuple[Callable[[str], dict], dict, str]:
    """What `charrnn explore --serve` serves: (score(raw text) -> the page's data for it, the data of the
    page it opens with, the checkpoint's path). The page opens on --text / --split when one is given,
    else empty, inviting a text; a submitted text is prepared as the training text was."""
    from charrnn.analysis.explore import empty_data, page_data
    from charrnn.analysis.subject import open_checkpoint
    from charrnn.analysis.surprisal import scored_part

    if max_chars < 2:
        raise CharRNNError(f"--max-chars must be at least 2 (got {max_chars})")
    subject = open_checkpoint(ckpt, device, impl)  # loaded once: the first page and every POST share it
    ck = subject.checkpoint
    if text is not None or split is not None:
        shown = scored_part(subject, text, split, data_dir, max_chars)
        first = page_data(subject.model, ck.vocab, np.asarray(shown.ids), subject.device, source=shown.source,
                          checkpoint=ck.path)
    else:
        first = empty_data(f"{ck.path}: type or paste a text above and press Score")

    def score(raw: str) -> dict:
        ids = subject.encode(raw)  # prepared as the training text was
        if len(ids) < 2:
            raise CharRNNError("type at least 2 characters (after the model's preprocessing)")
        return page_data(subject.model, ck.vocab, ids, subject.device, source="your text", checkpoint=ck.path)

    return score, first, ck.path
