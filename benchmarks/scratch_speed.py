"""Training throughput of the scratch layers against torch's fused modules and a d2l-style loop.

    python benchmarks/scratch_speed.py                 # the table, about a minute on a 2-core CPU
    python benchmarks/scratch_speed.py --seconds 1 --json results.json

One timed step is a full training step of a CharRNN with one-hot input: forward, summed-over-batch mean
cross-entropy, backward, gradient-norm clip at 1, optimizer step. The core is swapped for
    d2l-style  charrnn.gradcheck.engine.LoopRNN: autograd through a Python loop over time steps;
    torch      torch.nn.RNN/GRU/LSTM (on CPU: ATen's per-step kernels);
    scratch    charrnn.core.scratch: hand-written BPTT.
All three share the embedding/head code and the parameter values. Warm-up steps are not timed; the
timed run is a fixed number of steps chosen from the warm-up speed to last about --seconds, split into
--rounds rounds that alternate between the implementations; the best round is reported (and the median).
Not a test: numbers depend on the machine; see the report printed at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.core.config import ModelConfig
from charrnn.gradcheck.engine import LoopRNN
from charrnn.core.models import CharRNN

# (label, cell, vocab, hidden, batch, steps, implementations)
CONFIGS = [
    ("rnn 1x512, V=28, 32x35", "rnn", 28, 512, 32, 35, ("d2l-style", "torch", "scratch")),
    ("lstm 1x512, V=65, 32x64", "lstm", 65, 512, 32, 64, ("torch", "scratch")),
    ("gru 1x512, V=65, 32x64", "gru", 65, 512, 32, 64, ("torch", "scratch")),
]


def build(cell: str, impl: str, vocab: int, hidden: int, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(model=cell, impl="torch" if impl == "torch" else "scratch", vocab_size=vocab, hidden=hidden))
    if impl == "d2l-style":
        loop = LoopRNN(cell, vocab, hidden)
        loop.load_state_dict(model.rnn.state_dict())
        model.rnn = loop
    return model


def make_step(model: CharRNN, optimizer: str, lr: float):
    opt = torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=lr)

    def step(x, y, state):
        logits, _ = model(x, state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def measure(cell, impls, vocab, hidden, batch, steps, args) -> dict[str, dict]:
    """Time each implementation in interleaved rounds (a busy machine slows all of them alike); the
    best round counts, as timeit does, and the median is reported beside it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (batch, steps), generator=g)
    y = torch.randint(0, vocab, (batch, steps), generator=g)
    runs = {}
    for impl in impls:
        model = build(cell, impl, vocab, hidden).train()
        step = make_step(model, args.optimizer, 1.0 if args.optimizer == "sgd" else 1e-3)
        state = model.begin_state(batch)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step(x, y, state)
        per_step = (time.perf_counter() - t0) / args.warmup
        n = max(2, round(args.seconds / args.rounds / per_step))  # fixed number of timed steps per round
        runs[impl] = (step, state, n, [])
    for _ in range(args.rounds):
        for impl, (step, state, n, times) in runs.items():
            t0 = time.perf_counter()
            for _ in range(n):
                step(x, y, state)
            times.append((time.perf_counter() - t0) / n)
    out = {}
    for impl, (_, _, n, times) in runs.items():
        best, median = min(times), statistics.median(times)
        out[impl] = {"config": f"{cell} {hidden}", "impl": impl, "batch": batch, "seq_len": steps, "vocab": vocab,
                     "steps_per_round": n, "rounds": args.rounds, "ms_per_step": 1000 * best,
                     "ms_per_step_median": 1000 * median, "chars_per_s": batch * steps / best}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row (about), over all rounds")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best one counts")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 = torch's default")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"optimizer {args.optimizer}")
    print(f"{'config':26s} {'impl':10s} {'ms/step':>9s} {'(median)':>9s} {'chars/s':>10s} {'vs torch':>9s} {'vs d2l':>8s}")
    for label, cell, vocab, hidden, batch, steps, impls in CONFIGS:
        rows = measure(cell, impls, vocab, hidden, batch, steps, args)
        for impl, r in rows.items():
            r["label"] = label
            r["vs_torch"] = r["chars_per_s"] / rows["torch"]["chars_per_s"]
            r["vs_d2l"] = r["chars_per_s"] / rows["d2l-style"]["chars_per_s"] if "d2l-style" in rows else None
            vs_d2l = f"{r['vs_d2l']:.2f}x" if r["vs_d2l"] is not None else "-"
            print(f"{label:26s} {impl:10s} {r['ms_per_step']:9.1f} {r['ms_per_step_median']:9.1f} {r['chars_per_s']:10.0f} {r['vs_torch']:8.2f}x {vs_d2l:>8s}",
                  flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "optimizer": args.optimizer,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
