"""What `charrnn serve` is told (`ServeOptions`, one field per flag) and the runs it serves.

    options = ServeOptions(runs=("shakespeare=runs/shakespeare",), port=8000)
    runs = load_runs(options)          # name -> ServedRun (the checkpoint loaded, a Batcher not yet started)

A run is named by its directory (`runs/shakespeare` -> `shakespeare`; `runs/x/best.pt` -> `x`) or
explicitly, `NAME=PATH`. Any host other than a loopback address needs an API key: the server would
otherwise hand a model, and the machine's CPU, to whoever reaches the port.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from charrnn.core.checkpoint import Checkpoint, load
from charrnn.core.device import resolve_device
from charrnn.core.errors import CharRNNError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ENV_OPTIONS = "CHARRNN_SERVE_OPTIONS"  # how `--workers N` hands the options to its worker processes


@dataclass(frozen=True)
class ServeOptions:
    runs: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_prompt: int = 4096  # characters of one prompt, after preprocessing
    max_tokens: int = 4096  # characters generated per choice
    max_n: int = 16  # choices per prompt
    max_body: int = 1_000_000  # bytes of a request body
    max_rows: int = 256  # rows stepped together per model; more wait in the queue
    queue: int = 256  # requests waiting per model before 429
    timeout: float = 300.0  # seconds per request
    stream_interval: float = 0.05  # seconds between a stream's chunks (what arrives meanwhile is joined)
    workers: int = 1
    threads: int = 0  # torch threads per worker; 0 = torch's default
    device: str = "cpu"

    def __post_init__(self):
        if not self.runs:
            raise CharRNNError("charrnn serve needs at least one run directory or checkpoint")
        if self.host not in LOOPBACK and not self.api_key:
            raise CharRNNError(f"binding {self.host} exposes the server beyond this machine: give --api-key "
                               "(or set CHARRNN_API_KEY) so that only clients with the key are served")
        for name in ("max_prompt", "max_tokens", "max_n", "max_body", "max_rows", "queue", "workers"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_n > self.max_rows:
            raise CharRNNError(f"--max-n {self.max_n} can never fit a batch of --max-rows {self.max_rows}")
        if self.timeout <= 0 or self.stream_interval < 0 or self.threads < 0 or not 0 <= self.port < 65536:
            raise CharRNNError("--timeout must be positive, --stream-interval and --threads at least 0, "
                               "--port in 0..65535")

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ServeOptions":
        raw = json.loads(os.environ[ENV_OPTIONS])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


@dataclass
class ServedRun:
    name: str
    checkpoint: Checkpoint
    created: int  # the checkpoint file's modification time, OpenAI's `created`
    batcher: object = field(default=None, repr=False)  # the engine's Batcher, made by the app

    @property
    def architecture(self) -> str:
        c = self.checkpoint.model_config
        return f"{c.model} {c.layers}x{c.hidden}"


def run_name(spec: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` -> (name, path)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if not name or "/" in name:
            raise CharRNNError(f"{spec!r}: a run is PATH or NAME=PATH, with a NAME without '/'")
        return name, path
    p = Path(spec)
    if p.suffix == ".pt":
        return (p.parent.resolve().name if p.stem in ("best", "last") else p.stem), spec
    return p.resolve().name, spec


def load_runs(options: ServeOptions) -> dict[str, ServedRun]:
    """Every run's checkpoint, loaded onto the device; one clear error for a missing or unreadable one
    and for two runs of the same name."""
    device = resolve_device(options.device)
    runs: dict[str, ServedRun] = {}
    for spec in options.runs:
        name, path = run_name(spec)
        if name in runs:
            raise CharRNNError(f"two runs are named {name!r}: name them apart as NAME=PATH")
        ck = load(path, device)
        runs[name] = ServedRun(name, ck, int(os.path.getmtime(ck.path)))
    return runs
