"""From-scratch RNN, GRU and LSTM layers with hand-written backpropagation through time.

Drop-in replacements for torch.nn.RNN (tanh) / GRU / LSTM with `batch_first=True`:

    core = ScratchLSTM(input_size=65, hidden_size=512, num_layers=2, dropout=0.1)
    out, (h, c) = core(x, (h0, c0))     # x (B, T, I) -> out (B, T, H); h, c, h0, c0: (L, B, H)

Same parameter names, shapes, gate order and initialisation as torch (`weight_ih_l{k}` (G*H, I_k),
`weight_hh_l{k}` (G*H, H), `bias_ih_l{k}`, `bias_hh_l{k}` (G*H,)), so a state_dict moves between the
two implementations either way.

The maths is laid out as in llm.c: for each cell a plain function

    lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh) -> (out, hT, cT, cache)
    lstm_backward(dout, dhT, dcT, cache)            -> (dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh)

(and `rnn_*`, `gru_*` without the cell state), on time-major tensors: x (T, B, I), out (T, B, H),
states (B, H). `ScratchLayer`, a torch.autograd.Function, calls them and looks the backward up in
`BACKWARD` at call time, so a test can swap in a broken copy and watch `charrnn.gradcheck.engine` catch it.

Speed: the input projection of all T steps is one matmul before the loop, all gates of a step are one
addmm into a preallocated buffer, and the weight gradients are one matmul each after the backward loop
over the stacked per-step gate gradients (T*B, G*H). Only the recurrent matmul is inside the loops.

Precision: every function takes `lowp`, None (all fp32, or float64 for gradcheck) or torch.bfloat16
(`ScratchLayer` passes it under bf16 autocast, i.e. `--amp`). With bf16 only the matmuls change: their
operands are cast to bf16, the kernel accumulates in fp32, and the product is added into the same fp32
buffers, so states, gates, cell values and gradients stay fp32 (under CPU autocast torch's nn.LSTM
returns bf16 outputs and states). Layers narrower than BF16_MIN_HIDDEN stay fp32, where the casts cost
more than they save. Measured in benchmarks/run.py --only small.

The forward caches the initial state first: hs[0] = h0 and hs[t + 1] = h_t, likewise cs for the LSTM
cell, so "the state before step t" is always hs[t] and "the state after step t" is hs[t + 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.core.regularise import RecurrentMasks, draw_masks

Tensor = torch.Tensor


def _mm(a: Tensor, b: Tensor, lowp: torch.dtype | None) -> Tensor:
    """a @ b. With lowp both operands go to that dtype (a no-op for b cast already by `_cast`), and the
    product, accumulated in fp32 inside the kernel, comes back in it: an fp32 add promotes it back."""
    return a @ b if lowp is None else a.to(lowp) @ b.to(lowp)


def _addmm(acc: Tensor, a: Tensor, b: Tensor, lowp: torch.dtype | None, out: Tensor | None = None) -> Tensor:
    """acc + a @ b (into `out` when given, which may be acc itself), the product as in `_mm`."""
    if lowp is None:
        return acc.addmm_(a, b) if out is acc else torch.addmm(acc, a, b, out=out)
    return acc.add_(_mm(a, b, lowp)) if out is acc else torch.add(acc, _mm(a, b, lowp), out=out)


def _cast(w: Tensor, lowp: torch.dtype | None) -> Tensor:
    """A weight cast once before a loop that multiplies by it every step (unchanged without lowp)."""
    return w if lowp is None else w.to(lowp)


def _weight_grads(dgi: Tensor, dgh: Tensor, x: Tensor, h_prev: Tensor, lowp) -> tuple[Tensor, Tensor]:
    """The weight gradients after a backward loop, all T*B rows in one matmul each. dgi, dgh (T*B, G*H):
    gradients of the input and the hidden pre-activations (one tensor for rnn and lstm; the GRU's
    differ in n), already `_cast` (they are multiplied more than once), x (T*B, I) the inputs, h_prev
    (T*B, H) the state each step multiplied -> dW_ih (G*H, I), dW_hh (G*H, H) in x's dtype."""
    return _mm(dgi.t(), x, lowp).to(x.dtype), _mm(dgh.t(), h_prev, lowp).to(x.dtype)


