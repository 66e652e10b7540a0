"""A learner's code around d2l 1.0's section 9.5 classes, as a learner writes it (not a test module).

`RNNScratch` and `RNNLMScratch` mirror the d2l package's classes (d2l==1.0.3, `d2l.torch`): the same
parameters, the same `state, = state` unpacking, the same float32 one-hot and time-major loop; d2l's
Module/Classifier plumbing (plots, save_hyperparameters, training_step) is left out because diagnose
never calls it. The d2l package itself is not installed here: it pins numpy, pandas, matplotlib and
jupyter versions that would replace the project's.

The adapters are the nine lines the README asks for, in the variants learners write: a tuple state (d2l's
own), a bare (B, H) state, and the mistakes diagnose must find and blame right.

    build_tuple() / build_bare()            factories for `--model-factory tests/d2l_style.py:build_tuple`
                                            (the text in $D2L_TEXT gives the vocabulary)
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


class RNNScratch(nn.Module):
    """d2l 1.0 section 9.5: the RNN model implemented from scratch."""

    def __init__(self, num_inputs, num_hiddens, sigma=0.01):
        super().__init__()
        self.num_inputs, self.num_hiddens, self.sigma = num_inputs, num_hiddens, sigma
        self.W_xh = nn.Parameter(torch.randn(num_inputs, num_hiddens) * sigma)
        self.W_hh = nn.Parameter(torch.randn(num_hiddens, num_hiddens) * sigma)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))

    def forward(self, inputs, state=None):
        if state is None:
            # Initial state with shape: (batch_size, num_hiddens)
            state = torch.zeros((inputs.shape[1], self.num_hiddens), device=inputs.device)
        else:
            state, = state
        outputs = []
        for X in inputs:  # Shape of inputs: (num_steps, batch_size, num_inputs)
            state = torch.tanh(torch.matmul(X, self.W_xh) + torch.matmul(state, self.W_hh) + self.b_h)
            outputs.append(state)
        return outputs, state


class RNNLMScratch(nn.Module):
    """d2l 1.0 section 9.5: the RNN-based language model implemented from scratch."""

    def __init__(self, rnn, vocab_size):
        super().__init__()
        self.rnn, self.vocab_size = rnn, vocab_size
        self.W_hq = nn.Parameter(torch.randn(self.rnn.num_hiddens, self.vocab_size) * self.rnn.sigma)
        self.b_q = nn.Parameter(torch.zeros(self.vocab_size))

    def one_hot(self, X):
        # Output shape: (num_steps, batch_size, vocab_size)
        return F.one_hot(X.T, self.vocab_size).type(torch.float32)

    def output_layer(self, rnn_outputs):
        outputs = [torch.matmul(H, self.W_hq) + self.b_q for H in rnn_outputs]
        return torch.stack(outputs, 1)

    def forward(self, X, state=None):
        embs = self.one_hot(X)
        rnn_outputs, _ = self.rnn(embs, state)
        return self.output_layer(rnn_outputs)


# ------------------------------------------------------------------------------------------- adapters


class TupleState(nn.Module):
    """The adapter with d2l's own state: a tuple of one (B, H) tensor."""

    def __init__(self, lm, vocab):
        super().__init__()
        self.lm, self.vocab = lm, vocab

    def begin_state(self, batch_size, device=None):
        return (torch.zeros(batch_size, self.lm.rnn.num_hiddens, device=device),)

    def forward(self, X, state):
        rnn_outputs, H = self.lm.rnn(self.lm.one_hot(X), state)
        return self.lm.output_layer(rnn_outputs), self.returned(H)

    def returned(self, H):
        return (H,)


class BareState(TupleState):
    """The adapter with a bare (B, H) state, wrapped for d2l's unpacking."""

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.lm.rnn.num_hiddens, device=device)

    def forward(self, X, state):
        rnn_outputs, H = self.lm.rnn(self.lm.one_hot(X), (state,))
        return self.lm.output_layer(rnn_outputs), self.returned(H)

    def returned(self, H):
        return H


class BareUnpacked(BareState):
    """Bug: a bare state handed to d2l as it is; `state, = state` unpacks its B rows."""

    def forward(self, X, state):
        rnn_outputs, H = self.lm.rnn(self.lm.one_hot(X), state)
        return self.lm.output_layer(rnn_outputs), H


