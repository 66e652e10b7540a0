"""The character-level language model and the interface every consumer relies on.

    model = CharRNN(ModelConfig(model="lstm", vocab_size=65, hidden=512))
    state = model.begin_state(batch_size=32, device=device)      # explicit data, zeros
    logits, state = model(x, state)                              # x: LongTensor (B, T)
                                                                 # logits: (B, T, V)

The state is a tensor (layers, B, hidden) for rnn and gru, and a tuple (h, c) of two such tensors for
lstm. It is never kept inside the model: a caller that wants to carry it passes it back in (detached
between truncated-BPTT chunks with `detach_state`). Row b of every tensor belongs to sequence b alone.

Training, sampling, evaluation, gradcheck and diagnose only use `forward`, `begin_state` and
`vocab_size`, so a user's own model with the same two methods works with them too.

The recurrent core is torch's fused nn.RNN/GRU/LSTM (`impl="torch"`) or our from-scratch layers with
hand-written backpropagation through time (`impl="scratch"`, `charrnn.core.scratch`); `impl="auto"` picks
the faster one for the cell and device (`resolve_impl`). Both have the same
parameter names, shapes and gate order, so a checkpoint trained with one loads into the other.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.core.config import ModelConfig
from charrnn.core.regularise import TORCH_LAYERS, drop_characters, drop_sequence

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CELLS = {"rnn": torch.rnn_tanh_cell, "gru": torch.gru_cell, "lstm": torch.lstm_cell}  # same layout, one step


def resolve_impl(model: str, impl: str, device: torch.device | str) -> str:
    """'auto' -> the faster engine for this cell and device, as measured by benchmarks/run.py: on CPU
    our scratch RNN and GRU train faster than torch's (which has a fused oneDNN kernel for the LSTM
    only); on a GPU, cuDNN's fused kernels. 'torch' and 'scratch' are kept as given."""
    if impl != "auto":
        return impl
    return "scratch" if torch.device(device).type == "cpu" and model in ("rnn", "gru") else "torch"


def make_core(cfg: ModelConfig, input_size: int) -> nn.Module:
    """The recurrent stack, batch-first, with torch's parameter layout whatever the implementation.
    An unresolved 'auto' builds torch's module (see resolve_impl, which needs the device)."""
    kwargs = dict(num_layers=cfg.layers, dropout=cfg.dropout if cfg.layers > 1 else 0.0,
                  dropout_kind=cfg.dropout_kind, weight_drop=cfg.weight_drop)
    if cfg.impl == "scratch":
        from charrnn.core.scratch import SCRATCH_LAYERS

        return SCRATCH_LAYERS[cfg.model](input_size, cfg.hidden, **kwargs)
    # torch's module and parameters, plus weight drop / locked dropout between layers while training
    return TORCH_LAYERS[cfg.model](input_size, cfg.hidden, batch_first=True, **kwargs)


class CharRNN(nn.Module):
    """Characters -> (one-hot | embedding) [-> embedding dropout] -> recurrent stack [weight drop, dropout
    between layers] -> dropout -> linear -> logits. The regularisers act in training mode only
    (`charrnn.core.regularise`); `dropout_kind` says whether dropout masks are per character or per sequence."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.vocab_size > 0, "vocab_size must be set from the corpus"
        self.config = cfg
        self.vocab_size = cfg.vocab_size
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed) if cfg.embed > 0 else None
        self.rnn = make_core(cfg, cfg.embed if cfg.embed > 0 else cfg.vocab_size)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)
        if cfg.init_std > 0:  # d2l's from-scratch init: small Gaussian weights, zero biases
            with torch.no_grad():
                for p in self.parameters():
                    p.normal_(0.0, cfg.init_std) if p.dim() > 1 else p.zero_()
        if cfg.model == "lstm":
            init_forget_bias(self.rnn, cfg.layers, cfg.hidden)

    def begin_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state for `batch_size` independent sequences, on the parameters' device and dtype."""
        p = self.head.weight
        shape = (self.config.layers, batch_size, self.config.hidden)
        h = torch.zeros(shape, device=device or p.device, dtype=p.dtype)
        if self.config.model == "lstm":
            return (h, torch.zeros_like(h))
        return h

    def forward(self, x: torch.Tensor, state: State | None = None, outputs: bool = False):
        """x: (B, T) character ids -> logits (B, T, V) and the state after the last step; with outputs=True
        also the last layer's outputs (B, T, H) before and after dropout (for AR/TAR)."""
        cfg = self.config
        if state is None:
            state = self.begin_state(x.shape[0], x.device)
        if self.embedding is not None:
            inp = self.embedding(x)  # (B, T, E)
        else:
            inp = F.one_hot(x.long(), self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        if self.training and cfg.embed_dropout > 0:
            inp = drop_characters(inp, x, cfg.embed_dropout, self.vocab_size)
        out, state = self.rnn(inp, state)  # (B, T, H)
        dropped = drop_sequence(out, cfg.dropout, cfg.dropout_kind, self.training)
        logits = self.head(dropped)
        return (logits, state, (out, dropped)) if outputs else (logits, state)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Inference, one character per sequence: x (N,) ids -> logits (N, V) and the new state.

        The same maths as `forward` on a length-1 sequence in eval mode (call it under torch.no_grad()),
        through torch's single-step cell kernels: a sequence call costs several times more for one step,
        and sampling makes one call per generated character."""
        lstm = self.config.model == "lstm"
        cell = _CELLS[self.config.model]
        if self.embedding is not None:
            inp = self.embedding(x)  # (N, E)
        else:
            inp = F.one_hot(x.long(), self.vocab_size).to(self.head.weight.dtype)  # (N, V)
        hs, cs = state if lstm else (state, None)  # (L, N, H) each
        new_h, new_c = [], []
        for k in range(self.config.layers):
            weights = [getattr(self.rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm:
                h, c = cell(inp, (hs[k], cs[k]), *weights)
                new_c.append(c)
            else:
                h = cell(inp, hs[k], *weights)
            new_h.append(h)
            inp = h  # (N, H): the next layer's input (no dropout at inference)
        h = torch.stack(new_h)  # (L, N, H)
        return self.head(inp), ((h, torch.stack(new_c)) if lstm else h)


def init_forget_bias(core: nn.Module, layers: int, hidden: int) -> None:
    """LSTM forget gates start open (bias 1, split over the two biases): gradients flow from step one.

    torch's gate order is (input, forget, cell, output), so the forget slice is [H:2H]."""
    with torch.no_grad():
        for k in range(layers):
            for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                getattr(core, name)[hidden : 2 * hidden].fill_(0.5)


def detach_state(state: State) -> State:
    """Cut the graph at a truncated-BPTT boundary; the values carry on."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
