"""Training throughput: charrnn's own loop against a minimal raw PyTorch loop and a d2l-style model.

For each configuration and each engine (torch, scratch), three measurements of the same model on the same
batches (sequential streams of the real corpus, state carried and detached, Adam, clip 1):

    charrnn    charrnn.training.train.train(max_steps=...) as a user runs it: data, logging, metrics file,
               progress events included. Timed between its log events (the first interval, with the
               warm-up, is dropped), so start-up and the final evaluation do not count.
    raw        the loop nothing can be removed from: batch -> forward -> cross-entropy -> backward ->
               clip -> step, and one .item() (the loss has to be read at some point).
    d2l-style  the raw loop around charrnn.gradcheck.engine.LoopRNN: autograd through a Python loop over the
               time steps, as d2l's RNNModelScratch (engine-independent, measured once per config).

Rounds interleave the three and keep each one's best: on a shared machine the best of a few runs is the
least disturbed one. GFLOP/s counts the matmuls a training step runs (forward x 3: backward computes
the input and the weight gradients), one-hot inputs included since torch multiplies them densely.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.core.config import ModelConfig, TrainConfig
from charrnn.data.batches import Batches
from charrnn.data.dataset import prepare_corpus
from charrnn.gradcheck.engine import LoopRNN
from charrnn.core.models import CharRNN, detach_state
from charrnn.training.train import train

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class Config:
    name: str
    model: str
    hidden: int
    layers: int
    embed: int
    batch: int
    seq: int
    corpus: str = "tinyshakespeare"
    letters_only: bool = False
    impls: tuple[str, ...] = ("torch", "scratch")


CONFIGS = [
    Config("d2l rnn 1x512 one-hot 32x35", "rnn", 512, 1, 0, 32, 35, "timemachine", letters_only=True),
    Config("lstm 1x512 one-hot 50x50", "lstm", 512, 1, 0, 50, 50),
    Config("lstm 2x512 embed 64, 50x50", "lstm", 512, 2, 64, 50, 50),
    Config("gru 1x256 one-hot 32x64", "gru", 256, 1, 0, 32, 64),
    Config("lstm 1x256 one-hot 32x64", "lstm", 256, 1, 0, 32, 64),
    Config("gru 1x512 one-hot 32x64", "gru", 512, 1, 0, 32, 64),
    Config("lstm 1x512 one-hot 32x64", "lstm", 512, 1, 0, 32, 64),
]
QUICK = [CONFIGS[0], CONFIGS[1], CONFIGS[3], CONFIGS[4]]


def flops_per_char(c: Config, vocab: int) -> float:
    """Multiply-adds x 2 of one training step, per character: 3 x the forward's matmuls."""
    fwd, inp = 0, c.embed or vocab
    for _ in range(c.layers):
        fwd += 2 * GATES[c.model] * c.hidden * (inp + c.hidden)
        inp = c.hidden
    fwd += 2 * c.hidden * vocab  # the output layer
    return 3.0 * fwd


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on this machine, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _model(c: Config, impl: str, vocab: int, d2l: bool = False) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model=c.model, impl=impl, vocab_size=vocab, hidden=c.hidden, layers=c.layers, embed=c.embed))
    if d2l:
        loop = LoopRNN(c.model, c.embed or vocab, c.hidden, c.layers)
        loop.load_state_dict(model.rnn.state_dict())
        model.rnn = loop
    return model


def raw_loop(c: Config, impl: str, corpus, steps: int, warmup: int, d2l: bool = False) -> float:
    """chars/s of the minimal loop."""
    model = _model(c, impl, len(corpus.vocab), d2l)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = Batches(corpus.train, c.batch, c.seq, "sequential", seed=1337)
    plan = batches.epoch(0)
    state = model.begin_state(c.batch)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        x, y = batches.batch(plan, i % plan["num_batches"])
        logits, state = model(x, detach_state(state))
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
    return steps * c.batch * c.seq / (time.perf_counter() - t0)