# ----------------------------------------------------------------------------------------------------
# tanh RNN


def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, lowp=None):
    """Elman RNN with tanh, over a whole sequence.

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

    x (T, B, I), h0 (B, H), W_ih (H, I), W_hh (H, H), b_ih, b_hh (H,)
    -> out (T, B, H) = h_1..h_T, hT (B, H), cache
    """
    T, B, I = x.shape
    H = h0.shape[1]
    hs = x.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t + 1] = h_t
    hs[0] = h0
    # input projection of every step at once: (T*B, I) @ (I, H), both biases folded in
    xw = _addmm(b_ih + b_hh, x.reshape(T * B, I), W_ih.t(), lowp).view(T, B, H)
    W_hhT = _cast(W_hh.t(), lowp)
    for t in range(T):
        _addmm(xw[t], hs[t], W_hhT, lowp, out=hs[t + 1])  # pre-activation
        hs[t + 1].tanh_()  # h_t
    cache = (x, hs, W_ih, W_hh)
    return hs[1:], hs[T].clone(), cache


def rnn_backward(dout, dhT, cache, need_dx=True, lowp=None):
    """BPTT through `rnn_forward`.

    dout (T, B, H): dloss/dh_t from the layer above; dhT (B, H): dloss/dh_T from the returned state.
    -> dx (T, B, I) (None unless need_dx), dh0 (B, H), dW_ih, dW_hh, db_ih, db_hh
    """
    x, hs, W_ih, W_hh = cache
    T, B, I = x.shape
    H = hs.shape[2]
    h = hs[1:]  # (T, B, H) h_1..h_T
    dpre = 1 - h * h  # tanh' of every step; times dloss/dh_t in the loop -> dloss/d(pre-activation)
    dh_next = dhT.clone()  # dloss/dh_t arriving from step t + 1 (and from the returned state)
    W_hh_c = _cast(W_hh, lowp)
    for t in reversed(range(T)):
        dpre[t].mul_(dout[t] + dh_next)  # dh_t from the layer above and from the next step
        dh_next = _mm(dpre[t], W_hh_c, lowp)  # to h_{t-1}
    dpre2 = dpre.view(T * B, H)
    dpre_c = _cast(dpre2, lowp)  # once for the three matmuls below
    # step t multiplies h_{t-1} = hs[t]
    dW_ih, dW_hh = _weight_grads(dpre_c, dpre_c, x.reshape(T * B, I), hs[:-1].reshape(T * B, H), lowp)
    db = dpre2.sum(0)
    dx = _mm(dpre_c, W_ih, lowp).view(T, B, I).to(x.dtype) if need_dx else None
    return dx, dh_next.to(x.dtype), dW_ih, dW_hh, db, db.clone()


# ----------------------------------------------------------------------------------------------------
# GRU


def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, lowp=None):
    """GRU over a whole sequence, torch's equations and gate order (r, z, n).

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    x (T, B, I), h0 (B, H), W_ih (3H, I), W_hh (3H, H), b_ih, b_hh (3H,)
    -> out (T, B, H), hT (B, H), cache
    """
    T, B, I = x.shape
    H = h0.shape[1]
    hs = x.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t + 1] = h_t
    hs[0] = h0
    # input projections of every step at once; overwritten in place by the activations r, z, n
    acts = _addmm(b_ih, x.reshape(T * B, I), W_ih.t(), lowp).view(T, B, 3 * H)
    gh = x.new_empty(T, B, 3 * H)  # W_hh h_{t-1} + b_hh; its n part is needed again in the backward
    W_hhT = _cast(W_hh.t(), lowp)
    for t in range(T):
        _addmm(b_hh, hs[t], W_hhT, lowp, out=gh[t])
        rz = acts[t, :, : 2 * H]
        rz.add_(gh[t, :, : 2 * H]).sigmoid_()  # reset and update gates
        r, z = rz[:, :H], rz[:, H:]
        n = acts[t, :, 2 * H :]
        n.addcmul_(r, gh[t, :, 2 * H :]).tanh_()  # candidate
        torch.sub(hs[t], n, out=hs[t + 1]).mul_(z).add_(n)  # h_t = n + z * (h_{t-1} - n)
    cache = (x, hs, acts, gh, W_ih, W_hh)
    return hs[1:], hs[T].clone(), cache