class LastRow(BareState):
    """Bug: nn.RNN's habit, H[-1] (the top layer of a (layers, B, H) state), on a bare (B, H) state: the
    last row's state, which the next call broadcasts to every row."""

    def returned(self, H):
        return H[-1]


class FirstRow(BareState):
    def returned(self, H):
        return H[0]


class RowMean(BareState):
    def returned(self, H):
        return H.mean(0)


class LastRowKept(BareState):
    """Bug: the last row's state copied to every row; the shape is begin_state's, the rows are not."""

    def returned(self, H):
        return H[-1:].expand_as(H)


class FirstRowKept(BareState):
    def returned(self, H):
        return H[:1].expand_as(H)


class RowMeanKept(BareState):
    def returned(self, H):
        return H.mean(0, keepdim=True).expand_as(H)


class LastRowTuple(TupleState):
    """Bug: H[-1] inside d2l's tuple: (H[-1],) unpacks fine and broadcasts the last row to all."""

    def returned(self, H):
        return (H[-1],)


class Flattened(BareState):
    """Bug: the state loses its batch axis (flattened to B*H); the next call fails in the learner's code."""

    def returned(self, H):
        return H.reshape(-1)


class NoSingleSteps(BareState):
    """Bug: forward refuses inputs of one time step (raised in the learner's own forward)."""

    def forward(self, X, state):
        if X.shape[1] == 1:
            raise RuntimeError("this model needs at least two time steps")
        return super().forward(X, state)


# ------------------------------------------------------------- the 2nd edition (d2l-zh, chapter 8.5)


def get_params(vocab_size, num_hiddens, device):
    num_inputs = num_outputs = vocab_size

    def normal(shape):
        return torch.randn(size=shape, device=device) * 0.01

    W_xh, W_hh, b_h = normal((num_inputs, num_hiddens)), normal((num_hiddens, num_hiddens)), torch.zeros(num_hiddens)
    W_hq, b_q = normal((num_hiddens, num_outputs)), torch.zeros(num_outputs, device=device)
    params = [W_xh, W_hh, b_h, W_hq, b_q]
    for param in params:
        param.requires_grad_(True)
    return params


def init_rnn_state(batch_size, num_hiddens, device):
    return (torch.zeros((batch_size, num_hiddens), device=device),)


def rnn(inputs, state, params):
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, = state
    outputs = []
    for X in inputs:
        H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
        Y = torch.mm(H, W_hq) + b_q
        outputs.append(Y)
    return torch.cat(outputs, dim=0), (H,)


class RNNModelScratch:
    """The 2nd edition's model: not an nn.Module, its parameters a list, logits (T*B, V) time-major."""

    def __init__(self, vocab_size, num_hiddens, device, get_params, init_state, forward_fn):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, device)
        self.init_state, self.forward_fn = init_state, forward_fn

    def __call__(self, X, state):
        X = F.one_hot(X.T, self.vocab_size).type(torch.float32)
        return self.forward_fn(X, state, self.params)

    def begin_state(self, batch_size, device):
        return self.init_state(batch_size, self.num_hiddens, device)


class Chapter8(RNNModelScratch):
    """The adapter for it: logits back to (B, T, V), the vocabulary attached."""

    def __init__(self, vocab, hidden=16):
        super().__init__(len(vocab), hidden, "cpu", get_params, init_rnn_state, rnn)
        self.vocab = vocab

    def __call__(self, X, state):
        Y, state = super().__call__(X, state)
        B, T = X.shape
        return Y.view(T, B, -1).transpose(0, 1), state


def model_for(cls, vocab, hidden=16, seed=0):
    torch.manual_seed(seed)
    return cls(RNNLMScratch(RNNScratch(len(vocab), hidden), len(vocab)), list(vocab))


def _vocab():
    with open(os.environ["D2L_TEXT"], encoding="utf-8") as f:
        return sorted(set(f.read()))


def build_tuple():
    return model_for(TupleState, _vocab())


def build_bare_unpacked():
    return model_for(BareUnpacked, _vocab())
