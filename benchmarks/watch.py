"""What `w.step(...)` costs inside a training loop, with every argument given, as a share of the step
(targets: at most 5% for a 1x256 GRU at B x T = 32 x 64, at most 15% for a 1x64 GRU).

    python benchmarks/watch.py                      # both models, 12 rounds of 25 steps per arm
    python benchmarks/watch.py --rounds 4 --device cuda

The loop is a learner's: Embedding -> nn.GRU -> Linear on contiguous streams (the state carried and
detached), cross_entropy, Adam, gradient clipping. The two arms, plain and watched, alternate round by
round on the same model, so that a machine whose load changes slows both alike. Two numbers:

    share     the time spent inside w.step over the time of the plain step, summed over the watched rounds
    arm gap   (watched step - plain step) / plain step, from the medians of the rounds: includes the noise of
              a shared machine, and any slowdown the watch causes outside its own call

Each watched arm starts a fresh watch, so its first steps (where every check is still deciding and the
cross-entropy is recomputed) are in the numbers, as in a real run's first minute. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

import charrnn

V = 65  # tinyshakespeare's characters


class Model(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Embedding(V, hidden), nn.GRU(hidden, hidden, batch_first=True), nn.Linear(hidden, V)

    def forward(self, x, state):
        out, state = self.rnn(self.emb(x), state)
        return self.head(out), state  # (B, T, V)


def measure(hidden: int, B: int, T: int, rounds: int, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    model = Model(hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    data = torch.randint(0, V, (B, (2 * rounds * steps + 4) * T + 1), device=device)  # a contiguous stream per row
    col = 0
    state = torch.zeros(1, B, hidden, device=device)
    plain, watched, inside = [], [], []

    def one(w):
        nonlocal col, state
        t0 = time.perf_counter()
        x, y = data[:, col:col + T], data[:, col + 1:col + T + 1]
        col += T
        state_in = state
        logits, state = model(x, state_in)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t1 = time.perf_counter()
        if w is not None:
            w.step(loss, logits=logits, targets=y, state_in=state_in, state_out=state, inputs=x,
                   lr=opt.param_groups[0]["lr"], grads={n: p.grad for n, p in model.named_parameters()}, params=model)
        state = state.detach()
        if device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    for _ in range(3):
        one(None)  # warm-up: allocator, kernels
    for r in range(rounds):
        plain.append(statistics.median(one(None)[0] for _ in range(steps)))
        w = charrnn.watch(model, optimizer=opt, vocab_size=V, output=None)
        times = [one(w) for _ in range(steps)]
        watched.append(statistics.median(t for t, _ in times))
        inside.append(sum(t for _, t in times) / steps)
    step = statistics.median(plain)
    return {"model": f"1x{hidden} GRU", "B": B, "T": T, "plain_ms": 1e3 * step, "watched_ms": 1e3 * statistics.median(watched),
            "w_step_ms": 1e3 * statistics.median(inside), "share_pct": 100 * statistics.median(inside) / step,
            "arm_gap_pct": 100 * (statistics.median(watched) - step) / step, "rounds": rounds, "steps_per_round": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=25, help="steps per arm and round")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(h, 32, 64, args.rounds, args.steps, args.device) for h in (256, 64)]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.device}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'model':<12} {'B x T':>7} {'step ms':>8} {'w.step ms':>9} {'share':>7} {'arm gap':>8}  target")
    for r, target in zip(rows, (5, 15)):
        print(f"{r['model']:<12} {r['B']:>3} x {r['T']:<3} {r['plain_ms']:>8.2f} {r['w_step_ms']:>9.3f} "
              f"{r['share_pct']:>6.1f}% {r['arm_gap_pct']:>7.1f}%  <= {target}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
