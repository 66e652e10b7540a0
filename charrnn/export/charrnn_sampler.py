#!/usr/bin/env python3
"""A character-level RNN, GRU or LSTM language model, and a sampler for it, in NumPy alone.

`charrnn export RUN --format numpy --out DIR` writes this file beside `model.npz`, the trained weights.
Nothing here needs torch or charrnn: read it top to bottom to see the whole forward pass.

    python charrnn_sampler.py --prefix "ROMEO:" --length 300
    python charrnn_sampler.py -p "ROMEO:" -t 0                     # greedy: always the likeliest character
    python charrnn_sampler.py -p "ROMEO:" -t 0.8 --top-k 10 --seed 1

Notation (the shapes in the comments use it):
    V  characters in the vocabulary          H  hidden units per layer       L  layers
    E  embedding width (0: one-hot input)    I  a layer's input width: E, or V for one-hot input, or H above layer 0
    x  the input vector (I,)   h  the hidden state (H,)   c  the LSTM's cell state (H,)
    W_ih (G*H, I), W_hh (G*H, H), b_ih, b_hh (G*H,): the G gate blocks of a layer stacked in rows, in
    PyTorch's order, so W_ih[0:H] belongs to the first gate, W_ih[H:2H] to the second, and so on.
    σ(a) = 1 / (1 + e^-a), the logistic sigmoid;  ⊙ elementwise product.

One step of the model reads one character and predicts the next:

    x_0 = one_hot(char) (V,)  or  embedding[char] (E,)
    h_k = cell(x_k, h_k) for each layer k;  x_{k+1} = h_k          (dropout is for training only)
    logits = W_head h_{L-1} + b_head (V,);  p = softmax(logits / temperature)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np


def sigmoid(a):
    """σ(a) = 1 / (1 + e^-a), written as (1 + tanh(a/2)) / 2: the same function, no overflow for large |a|."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


# ---------------------------------------------------------------------------------------- the cells


def rnn_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """Elman's RNN (one gate block, G = 1): x (I,), h (H,) -> the new h (H,).

        h' = tanh(W_ih x + b_ih + W_hh h + b_hh)

    The new state mixes the input with the old state through one squashing nonlinearity. Gradients
    through many such steps vanish or explode, which is what the GRU and LSTM gates are for."""
    return np.tanh(W_ih @ x + b_ih + W_hh @ h + b_hh)  # (H,)


def gru_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """Gated recurrent unit (G = 3 blocks: reset r, update z, candidate n): x (I,), h (H,) -> h' (H,).

        r  = σ(W_ir x + b_ir + W_hr h + b_hr)            how much of the old state the candidate sees
        z  = σ(W_iz x + b_iz + W_hz h + b_hz)            how much of the old state is kept
        n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))   the candidate state
        h' = (1 - z) ⊙ n + z ⊙ h

    W_ir is W_ih[0:H], W_iz is W_ih[H:2H], W_in is W_ih[2H:3H]; likewise for W_hh and the biases.
    The reset gate multiplies W_hn h + b_hn, bias included (PyTorch's GRU, and cuDNN's)."""
    H = h.shape[0]
    gi = W_ih @ x + b_ih  # (3H,) the input's share of every gate
    gh = W_hh @ h + b_hh  # (3H,) the old state's share
    r = sigmoid(gi[0:H] + gh[0:H])  # (H,)
    z = sigmoid(gi[H : 2 * H] + gh[H : 2 * H])  # (H,)
    n = np.tanh(gi[2 * H : 3 * H] + r * gh[2 * H : 3 * H])  # (H,)
    return (1.0 - z) * n + z * h  # (H,)


def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """Long short-term memory (G = 4 blocks: input i, forget f, cell g, output o): x (I,), h (H,),
    c (H,) -> the new (h', c'), each (H,).

        i  = σ(W_ii x + b_ii + W_hi h + b_hi)         how much of the new content is written
        f  = σ(W_if x + b_if + W_hf h + b_hf)         how much of the old cell is kept
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)      the new content
        o  = σ(W_io x + b_io + W_ho h + b_ho)         how much of the cell is shown
        c' = f ⊙ c + i ⊙ g                            the memory: changed by addition, not by a squashing
        h' = o ⊙ tanh(c')

    W_ii is W_ih[0:H], W_if is W_ih[H:2H], W_ig is W_ih[2H:3H], W_io is W_ih[3H:4H]; likewise W_hh."""
    H = h.shape[0]
    a = W_ih @ x + b_ih + W_hh @ h + b_hh  # (4H,) all four gates' pre-activations at once
    i = sigmoid(a[0:H])  # (H,)
    f = sigmoid(a[H : 2 * H])  # (H,)
    g = np.tanh(a[2 * H : 3 * H])  # (H,)
    o = sigmoid(a[3 * H : 4 * H])  # (H,)
    c_new = f * c + i * g  # (H,)
    return o * np.tanh(c_new), c_new


# ---------------------------------------------------------------------------------------- the model


