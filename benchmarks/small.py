"""Small models: what one training step of the recurrent core costs, and how close it is to its matmuls.

For rnn, gru and lstm at hidden 64, 128, 256 (and 512), batch 32 x 100 steps over a 64-wide input
(an embedding's output), the core's forward and backward (what --impl and --amp change; embedding,
head, loss and optimizer cost the same for every candidate) is timed for each candidate side by side:

    torch          torch's nn.RNN/GRU/LSTM in fp32 (the LSTM is oneDNN's fused kernel on CPU)
    scratch        charrnn's own layers with the hand-written BPTT, fp32
    torch bf16     nn.* under CPU bf16 autocast (--amp --impl torch)
    scratch bf16   charrnn's layers with their matmuls in bf16, forced at every width (under --amp they
                   only do it from scratch.BF16_MIN_HIDDEN up, which this table is there to check)

Rounds interleave the candidates and keep each one's best. Next to them:

    matmul fp32    the same matmuls alone (2T step-shaped ones, the input projection, the weight and
                   input gradients), fp32: what the step would cost with every other op free
    best/mm        the best candidate's time over that: 1.0 would be no per-step overhead at all
    GFLOP/s        of the best candidate, counting those matmuls

Then the presets' own models, whole training steps (embedding, core, head, loss, backward, clip, Adam)
on random ids, fp32 against --amp, interleaved: the measurement behind the presets' `amp: true`.

With with_compile, the GRU also runs as an autograd Python loop compiled whole by torch.compile
(the fused route the issue asked about); its first call (the compilation) is reported separately.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.core import scratch
from charrnn.core.config import ModelConfig, load_preset
from charrnn.core.models import CharRNN, detach_state, resolve_impl
from charrnn.core.scratch import SCRATCH_LAYERS

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
TORCH = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
B, T, IN = 32, 100, 64
CANDIDATES = ("torch", "scratch", "torch bf16", "scratch bf16")


def _core_step(core: nn.Module, x: torch.Tensor, bf16: bool):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = core(x)
        out.float().sum().backward()
    return step


def _matmuls(kind: str, H: int):
    """The step's matmuls alone, fp32, at the shapes the scratch layer runs them."""
    G = GATES[kind]
    h, W_hhT, W_hh, dg = torch.randn(B, H), torch.randn(H, G * H), torch.randn(G * H, H), torch.randn(B, G * H)
    x, W_ihT, dG, hs = torch.randn(T * B, IN), torch.randn(IN, G * H), torch.randn(T * B, G * H), torch.randn(T * B, H)

    def step():
        x @ W_ihT  # input projection of every step
        for _ in range(T):
            h @ W_hhT  # forward, step t
            dg @ W_hh  # backward, to h_{t-1}
        dG.t() @ x, dG.t() @ hs, dG @ W_ihT.t()  # dW_ih, dW_hh, dx
    return step


def _flops(kind: str, H: int) -> float:
    G = GATES[kind]
    return 2.0 * T * B * G * H * (3 * IN + 3 * H)  # forward x 1, backward x 2, for both weight matrices


