"""Proof that the scratch layers' hand-written gradients are right, tensor by tensor.

    report = run_gradcheck(GradcheckOptions(model="lstm", layers=2, hidden=5))
    report.passed                       # every row within its tolerance
    for row in report.rows: ...         # GradcheckRow(model, tensor, method, max_abs, max_rel, ...)
    report.to_json()

For each cell a small CharRNN (impl="scratch", float64) gets a random non-zero initial
state, random targets and a loss that touches every output with a random weight:

    loss = CE_sum(head(out), targets) + sum(h_n * R_h) [+ sum(c_n * R_c)]

so that the gradients reaching out, h_n and c_n are all non-zero and distinct. With --weight-drop or
--dropout the masks of one training step (DropConnect on W_hh, locked dropout between layers) are drawn
once and are part of the checked function, in the scratch layers and the reference alike. The hand-written
gradient of every recurrent parameter, of h0 (and c0), and of the input of the stack (the one-hot
floats, or the embedding table) is then compared with

    finite-diff  central differences (f(x+eps) - f(x-eps)) / 2eps of the same scratch forward, on every
                 element (or `samples` random elements per tensor);
    autograd     torch autograd through `LoopRNN`, a plain per-step implementation of the same equations
                 (also the "d2l-style" baseline of benchmarks/scratch_speed.py);

and the scratch forward is compared with torch.nn.RNN/GRU/LSTM on copied weights (method torch-forward).

Errors are elementwise: abs = |a - b|, rel = |a - b| / max(|a|, |b|, REL_FLOOR). An element passes when
abs <= abs_tol OR rel <= rel_tol (TOLERANCES), so tiny gradients are judged by abs and large ones by rel;
the denominator never comes from a sum of values that may cancel.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.core.config import MODELS, ModelConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.core.regularise import draw_masks

REL_FLOOR = 1e-6
# method -> (abs_tol, rel_tol). Central differences in float64 with eps 1e-6 leave a truncation error
# ~eps^2 * f''' and a rounding error ~1e-16 * |loss| / eps: about 1e-9 here. The autograd reference does
# the same arithmetic in another order (~1e-15), and so does torch's forward.
TOLERANCES = {
    "finite-diff": (1e-7, 1e-5),
    "autograd": (1e-9, 1e-9),
    "torch-forward": (1e-10, 0.0),  # abs only
}
AUTO_ALL = 512  # with samples=None, tensors up to this many elements are checked on every element...
AUTO_SAMPLES = 32  # ...larger ones (a checkpoint's real sizes) on this many random elements


@dataclass(frozen=True)
class GradcheckOptions:
    """What to check. The defaults take about two seconds on a 2-core CPU."""

    model: str = "all"  # rnn | gru | lstm | all
    layers: int = 2
    hidden: int = 5
    batch: int = 3
    seq_len: int = 4
    vocab: int = 6
    embed: int = 0  # 0 = one-hot input (checked as "input"); N = embedding (checked as "embedding.weight")
    weight_drop: float = 0.0  # a fixed DropConnect mask on every W_hh, part of the checked function
    dropout: float = 0.0  # a fixed locked-dropout mask (B, H) on the input of layers 1..L-1, likewise
    seed: int = 0
    samples: int | None = None  # finite differences per tensor: None = auto (AUTO_ALL/AUTO_SAMPLES), 0 = all
    eps: float = 1e-6

    def __post_init__(self):
        if self.model not in (*MODELS, "all"):
            raise CharRNNError(f"--model must be one of {', '.join(MODELS)}, all (got {self.model!r})")
        for name in ("layers", "hidden", "batch", "seq_len", "vocab"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1")
        if self.embed < 0:
            raise CharRNNError("--embed must be 0 (one-hot) or a positive width")
        if not (0.0 <= self.weight_drop < 1.0 and 0.0 <= self.dropout < 1.0):
            raise CharRNNError("--weight-drop and --dropout must be in [0, 1)")
        check_fd_options(self.samples, self.eps)

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS if self.model == "all" else (self.model,)


@dataclass
class GradcheckRow:
    """One comparison: a tensor of one model by one method."""

    model: str
    tensor: str  # e.g. "lstm/weight_hh_l0", "lstm/h0", "lstm/input"
    method: str  # finite-diff | autograd | torch-forward
    max_abs: float
    max_rel: float
    checked: int  # elements compared
    abs_tol: float
    rel_tol: float
    passed: bool


@dataclass
class GradcheckReport:
    options: GradcheckOptions
    rows: list[GradcheckRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[GradcheckRow]:
        return [r for r in self.rows if not r.passed]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "options": dataclasses.asdict(self.options),
            "tolerances": {m: {"abs": a, "rel": r} for m, (a, r) in TOLERANCES.items()},
            "rel_floor": REL_FLOOR,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# ----------------------------------------------------------------------------------------------------
# the reference: plain autograd through a Python loop over time steps
#
# The cell equations are written here once more on purpose, not taken from charrnn.core.scratch or
# charrnn.analysis.activations: a reference that shared its code with the engine it checks would share its bugs
# (a wrong gate order would then pass). It follows torch's documented equations independently.


def loop_cell(kind: str, x, state, W_ih, W_hh, b_ih, b_hh):
    """One time step of an rnn/gru/lstm cell in plain torch ops; autograd does the backward.

    x (B, I); state h (B, H), or (h, c) for the LSTM -> the new state, same structure.
    Same equations and gate order as torch and as charrnn.core.scratch (see their docstrings).
    """
    if kind == "rnn":
        return torch.tanh(x @ W_ih.T + b_ih + state @ W_hh.T + b_hh)
    if kind == "gru":
        h = state
        xr, xz, xn = (x @ W_ih.T + b_ih).chunk(3, dim=1)
        hr, hz, hn = (h @ W_hh.T + b_hh).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)  # reset gate
        z = torch.sigmoid(xz + hz)  # update gate
        n = torch.tanh(xn + r * hn)  # candidate
        return (1 - z) * n + z * h
    h, c = state
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=1)
    i = torch.sigmoid(i)  # input gate
    f = torch.sigmoid(f)  # forget gate
    g = torch.tanh(g)  # candidate cell
    o = torch.sigmoid(o)  # output gate
    c = f * c + i * g
    return (o * torch.tanh(c), c)


class LoopRNN(nn.Module):
    """The reference stack: `loop_cell` step by step, as d2l's RNNModelScratch does, autograd for BPTT.

    Same interface, parameter names and initialisation as charrnn.core.scratch.SCRATCH_LAYERS[kind], so it
    loads their state_dict (and torch's): LoopRNN("lstm", I, H, num_layers=2)(x (B, T, I), (h0, c0)).
    Slow and obviously correct: it is what the hand-written gradients are measured against.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        from charrnn.core.scratch import SCRATCH_LAYERS

        # borrow the parameter layout and init, keep none of the scratch machinery
        template = SCRATCH_LAYERS[kind](input_size, hidden_size, num_layers)
        for name, p in template.named_parameters():
            self.register_parameter(name, p)
        self.kind, self.hidden_size, self.num_layers, self.dropout = kind, hidden_size, num_layers, dropout

    def forward(self, input, hx=None, masks=None):
        """input (B, T, I), hx (L, B, H) or (h, c) -> out (B, T, H), state like hx; `masks` (a
        charrnn.core.regularise.RecurrentMasks) multiply layer k's input at every step and its W_hh."""
        B, T, _ = input.shape
        if hx is None:
            z = input.new_zeros(self.num_layers, B, self.hidden_size)
            hx = (z, z) if self.kind == "lstm" else z
        x = [input[:, t] for t in range(T)]  # T tensors (B, I)
        finals = []
        for k in range(self.num_layers):
            W = [getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if masks is not None and masks.weights[k] is not None:
                W[1] = W[1] * masks.weights[k]  # DropConnect: the dropped matrix is the one used
            if masks is not None and masks.inputs[k] is not None:
                x = [h * masks.inputs[k] for h in x]  # locked: one (B, I) mask for every step
            state = (hx[0][k], hx[1][k]) if self.kind == "lstm" else hx[k]
            outs = []
            for t in range(T):
                state = loop_cell(self.kind, x[t], state, *W)
                outs.append(state[0] if self.kind == "lstm" else state)
            finals.append(state)
            x = outs
            if k < self.num_layers - 1 and self.training and self.dropout > 0:
                x = [F.dropout(h, self.dropout, training=True) for h in x]
        out = torch.stack(x, dim=1)
        if self.kind == "lstm":
            return out, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        return out, torch.stack(finals)


# ----------------------------------------------------------------------------------------------------
# the check


def compare(model: str, tensor: str, method: str, got: torch.Tensor, want: torch.Tensor) -> GradcheckRow:
    """Elementwise errors of `got` (scratch) against `want` (a reference) -> one row."""
    abs_tol, rel_tol = TOLERANCES[method]
    got, want = got.detach().double().flatten(), want.detach().double().flatten()
    err = (got - want).abs()
    scale = torch.maximum(got.abs(), want.abs()).clamp_min(REL_FLOOR)
    rel = err / scale
    ok = (err <= abs_tol) | (rel <= rel_tol)
    return GradcheckRow(model, tensor, method, err.max().item() if err.numel() else 0.0,
                        rel.max().item() if rel.numel() else 0.0, err.numel(), abs_tol, rel_tol,
                        bool(ok.all()) and bool(torch.isfinite(err).all()))


class _Problem:
    """A float64 scratch CharRNN, its inputs and a loss over every output; the tensors to check."""

    def __init__(self, kind: str, opts: GradcheckOptions, gen: torch.Generator):
        L, B, T, H, V, E = opts.layers, opts.batch, opts.seq_len, opts.hidden, opts.vocab, opts.embed
        self.kind = kind
        cfg = ModelConfig(model=kind, impl="scratch", vocab_size=V, hidden=H, layers=L, embed=E, dropout=opts.dropout,
                          dropout_kind="locked", weight_drop=opts.weight_drop)
        self.model = CharRNN(cfg).double().train()
        # the masks of one training step, drawn once and then part of the checked function
        self.masks = draw_masks(self.model.rnn, B, self.model.rnn.weight_hh_l0)
        self.model.eval()
        x = torch.randint(0, V, (B, T), generator=gen)
        self.targets = torch.randint(0, V, (B, T), generator=gen)
        self.onehot = None if E else F.one_hot(x, V).double().requires_grad_()  # (B, T, V)
        self.x = x
        n_state = 2 if kind == "lstm" else 1
        # non-zero initial state (as carried state is), and random weights on the returned state
        self.state0 = [(0.5 * torch.randn(L, B, H, generator=gen, dtype=torch.float64)).requires_grad_()
                       for _ in range(n_state)]
        self.R = [torch.randn(L, B, H, generator=gen, dtype=torch.float64) for _ in range(n_state)]

    def leaves(self, core: nn.Module) -> dict[str, torch.Tensor]:
        """Readable name -> tensor whose gradient is checked, with `core`'s parameters."""
        named = dict(core.named_parameters())
        out = {n: named[n] for n in (f"{w}_l{k}" for k in range(self.model.config.layers)
                                     for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))}
        out.update(zip(("h0", "c0"), self.state0))
        if self.onehot is not None:
            out["input"] = self.onehot
        else:
            out["embedding.weight"] = self.model.embedding.weight
        return out

    def loss(self, core: nn.Module) -> torch.Tensor:
        inp = self.onehot if self.onehot is not None else self.model.embedding(self.x)
        state = tuple(self.state0) if self.kind == "lstm" else self.state0[0]
        out, stateT = core(inp, state, masks=self.masks)  # (B, T, H)
        logits = self.model.head(out)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), self.targets.flatten(), reduction="sum")
        for s, r in zip(stateT if self.kind == "lstm" else (stateT,), self.R):
            loss = loss + (s * r).sum()
        return loss

    def grads(self, core: nn.Module) -> dict[str, torch.Tensor]:
        leaves = self.leaves(core)
        return dict(zip(leaves, torch.autograd.grad(self.loss(core), list(leaves.values()))))


