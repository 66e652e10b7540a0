"""The gradient checker is itself checked: it passes the real engine and fails each classic BPTT bug.

Each bug is a one-line edit of the real backward's source (`mutated` below), swapped in through
`charrnn.core.scratch.BACKWARD`; the checker must fail and name exactly the tensors the bug reaches.
"""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from charrnn.core import scratch
from charrnn.cli.app import app
from charrnn.core.config import ModelConfig
from charrnn.core.errors import CharRNNError
from charrnn.gradcheck.engine import GradcheckOptions, LoopRNN, compare, options_from_checkpoint, run_gradcheck

SMALL = dict(layers=2, hidden=3, batch=2, seq_len=4, vocab=4)
LAYER0 = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
LAYER1 = {"weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"}


def mutated(fn, old: str, new: str):
    """A copy of `fn` with the source line fragment `old` replaced by `new` (a deliberate bug)."""
    src = textwrap.dedent(inspect.getsource(fn))
    assert src.count(old) == 1, f"{fn.__name__} no longer contains {old!r} exactly once: update this mutation"
    namespace = dict(vars(scratch))
    exec(compile(src.replace(old, new), f"<{fn.__name__} with a bug>", "exec"), namespace)
    return namespace[fn.__name__]


def failing(report, method: str) -> set[str]:
    return {r.tensor.split("/", 1)[1] for r in report.rows if r.method == method and not r.passed}