def gru_backward(dout, dhT, cache, need_dx=True, lowp=None):
    """BPTT through `gru_forward`.

    dout (T, B, H), dhT (B, H) -> dx (T, B, I) (None unless need_dx), dh0 (B, H), dW_ih, dW_hh, db_ih, db_hh

    The input and hidden projections get the same gradient for r and z; for n the hidden part is
    scaled by r, so the two are kept in separate (T, B, 3H) buffers dgi and dgh.
    """
    x, hs, acts, gh, W_ih, W_hh = cache
    T, B, I = x.shape
    H = hs.shape[2]
    r, z, n = acts.chunk(3, dim=2)  # (T, B, H) each, post-activation
    hn = gh[:, :, 2 * H :]  # W_hn h_{t-1} + b_hn
    h_prev = hs[:-1]  # h_{t-1} of every step
    # dloss/d(pre-activation) per unit of dloss/dh_t, all steps at once; the loop multiplies in dh_t
    dgi = x.new_empty(T, B, 3 * H)  # for W_ih x_t + b_ih
    dr, dz, dn = dgi.chunk(3, dim=2)
    torch.mul(1 - z, 1 - n * n, out=dn)  # candidate: h_t = (1 - z) * n + z * h_{t-1}, then tanh'
    torch.mul((h_prev - n) * z, 1 - z, out=dz)  # update gate, sigmoid'
    torch.mul(dn * hn * r, 1 - r, out=dr)  # reset gate: n's pre-activation holds r * (W_hn h + b_hn)
    dgh = dgi.clone()  # for W_hh h_{t-1} + b_hh: the same for r and z...
    dgh[:, :, 2 * H :].mul_(r)  # ...and scaled by r for n
    dH = x.new_empty(T, B, H)  # dloss/dh_t of every step
    dh_next = dhT.clone()  # arriving from step t + 1 (and from the returned state)
    W_hh_c = _cast(W_hh, lowp)
    for t in reversed(range(T)):
        dh = torch.add(dout[t], dh_next, out=dH[t])  # from the layer above and from the next step
        dgh[t].view(B, 3, H).mul_(dh.unsqueeze(1))
        dh_next = _addmm(dh * z[t], dgh[t], W_hh_c, lowp)  # direct path z * h_{t-1}, plus through the gates
    dgi.view(T, B, 3, H).mul_(dH.unsqueeze(2))
    dgi2, dgh2 = dgi.view(T * B, 3 * H), dgh.view(T * B, 3 * H)
    dgi_c = _cast(dgi2, lowp)  # once for dW_ih and dx
    dW_ih, dW_hh = _weight_grads(dgi_c, dgh2, x.reshape(T * B, I), hs[:-1].reshape(T * B, H), lowp)
    dx = _mm(dgi_c, W_ih, lowp).view(T, B, I).to(x.dtype) if need_dx else None
    return dx, dh_next, dW_ih, dW_hh, dgi2.sum(0), dgh2.sum(0)