class CharModel:
    """The weights of model.npz and one step of the network.

    The state is an array (L, H) of every layer's h, and for the LSTM a second one of every layer's c;
    it starts at zeros and is carried from step to step, never kept inside the model."""

    def __init__(self, path):
        with np.load(path, allow_pickle=False) as npz:  # plain arrays only: loading runs no code
            self.meta = json.loads(str(npz["meta"]))
            self.w = {name: npz[name] for name in npz.files if name != "meta"}
        m = self.meta
        self.cell, self.layers, self.hidden, self.embed = m["cell"], m["layers"], m["hidden"], m["embed"]
        self.chars = m["vocab"]  # id i is chars[i]
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def begin_state(self):
        h = np.zeros((self.layers, self.hidden), dtype=np.float32)  # (L, H)
        return (h, h.copy()) if self.cell == "lstm" else h

    def step(self, char_id, state):
        """One character id in -> logits (V,) for the next character, and the new state."""
        w = self.w
        if self.embed > 0:
            x = w["embedding.weight"][char_id]  # (E,) row char_id of the embedding table (V, E)
        else:
            x = np.zeros(len(self.chars), dtype=np.float32)  # (V,) one-hot
            x[char_id] = 1.0
        hs, cs = state if self.cell == "lstm" else (state, None)
        new_h, new_c = [], []
        for k in range(self.layers):
            p = [w[f"rnn.{name}_l{k}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if self.cell == "lstm":
                h, c = lstm_cell(x, hs[k], cs[k], *p)
                new_c.append(c)
            elif self.cell == "gru":
                h = gru_cell(x, hs[k], *p)
            else:
                h = rnn_cell(x, hs[k], *p)
            new_h.append(h)
            x = h  # (H,) the next layer's input
        logits = w["head.weight"] @ x + w["head.bias"]  # (V,)
        h = np.stack(new_h)  # (L, H)
        return logits, ((h, np.stack(new_c)) if self.cell == "lstm" else h)


# ------------------------------------------------------------------------------- text in, text out

_NON_LETTERS = re.compile(r"[\W\d_]+")  # a run of characters that are not letters (any script)


def preprocess(text, lowercase=False, letters_only=False):
    """Prepare a prefix as the training text was prepared. letters_only (d2l's read_time_machine): in
    each line every run of non-letters becomes one space, the line is stripped and lower-cased, and
    the lines are joined with nothing between them."""
    if letters_only:
        return "".join(_NON_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines())
    return text.lower() if lowercase else text


def distribution(logits, temperature=1.0, top_k=0):
    """p (V,): softmax(logits / temperature), over the top_k largest logits only when top_k > 0
    (ties with the k-th are kept). temperature > 0; below 1 sharpens, above 1 flattens."""
    z = logits.astype(np.float64) / temperature  # (V,)
    if 0 < top_k < z.shape[0]:
        kth = np.sort(z)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    e = np.exp(z - z.max())  # subtracting the max changes nothing but keeps exp from overflowing
    return e / e.sum()


def draw(p, rng):
    """One id drawn from p (V,) by inverting the cumulative distribution with one uniform number."""
    cum = np.cumsum(p)  # (V,)
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(p) - 1)


def generate(model, prefix="", length=500, temperature=1.0, top_k=0, seed=None):
    """Yield (character, p) for `length` generated characters: p (V,) is the distribution it was drawn
    from, None when greedy (temperature 0: the likeliest character, no randomness).

    The prefix warms the state up, one step per character; an empty prefix starts from the model's
    seed character (a newline when it has one). A character the model never saw is a ValueError,
    raised here, before anything is generated."""
    unknown = sorted({ch for ch in prefix if ch not in model.index})
    if unknown:
        raise ValueError(f"the prefix has character(s) the model never saw: {', '.join(map(repr, unknown))}")
    return _generate(model, prefix, length, temperature, top_k, np.random.default_rng(seed))


def _generate(model, prefix, length, temperature, top_k, rng):
    state = model.begin_state()
    for ch in prefix or model.meta["seed_char"]:
        logits, state = model.step(model.index[ch], state)
    for _ in range(length):
        if temperature <= 0:
            i, p = int(np.argmax(logits)), None
        else:
            p = distribution(logits, temperature, top_k)
            i = draw(p, rng)
        yield model.chars[i], p
        logits, state = model.step(i, state)


def main(argv=None):
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Generate text with a character-level model in NumPy.")
    ap.add_argument("--model", default=str(here / "model.npz"), help="the weights (default: model.npz beside this file)")
    ap.add_argument("-p", "--prefix", default="", help="text that warms the state up; generation continues it")
    ap.add_argument("-n", "--length", type=int, default=500, help="characters to generate (default 500)")
    ap.add_argument("-t", "--temperature", type=float, default=1.0, help="0 = greedy; <1 safer, >1 wilder (default 1)")
    ap.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest characters; 0 = all")
    ap.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    args = ap.parse_args(argv)
    if args.length < 0 or args.temperature < 0 or args.top_k < 0:
        ap.error("--length, --temperature and --top-k must not be negative")
    try:
        model = CharModel(args.model)
    except (OSError, KeyError, ValueError) as e:
        print(f"charrnn_sampler: error: cannot read {args.model}: {e}", file=sys.stderr)
        return 2
    prefix = preprocess(args.prefix, **model.meta["preprocessing"])  # as `charrnn sample` prepares it
    try:
        chars = generate(model, prefix, args.length, args.temperature, args.top_k, args.seed)
    except ValueError as e:
        print(f"charrnn_sampler: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(prefix)
    for ch, _ in chars:
        sys.stdout.write(ch)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
