"""Throughput of `charrnn serve` on a 1x512 LSTM: the same 64 streamed requests at concurrency 1 (one
after another), 8 and 64, and the same work as separate `charrnn sample` processes.

    python benchmarks/serve.py                        # 64 requests x 256 characters, 16 sample processes
    python benchmarks/serve.py --chars 128 --procs 64 --threads 2

The weights are untrained (initialised, then saved as a checkpoint): the cost of a step does not depend
on what the weights are, only on the architecture, and the vocabulary is tinyshakespeare's when the
shared corpus is there (65 characters). Each level runs the same 64 requests (same prompts and seeds)
against one server process; a request streams, so the time to its first character is measured where a
client sees it. Reported: total characters per second over the level's wall time, the p50 and p99 time
to first character, the p50 time per request, and the ratio of concurrency 64 to one at a time (the
issue's target: at least 8x). The `charrnn sample` processes run all at once, each paying its own start-up
(Python, torch, the checkpoint): what serving without a server costs. Not a test: the numbers depend on
the machine and on whatever else runs on it (say so when you quote them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from serve_helpers import Server  # noqa: E402

from charrnn.core.checkpoint import save_checkpoint  # noqa: E402
from charrnn.core.config import ModelConfig  # noqa: E402
from charrnn.core.models import CharRNN  # noqa: E402
from charrnn.core.vocab import Vocab  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
PROMPTS = ["ROMEO:\n", "First Citizen:\n", "The king ", "O, ", "What ", "I am ", "\n", "And "]


def make_run(out: Path, hidden: int, layers: int) -> Path:
    """An untrained LSTM saved as a run directory (best.pt)."""
    text = CORPUS.read_text(encoding="utf-8") if CORPUS.is_file() else "".join(map(chr, range(32, 127))) + "\n"
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(model="lstm", vocab_size=len(vocab), hidden=hidden, layers=layers)
    torch.manual_seed(0)
    model = CharRNN(cfg)
    save_checkpoint({"model_config": asdict(cfg), "model": model.state_dict(), "vocab": list(vocab.chars),
                     "position": {"step": 0}}, out / "best.pt")
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


EVENT = re.compile(rb"data: (\{.*?\})\n\n")


async def streamed(port: int, body: dict) -> tuple[float | None, float, int]:
    """One streamed completion over a plain socket: (time to the first character, time to the end,
    characters). A bare HTTP/1.1 client: httpx's own parsing would take a share of the same CPUs
    from the server it measures. Each event is one chunk of the response, so `data: {...}` never
    straddles the chunked encoding's size lines."""
    payload = json.dumps(body).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    buf, first, n = b"", None, 0
    while data := await reader.read(65536):
        buf += data
        end = 0
        for m in EVENT.finditer(buf):
            k = sum(len(c["text"]) for c in json.loads(m.group(1))["choices"])
            if k and first is None:
                first = time.perf_counter() - start
            n, end = n + k, m.end()
        buf = buf[end:]
    writer.close()
    return first, time.perf_counter() - start, n


async def level(port: int, model: str, concurrency: int, requests: int, chars: int) -> dict:
    """`requests` streamed completions, `concurrency` in flight at a time."""
    todo = list(range(requests))[::-1]
    first, whole, got = [], [], []

    async def client():
        while todo:
            i = todo.pop()
            body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": chars, "seed": i, "stream": True}
            f, w, n = await streamed(port, body)
            first.append(f)
            whole.append(w)
            got.append(n)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    assert sum(got) == requests * chars, (sum(got), requests * chars)
    return {"mode": f"serve, concurrency {concurrency}", "requests": requests, "chars_per_s": sum(got) / wall,
            "ttfc_p50_ms": 1000 * percentile(first, 0.5), "ttfc_p99_ms": 1000 * percentile(first, 0.99),
            "request_p50_ms": 1000 * percentile(whole, 0.5), "wall_s": wall}


def processes(run: Path, procs: int, chars: int, threads: int) -> dict:
    """`procs` `charrnn sample` processes at once, the same prompts and seeds as the first requests."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads or os.cpu_count())}
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "charrnn", "sample", str(run), "--prefix", PROMPTS[i % len(PROMPTS)],
                                 "--length", str(chars), "--seed", str(i)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env) for i in range(procs)]
    ends = []
    for p in running:
        p.communicate()
        ends.append(time.perf_counter() - start)
        assert p.returncode == 0
    wall = time.perf_counter() - start
    return {"mode": f"{procs} `charrnn sample` processes", "requests": procs, "chars_per_s": procs * chars / wall,
            "ttfc_p50_ms": None, "ttfc_p99_ms": None, "request_p50_ms": 1000 * statistics.median(ends), "wall_s": wall}


def table(rows: list[dict]) -> str:
    def ms(x):
        return "-" if x is None else f"{x:,.0f}"

    out = ["| mode | requests | chars/s | first char p50 (ms) | first char p99 (ms) | request p50 (ms) |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['requests']} | {r['chars_per_s']:,.0f} | {ms(r['ttfc_p50_ms'])} | "
                   f"{ms(r['ttfc_p99_ms'])} | {ms(r['request_p50_ms'])} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--chars", type=int, default=256, help="characters per request")
    ap.add_argument("--levels", default="1,8,64", help="concurrency levels")
    ap.add_argument("--procs", type=int, default=16, help="`charrnn sample` processes (0 = skip)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (and of each process)")
    ap.add_argument("--device", default="cpu", help="the server's --device")
    ap.add_argument("--stream-interval", default="0.05", help="the server's --stream-interval (seconds)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"load average {load[0]:.1f} at the start; server --threads {args.threads}, --device {args.device}, "
          f"--stream-interval {args.stream_interval}")
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "lstm512", args.hidden, args.layers)
        rows = []
        with Server(run, "--max-rows", "256", "--threads", str(args.threads), "--device", args.device,
                    "--stream-interval", args.stream_interval) as server:
            asyncio.run(level(server.port, "lstm512", 8, 8, 16))  # warm-up: first calls, allocations
            for c in map(int, args.levels.split(",")):
                rows.append(asyncio.run(level(server.port, "lstm512", c, args.requests, args.chars)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        if args.procs:
            rows.append(processes(run, args.procs, args.chars, args.threads))
    print(f"\n{args.layers}x{args.hidden} LSTM (untrained weights), {args.requests} requests x {args.chars} characters "
          f"per level; load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))
    one = next((r for r in rows if r["mode"] == "serve, concurrency 1"), None)
    top = next((r for r in rows if r["mode"] == "serve, concurrency 64"), None)
    if one and top:
        print(f"\nconcurrency 64 vs one at a time: {top['chars_per_s'] / one['chars_per_s']:.1f}x the characters per "
              "second (target >= 8x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
