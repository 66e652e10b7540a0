"""A character-level LSTM in NumPy, written the way the tutorials write it, and its gradcheck adapter.

Column vectors throughout: x_t is a one-hot (V, 1), h_t and C_t are (H, 1), z_t = [h_{t-1}; x_t] is
(H+V, 1), so every gate weight W_f, W_i, W_g, W_o is (H, H+V). The forward pushes the initial state
first, so that h_s[t+1] is h_t and C_s[t+1] is C_t (and C_s[t] is C_{t-1}, the previous cell state).
The backward is written by hand, BPTT from the last step to the first.

vocab_size (at the top), params() and loss_and_grads(params, inputs, targets) (at the bottom) are the
adapter that `charrnn gradcheck --user examples/numpy_lstm.py` calls.
"""

import numpy as np

hidden_size = 5
vocab_size = 7


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def one_hot(index, size):
    v = np.zeros((size, 1))
    v[index] = 1.0
    return v


def init_lstm(hidden_size, vocab_size, seed=0):
    """Gate weights (H, H+V) and biases (H, 1) for f, i, g, o; the output layer W_v (V, H), b_v (V, 1)."""
    rng = np.random.default_rng(seed)
    p = {}
    for gate in "figo":
        p[f"W_{gate}"] = rng.normal(0, 0.5, (hidden_size, hidden_size + vocab_size))
        p[f"b_{gate}"] = rng.normal(0, 0.1, (hidden_size, 1))
    p["W_v"] = rng.normal(0, 0.5, (vocab_size, hidden_size))
    p["b_v"] = rng.normal(0, 0.1, (vocab_size, 1))
    return p


def forward(inputs, h_prev, C_prev, p):
    """inputs: T ints. Returns the caches of every step; h_s and C_s hold T+1 entries, initial state first."""
    z_s, f_s, i_s, g_s, o_s, outputs = [], [], [], [], [], []
    h_s, C_s = [h_prev], [C_prev]
    for x in inputs:
        z = np.vstack((h_prev, one_hot(x, vocab_size)))  # [h_{t-1}; x_t], (H+V, 1)
        f = sigmoid(p["W_f"] @ z + p["b_f"])  # forget gate
        i = sigmoid(p["W_i"] @ z + p["b_i"])  # input gate
        g = np.tanh(p["W_g"] @ z + p["b_g"])  # candidate cell
        o = sigmoid(p["W_o"] @ z + p["b_o"])  # output gate
        C_prev = f * C_prev + i * g
        h_prev = o * np.tanh(C_prev)
        v = p["W_v"] @ h_prev + p["b_v"]  # logits (V, 1)
        e = np.exp(v - v.max())
        outputs.append(e / e.sum())  # softmax
        for cache, value in zip((z_s, f_s, i_s, g_s, o_s, h_s, C_s), (z, f, i, g, o, h_prev, C_prev)):
            cache.append(value)
    return z_s, f_s, i_s, g_s, C_s, o_s, h_s, outputs


def cross_entropy(outputs, targets):
    """-log of the probability given to each target, summed over the T steps."""
    loss = 0.0
    for y_hat, target in zip(outputs, targets):
        loss += -np.log(y_hat[target, 0])
    return loss


def backward(z, f, i, g, C, o, h, outputs, targets, p):
    """Gradients of cross_entropy(outputs, targets) with respect to every parameter, by BPTT."""
    grads = {name: np.zeros_like(value) for name, value in p.items()}
    dh_next = np.zeros_like(h[0])
    dC_next = np.zeros_like(C[0])
    for t in reversed(range(len(outputs))):
        C_prev = C[t]  # C_s[t] is C_{t-1}
        dv = outputs[t].copy()
        dv[targets[t]] -= 1  # softmax + cross-entropy: y_hat - y
        grads["W_v"] += dv @ h[t + 1].T  # h_s[t+1] is h_t
        grads["b_v"] += dv
        dh = p["W_v"].T @ dv + dh_next
        do = dh * np.tanh(C[t + 1])
        do *= o[t] * (1 - o[t])  # sigma'(x) = sigma (1 - sigma), o[t] is the stored gate
        dC = dC_next + dh * o[t] * (1 - np.tanh(C[t + 1]) ** 2)
        dg = dC * i[t]
        dg *= 1 - g[t] ** 2  # tanh' = 1 - tanh^2
        di = dC * g[t]
        di *= i[t] * (1 - i[t])
        df = dC * C_prev
        df *= f[t] * (1 - f[t])
        for gate, d in (("f", df), ("i", di), ("g", dg), ("o", do)):
            grads[f"W_{gate}"] += d @ z[t].T
            grads[f"b_{gate}"] += d
        dz = p["W_f"].T @ df + p["W_i"].T @ di + p["W_g"].T @ dg + p["W_o"].T @ do
        dh_next = dz[:hidden_size]  # the h_{t-1} part of z_t
        dC_next = dC * f[t]
    return grads


# --- the adapter for `charrnn gradcheck --user` -------------------------------------------------------


def params():
    return init_lstm(hidden_size, vocab_size)


def loss_and_grads(params, inputs, targets):
    h0 = np.zeros((hidden_size, 1))
    C0 = np.zeros((hidden_size, 1))
    caches = forward(inputs, h0, C0, params)
    loss = cross_entropy(caches[-1], targets)
    return loss, backward(*caches, targets, params)
