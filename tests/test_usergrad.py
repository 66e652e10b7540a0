"""`gradcheck --user` on the user's own code: each classic backward bug, planted as one changed line in the
real user-style examples (examples/buggy.py), is found by the right finding and by no other; the correct
code passes; a small analytic model checks the finite differences and the scale/float32/shape findings
against gradients computed by hand here; the CLI keeps its exit codes and JSON shape."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.core.errors import CharRNNError
from charrnn.gradcheck.user import UserGradOptions, check_user_gradients

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import buggy  # noqa: E402  (examples/buggy.py: the bugs, planted in the real example files)

runner = CliRunner()
SEQ = 4  # lengths 1, 2, 3, 4: enough for every fingerprint, quick


def check(spec: str, **kw):
    return check_user_gradients(UserGradOptions(spec, seq_len=kw.pop("seq_len", SEQ), **kw))


def ids(report) -> set[str]:
    return {f.id for f in report.findings}


def finding(report, id_: str):
    return next(f for f in report.findings if f.id == id_)


@pytest.mark.parametrize("example", ["numpy_lstm.py", "torch_rnn.py"])
def test_correct_code_passes(example):
    report = check(str(EXAMPLES / example))
    assert report.verdict == "pass" and not report.findings
    assert all(t.passed and t.wrong_from is None and t.checked == np.prod(t.shape) for t in report.tensors)


# bug -> (the one finding, what it must say); every other finding must stay silent
EXPECTED = {
    "h_index": ("local", {"tensors": ["W_v"], "zero_at_T1": ["W_v"], "nonzero_where_none": []}),
    "c_prev": ("local", {"tensors": ["W_f", "b_f"], "zero_at_T1": [], "nonzero_where_none": ["W_f", "b_f"]}),
    "gate_derivative": ("local", {"tensors": ["W_o", "b_o"], "zero_at_T1": [], "nonzero_where_none": []}),
    "tanh_twice": ("local", {"tensors": ["W_i", "b_i", "W_g", "b_g"], "zero_at_T1": [], "nonzero_where_none": []}),
    "mean_loss": ("scale", {"matches": "T", "factor": SEQ}),
    "vocab_mean": ("scale", {"matches": "V", "factor": 7}),
    "forget_derivative": ("recurrent", {"from_T": 2}),
    "forget_carry": ("recurrent", {"from_T": 2}),
    "torch_tanh": ("local", {"tensors": ["W_xh", "b_h"], "zero_at_T1": [], "nonzero_where_none": []}),
    "torch_detach": ("recurrent", {"from_T": 2}),
}


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_each_planted_bug_gets_its_finding_and_no_other(bug):
    assert set(EXPECTED) == set(buggy.BUGS)
    report = check(f"{EXAMPLES / 'buggy.py'}:{bug}")
    want_id, want_values = EXPECTED[bug]
    assert report.verdict == "fail"
    assert ids(report) == {want_id}
    values = finding(report, want_id).values
    for key, want in want_values.items():
        assert values[key] == pytest.approx(want) if key == "factor" else values[key] == want, (key, values[key])


def test_recurrent_finding_does_not_clear_a_derivative_that_t1_cannot_see():
    # the forget gate's local derivative multiplies C_prev, which is 0 at T = 1 from a zero state: the
    # missing f(1 - f) first shows at T = 2, so the finding must not claim every per-step derivative is right
    message = finding(check(f"{EXAMPLES / 'buggy.py'}:forget_derivative"), "recurrent").message
    assert "every per-step derivative is right" not in message.lower()
    assert "forget gate" in message and "C_prev" in message


def test_recurrent_bug_names_the_tensors_and_lengths():
    report = check(f"{EXAMPLES / 'buggy.py'}:torch_detach")
    # W_hh's true gradient is 0 at T = 1 (h_0 = 0), and at T = 2 the detached path is the only one it has
    assert finding(report, "recurrent").values["tensors"] == {"W_xh": 2, "b_h": 2, "W_hh": 3}
    assert {t.name: t.wrong_from for t in report.tensors} == {"W_xh": 2, "W_hh": 3, "b_h": 2, "W_hq": None, "b_q": None}


# ---------------------------------------------------------------------------------------------------------
# an analytic model: a bigram softmax, loss = sum_t -log softmax(W[x_t] + b)[y_t], gradients derived here

BIGRAM = textwrap.dedent('''
    import numpy as np
    vocab_size = 5
    DTYPE, GRAD_SCALE, GRAD_DTYPE, FLAT = None, 1.0, None, False

    def params():
        rng = np.random.default_rng(1)
        return {"W": rng.normal(size=(5, 5)), "b": rng.normal(size=(5,))}

    def loss_and_grads(params, inputs, targets):
        W, b = params["W"], params["b"]
        if DTYPE is not None:
            W, b = W.astype(DTYPE), b.astype(DTYPE)
        loss, dW, db = 0.0, np.zeros_like(W), np.zeros_like(b)
        for x, y in zip(inputs, targets):
            z = W[x] + b
            p = np.exp(z - z.max()); p /= p.sum()
            loss += -np.log(p[y])
            p[y] -= 1
            dW[x] += p; db += p
        grads = {"W": dW * GRAD_SCALE, "b": db * GRAD_SCALE}
        if GRAD_DTYPE is not None:
            grads = {k: v.astype(GRAD_DTYPE) for k, v in grads.items()}
        if FLAT:
            grads["W"] = grads["W"].reshape(-1)
        return loss, grads
''')


@pytest.fixture
def bigram(tmp_path):
    def write(extra: str = "") -> str:
        path = tmp_path / "bigram.py"
        path.write_text(BIGRAM + extra)
        return str(path)
    return write


def test_finite_differences_match_an_independent_derivative(bigram):
    # BIGRAM's gradient is the closed form softmax - onehot, derived by hand: the checker's central
    # differences of the loss must agree with it to rounding, far inside the tolerance.
    report = check(bigram(), seq_len=3)
    assert report.verdict == "pass"
    assert all(t.max_abs < 1e-8 for t in report.tensors)
    # and a gradient off by 1e-3 in one element only is caught, at T = 1, as local to that tensor
    off = check(bigram("\n_orig = loss_and_grads\ndef loss_and_grads(p, i, t):\n    l, g = _orig(p, i, t)\n"
                       "    g['b'][0] += 1e-3\n    return l, g\n"), seq_len=3)
    assert ids(off) == {"local"} and finding(off, "local").values["tensors"] == ["b"]


def test_unrecognised_constant_scale_is_reported_as_such(bigram):
    report = check(bigram("GRAD_SCALE = 2.5\n"), seq_len=3)
    scale = finding(report, "scale")
    assert ids(report) == {"scale"} and scale.values["matches"] is None
    assert scale.values["factor"] == pytest.approx(2.5) and "2.5 times" in scale.message


def test_gradients_of_the_mean_named_1_over_T(bigram):
    report = check(bigram("_orig = loss_and_grads\ndef loss_and_grads(p, i, t):\n"
                          "    l, g = _orig(p, i, t)\n    return l, {k: v / len(i) for k, v in g.items()}\n"), seq_len=3)
    assert ids(report) == {"scale"} and finding(report, "scale").values["matches"] == "1/T"


def test_sign_flip_is_named(bigram):
    report = check(bigram("GRAD_SCALE = -1.0\n"), seq_len=3)
    assert ids(report) == {"scale"} and finding(report, "scale").values["matches"] == "-1"


def test_an_adapter_that_updates_its_params_is_refused(bigram):
    path = bigram("_orig = loss_and_grads\ndef loss_and_grads(p, i, t):\n    l, g = _orig(p, i, t)\n"
                  "    p['W'] -= 0.1 * g['W']\n    return l, g\n")
    with pytest.raises(CharRNNError, match="changed W in place") as e:
        check(path, seq_len=2)
    assert e.value.exit_code == 2


def test_a_non_finite_loss_fails_plainly(bigram):
    with pytest.raises(CharRNNError, match="your loss is nan") as e:
        check(bigram("_orig = loss_and_grads\ndef loss_and_grads(p, i, t):\n    l, g = _orig(p, i, t)\n"
                     "    return float('nan'), g\n"), seq_len=2)
    assert e.value.exit_code == 1


def test_float32_loss_is_said_plainly_and_nothing_else_is_claimed(bigram):
    report = check(bigram("DTYPE = np.float32\n"), seq_len=3)
    assert ids(report) == {"float32"} and finding(report, "float32").values["loss"] is True
    assert report.verdict == "fail"


def test_float32_gradients_are_said_plainly(bigram):
    report = check(bigram("GRAD_DTYPE = np.float32\n"), seq_len=3)
    f = finding(report, "float32")
    assert f.values == {"loss": False, "tensors": ["W", "b"]} and report.verdict == "fail"


def test_wrong_shape_is_a_finding(bigram):
    report = check(bigram("FLAT = True\n"), seq_len=3)
    assert "shape" in ids(report) and report.verdict == "fail"
    assert finding(report, "shape").values["tensors"]["W"] == {"got": [25], "want": [5, 5]}
    assert [t.name for t in report.tensors if not t.passed] == ["W"]


def test_seeded_runs_are_reproducible(bigram):
    a, b = (check(bigram(), seq_len=3, seed=3).to_dict() for _ in range(2))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


# ---------------------------------------------------------------------------------------------------------
# the command line


def test_cli_json_stays_clean_when_the_users_code_prints(bigram):
    path = bigram("print('importing my model')\n_orig = loss_and_grads\ndef loss_and_grads(p, i, t):\n"
                  "    print('loss', 1.0)\n    return _orig(p, i, t)\n")
    r = runner.invoke(app, ["gradcheck", "--user", path, "--seq-len", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "pass" and "importing my model" in r.stderr


def test_cli_json_and_exit_codes():
    ok = runner.invoke(app, ["gradcheck", "--user", str(EXAMPLES / "torch_rnn.py"), "--seq-len", "3", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["verdict"] == "pass" and data["findings"] == []
    assert {"name", "max_abs", "max_rel", "passed"} <= set(data["tensors"][0])
    bad = runner.invoke(app, ["gradcheck", "--user", f"{EXAMPLES / 'buggy.py'}:torch_tanh", "--seq-len", "3", "--json"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    data = json.loads(bad.stdout)
    assert data["verdict"] == "fail" and [f["id"] for f in data["findings"]] == ["local"]
    assert set(data["findings"][0]) == {"id", "message", "values"}
    assert "gradcheck --user FAILED (local)" in bad.stderr


def error_line(args) -> str:
    r = runner.invoke(app, ["gradcheck", *args])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("source, says", [
    ("vocab_size = 5\ndef params(): return {}\n", "has no loss_and_grads"),
    ("def params(): return {}\ndef loss_and_grads(p, i, t): return 0.0, {}\n", "has no vocab_size"),
    ("vocab_size = 5\ndef params(): return [1.0]\ndef loss_and_grads(p, i, t): return 0.0, {}\n", "non-empty dict"),
    ("import numpy as np\nvocab_size = 5\ndef params(): return {'W': [1.0]}\n"
     "def loss_and_grads(p, i, t): return 0.0, {}\n", "give NumPy arrays or torch tensors"),
    ("import numpy as np\nvocab_size = 5\ndef params(): return {'W': np.ones(2), 'b': np.ones(1)}\n"
     "def loss_and_grads(p, i, t): return float(p['W'].sum()), {'W': np.ones(2)}\n", "no gradient for b"),
    ("import numpy as np\nvocab_size = 5\ndef params(): return {'W': np.ones(2)}\n"
     "def loss_and_grads(p, i, t): return float(p['W'].sum())\n", "must return (loss, {name: grad})"),
    ("import numpy as np\nvocab_size = 5\ndef params(): return {'W': np.ones(2)}\n"
     "def loss_and_grads(p, i, t):\n    return p['W'][9], {}\n", "IndexError"),
    ("import nosuchmodule_xyz\n", "cannot import"),
])
def test_cli_protocol_violations_are_one_line(tmp_path, source, says):
    path = tmp_path / "adapter.py"
    path.write_text(source)
    line = error_line(["--user", str(path)])
    assert says in line
    if says == "IndexError":
        assert "adapter.py:5" in line  # the user's own line


def test_cli_bad_spec_and_foreign_flags():
    assert "no such Python file" in error_line(["--user", "nowhere.py"])
    assert "has no 'nothing'" in error_line(["--user", f"{EXAMPLES / 'buggy.py'}:nothing"])
    assert "--model" in error_line(["--user", str(EXAMPLES / "torch_rnn.py"), "--model", "lstm"])
    with pytest.raises(CharRNNError):
        UserGradOptions("x.py", seq_len=0)


D2L_AUTOGRAD = '''"""gradcheck --user on d2l 1.0's RNNLMScratch as it is: autograd, float32 (one_hot and the zero state)."""
import torch
import torch.nn.functional as F
from tests.d2l_style import RNNLMScratch, RNNScratch

