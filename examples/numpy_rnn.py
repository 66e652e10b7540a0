"""A character RNN in plain NumPy, in the style of min-char-rnn and d2l §8.5, with two bugs learners
really write, and the factories `charrnn diagnose --model-factory` calls.

    TEXT=input.txt charrnn diagnose --model-factory examples/numpy_rnn.py:build --text input.txt
    TEXT=input.txt charrnn diagnose --model-factory examples/numpy_rnn.py:build_rows_leak --text input.txt
    TEXT=input.txt charrnn diagnose --model-factory examples/numpy_rnn.py:build_kept_state --text input.txt

Each factory trains its model for a few seconds on $TEXT (Adagrad, as min-char-rnn) and returns it. The
protocol diagnose needs from a NumPy model:

    model.vocab                                  # the characters, in id order
    model.begin_state(batch_size, device)        # (h,) with h: zeros (B, H); device is ignored
    model.forward(X, state)                      # X: int array (B, T) -> (logits (B, T, V), (h,))

The bugs (one line each, marked BUG):
    RowsLeakRNN     one-hot of X.reshape(T, B) instead of X.T: the rows of a batch swap their inputs
    KeptStateRNN    remembers its hidden state in self.h (like min-char-rnn's hprev) and ignores the state
                    it is given, so every call continues the previous one
"""

from __future__ import annotations

import os

import numpy as np


class NumpyRNN:
    """h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h);  logits_t = h_t W_hq + b_q."""

    def __init__(self, vocab: str, hidden: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        V, H = len(vocab), hidden
        self.vocab, self.vocab_size, self.hidden = vocab, V, H
        self.params = {"W_xh": rng.normal(0, 0.01, (V, H)), "W_hh": rng.normal(0, 0.01, (H, H)), "b_h": np.zeros(H),
                       "W_hq": rng.normal(0, 0.01, (H, V)), "b_q": np.zeros(V)}

    def begin_state(self, batch_size, device=None):
        return (np.zeros((batch_size, self.hidden)),)

    def inputs(self, X):
        """One-hot inputs, time-major: (T, B, V)."""
        return np.eye(self.vocab_size)[X.T]

    def forward(self, X, state):
        p = self.params
        xs = self.inputs(X)  # (T, B, V)
        h, = state
        hs, logits = [h], []
        for x in xs:
            h = np.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"])  # (B, H)
            hs.append(h)
            logits.append(h @ p["W_hq"] + p["b_q"])  # (B, V)
        self._cache = (xs, hs)  # for backward; never read by forward
        return np.stack(logits, axis=1), (h,)  # (B, T, V)

    def backward(self, dlogits):
        """Gradients of the loss from dlogits (B, T, V) through time (the whole window)."""
        p = self.params
        xs, hs = self._cache
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dh_next = np.zeros_like(hs[0])
        for t in reversed(range(len(xs))):
            dy = dlogits[:, t]  # (B, V)
            g["W_hq"] += hs[t + 1].T @ dy  # hs[0] is the initial state: h_t is hs[t + 1]
            g["b_q"] += dy.sum(0)
            dh = dy @ p["W_hq"].T + dh_next
            da = dh * (1 - hs[t + 1] ** 2)  # tanh' = 1 - tanh^2
            g["W_xh"] += xs[t].T @ da
            g["W_hh"] += hs[t].T @ da
            g["b_h"] += da.sum(0)
            dh_next = da @ p["W_hh"].T
        return g


class RowsLeakRNN(NumpyRNN):
    def inputs(self, X):
        T = X.shape[1]
        return np.eye(self.vocab_size)[X.reshape(T, -1)]  # BUG: reshape is not a transpose; use X.T


class KeptStateRNN(NumpyRNN):
    h = None

    def forward(self, X, state):
        if self.h is None or self.h.shape[0] != X.shape[0]:
            self.h = state[0]
        logits, (h,) = super().forward(X, (self.h,))  # BUG: self.h, not the state it was given
        self.h = h
        return logits, (h,)


def train(model: NumpyRNN, text: str, steps: int = 300, B: int = 32, T: int = 32, lr: float = 0.1, seed: int = 0):
    """Random windows, softmax cross-entropy per character, Adagrad with element-wise clipping."""
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(model.vocab)}
    ids = np.array([index[c] for c in text])
    memory = {k: np.zeros_like(v) for k, v in model.params.items()}
    for _ in range(steps):
        starts = rng.integers(0, len(ids) - T - 1, B)
        xy = ids[starts[:, None] + np.arange(T + 1)]  # (B, T + 1)
        logits, _ = model.forward(xy[:, :-1], model.begin_state(B))
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        probs[np.arange(B)[:, None], np.arange(T), xy[:, 1:]] -= 1  # d(mean NLL)/dlogits, times B*T
        grads = model.backward(probs / (B * T))
        for k, g in grads.items():
            np.clip(g, -5, 5, out=g)
            memory[k] += g * g
            model.params[k] -= lr * g / np.sqrt(memory[k] + 1e-8)
    return model


def _trained(cls):
    text = open(os.environ.get("TEXT", "input.txt"), encoding="utf-8").read()[:20_000]
    return train(cls("".join(sorted(set(text)))), text)


def build():
    return _trained(NumpyRNN)


def build_rows_leak():
    return _trained(RowsLeakRNN)


def build_kept_state():
    return _trained(KeptStateRNN)