def check_fd_options(samples: int | None, eps: float) -> None:
    """The finite-difference options of `charrnn gradcheck` and `gradcheck --user`."""
    if samples is not None and samples < 0:
        raise CharRNNError("--samples must be 0 (all elements) or positive")
    if not eps > 0:
        raise CharRNNError("eps must be positive")


def _fd_indices(numel: int, samples: int | None, gen: torch.Generator) -> torch.Tensor:
    if samples == 0 or (samples is None and numel <= AUTO_ALL):
        return torch.arange(numel)
    n = min(numel, samples if samples is not None else AUTO_SAMPLES)
    return torch.randperm(numel, generator=gen)[:n]


def finite_differences(f: Callable[[], torch.Tensor], t: torch.Tensor, index: torch.Tensor, eps: float) -> torch.Tensor:
    """Central differences of the scalar f() in the flat elements `index` of t (restored afterwards)."""
    flat = t.detach().view(-1)
    out = torch.empty(len(index), dtype=torch.float64)
    with torch.no_grad():
        for j, i in enumerate(index.tolist()):
            orig = flat[i].item()
            flat[i] = orig + eps
            plus = f().item()
            flat[i] = orig - eps
            minus = f().item()
            flat[i] = orig
            out[j] = (plus - minus) / (2 * eps)
    return out