def charrnn_loop(c: Config, impl: str, data: dict, steps: int, warmup: int) -> float:
    """chars/s of charrnn.training.train.train between its log events."""
    every = max(1, warmup)
    logs: list[tuple[float, int]] = []

    def on_event(e):
        if e.kind == "log":
            logs.append((time.perf_counter(), e.data["step"]))

    with tempfile.TemporaryDirectory() as out:
        train({**data, "corpus": c.corpus, "letters_only": c.letters_only, "model": c.model, "impl": impl,
               "hidden": c.hidden, "layers": c.layers, "embed": c.embed, "batch_size": c.batch, "seq_len": c.seq,
               "max_steps": warmup + steps, "log_every": every, "eval_every": 10**9, "sample_every": 0,
               "out": out + "/run"}, on_event=on_event)
    (t0, s0), (t1, s1) = logs[0], logs[-1]
    return (s1 - s0) * c.batch * c.seq / (t1 - t0)


def run(quick: bool, data: dict, rounds: int | None = None, log=print) -> dict:
    configs = QUICK if quick else CONFIGS
    rounds = rounds or (2 if quick else 3)
    steps, warmup = (30, 10) if quick else (60, 10)
    peak = max(matmul_peak() for _ in range(2))
    log(f"fp32 matmul peak (2048^3, best of 10): {peak:.1f} GFLOP/s; {torch.get_num_threads()} threads")
    rows = []
    for c in configs:
        corpus = prepare_corpus(TrainConfig(corpus=c.corpus, letters_only=c.letters_only, **data))
        V = len(corpus.vocab)
        fpc = flops_per_char(c, V)
        d2l, want_d2l = 0.0, not quick or c.model == "rnn"
        for impl in c.impls:
            best = {"charrnn": 0.0, "raw": 0.0}
            for _ in range(rounds):
                best["raw"] = max(best["raw"], raw_loop(c, impl, corpus, steps, warmup))
                best["charrnn"] = max(best["charrnn"], charrnn_loop(c, impl, data, steps, warmup))
                if want_d2l and impl == c.impls[0]:
                    d2l = max(d2l, raw_loop(c, impl, corpus, max(steps // 3, 5), 2, d2l=True))
            row = {"config": c.name, "model": c.model, "impl": impl, "vocab": V, "flops_per_char": fpc,
                   "charrnn_chars_per_s": best["charrnn"], "raw_chars_per_s": best["raw"],
                   "d2l_chars_per_s": d2l or None,
                   "overhead_vs_raw": best["raw"] / best["charrnn"] - 1.0,
                   "speedup_vs_d2l": best["charrnn"] / d2l if d2l else None,
                   "gflops": best["charrnn"] * fpc / 1e9, "peak_gflops": peak}
            row["peak_frac"] = row["gflops"] / peak
            rows.append(row)
            log(_fmt(row))
    return {"peak_gflops": peak, "threads": torch.get_num_threads(), "rows": rows}


HEADER = (f"{'config':30s} {'impl':8s} {'charrnn':>9s} {'raw':>9s} {'overhd':>7s} {'d2l':>8s} {'vs d2l':>7s} "
          f"{'GFLOP/s':>8s} {'%peak':>6s}")


def _fmt(r: dict) -> str:
    d2l = f"{r['d2l_chars_per_s']:8.0f}" if r["d2l_chars_per_s"] else f"{'-':>8s}"
    vs = f"{r['speedup_vs_d2l']:6.2f}x" if r["speedup_vs_d2l"] else f"{'-':>7s}"
    return (f"{r['config']:30s} {r['impl']:8s} {r['charrnn_chars_per_s']:9.0f} {r['raw_chars_per_s']:9.0f} "
            f"{100 * r['overhead_vs_raw']:6.1f}% {d2l} {vs} {r['gflops']:8.1f} {100 * r['peak_frac']:5.1f}%")