torch.manual_seed(0)
V = 6
model = RNNLMScratch(RNNScratch(V, 5, sigma=0.3), V)
vocab_size = V


def params():
    return dict(model.named_parameters())


def loss_and_grads(p, inputs, targets):
    with torch.no_grad():
        for name, q in model.named_parameters():
            q.copy_(p[name])  # into the float32 model d2l builds
            q.grad = None
    logits = model(torch.tensor([inputs]))
    loss = F.cross_entropy(logits.reshape(-1, V), torch.tensor(targets), reduction="sum")
    loss.backward()
    return loss, {name: q.grad for name, q in model.named_parameters()}
'''


def test_float32_autograd_code_is_not_concluded_in_the_table_as_in_the_finding(tmp_path):
    from rich.console import Console

    from charrnn.cli.render import user_gradcheck_table

    path = tmp_path / "d2l_autograd.py"
    path.write_text(D2L_AUTOGRAD)
    report = check(str(path), seq_len=3)
    assert ids(report) == {"float32"} and not report.concluded
    assert [t.result for t in report.tensors] == ["not concluded"] * 5
    assert all(t.wrong_from is None and not t.wrong_at for t in report.tensors)
    console = Console(record=True, width=200)
    console.print(user_gradcheck_table(report))
    shown = console.export_text()
    assert shown.count("not concluded") == 5 and "FAIL" not in shown
    assert "5 of 5 not concluded: your code computes in float32" in report.outcome()
    assert "wrong" not in report.outcome()
    rows = report.to_dict()["tensors"]
    assert {r["result"] for r in rows} == {"not concluded"}


def test_a_wrong_shape_stays_wrong_in_float32(bigram):
    report = check(bigram("FLAT = True\nDTYPE = np.float32\n"), seq_len=3)
    assert {"float32", "shape"} <= ids(report)
    assert {t.name: t.result for t in report.tensors} == {"W": "fail", "b": "not concluded"}
    assert "1 of 2 tensors wrong (W)" in report.outcome()


def test_outcome_is_the_clis_closing_line_for_a_real_failure():
    """report.outcome() is the line the CLI closes with (app.py may print it as it is)."""
    spec = f"{EXAMPLES / 'buggy.py'}:c_prev"
    result = runner.invoke(app, ["gradcheck", "--user", spec, "--seq-len", str(SEQ)])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(check(spec).outcome())
