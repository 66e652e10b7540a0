"""A minGRU stack (Feng et al., "Were RNNs All We Needed?", 2024) trained by charrnn's own loop, to
measure it against the GRU on time to quality before offering it as a --model (it did not win: see
the README's "Faster to good text").

    python benchmarks/mingru.py check                 # the scan's hand-written backward vs finite differences
    python benchmarks/mingru.py train --preset shakespeare-68s --hidden 256 --layers 2 --amp

`train` is `charrnn train` with every GRU replaced by a minGRU stack of the same --hidden and --layers.
minGRU's gates see only the input, never the state:

    z_t = sigmoid(W_z u_t),  h~_t = W_h u_t,  h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

so all of a window's gates are two big matmuls, and what is left in the time loop is one multiply-add
per step (`Scan`). A layer alone is a linear recurrence in h, so each block is pre-norm residual, as the
paper's language models are: u = LayerNorm(x); x += W_o minGRU(u); x += MLP(LayerNorm(x)), MLP 2x wide.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # charrnn from this checkout

import charrnn.core.models as models  # noqa: E402


class Scan(torch.autograd.Function):
    """h_t = a_t * h_{t-1} + b_t: a, b (T, B, H) time-major, h0 (B, H) -> h_1..h_T (T, B, H)."""

    @staticmethod
    def forward(ctx, a, b, h0):
        hs = a.new_empty((a.shape[0] + 1,) + a.shape[1:])  # hs[0] = h0, hs[t + 1] = h_t
        hs[0] = h0
        for t in range(a.shape[0]):
            torch.addcmul(b[t], a[t], hs[t], out=hs[t + 1])
        ctx.save_for_backward(a, hs)
        return hs[1:]

    @staticmethod
    def backward(ctx, dout):
        a, hs = ctx.saved_tensors
        db = torch.empty_like(dout)  # dloss/dh_t in full = dloss/db_t
        dh = torch.zeros_like(hs[0])  # arriving from step t + 1
        for t in reversed(range(a.shape[0])):
            torch.add(dout[t], dh, out=db[t])
            dh = db[t] * a[t]  # to h_{t-1}
        return db * hs[:-1], db, dh  # da_t = dh_t * h_{t-1}


class MinGRUStack(nn.Module):
    """The core charrnn's CharRNN expects: (x (B, T, I), h0 (L, B, H)) -> (out (B, T, H), hT (L, B, H))."""

    def __init__(self, input_size: int, hidden: int, num_layers: int = 1, dropout: float = 0.0, mlp: int = 2):
        super().__init__()
        self.H, self.L = hidden, num_layers
        self.inp = nn.Linear(input_size, hidden)
        self.norm1 = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in range(num_layers))  # z and h~
        self.outs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_layers))
        self.mlps = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, mlp * hidden), nn.GELU(),
                                                nn.Linear(mlp * hidden, hidden)) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(hidden)

    def flatten_parameters(self) -> None:
        """Nothing to flatten (kept for callers that ask every core)."""

    def forward(self, x, h0):
        x = self.inp(x).transpose(0, 1)  # (T, B, H), time-major for the scan
        finals = []
        for k in range(self.L):
            zh = self.gates[k](self.norm1[k](x))  # (T, B, 2H), bf16 under --amp
            z = torch.sigmoid(zh[..., : self.H]).float()
            # the scan runs in fp32 whatever autocast does: the state is a sum over the whole window
            hs = Scan.apply((1 - z).contiguous(), (z * zh[..., self.H :].float()).contiguous(), h0[k].float())
            finals.append(hs[-1])
            x = x + self.outs[k](hs)
            x = x + self.mlps[k](x)
        return self.norm_out(x).transpose(0, 1), torch.stack(finals)


_charrnn_core = models.make_core  # what every other --model still builds


def _make_core(cfg, input_size):
    if cfg.model == "gru":
        return MinGRUStack(input_size, cfg.hidden, cfg.layers, cfg.dropout)
    return _charrnn_core(cfg, input_size)


def check() -> bool:
    torch.manual_seed(0)
    a = torch.rand(7, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 3, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    return torch.autograd.gradcheck(Scan.apply, (a, b, h0))


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        ok = check()
        print("minGRU scan backward vs finite differences (float64):", "ok" if ok else "FAILED")
        return 0 if ok else 1
    models.make_core = _make_core
    from charrnn.cli.app import app

    app(argv, prog_name="charrnn (minGRU prototype)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
