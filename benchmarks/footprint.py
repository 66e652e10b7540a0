"""Peak memory and start-up time of `charrnn train` on big corpora (100 MB, 1 GB), cold and cached.

A corpus of the wanted size is written once into a work folder (tinyshakespeare repeated, else the
pystdlib corpus). Each measurement is a fresh Python process that trains 20 steps of a small LSTM and
reports its peak resident set (getrusage ru_maxrss, i.e. VmHWM) and the time from its launch to the
training loop's first step (the engine's start event). The first run encodes the corpus into the cache
(`charrnn.data.cache`), the second memory-maps it. The validation split is kept small (--val-frac 0.0005):
evaluating 10% of a 1 GB corpus is a job of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
launched = float(sys.argv[1])
from charrnn.training.train import train
seen = {}
def on_event(e):
    if e.kind == "start":
        seen["start"] = time.time()
train(json.loads(sys.argv[2]), on_event=on_event)
print(json.dumps({"startup_s": seen["start"] - launched, "total_s": time.time() - launched,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_corpus(folder: Path, megabytes: int, source: Path | None) -> Path:
    path = folder / f"big-{megabytes}mb.txt"
    size = megabytes * 1_000_000
    if path.exists() and path.stat().st_size == size:
        return path
    if source is not None and source.is_file():
        block = source.read_bytes()
    else:
        from charrnn.data import corpora

        _, p = corpora.resolve_corpus("pystdlib", corpora.data_dir(None), None)
        block = Path(p).read_bytes()
    block = block[: block.rfind(b"\n") + 1] or block
    with open(path, "wb") as f:
        left = size
        while left > 0:
            piece = block[:left]
            f.write(piece)
            left -= len(piece)
    return path


def measure(corpus: Path, out: Path) -> dict:
    options = {"corpus": str(corpus), "model": "lstm", "hidden": 128, "embed": 16, "batch_size": 32, "seq_len": 64,
               "max_steps": 20, "val_frac": 0.0005, "eval_every": 10**9, "sample_every": 0, "out": str(out)}
    launched = time.time()
    r = subprocess.run([sys.executable, "-c", CHILD, repr(launched), json.dumps(options)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode != 0:
        raise RuntimeError(f"footprint child failed: {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(sizes_mb: list[int], folder: Path, source: Path | None, log=print) -> list[dict]:
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for mb in sizes_mb:
        corpus = make_corpus(folder, mb, source)
        shutil.rmtree(folder / ".charrnn-cache", ignore_errors=True)
        for phase in ("first (encode)", "second (cached)"):
            out = folder / f"run-{mb}-{len(rows)}"
            shutil.rmtree(out, ignore_errors=True)
            row = {"corpus_mb": mb, "phase": phase, **measure(corpus, out)}
            shutil.rmtree(out, ignore_errors=True)
            rows.append(row)
            log(f"{mb:>6d} MB  {phase:16s} start-up {row['startup_s']:7.1f} s   peak RSS {row['peak_rss_mb']:7.0f} MB")
    return rows
