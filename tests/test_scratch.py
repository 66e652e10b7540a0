"""The scratch layers behave as torch's nn.RNN/GRU/LSTM(batch_first=True): same parameters, same outputs,
same gradients, state carried across calls, dropout between layers in training only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN
from charrnn.core.scratch import BF16_MIN_HIDDEN, SCRATCH_LAYERS

TORCH = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
CELLS = ["rnn", "gru", "lstm"]


def pair(cell, I=4, H=5, L=2, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    ref = TORCH[cell](I, H, num_layers=L, batch_first=True).to(dtype)
    ours = SCRATCH_LAYERS[cell](I, H, num_layers=L).to(dtype)
    return ref, ours


def random_state(cell, L, B, H, dtype=torch.float64, requires_grad=False):
    make = lambda: torch.randn(L, B, H, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    return (make(), make()) if cell == "lstm" else make()


def flat(out, state):
    return torch.cat([out.flatten(), *(s.flatten() for s in (state if isinstance(state, tuple) else (state,)))])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("direction", ["torch->scratch", "scratch->torch"])
def test_forward_equals_torch_after_load_state_dict(cell, direction):
    ref, ours = pair(cell)
    if direction == "torch->scratch":
        ours.load_state_dict(ref.state_dict())
    else:
        ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    state = random_state(cell, 2, 3, 5)
    a, b = flat(*ref(x, state)), flat(*ours(x, state))
    assert (a - b).abs().max().item() <= 1e-12
    assert ours(x)[0].shape == (3, 7, 5)  # no state: zeros, like torch
    assert torch.allclose(ours(x)[0], ref(x)[0], atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_equal_torch(cell):
    ref, ours = pair(cell)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    state = random_state(cell, 2, 2, 5)
    R = torch.randn(2 * 6 * 5 + (2 if cell == "lstm" else 1) * 2 * 2 * 5, dtype=torch.float64)
    grads = []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in state) if cell == "lstm" else state.clone().requires_grad_()
        leaves = [xi, *(si if cell == "lstm" else (si,)), *m.parameters()]
        grads.append(torch.autograd.grad((flat(*m(xi, si)) * R).sum(), leaves))
    for g_ref, g_ours in zip(*grads):
        assert (g_ref - g_ours).abs().max().item() <= 1e-12


@pytest.mark.parametrize("cell", CELLS)
def test_parameters_like_torch(cell):
    ref, ours = pair(cell, I=3, H=8, L=3)
    assert [(k, v.shape) for k, v in ref.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    bound = 1 / math.sqrt(8)
    for p in ours.parameters():
        assert p.abs().max() <= bound and p.std() > bound / 4  # uniform(-1/sqrt(H), 1/sqrt(H))


@pytest.mark.parametrize("cell", CELLS)
def test_charrnn_checkpoint_moves_between_impls(cell):
    torch.manual_seed(0)
    cfg = dict(model=cell, vocab_size=9, hidden=6, layers=2, embed=4)
    a = CharRNN(ModelConfig(impl="torch", **cfg)).double()
    b = CharRNN(ModelConfig(impl="scratch", **cfg)).double()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 9, (3, 5))
    assert torch.allclose(a(x)[0], b(x)[0], atol=1e-12)
    a.load_state_dict(CharRNN(ModelConfig(impl="scratch", **cfg)).double().state_dict())  # and back


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    core = SCRATCH_LAYERS["lstm"](4, 16, num_layers=2, dropout=0.5)
    x = torch.randn(3, 6, 4)
    core.eval()
    e1, e2 = core(x)[0], core(x)[0]
    assert torch.equal(e1, e2)
    core.train()
    t1, t2 = core(x)[0], core(x)[0]
    assert not torch.allclose(t1, e1) and not torch.allclose(t1, t2)
    assert (t1 != 0).all()  # the last layer's output is not dropped: dropout acts between layers

    single = SCRATCH_LAYERS["gru"](4, 16, num_layers=1, dropout=0.5).train()
    assert torch.equal(single(x)[0], single.eval()(x)[0])  # one layer: nothing between layers


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_reach_initial_state_input_and_parameters(cell):
    _, ours = pair(cell)
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    state = random_state(cell, 2, 2, 5, requires_grad=True)
    out, _ = ours(x, state)
    out.pow(2).sum().backward()
    for t in (x, *(state if cell == "lstm" else (state,)), *ours.parameters()):
        assert t.grad is not None and t.grad.abs().sum() > 0
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("cell", CELLS)
def test_float32(cell):
    ref, ours = pair(cell, dtype=torch.float32)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 9, 4, requires_grad=True)
    out, state = ours(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref(x)[0], atol=1e-5)
    out.sum().backward()
    assert x.grad.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in ours.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_call(cell):
    _, ours = pair(cell)
    x = torch.randn(3, 10, 4, dtype=torch.float64)
    state = random_state(cell, 2, 3, 5)
    whole, s_whole = ours(x, state)
    first, s = ours(x[:, :4], state)
    second, s_two = ours(x[:, 4:], s)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-13)
    assert torch.allclose(flat(whole, s_whole), flat(whole, s_two), atol=1e-13)


def test_input_without_grad_and_bad_state():
    core = SCRATCH_LAYERS["lstm"](4, 5)
    x = torch.randn(2, 3, 4)  # one-hot-like input that needs no gradient: dx is skipped
    core(x)[0].sum().backward()
    assert x.grad is None and core.weight_ih_l0.grad is not None
    with pytest.raises(ValueError, match="state"):
        core(x, torch.zeros(1, 2, 5))  # an LSTM needs (h, c)


def _bf16_cpu() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _under_autocast(core, x, state):
    """out and parameter gradients of one fp32 core under CPU bf16 autocast."""
    x = x.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, st = core(x, state)
    out.square().sum().backward()
    return out, st, x.grad, [p.grad for p in core.parameters()]


@pytest.mark.skipif(not _bf16_cpu(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("cell", CELLS)
def test_bf16_autocast_multiplies_in_bf16_and_keeps_fp32_state(cell):
    """Wide enough for bf16 (BF16_MIN_HIDDEN[cell]): against the float64 truth the outputs and gradients
    carry bf16's rounding (about 2**-8 relative; a path that ignored autocast would agree to 1e-6),
    and stay under 1e-2 (the worst seen is 6.6e-3; a product off by 1% is not); everything returned,
    gradients included, is fp32."""
    H = BF16_MIN_HIDDEN[cell]
    ref, _ = pair(cell, I=8, H=H, L=2)
    core = SCRATCH_LAYERS[cell](8, H, num_layers=2)
    core.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    state = random_state(cell, 2, 2, H, dtype=torch.float64)
    x64 = x.clone().requires_grad_()
    out64, _ = ref(x64, state)
    out64.square().sum().backward()
    f32 = tuple(s.float() for s in state) if cell == "lstm" else state.float()
    out, st, dx, grads = _under_autocast(core, x, f32)
    assert out.dtype == dx.dtype == torch.float32 and all(s.dtype == torch.float32 for s in (st if cell == "lstm" else (st,)))
    assert all(g.dtype == torch.float32 for g in grads)
    err = (out.double() - out64).abs().max().item()
    assert 1e-5 < err < 1e-2, f"outputs differ from the float64 truth by {err:.1e}"
    for got, want in [(dx, x64.grad), *zip(grads, (p.grad for p in ref.parameters()))]:
        rel = ((got.double() - want).norm() / want.norm()).item()
        assert 1e-5 < rel < 1e-2, f"gradient relative error {rel:.1e}"


def test_narrow_layers_stay_fp32_under_autocast():
    """Below BF16_MIN_HIDDEN the casts cost more than bf16 saves (measured): fp32, bit for bit."""
    torch.manual_seed(0)
    core = SCRATCH_LAYERS["gru"](4, 8)
    x = torch.randn(2, 5, 4)
    plain = core(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = core(x)[0]
    assert torch.equal(plain, auto)


def test_charrnn_runs_under_bf16_autocast():
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model="gru", impl="scratch", vocab_size=7, hidden=8, layers=2, embed=4))
    x = torch.randint(0, 7, (2, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, state = m(x)  # the recurrent state stays float32, the head runs in bf16
    logits.float().sum().backward()
    assert state.dtype == torch.float32 and torch.isfinite(m.rnn.weight_hh_l1.grad).all()