def _compiled_gru(H: int):
    """A GRU as d2l writes one (autograd through a Python loop), compiled whole: one graph of T steps."""
    torch.manual_seed(0)
    W_ih, W_hh = (torch.randn(IN, 3 * H) * 0.1).requires_grad_(), (torch.randn(H, 3 * H) * 0.1).requires_grad_()
    b_ih, b_hh = torch.zeros(3 * H, requires_grad=True), torch.zeros(3 * H, requires_grad=True)
    x = torch.randn(T, B, IN)

    def loop(x, h):
        xa = torch.addmm(b_ih, x.reshape(T * B, IN), W_ih).view(T, B, 3 * H)
        outs = []
        for t in range(T):
            gh = torch.addmm(b_hh, h, W_hh)
            r = torch.sigmoid(xa[t, :, :H] + gh[:, :H])
            z = torch.sigmoid(xa[t, :, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(xa[t, :, 2 * H :] + r * gh[:, 2 * H :])
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs)

    compiled = torch.compile(loop, dynamic=False)
    h0 = torch.zeros(B, H)
    t = time.perf_counter()
    compiled(x, h0).sum().backward()
    return (lambda: compiled(x, h0).sum().backward()), time.perf_counter() - t


def _best_times(steps: dict, rounds: int) -> dict:
    best = {k: float("inf") for k in steps}
    for f in steps.values():
        f()  # warm-up: first-call allocations, oneDNN primitive creation
    for _ in range(rounds):
        for k, f in steps.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def run(quick: bool, rounds: int | None = None, with_compile: bool = False, log=print) -> list[dict]:
    rounds = rounds or (3 if quick else 5)
    widths = (64, 256) if quick else (64, 128, 256, 512)
    saved = scratch.BF16_MIN_HIDDEN
    rows = []
    try:
        scratch.BF16_MIN_HIDDEN = dict.fromkeys(saved, 0)  # "scratch bf16" is forced at every width here
        for kind in ("rnn", "gru", "lstm"):
            for H in widths:
                torch.manual_seed(0)
                x = torch.randn(B, T, IN)
                steps = {"torch": _core_step(TORCH[kind](IN, H, batch_first=True), x, False),
                         "scratch": _core_step(SCRATCH_LAYERS[kind](IN, H), x, False),
                         "torch bf16": _core_step(TORCH[kind](IN, H, batch_first=True), x, True),
                         "scratch bf16": _core_step(SCRATCH_LAYERS[kind](IN, H), x, True),
                         "matmul fp32": _matmuls(kind, H)}
                compile_s = None
                if with_compile and kind == "gru":
                    steps["compiled"], compile_s = _compiled_gru(H)
                rows.append(_row(kind, H, _best_times(steps, rounds), compile_s))
                log(_fmt(rows[-1]))
    finally:
        scratch.BF16_MIN_HIDDEN = saved
    return rows


def _row(kind: str, H: int, best: dict, compile_s: float | None) -> dict:
    cands = [k for k in best if k != "matmul fp32"]
    fastest = min(cands, key=best.get)
    row = {"model": kind, "hidden": H, "batch": B, "seq": T, "input": IN,
           **{f"{k} chars/s": B * T / best[k] for k in best},
           "fastest": fastest, "best_over_matmul": best[fastest] / best["matmul fp32"],
           "gflops": _flops(kind, H) / best[fastest] / 1e9}
    if compile_s is not None:
        row["compile_s"] = compile_s
    return row


HEADER = (f"{'cell':5s} {'H':>4s} " + " ".join(f"{k:>12s}" for k in CANDIDATES) + f" {'matmul fp32':>12s}"
          + f" {'best/mm':>8s} {'GFLOP/s':>8s}  (chars/s)")


def _fmt(r: dict) -> str:
    s = f"{r['model']:5s} {r['hidden']:4d} " + " ".join(f"{r[k + ' chars/s']:12.0f}" for k in CANDIDATES)
    s += f" {r['matmul fp32 chars/s']:12.0f} {r['best_over_matmul']:7.2f}x {r['gflops']:8.1f}  fastest: {r['fastest']}"
    if "compile_s" in r:
        s += f"; compiled {r['compiled chars/s']:.0f} chars/s after {r['compile_s']:.0f} s compiling"
    return s


def preset_steps(rounds: int = 5, steps: int = 20, vocab: int = 65, log=print) -> list[dict]:
    """ms per training step of each shakespeare preset's model, fp32 and bf16 autocast, interleaved."""
    rows = []
    for name in ("shakespeare-68s", "shakespeare-5min"):
        p = load_preset(name)
        torch.manual_seed(0)
        cfg = ModelConfig(model=p["model"], impl=resolve_impl(p["model"], "auto", "cpu"), vocab_size=vocab,
                          hidden=p["hidden"], layers=p.get("layers", 1), embed=p["embed"], dropout=p.get("dropout", 0.0))
        x = torch.randint(0, vocab, (p["batch_size"], p["seq_len"]))
        y = torch.randint(0, vocab, (p["batch_size"], p["seq_len"]))
        runs = {amp: _train_steps(CharRNN(cfg), x, y, amp, steps) for amp in (False, True)}
        best = {amp: float("inf") for amp in runs}
        for _ in range(rounds):
            for amp, run_steps in runs.items():
                best[amp] = min(best[amp], run_steps())
        row = {"preset": name, "model": f"{cfg.model} {cfg.layers}x{cfg.hidden}, embed {cfg.embed}",
               "fp32_ms": 1e3 * best[False], "amp_ms": 1e3 * best[True], "speedup": best[False] / best[True]}
        rows.append(row)
        log(f"{name:18s} {row['model']:24s} fp32 {row['fp32_ms']:6.1f} ms/step   --amp {row['amp_ms']:6.1f} ms/step"
            f"   {row['speedup']:.2f}x")
    return rows


def _train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, steps: int):
    """A closure running `steps` training steps as charrnn's loop does; returns seconds per step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = model.begin_state(x.shape[0])

    def run() -> float:
        nonlocal state
        t = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits, state = model(x, detach_state(state))
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return (time.perf_counter() - t) / steps
    run()  # warm-up
    return run


# (label, model config changes, train config: ar, tar, ema): each regulariser beside plain dropout
LEVER_VARIANTS = [
    ("no dropout", dict(dropout=0.0), {}),
    ("elementwise 0.25", dict(dropout=0.25), {}),
    ("locked 0.25", dict(dropout=0.25, dropout_kind="locked"), {}),
    ("weight drop 0.2", dict(dropout=0.0, weight_drop=0.2), {}),
    ("embed dropout 0.1", dict(dropout=0.0, embed_dropout=0.1), {}),
    ("AR 2, TAR 1", dict(dropout=0.0), dict(ar=2.0, tar=1.0)),
    ("EMA 0.995", dict(dropout=0.0), dict(ema=0.995)),
]


def lever_steps(rounds: int = 5, steps: int = 20, vocab: int = 65, log=print) -> list[dict]:
    """ms per training step of each preset's model (with --amp as the presets ship) for each regulariser
    alone, interleaved, best of `rounds`; through charrnn's own train_step and WeightAverage."""
    from dataclasses import replace

    rows = []
    for name in ("shakespeare-68s", "shakespeare-5min"):
        p = load_preset(name)
        base = ModelConfig(model=p["model"], impl=resolve_impl(p["model"], "auto", "cpu"), vocab_size=vocab,
                           hidden=p["hidden"], layers=p.get("layers", 1), embed=p["embed"])
        x = torch.randint(0, vocab, (p["batch_size"], p["seq_len"]))
        y = torch.randint(0, vocab, (p["batch_size"], p["seq_len"]))
        runs = {}
        for label, mchanges, tchanges in LEVER_VARIANTS:
            torch.manual_seed(0)
            model = CharRNN(replace(base, **mchanges)).train()
            runs[label] = _lever_steps(model, x, y, steps, **tchanges)
        best = {k: float("inf") for k in runs}
        for _ in range(rounds):
            for k, run_steps in runs.items():
                best[k] = min(best[k], run_steps())
        ref = best["elementwise 0.25"]
        row = {"preset": name, "model": f"{base.model} {base.layers}x{base.hidden}, embed {base.embed}",
               **{f"{k} ms": 1e3 * v for k, v in best.items()}}
        rows.append(row)
        log(f"{name} ({row['model']}, --amp), ms per step; vs elementwise dropout:")
        for k, v in best.items():
            log(f"    {k:20s} {1e3 * v:7.1f} ms   {v / ref:5.2f}x")
    return rows


def _lever_steps(model: nn.Module, x, y, steps: int, ar: float = 0.0, tar: float = 0.0, ema: float = 0.0):
    """A closure running `steps` steps of charrnn's train_step (bf16 autocast), with the EMA update when
    asked; returns seconds per step."""
    from charrnn.training.ema import WeightAverage
    from charrnn.training.loop import train_step

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    avg = WeightAverage(model, ema) if ema else None
    state = model.begin_state(x.shape[0])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    done = [0]

    def run() -> float:
        nonlocal state
        t = time.perf_counter()
        for _ in range(steps):
            _, _, state = train_step(model, opt, params, x, y, detach_state(state), 1.0, autocast, ar, tar)
            state = detach_state(state)
            done[0] += 1
            if avg is not None:
                avg.update(done[0])
        return (time.perf_counter() - t) / steps
    run()  # warm-up
    return run