def check_torch_forward(p: _Problem) -> GradcheckRow:
    """The scratch forward against torch's fused module on the same weights, input and state."""
    core = p.model.rnn
    cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[p.kind]
    ref = cls(core.input_size, core.hidden_size, num_layers=core.num_layers, batch_first=True).double()
    ref.load_state_dict(core.state_dict())
    with torch.no_grad():
        inp = p.onehot if p.onehot is not None else p.model.embedding(p.x)
        state = tuple(p.state0) if p.kind == "lstm" else p.state0[0]
        outs = [torch.cat([o.flatten(), *(s.flatten() for s in (st if p.kind == "lstm" else (st,)))])
                for o, st in (m(inp, state) for m in (core, ref))]
    return compare(p.kind, f"{p.kind}/output+state", "torch-forward", outs[0], outs[1])


def check_model(kind: str, opts: GradcheckOptions, on_row: Callable[[GradcheckRow], None] | None = None) -> list[GradcheckRow]:
    """All rows for one cell kind: torch forward, then per tensor autograd and finite differences."""
    gen = torch.Generator().manual_seed(opts.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)  # parameter init, without disturbing the caller's RNG
        p = _Problem(kind, opts, gen)
    rows = []

    def emit(row):
        rows.append(row)
        if on_row is not None:
            on_row(row)

    emit(check_torch_forward(p))
    core = p.model.rnn
    scratch = p.grads(core)
    ref_core = LoopRNN(kind, core.input_size, core.hidden_size, core.num_layers).double()
    ref_core.load_state_dict(core.state_dict())
    reference = p.grads(ref_core)
    leaves = p.leaves(core)
    for name, g in scratch.items():
        emit(compare(kind, f"{kind}/{name}", "autograd", g, reference[name]))
        idx = _fd_indices(g.numel(), opts.samples, gen)
        fd = finite_differences(lambda: p.loss(core), leaves[name], idx, opts.eps)
        emit(compare(kind, f"{kind}/{name}", "finite-diff", g.flatten()[idx], fd))
    return rows


