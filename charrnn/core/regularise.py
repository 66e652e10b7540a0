"""The regularisers that act inside the network while it trains, for both engines.

Each mask is drawn once per forward call (once per batch), from torch's global generator, and scales
what it keeps by 1/(1-p), so that evaluation, which drops nothing, sees the same expectation:

    elementwise dropout   F.dropout: a fresh mask for every character, (B, T, H)
    locked dropout        one mask per sequence, the same at every step, (B, H)   (Gal & Ghahramani 2016)
    weight drop           DropConnect on each layer's W_hh, (G*H, H), shared by the whole batch
    embedding dropout     whole characters dropped from the input for the batch, (V,)  (AWD-LSTM)

`RecurrentMasks` carries the masks a recurrent stack uses inside itself (locked dropout between layers,
weight drop); both engines take it from `draw_masks`, in the same order, so with the same seed the torch
and scratch stacks drop the same units. The scratch layers apply them inside their hand-written forward
and backward (`charrnn.core.scratch.ScratchLayer`); gradcheck passes a fixed `RecurrentMasks` in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import _VF


def keep_mask(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
    """Bernoulli(1 - p) / (1 - p) of `shape`, in `like`'s dtype and on its device."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p).div_(1.0 - p)


def drop_sequence(x: torch.Tensor, p: float, kind: str, training: bool) -> torch.Tensor:
    """Dropout on a batch-first sequence x (B, T, H): elementwise, or one (B, 1, H) mask for all steps."""
    if not training or p == 0.0:
        return x
    if kind == "locked":
        return x * keep_mask((x.shape[0], 1, x.shape[2]), p, x)
    return F.dropout(x, p, training=True)


def drop_characters(inp: torch.Tensor, ids: torch.Tensor, p: float, vocab_size: int) -> torch.Tensor:
    """Embedding dropout: inp (B, T, E) the input vectors of ids (B, T); every occurrence of a dropped
    character in the batch gets a zero vector, the others are scaled by 1/(1-p). For one-hot input
    this drops the character's column of W_ih, as dropping its embedding row does."""
    keep = keep_mask((vocab_size,), p, inp)  # (V,)
    return inp * keep[ids].unsqueeze(-1)


@dataclass
class RecurrentMasks:
    """The masks one forward call of a recurrent stack uses. inputs[k]: (B, I_k) locked mask on layer
    k's input (None for layer 0 and without locked dropout); weights[k]: (G*H, H) on W_hh of layer k."""

    inputs: list[torch.Tensor | None]
    weights: list[torch.Tensor | None]


def draw_masks(core: nn.Module, batch: int, like: torch.Tensor) -> RecurrentMasks | None:
    """The masks of a training forward call of `core` (a torch or scratch stack with `dropout_kind` and
    `weight_drop` attributes), or None when it needs none: weight masks first, then the locked input
    masks of layers 1..L-1."""
    L, H = core.num_layers, core.hidden_size
    wd = getattr(core, "weight_drop", 0.0)
    locked = getattr(core, "dropout_kind", "elementwise") == "locked" and core.dropout > 0 and L > 1
    if not core.training or not (wd or locked):
        return None
    weights = [keep_mask(getattr(core, f"weight_hh_l{k}").shape, wd, like) if wd else None for k in range(L)]
    inputs = [keep_mask((batch, H), core.dropout, like) if locked and k else None for k in range(L)]
    return RecurrentMasks(inputs, weights)


_FUSED = {"rnn": _VF.rnn_tanh, "gru": _VF.gru, "lstm": _VF.lstm}


def fused_masked(core: nn.Module, kind: str, x: torch.Tensor, hx, masks: RecurrentMasks):
    """torch's fused kernels one layer at a time, with the masks applied: x (B, T, I), hx (L, B, H) or
    (h, c) -> out (B, T, H), the final state like hx. Between layers only the locked masks (elementwise
    dropout between layers is F.dropout here, as torch's module does inside)."""
    states = hx if isinstance(hx, (tuple, list)) else (hx,)
    finals = []
    for k in range(core.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(core, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        if masks.weights[k] is not None:
            w_hh = w_hh * masks.weights[k]
        if masks.inputs[k] is not None:
            x = x * masks.inputs[k].unsqueeze(1)  # (B, 1, I): the same units at every step
        elif k and core.dropout > 0:
            x = F.dropout(x, core.dropout, training=True)
        h0 = tuple(s[k : k + 1] for s in states)  # (1, B, H) each
        with warnings.catch_warnings():  # cuDNN asks for flattened weights; masked ones are new tensors
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            x, *hT = _FUSED[kind](x, h0 if kind == "lstm" else h0[0], [w_ih, w_hh, b_ih, b_hh],
                                  True, 1, 0.0, True, False, True)
        finals.append(hT)
    stacked = [torch.cat(s) for s in zip(*finals)]  # (L, B, H) each
    return x, (tuple(stacked) if kind == "lstm" else stacked[0])


class _Regularised:
    """Mixed into torch's nn.RNN/GRU/LSTM: the same module and parameters, plus weight drop and locked
    dropout between layers while training (`fused_masked`); otherwise torch's own forward."""

    kind = "rnn"

    def __init__(self, *args, dropout_kind: str = "elementwise", weight_drop: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropout_kind, self.weight_drop = dropout_kind, float(weight_drop)

    def forward(self, input, hx=None, masks: RecurrentMasks | None = None):
        masks = masks or draw_masks(self, input.shape[0], self.weight_hh_l0)
        if masks is None:
            return super().forward(input, hx)
        if hx is None:
            z = input.new_zeros(self.num_layers, input.shape[0], self.hidden_size)
            hx = (z, z) if self.kind == "lstm" else z
        return fused_masked(self, self.kind, input, hx, masks)


class TorchRNN(_Regularised, nn.RNN):
    kind = "rnn"


class TorchGRU(_Regularised, nn.GRU):
    kind = "gru"


class TorchLSTM(_Regularised, nn.LSTM):
    kind = "lstm"


TORCH_LAYERS = {"rnn": TorchRNN, "gru": TorchGRU, "lstm": TorchLSTM}


def ar_tar(raw: torch.Tensor, dropped: torch.Tensor, ar: float, tar: float) -> torch.Tensor:
    """AWD-LSTM's activation regularisers on the last layer's outputs (B, T, H): AR, ar * mean(h^2) of
    the dropped-out outputs (small activations), and TAR, tar * mean((h_t - h_{t-1})^2) of the raw ones
    (slowly changing states). Means over every element, so the weights do not scale with B, T or H."""
    penalty = raw.new_zeros((), dtype=torch.float32)
    if ar:
        penalty = penalty + ar * dropped.float().pow(2).mean()
    if tar and raw.shape[1] > 1:
        penalty = penalty + tar * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
    return penalty