# (bug, cell, old, new, tensors that must fail, tensors that must pass)
BUGS = [
    # h_t (hs[t + 1]) used where h_{t-1} (hs[t]) multiplies W_hh: only the recurrent weights are wrong
    *[("shifted h index", cell, "hs[:-1].reshape(T * B, H)", "hs[1:].reshape(T * B, H)",
       {"weight_hh_l0", "weight_hh_l1"}, (LAYER0 | LAYER1) - {"weight_hh_l0", "weight_hh_l1"} | {"h0", "input"})
      for cell in ("rnn", "gru", "lstm")],
    ("shifted C index", "lstm", "c_prev = cs[:-1]", "c_prev = cs[1:]",
     LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("shifted h index in the update gate", "gru", "h_prev = hs[:-1]", "h_prev = hs[1:]",
     LAYER0 | LAYER1 | {"h0", "input"}, set()),
    # one step too far back: c_{t-2} (c_0 at the first step) where c_{t-1} is needed
    ("C_prev from t-1 instead of t", "lstm", "c_prev = cs[:-1]", "c_prev = torch.cat((cs[:1], cs[:-2]))",
     LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("tanh applied twice on the dC path", "lstm", "o * (1 - tcs * tcs)", "o * (1 - torch.tanh(tcs) ** 2)",
     LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("missing sigmoid' on the forget gate", "lstm", "torch.mul(c_prev * f, 1 - f, out=df)", "df.copy_(c_prev)",
     LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("missing sigmoid' on the update gate", "gru", "torch.mul((h_prev - n) * z, 1 - z, out=dz)",
     "torch.sub(h_prev, n, out=dz)", LAYER0 | LAYER1 | {"h0", "input"}, set()),
    ("missing tanh'", "rnn", "dpre = 1 - h * h", "dpre = torch.ones_like(h)", LAYER0 | LAYER1 | {"h0", "input"}, set()),
    ("dh_next, dC_next initialised from the wrong tensors", "lstm", "dh_next, dc_next = dhT.clone(), dcT.clone()",
     "dh_next, dc_next = dhT.clone(), dhT.clone()", LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("dh_next initialised to zero", "gru", "dh_next = dhT.clone()", "dh_next = torch.zeros_like(dhT)",
     LAYER0 | LAYER1 | {"h0", "input"}, set()),
    ("recurrent gradient not accumulated", "lstm", "dh = dout[t] + dh_next", "dh = dout[t]",
     LAYER0 | LAYER1 | {"h0", "c0", "input"}, set()),
    ("recurrent gradient not accumulated", "rnn", "dpre[t].mul_(dout[t] + dh_next)", "dpre[t].mul_(dout[t])",
     LAYER0 | LAYER1 | {"h0", "input"}, set()),
    ("recurrent gradient not accumulated", "gru", "torch.add(dout[t], dh_next, out=dH[t])", "dH[t].copy_(dout[t])",
     LAYER0 | LAYER1 | {"h0", "input"}, set()),
    # nothing reaches the layer below: layer 0, its initial state and the input are wrong, layer 1 is right
    *[("no gradient to the layer below", cell, f"dx = _mm({var}, W_ih, lowp).view(T, B, I).to(x.dtype) if need_dx else None",
       "dx = torch.zeros_like(x) if need_dx else None", LAYER0 | {"h0", "input"} | ({"c0"} if cell == "lstm" else set()),
       LAYER1) for cell, var in (("rnn", "dpre_c"), ("gru", "dgi_c"), ("lstm", "dg_c"))],
]


@pytest.mark.parametrize("bug, cell, old, new, must_fail, must_pass", BUGS,
                         ids=[f"{b[1]}: {b[0]}" for b in BUGS])
def test_gradcheck_catches_bug(monkeypatch, bug, cell, old, new, must_fail, must_pass):
    monkeypatch.setitem(scratch.BACKWARD, cell, mutated(scratch.BACKWARD[cell], old, new))
    report = run_gradcheck(GradcheckOptions(model=cell, **SMALL))
    assert not report.passed
    for method in ("autograd", "finite-diff"):
        bad = failing(report, method)
        assert must_fail <= bad, f"{method}: {sorted(must_fail - bad)} should fail"
        assert not (must_pass & bad), f"{method}: {sorted(must_pass & bad)} should pass"
    assert all(r.passed for r in report.rows if r.method == "torch-forward")  # the forward is untouched


CASES = [  # (layers, embed, batch, seq_len)
    (1, 0, 1, 1), (1, 3, 4, 5), (2, 0, 3, 1), (2, 4, 1, 6), (3, 0, 2, 2), (3, 3, 3, 2),
]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers, embed, batch, seq_len", CASES)
def test_real_engine_passes(cell, layers, embed, batch, seq_len):
    report = run_gradcheck(GradcheckOptions(model=cell, layers=layers, embed=embed, batch=batch, seq_len=seq_len,
                                            hidden=3, vocab=5))
    assert report.passed, [r for r in report.failures]
    names = {r.tensor for r in report.rows}
    expected = {f"{cell}/{w}_l{k}" for k in range(layers) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    expected |= {f"{cell}/h0", f"{cell}/output+state", f"{cell}/embedding.weight" if embed else f"{cell}/input"}
    expected |= {f"{cell}/c0"} if cell == "lstm" else set()
    assert names == expected
    assert {r.method for r in report.rows} == {"torch-forward", "autograd", "finite-diff"}


def test_no_gradient_is_trivially_zero():
    """The loss reaches every output, so a checker comparing zeros with zeros cannot pass silently."""
    from charrnn.gradcheck.engine import _Problem

    p = _Problem("lstm", GradcheckOptions(model="lstm", **SMALL), torch.Generator().manual_seed(0))
    for name, g in p.grads(p.model.rnn).items():
        assert (g != 0).float().mean() > 0.5, name


def test_samples_limits_finite_differences():
    report = run_gradcheck(GradcheckOptions(model="rnn", samples=3, **SMALL))
    assert report.passed
    assert all(r.checked == 3 for r in report.rows if r.method == "finite-diff")
    assert any(r.checked > 3 for r in report.rows if r.method == "autograd")  # autograd: every element


def test_compare_uses_a_safe_relative_error():
    tiny = compare("x", "x/t", "autograd", torch.tensor([1e-13, 5.0]), torch.tensor([-1e-13, 5.0]))
    assert tiny.passed and tiny.max_rel < 1e-6  # opposite-signed near-zeros: floor, not a blow-up
    big = compare("x", "x/t", "finite-diff", torch.tensor([100.0]), torch.tensor([100.01]))
    assert not big.passed and big.max_rel == pytest.approx(1e-4, rel=1e-3)
    assert not compare("x", "x/t", "autograd", torch.tensor([float("nan")]), torch.tensor([1.0])).passed


def test_loop_reference_matches_torch():
    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 4, num_layers=2, batch_first=True).double()
    loop = LoopRNN("gru", 3, 4, num_layers=2).double()
    loop.load_state_dict(ref.state_dict())
    x, h = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64)
    (a, ha), (b, hb) = ref(x, h), loop(x, h)
    assert torch.allclose(a, b, atol=1e-12) and torch.allclose(ha, hb, atol=1e-12)


def test_report_json():
    report = run_gradcheck(GradcheckOptions(model="rnn", layers=1, hidden=2, batch=1, seq_len=2, vocab=3))
    data = json.loads(report.to_json())
    assert data["passed"] is True and data["options"]["model"] == "rnn"
    assert {"model", "tensor", "method", "max_abs", "max_rel", "passed"} <= set(data["rows"][0])


def test_bad_options():
    with pytest.raises(CharRNNError):
        GradcheckOptions(model="transformer")
    with pytest.raises(CharRNNError):
        GradcheckOptions(hidden=0)


# ---------------------------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_gradcheck_passes_with_a_table():
    result = runner.invoke(app, ["gradcheck", "--model", "gru", "--layers", "1"])
    assert result.exit_code == 0, result.output
    for word in ("weight_hh_l0", "finite-diff", "autograd", "torch-forward", "PASS", "passed"):
        assert word in result.stderr
    assert "FAIL" not in result.stderr
    assert result.stdout == ""


def test_cli_gradcheck_json():
    result = runner.invoke(app, ["gradcheck", "--json", "--layers", "1", "--hidden", "3", "--seq-len", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and all(r["passed"] for r in data["rows"])
    assert {r["model"] for r in data["rows"]} == {"rnn", "gru", "lstm"}
    assert data["options"]["hidden"] == 3


def test_cli_gradcheck_fails_on_a_bug(monkeypatch):
    bug = mutated(scratch.lstm_backward, "dh = dout[t] + dh_next", "dh = dout[t]")
    monkeypatch.setitem(scratch.BACKWARD, "lstm", bug)
    result = runner.invoke(app, ["gradcheck", "--model", "lstm", "--json", "--hidden", "3", "--seq-len", "3"])
    assert result.exit_code == 1
    assert "FAIL" in result.stderr and "lstm/weight_hh_l0" in result.stderr
    assert json.loads(result.stdout)["passed"] is False


def test_cli_gradcheck_checkpoint(tmp_path):
    from charrnn.core.checkpoint import save_checkpoint
    from charrnn.core.models import CharRNN

    cfg = ModelConfig(model="gru", vocab_size=7, hidden=6, layers=2, embed=3, dropout=0.2)
    save_checkpoint({"model_config": vars(cfg), "model": CharRNN(cfg).state_dict(), "vocab": list("abcdefg")},
                    tmp_path / "best.pt")
    opts = options_from_checkpoint(str(tmp_path), layers=1)
    assert (opts.model, opts.layers, opts.hidden, opts.embed, opts.vocab) == ("gru", 1, 6, 3, 7)
    result = runner.invoke(app, ["gradcheck", str(tmp_path), "--layers", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and {r["model"] for r in data["rows"]} == {"gru"}
    assert any(r["tensor"] == "gru/embedding.weight" for r in data["rows"])


def test_cli_gradcheck_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["gradcheck", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2
    assert "not found" in result.stderr
