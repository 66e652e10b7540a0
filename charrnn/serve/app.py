"""The FastAPI application: routes, authentication, body limit, CORS, one log line per request.

    app = create_app(options, load_runs(options))     # an ASGI app; uvicorn runs it (`server`)

Routes: GET /health (no key needed: a load balancer's probe), GET /v1/models, POST /v1/completions
(`completions`), GET /metrics (`metrics`), and FastAPI's /docs built from `schema`. The lifespan starts
one `Batcher` per model and, on shutdown (after uvicorn has drained the requests in flight), stops them.

Layers, outermost first: the request log (method, path, status, characters, milliseconds; the request
counter and latency histogram), the API key (every path but /health; constant-time compare, 401 in the
OpenAI shape), the body limit (413), CORS when origins are given, then the routes.
"""

from __future__ import annotations

import hmac
import logging
import sys
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from charrnn import __version__
from charrnn.serve import completions, errors
from charrnn.serve.config import ServedRun, ServeOptions
from charrnn.serve.engine import Batcher
from charrnn.serve.metrics import Metrics
from charrnn.serve.schema import Health, ModelCard, ModelList

log = logging.getLogger("charrnn.serve")
OPEN_PATHS = ("/health",)


def create_app(options: ServeOptions, runs: dict[str, ServedRun]) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for run in runs.values():
            run.batcher = Batcher(run.checkpoint.model, run.checkpoint.vocab, options.max_rows, options.queue)
            metrics.watch(run.name, run.batcher)
            run.batcher.start()
        yield
        for run in runs.values():
            run.batcher.stop()

    app = FastAPI(title="charrnn serve", version=__version__, lifespan=lifespan,
                  description="Character-level RNN language models behind OpenAI's completions API.")
    app.state.options, app.state.runs, app.state.metrics = options, runs, metrics
    errors.install(app)
    app.include_router(_info_routes(runs, metrics))
    app.include_router(completions.router)
    if options.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=options.max_body)
    if options.api_key:
        app.add_middleware(ApiKey, key=options.api_key)
    app.add_middleware(RequestLog, metrics=metrics)
    _log_to_stderr()
    return app


def _info_routes(runs: dict[str, ServedRun], metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(models=list(runs))

    @router.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=r.name, created=r.created, architecture=r.architecture,
                                         vocab_size=len(r.checkpoint.vocab), steps=r.checkpoint.position.get("step"))
                               for r in runs.values()])

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return router


def _log_to_stderr() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class RequestLog:
    """One line per request once its answer is sent: method, path, status, characters generated (set
    by the completion route in scope["state"]["chars"]), milliseconds; and the request metrics."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            path = scope["path"]
            chars = scope.get("state", {}).get("chars", 0)
            log.info("%s %s %d %d chars %.0f ms", scope["method"], path, status[0], chars, ms)
            known = path if path in ("/health", "/v1/models", "/v1/completions", "/metrics") else "other"
            self.metrics.requests.labels(known, str(status[0])).inc()
            self.metrics.latency.labels(known).observe(ms / 1000)


class ApiKey:
    """`Authorization: Bearer KEY` on every path but /health, compared in constant time."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return await self.app(scope, receive, send)
        message = "a valid API key is required: Authorization: Bearer KEY" if given else "no API key: send Authorization: Bearer KEY"
        await errors.error_response(401, message, None, "invalid_api_key",
                                    {"WWW-Authenticate": "Bearer"})(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised while the body arrives; FastAPI passes an HTTPException from the body reader on as it is."""


class BodyLimit:
    """413 for a body over `limit` bytes: at once from Content-Length, else while it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        seen = [0]

        async def counting():
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.limit:
                raise _TooLarge(413, f"the request body is over the limit of {self.limit:,} bytes (--max-body)")
            return message

        await self.app(scope, counting, send)

    async def _refuse(self, scope, receive, send):
        await errors.error_response(413, f"the request body is over the limit of {self.limit:,} bytes (--max-body)",
                                    None, "body_too_large")(scope, receive, send)