# ----------------------------------------------------------------------------------------------------
# LSTM


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, lowp=None):
    """LSTM over a whole sequence, torch's equations and gate order (i, f, g, o).

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)        candidate cell
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    x (T, B, I), h0, c0 (B, H), W_ih (4H, I), W_hh (4H, H), b_ih, b_hh (4H,)
    -> out (T, B, H), hT (B, H), cT (B, H), cache
    """
    T, B, I = x.shape
    H = h0.shape[1]
    hs = x.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t + 1] = h_t
    cs = x.new_empty(T + 1, B, H)  # cs[0] = c0, cs[t + 1] = c_t
    tcs = x.new_empty(T, B, H)  # tanh(c_t), reused by the backward
    hs[0] = h0
    cs[0] = c0
    # input projections of every step at once, both biases folded in; the loop adds W_hh h_{t-1} in place
    # and then overwrites the pre-activations with the activations i, f, g, o
    acts = _addmm(b_ih + b_hh, x.reshape(T * B, I), W_ih.t(), lowp).view(T, B, 4 * H)
    W_hhT = _cast(W_hh.t(), lowp)
    for t in range(T):
        a = acts[t]
        _addmm(a, hs[t], W_hhT, lowp, out=a)  # all four gates in one matmul
        a[:, : 2 * H].sigmoid_()  # input and forget gates
        a[:, 2 * H : 3 * H].tanh_()  # candidate cell
        a[:, 3 * H :].sigmoid_()  # output gate
        i, f, g, o = a.chunk(4, dim=1)
        torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)  # c_t = f * c_{t-1} + i * g
        torch.tanh(cs[t + 1], out=tcs[t])
        torch.mul(o, tcs[t], out=hs[t + 1])  # h_t = o * tanh(c_t)
    cache = (x, hs, cs, tcs, acts, W_ih, W_hh)
    return hs[1:], hs[T].clone(), cs[T].clone(), cache


def lstm_backward(dout, dhT, dcT, cache, need_dx=True, lowp=None):
    """BPTT through `lstm_forward`.

    dout (T, B, H): dloss/dh_t from the layer above; dhT, dcT (B, H): from the returned state.
    -> dx (T, B, I) (None unless need_dx), dh0, dc0 (B, H), dW_ih, dW_hh, db_ih, db_hh
    """
    x, hs, cs, tcs, acts, W_ih, W_hh = cache
    T, B, I = x.shape
    H = hs.shape[2]
    i, f, g, o = acts.chunk(4, dim=2)  # (T, B, H) each, post-activation
    c_prev = cs[:-1]  # c_{t-1} of every step
    # dloss/d(pre-activation) per unit of dc_t (i, f, g) or of dh_t (o), all steps at once; the loop
    # multiplies in dc_t and dh_t
    dgates = x.new_empty(T, B, 4 * H)
    di, df, dg, do = dgates.chunk(4, dim=2)
    torch.mul(g * i, 1 - i, out=di)  # input gate: c_t += i * g, sigmoid'
    torch.mul(c_prev * f, 1 - f, out=df)  # forget gate: c_t = f * c_{t-1} + ..., sigmoid'
    torch.mul(i, 1 - g * g, out=dg)  # candidate cell: c_t += i * g, tanh'
    torch.mul(tcs * o, 1 - o, out=do)  # output gate: h_t = o * tanh(c_t), sigmoid'
    dh_to_dc = o * (1 - tcs * tcs)  # dc_t gets dh_t times this, through h_t = o * tanh(c_t)
    dh_next, dc_next = dhT.clone(), dcT.clone()  # arriving from step t + 1 (and the returned state)
    W_hh_c = _cast(W_hh, lowp)
    for t in reversed(range(T)):
        dh = dout[t] + dh_next  # from the layer above and from the next step
        dc = torch.addcmul(dc_next, dh, dh_to_dc[t])  # from the next step and through h_t
        dgates[t].view(B, 4, H)[:, :3].mul_(dc.unsqueeze(1))  # i, f, g
        dgates[t, :, 3 * H :].mul_(dh)  # o
        dc_next = dc * f[t]  # to c_{t-1}
        dh_next = _mm(dgates[t], W_hh_c, lowp)  # to h_{t-1}
    dg2 = dgates.view(T * B, 4 * H)
    dg_c = _cast(dg2, lowp)  # once for the three matmuls below
    # step t multiplies h_{t-1} = hs[t]
    dW_ih, dW_hh = _weight_grads(dg_c, dg_c, x.reshape(T * B, I), hs[:-1].reshape(T * B, H), lowp)
    db = dg2.sum(0)
    dx = _mm(dg_c, W_ih, lowp).view(T, B, I).to(x.dtype) if need_dx else None
    return dx, dh_next.to(x.dtype), dc_next, dW_ih, dW_hh, db, db.clone()