def run_gradcheck(opts: GradcheckOptions, on_row: Callable[[GradcheckRow], None] | None = None) -> GradcheckReport:
    """Check every requested cell; `on_row` sees each row as it is made (for progress display)."""
    report = GradcheckReport(opts)
    # Batches of a few sequences: one thread is as fast, and does not collapse when the machine is busy
    # (MKL's and OpenMP's threads spin against other processes).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind in opts.models:
            report.rows += check_model(kind, opts, on_row)
    finally:
        torch.set_num_threads(threads)
    return report


def options_from_checkpoint(path: str, **overrides) -> GradcheckOptions:
    """Options for a checkpoint's architecture: its cell, layers, hidden, embed and vocab, unless a
    non-None override is given for them (to shrink it); batch, seq_len and the rest as overridden or default."""
    from charrnn.core.checkpoint import load  # lazy: only this path needs the loader

    cfg = load(path).model_config  # configs only: the weights are not needed to check the gradients
    opts = dict(model=cfg.model, layers=cfg.layers, hidden=cfg.hidden, embed=cfg.embed, vocab=cfg.vocab_size,
                weight_drop=cfg.weight_drop, dropout=cfg.dropout if cfg.dropout_kind == "locked" else 0.0)
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return GradcheckOptions(**opts)
