"""Running the app under uvicorn: one process, or `workers` processes each batching its own requests.

    runs = load_runs(options)                  # errors (a missing checkpoint) before anything binds
    for line in startup_lines(options, runs): print(line)
    serve(options, runs)                       # returns when SIGTERM or Ctrl-C has drained the server

SIGTERM: uvicorn stops accepting connections, waits for the requests in flight to finish, runs the
app's shutdown (the batchers stop), and `serve` returns, so the process exits 0 (uvicorn re-raises the
signal it caught once it is done; the handler installed here makes that a no-op). Ctrl-C alike.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch
import uvicorn

from charrnn.serve.app import create_app
from charrnn.serve.config import ENV_OPTIONS, ServedRun, ServeOptions, load_runs


def startup_lines(options: ServeOptions, runs: dict[str, ServedRun]) -> list[str]:
    """The URL, what is served, and one curl command that works as printed."""
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{options.port}"
    name = next(iter(runs))
    body = json.dumps({"model": name, "prompt": _example_prompt(runs[name]), "max_tokens": 100})
    auth = ' -H "Authorization: Bearer $CHARRNN_API_KEY"' if options.api_key else ""
    workers = f", {options.workers} workers" if options.workers > 1 else ""
    return [f"charrnn serve: {url}/v1 ({', '.join(f'{n} ({r.architecture})' for n, r in runs.items())}{workers}); "
            "SIGTERM or Ctrl-C drains and stops",
            f"  curl {url}/v1/completions -H 'Content-Type: application/json'{auth} -d '{body}'"]


def _example_prompt(run: ServedRun) -> str:
    """A prompt the model can take: 'The ' prepared as its text was, if it knows those characters."""
    prompt = run.checkpoint.preprocessing.prefix("The ")
    return prompt if not run.checkpoint.vocab.unknown(prompt) and "'" not in prompt else ""


def serve(options: ServeOptions, runs: dict[str, ServedRun] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, then return once the requests in flight have been answered."""
    before = {sig: signal.signal(sig, _drained) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _run(options, runs)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _run(options: ServeOptions, runs: dict[str, ServedRun] | None) -> None:
    common = dict(host=options.host, port=options.port, log_level="warning", access_log=False,
                  timeout_graceful_shutdown=None)
    if options.workers > 1:
        os.environ[ENV_OPTIONS] = options.to_env()
        uvicorn.run("charrnn.serve.server:worker_app", factory=True, workers=options.workers, **common)
        return
    _threads(options)
    uvicorn.run(create_app(options, runs if runs is not None else load_runs(options)), **common)


def worker_app():
    """The app of one `--workers` process: its own models, batchers and metrics."""
    options = ServeOptions.from_env()
    _threads(options)
    return create_app(options, load_runs(options))


def _threads(options: ServeOptions) -> None:
    # The batcher thread gives up the GIL inside every torch call and must win it back from the event
    # loop's thread; at the default 5 ms switch interval a busy loop holds it that long each time
    sys.setswitchinterval(0.0005)
    if options.threads:
        torch.set_num_threads(options.threads)


def _drained(signum, frame) -> None:
    """SIGTERM or SIGINT re-raised by uvicorn once it has drained: nothing left to do (exit 0)."""