# ----------------------------------------------------------------------------------------------------
# autograd glue and the modules

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
# Under bf16 autocast, layers at least this wide multiply in bf16. Measured on a 2-core AMD EPYC with
# AVX512-BF16 (benchmarks/run.py --only small, chars/s of a 32x100 step, fp32 -> bf16): below these the
# casts cost as much as the bf16 matmuls save or more (GRU 128: 119k -> 107k, LSTM 128: 124k -> 127k,
# RNN 256: 147k -> 138k in one run and faster in another); from them on bf16 wins (GRU 256: 60k -> 77k,
# LSTM 256: 50k -> 83k, RNN 512: 53k -> 97k).
BF16_MIN_HIDDEN = {"rnn": 512, "gru": 256, "lstm": 256}


def bf16_pays(kind: str, hidden: int) -> bool:
    """Whether a `kind` layer this wide multiplies in bf16 under bf16 autocast (BF16_MIN_HIDDEN)."""
    return hidden >= BF16_MIN_HIDDEN[kind]


def _autocast_lowp(kind: str, device: str, hidden: int) -> torch.dtype | None:
    """bf16 when bf16 autocast is on for `device` and the layer is wide enough to gain from it."""
    on = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
    return torch.bfloat16 if on and bf16_pays(kind, hidden) else None

STATES = {"rnn": 1, "gru": 1, "lstm": 2}  # state tensors per layer: h, or (h, c)
FORWARD = {"rnn": rnn_forward, "gru": gru_forward, "lstm": lstm_forward}
BACKWARD = {"rnn": rnn_backward, "gru": gru_backward, "lstm": lstm_backward}  # looked up at call time


class ScratchLayer(torch.autograd.Function):
    """One recurrent layer over a whole sequence, backward by the hand-written BPTT in `BACKWARD`.

    apply(kind, x, W_ih, W_hh, b_ih, b_hh, x_mask, w_mask, h0[, c0]) -> (out, hT[, cT]); x (T, B, I)
    time-major. The masks (None, or fixed tensors from `charrnn.core.regularise.draw_masks`) are part of
    the function: x_mask (B, I) multiplies the input at every step (locked dropout), w_mask (G*H, H)
    multiplies W_hh (weight drop). Their backward is written here too: dx and dW_hh are multiplied by
    the same masks on the way back.
    """

    @staticmethod
    def forward(ctx, kind, x, W_ih, W_hh, b_ih, b_hh, x_mask, w_mask, *state0):
        # Under autocast the buffers, states and gradients stay in the parameters' dtype (the cell
        # functions write into preallocated buffers); under bf16 autocast the matmuls run in bf16.
        dtype, device = W_ih.dtype, x.device.type
        lowp = _autocast_lowp(kind, device, hidden=W_hh.shape[1])
        x, state0 = x.to(dtype).contiguous(), [s.to(dtype) for s in state0]
        if x_mask is not None:
            x = x * x_mask  # (T, B, I) * (B, I): the same units of every sequence at every step
        if w_mask is not None:
            W_hh = W_hh * w_mask  # one dropped W_hh for the whole batch; the cache keeps this one
        with torch.autocast(device, enabled=False):
            out, *rest = FORWARD[kind](x, *state0, W_ih, W_hh, b_ih, b_hh, lowp=lowp)
        *stateT, cache = rest
        ctx.kind, ctx.lowp, ctx.masks = kind, lowp, (x_mask, w_mask)
        ctx.save_for_backward(*cache)
        return (out, *stateT)

    @staticmethod
    def backward(ctx, dout, *dstateT):
        n = STATES[ctx.kind]
        x_mask, w_mask = ctx.masks
        with torch.autocast(dout.device.type, enabled=False):
            grads = BACKWARD[ctx.kind](dout.contiguous(), *dstateT, ctx.saved_tensors, need_dx=ctx.needs_input_grad[1],
                                       lowp=ctx.lowp)
        dx, dstate0, (dW_ih, dW_hh, *db) = grads[0], grads[1 : 1 + n], grads[1 + n :]
        if dx is not None and x_mask is not None:
            dx = dx * x_mask  # d(x * m)/dx = m
        if w_mask is not None:
            dW_hh = dW_hh * w_mask  # d(W * M)/dW = M
        return (None, dx, dW_ih, dW_hh, *db, None, None, *dstate0)


