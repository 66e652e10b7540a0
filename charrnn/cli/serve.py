"""`charrnn serve`: parse the flags into `ServeOptions`, load the runs, print the URL, run the server
(`charrnn.serve`). The defaults written here are ServeOptions' (tests/test_serve_cli.py holds them equal)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from charrnn.cli.app import app

_LIMITS = "Limits"


@app.command("serve")
def serve(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run directories or .pt files, each served under its directory's name, or NAME=PATH."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; any but a loopback address needs --api-key."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="CHARRNN_API_KEY", show_envvar=True, help="Require 'Authorization: Bearer KEY' on every path but /health."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", metavar="ORIGIN", help="Allow browsers on ORIGIN (repeatable; '*' for any) to call the API; off by default."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes, each with its own models and batch."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch threads per worker; 0 = torch's default."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    max_prompt: int = typer.Option(4096, "--max-prompt", min=1, help="Characters of one prompt (after preprocessing).", rich_help_panel=_LIMITS),
    max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Characters generated per choice.", rich_help_panel=_LIMITS),
    max_n: int = typer.Option(16, "--max-n", min=1, help="Choices per prompt (n).", rich_help_panel=_LIMITS),
    max_body: int = typer.Option(1_000_000, "--max-body", min=1, help="Bytes of a request body (413 above).", rich_help_panel=_LIMITS),
    max_rows: int = typer.Option(256, "--max-rows", min=1, help="Rows stepped together per model; more requests wait in the queue.", rich_help_panel=_LIMITS),
    queue: int = typer.Option(256, "--queue", min=1, help="Requests waiting per model; beyond it 429 with Retry-After.", rich_help_panel=_LIMITS),
    timeout: float = typer.Option(300.0, "--timeout", min=0.001, help="Seconds a request may take (504 after).", rich_help_panel=_LIMITS),
    stream_interval: float = typer.Option(0.05, "--stream-interval", min=0.0, help="Seconds between a stream's chunks: the first character goes out at once, later ones that arrive meanwhile are sent together (0 = a chunk per step)."),
):
    """Serve runs over HTTP with OpenAI's completions API (/v1/completions, /v1/models, /health, /metrics);
    concurrent requests to a model are stepped as one batch. Needs pip install 'charrnn\\[serve]'."""
    from charrnn.serve import require

    require()
    from charrnn.serve.config import ServeOptions, load_runs
    from charrnn.serve.server import serve as run_server, startup_lines

    options = ServeOptions(runs=tuple(runs), host=host, port=port, api_key=api_key or None,
                           cors_origins=tuple(cors_origin or ()), max_prompt=max_prompt, max_tokens=max_tokens,
                           max_n=max_n, max_body=max_body, max_rows=max_rows, queue=queue, timeout=timeout,
                           stream_interval=stream_interval, workers=workers, threads=threads, device=device)
    loaded = load_runs(options)
    for line in startup_lines(options, loaded):
        print(line, file=sys.stderr, flush=True)
    if workers > 1:
        loaded = None  # each worker loads its own copy
    run_server(options, loaded)

