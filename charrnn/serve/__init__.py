"""Stage 6, serving: trained runs behind OpenAI's completions API, many requests stepped as one batch.

`charrnn serve RUN [RUN ...]` and `create_app` need the optional extra (`pip install 'charrnn[serve]'`:
FastAPI, uvicorn, prometheus-client); `require()` says so in one line. Its rooms: `config` (the options,
one per flag, and the runs served), `engine` (the continuous batcher: one thread per model steps every
active row together; rows join after their prompt is fed and leave when they finish), `schema` (the
Pydantic request and response models, which are the API's documentation), `completions` (the
/v1/completions route, whole or streamed), `errors` (every failure in OpenAI's error shape), `metrics`
(Prometheus), `app` (the FastAPI application: routes, API key, body limit, CORS, request log) and
`server` (uvicorn, workers, draining on SIGTERM).
"""

import importlib

from charrnn.core.errors import CharRNNError

INSTALL_HINT = "pip install 'charrnn[serve]'"


def require() -> None:
    """A CharRNNError naming the extra when FastAPI, uvicorn or prometheus-client is missing."""
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise CharRNNError(f"charrnn serve needs {module} (FastAPI, uvicorn and prometheus-client): "
                               f"{INSTALL_HINT}") from None
