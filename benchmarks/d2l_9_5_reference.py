"""d2l 1.0 section 9.5 as the book runs it, in plain torch: the yardstick for `charrnn train --preset d2l-9.5`.

    python benchmarks/d2l_9_5_reference.py [--data-dir DIR] [--mirror URL] [--seed 0]

The book's code, class by class, without the d2l package (d2l==1.0.3 pins numpy, pandas, matplotlib and
jupyter versions that would replace the project's): `TimeMachine` (every run of non-letters, line breaks
included, becomes one space; characters; a vocabulary with <unk>, most frequent first; one window of
num_steps + 1 per start position; the first 10,000 windows train, the next 5,000 validate), `RNNScratch`
(32 hidden units, weights N(0, 0.01^2), zero biases, a zero state for every batch), `RNNLMScratch`
(mean cross-entropy), `Trainer(max_epochs=100, gradient_clip_val=1)` with SGD at lr 1 and d2l's
`clip_gradients` (the global norm scaled down to 1). Batches of 1,024 shuffled windows, 10 per epoch.

Prints the train and val perplexity every 10 epochs, each the mean loss over all of that split's windows
(each from a zero state, as the book's validation scores them), and the wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn.data.corpora import data_dir, resolve_corpus

T, B, H, SIGMA, LR, CLIP, EPOCHS, NUM_TRAIN, NUM_VAL = 32, 1024, 32, 0.01, 1.0, 1.0, 100, 10_000, 5_000


def windows(text: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """d2l 1.0's TimeMachine: (X, Y) of every window of T characters, and the vocabulary size."""
    text = re.sub("[^A-Za-z]+", " ", text).lower()
    tokens = ["<unk>"] + [c for c, _ in sorted(Counter(text).items(), key=lambda kv: kv[1], reverse=True)]
    index = {c: i for i, c in enumerate(tokens)}
    corpus = torch.tensor([index[c] for c in text])
    array = corpus.unfold(0, T + 1, 1)  # (len - T, T + 1): one window per start position
    print(f"{len(text):,} characters, vocabulary {len(tokens)}, {len(array):,} windows of {T}")
    return array[:, :-1], array[:, 1:], len(tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--mirror", default=os.environ.get("CHARRNN_MIRROR"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    _, path = resolve_corpus("timemachine", data_dir(args.data_dir), args.mirror)
    X, Y, V = windows(Path(path).read_text(encoding="utf-8"))
    train, val = (X[:NUM_TRAIN], Y[:NUM_TRAIN]), (X[NUM_TRAIN:NUM_TRAIN + NUM_VAL], Y[NUM_TRAIN:NUM_TRAIN + NUM_VAL])
    W_xh, W_hh, W_hq = (torch.randn(*shape) * SIGMA for shape in ((V, H), (H, H), (H, V)))
    b_h, b_q = torch.zeros(H), torch.zeros(V)
    params = [p.requires_grad_() for p in (W_xh, W_hh, b_h, W_hq, b_q)]

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, outs = torch.zeros(x.shape[0], H), []
        for xt in F.one_hot(x.T, V).float():  # (B, V) per time step
            h = torch.tanh(xt @ W_xh + h @ W_hh + b_h)
            outs.append(h @ W_hq + b_q)
        return F.cross_entropy(torch.stack(outs, 1).reshape(-1, V), y.reshape(-1))

    @torch.no_grad()
    def perplexity(split) -> float:
        x, y = split
        total = sum(loss_of(x[i:i + B], y[i:i + B]).item() * len(x[i:i + B]) for i in range(0, len(x), B))
        return math.exp(total / len(x))

    start = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(NUM_TRAIN)
        for i in range(0, NUM_TRAIN, B):
            idx = order[i:i + B]
            loss = loss_of(train[0][idx], train[1][idx])
            for p in params:
                p.grad = None
            loss.backward()
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
            with torch.no_grad():
                for p in params:
                    p -= LR * p.grad * (CLIP / norm if norm > CLIP else 1.0)
        if epoch % 10 == 0:
            print(f"epoch {epoch:3d}  train ppl {perplexity(train):.3f}  val ppl {perplexity(val):.3f}  "
                  f"{time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