class ScratchRecurrent(nn.Module):
    """A stack of scratch layers with the interface of torch.nn.RNN/GRU/LSTM(batch_first=True)."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 dropout_kind: str = "elementwise", weight_drop: float = 0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.dropout_kind, self.weight_drop = float(dropout), dropout_kind, float(weight_drop)
        self.batch_first = True
        G = GATES[self.kind]
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(G * hidden_size, in_k)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(G * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(G * hidden_size)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(G * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter uniform in (-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """Nothing to do (torch's cuDNN modules need it; kept so callers need not ask which impl)."""

    def layer_parameters(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return tuple(getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, input: Tensor, hx=None, masks: RecurrentMasks | None = None):
        """input (B, T, I), hx (L, B, H) or for the LSTM (h, c) -> out (B, T, H), state like hx. While
        training, weight drop and locked dropout use `masks`, or masks drawn now (`draw_masks`)."""
        B = input.shape[0]
        L, H = self.num_layers, self.hidden_size
        if hx is None:
            z = input.new_zeros(L, B, H)
            hx = (z, z) if self.kind == "lstm" else z
        states = hx if isinstance(hx, (tuple, list)) else (hx,)
        if len(states) != STATES[self.kind] or any(s.shape != (L, B, H) for s in states):
            raise ValueError(f"scratch {self.kind}: expected state of {STATES[self.kind]} tensor(s) of shape "
                             f"{(L, B, H)}, got {[tuple(s.shape) for s in states]}")
        x = input.transpose(0, 1)  # (T, B, I): time-major inside, one transpose each way
        masks = masks or draw_masks(self, B, self.weight_hh_l0)
        x_masks, w_masks = (masks.inputs, masks.weights) if masks else ([None] * L, [None] * L)
        finals = []
        for k in range(L):
            out, *stateT = ScratchLayer.apply(self.kind, x, *self.layer_parameters(k), x_masks[k], w_masks[k],
                                              *(s[k] for s in states))
            finals.append(stateT)
            x = out
            # between layers, not after the last; a locked mask is applied by the next layer itself
            if k < L - 1 and self.training and self.dropout > 0 and x_masks[k + 1] is None:
                x = F.dropout(x, self.dropout, training=True)
        out = x.transpose(0, 1).contiguous()  # (B, T, H)
        stacked = [torch.stack(s) for s in zip(*finals)]  # (L, B, H) each
        return out, (tuple(stacked) if self.kind == "lstm" else stacked[0])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first=True"
        s += f", dropout={self.dropout}" + (" (locked)" if self.dropout_kind == "locked" else "") if self.dropout else ""
        return s + (f", weight_drop={self.weight_drop}" if self.weight_drop else "")


class ScratchRNN(ScratchRecurrent):
    """tanh RNN stack, like nn.RNN(nonlinearity='tanh', batch_first=True)."""

    kind = "rnn"


class ScratchGRU(ScratchRecurrent):
    """GRU stack, like nn.GRU(batch_first=True)."""

    kind = "gru"


class ScratchLSTM(ScratchRecurrent):
    """LSTM stack, like nn.LSTM(batch_first=True)."""

    kind = "lstm"


SCRATCH_LAYERS = {"rnn": ScratchRNN, "gru": ScratchGRU, "lstm": ScratchLSTM}
