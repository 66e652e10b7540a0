"""A character-level RNN in PyTorch whose tanh has a hand-written backward (a custom autograd Function),
and its gradcheck adapter.

    h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h)     x_t one-hot (1, V), h_t (1, H)
    o_t = h_t W_hq + b_q                          logits (1, V)

The loss is the cross-entropy summed over the T steps; autograd does the rest, through `Tanh.backward`.
`charrnn gradcheck --user examples/torch_rnn.py` checks the gradients autograd returns: any mistake in
the custom backward shows up there.
"""

import torch
import torch.nn.functional as F

hidden_size = 4
vocab_size = 6


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * (1 - y**2)  # tanh'(x) = 1 - tanh(x)^2


def rnn(inputs, state, p):
    """inputs: T ints -> logits (T, V) and the last state (1, H)."""
    outputs = []
    for x in inputs:
        x = F.one_hot(torch.tensor([x]), vocab_size).to(p["W_xh"].dtype)  # (1, V)
        h = Tanh.apply(x @ p["W_xh"] + state @ p["W_hh"] + p["b_h"])
        state = h
        outputs.append(h @ p["W_hq"] + p["b_q"])
    return torch.cat(outputs), state


# --- the adapter for `charrnn gradcheck --user` -------------------------------------------------------


def params():
    gen = torch.Generator().manual_seed(0)
    shapes = {"W_xh": (vocab_size, hidden_size), "W_hh": (hidden_size, hidden_size), "b_h": (hidden_size,),
              "W_hq": (hidden_size, vocab_size), "b_q": (vocab_size,)}
    return {name: 0.5 * torch.randn(shape, generator=gen) for name, shape in shapes.items()}


def loss_and_grads(params, inputs, targets):
    """params arrive as float64 leaf tensors that require grad; their .grad is cleared before each call."""
    state = torch.zeros(1, hidden_size, dtype=params["W_xh"].dtype)
    logits, _ = rnn(inputs, state, params)
    loss = F.cross_entropy(logits, torch.tensor(targets), reduction="sum")
    loss.backward()
    return loss.item(), {name: p.grad for name, p in params.items()}
