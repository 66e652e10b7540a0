"""diagnose on users' own NumPy and torch models: each planted bug found by the check meant for it and
named first in the headline; correct code passes; no fingerprint fires on the wrong bug."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.diagnose import DiagnoseOptions, diagnose_model
from tests.helpers import make_text

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "numpy_rnn.py"
OPTS = DiagnoseOptions(max_chars=4000, seed=0)


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("numpy_rnn_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(make_text(12_000), encoding="utf-8")
    return path


def _trained(example, cls, text_file, steps=150):
    text = text_file.read_text(encoding="utf-8")
    return example.train(cls("".join(sorted(set(text))), hidden=32), text, steps=steps)


def _checks(report) -> dict:
    return {c.id: c for c in report.checks}


# ----------------------------------------------------------------------------------------------- NumPy


def test_correct_numpy_model_passes_and_autograd_checks_say_why_they_skip(example, text_file):
    report = diagnose_model(_trained(example, example.NumpyRNN, text_file), text_file, OPTS)
    checks = _checks(report)
    for cid in ("loss.batch_invariance", "loss.baselines", "state.row_independence", "state.call_independence"):
        assert checks[cid].status == "ok", checks[cid].message
    assert checks["loss.baselines"].values["loss"] < checks["loss.baselines"].values["unigram_entropy"]
    assert checks["grad.bptt_norms"].status == "skip"
    assert "needs a PyTorch model" in checks["grad.bptt_norms"].message
    assert checks["grad.spectral_radius"].status == "ok"
    for c in report.checks:
        assert "report it" not in c.advice and "report it" not in c.message, (c.id, c.message)
    assert report.verdict != "fail", report.summary
    assert report.subject["model"] == "NumpyRNN (NumPy)"


def test_numpy_spectral_radius_matches_numpy(example, text_file):
    model = _trained(example, example.NumpyRNN, text_file, steps=20)
    c = _checks(diagnose_model(model, text_file, OPTS))["grad.spectral_radius"]
    expected = np.abs(np.linalg.eigvals(model.params["W_hh"])).max()
    assert c.values["matrices"]["params.W_hh"]["spectral_radius"] == pytest.approx(expected, rel=1e-9)


def test_numpy_reshape_instead_of_transpose_leaks_between_rows(example, text_file):
    report = diagnose_model(_trained(example, example.RowsLeakRNN, text_file), text_file, OPTS)
    checks = _checks(report)
    row = checks["state.row_independence"]
    assert row.status == "fail" and "within the same call" in row.message
    assert row.values["max_diff_within_call"] > 1e-3
    assert checks["state.call_independence"].status == "ok"  # the wrong fingerprint stays quiet
    assert report.headline.id == "state.row_independence"
    assert "[state.row_independence]" in report.summary


def test_numpy_state_kept_in_self_h_headlines_as_kept_state(example, text_file):
    report = diagnose_model(_trained(example, example.KeptStateRNN, text_file), text_file, OPTS)
    checks = _checks(report)
    assert checks["state.call_independence"].status == "fail"
    assert checks["state.call_independence"].message.startswith("state kept between calls")
    assert checks["state.row_independence"].status != "fail"  # not blamed on the rows
    assert report.headline.id == "state.call_independence"
    if checks["loss.batch_invariance"].status == "fail":
        assert "state kept between calls" in checks["loss.batch_invariance"].message


def test_error_inside_a_user_model_is_about_their_code(example, text_file):
    """A NumPy model that breaks on batches of one: the measurement that uses them is skipped with
    words about the user's model, not as charrnn's failure."""

    class NoBatchOfOne(example.NumpyRNN):
        def forward(self, X, state):
            if X.shape[0] == 1:
                raise ValueError("batch of one")
            return super().forward(X, state)

    text = text_file.read_text(encoding="utf-8")
    c = _checks(diagnose_model(NoBatchOfOne("".join(sorted(set(text)))), text_file, OPTS))["loss.batch_invariance"]
    assert c.status == "skip"
    assert c.message.startswith("your model raised ValueError: batch of one")
    assert "report it" not in c.advice


def test_cli_numpy_factory_and_advice_about_the_users_code(text_file, monkeypatch):
    monkeypatch.setenv("TEXT", str(text_file))
    result = CliRunner().invoke(app, ["diagnose", "--model-factory", f"{EXAMPLE}:build_kept_state", "--text", str(text_file),
                                      "--max-chars", "4000", "--json"])
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"].startswith("fail: state kept between calls")
    for c in report["checks"]:
        assert "--lr" not in c["advice"] and "--clip" not in c["advice"], c


# ----------------------------------------------------------------------------------------------- torch


class TorchRNN(torch.nn.Module):
    """A d2l-style torch RNN (its own loop over time), variants below change one thing."""

    def __init__(self, vocab, H=16):
        super().__init__()
        torch.manual_seed(0)
        self.vocab, self.H = list(vocab), H
        self.cell = torch.nn.RNNCell(len(vocab), H)
        self.out = torch.nn.Linear(H, len(vocab))

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.H, device=device)

    def forward(self, X, h):
        outs = []
        for x in torch.nn.functional.one_hot(X.T, len(self.vocab)).float():
            h = self.cell(x, h)
            outs.append(self.out(h))
        return torch.stack(outs, 1), h


class PooledReturn(TorchRNN):
    def forward(self, X, h):
        logits, h = super().forward(X, h)
        return logits, h.mean(0, keepdim=True).expand_as(h)  # bug: the returned state is the batch mean


class KeptState(TorchRNN):
    h = None

    def forward(self, X, h):
        if self.h is not None and self.h.shape == h.shape:
            h = self.h  # bug: carries on from the previous call
        logits, h = super().forward(X, h)
        self.h = h.detach()
        return logits, h


def test_torch_leak_through_the_returned_state_is_told_apart(text_file):
    vocab = sorted(set(text_file.read_text(encoding="utf-8")))
    checks = _checks(diagnose_model(PooledReturn(vocab).eval(), text_file, OPTS))
    row = checks["state.row_independence"]
    assert row.status == "fail", row.message
    assert row.values["max_diff_within_call"] == 0.0
    assert row.values["max_diff_through_state"] > 1e-3
    assert "next call" in row.message
    assert checks["state.call_independence"].status == "ok"


def test_torch_kept_state_headline_and_correct_model_clean(text_file):
    vocab = sorted(set(text_file.read_text(encoding="utf-8")))
    report = diagnose_model(KeptState(vocab).eval(), text_file, OPTS)
    assert report.headline.id == "state.call_independence", report.summary
    assert "rows of a batch" not in report.summary
    clean = _checks(diagnose_model(TorchRNN(vocab).eval(), text_file, OPTS))
    for cid in ("state.row_independence", "state.call_independence", "loss.batch_invariance"):
        assert clean[cid].status == "ok", clean[cid].message
    assert clean["grad.bptt_norms"].status != "skip"


def test_registry_places_a_check_after_another_and_refuses_duplicates():
    from charrnn.diagnose.context import REGISTRY, Verdict, check

    before = list(REGISTRY)
    try:
        check("loss.extra_for_test", after="loss.baselines")(lambda ctx: Verdict("ok", {}, "", ""))
        ids = [r.id for r in REGISTRY]
        assert ids[ids.index("loss.baselines") + 1] == "loss.extra_for_test"
        with pytest.raises(ValueError):
            check("loss.extra_for_test")
        with pytest.raises(ValueError):
            check("nosuch.section")
    finally:
        REGISTRY[:] = before


def test_gate_saturation_shares_match_torch_lstm_gates():
    """grad.saturation's shares (through charrnn.analysis.activations.record) against the gates recomputed here
    from nn.LSTM's own weights, step by step."""
    from charrnn.core.config import ModelConfig
    from charrnn.diagnose.measure_grad import SIGMOID_SAT, TANH_SAT, saturation
    from charrnn.core.models import CharRNN

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="lstm", impl="torch", vocab_size=7, hidden=6, layers=1)).eval()
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(6.0)  # push many units into saturation
    ids = torch.randint(0, 7, (8001,), generator=torch.Generator().manual_seed(1))
    rows, T, skip = 16, 256, 32
    got = saturation(model, ids, torch.device("cpu"), rows=rows, T=T, skip=skip)["shares"]
    x = ids[: rows * T].view(rows, T)  # the streams saturation() reads: row r at r * T
    W_ih, W_hh, b = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    h = c = torch.zeros(rows, 6)
    gates = {"input gate": [], "forget gate": [], "cell input g (tanh)": [], "output gate": []}
    with torch.no_grad():
        for t in range(T):
            z = F.one_hot(x[:, t], 7).float() @ W_ih.T + h @ W_hh.T + b
            i, f, g, o = z.sigmoid()[:, :6], z.sigmoid()[:, 6:12], z[:, 12:18].tanh(), z.sigmoid()[:, 18:]
            c = f * c + i * g
            h = o * c.tanh()
            for name, v in zip(gates, (i, f, g, o)):
                gates[name].append(v)
    for name, vs in gates.items():
        v = torch.stack(vs, 1)[:, skip:]
        sat = v.abs() > TANH_SAT if "tanh" in name else (v < 1 - SIGMOID_SAT) | (v > SIGMOID_SAT)
        assert got[name] == pytest.approx(float(sat.double().mean()), abs=1e-9), name
    assert 0 < got["forget gate"] < 1


def test_charrnn_debug_shows_where_a_user_model_raised(example, text_file, monkeypatch):
    class NoBatchOfOne(example.NumpyRNN):
        def forward(self, X, state):
            if X.shape[0] == 1:
                raise ValueError("batch of one")
            return super().forward(X, state)

    text = text_file.read_text(encoding="utf-8")
    monkeypatch.setenv("CHARRNN_DEBUG", "1")
    with pytest.raises(ValueError, match="batch of one"):
        diagnose_model(NoBatchOfOne("".join(sorted(set(text)))), text_file, OPTS)


def test_every_symptom_of_kept_state_points_back_to_it(text_file):
    """A model keeping its state on self: whatever else warns or fails (the gradient norms, the carry and
    warm-up profiles, the baselines) names state.call_independence as the root to fix first."""
    vocab = sorted(set(text_file.read_text(encoding="utf-8")))
    report = diagnose_model(KeptState(vocab).eval(), text_file, OPTS)
    bad = [c for c in report.checks if c.status in ("warn", "fail") and c.id != "state.call_independence"]
    assert bad, "kept state left no symptom to link"
    for c in bad:
        if c.id == "grad.spectral_radius":
            continue  # read from the weights alone: not a symptom of kept state
        assert "state.call_independence" in c.message, (c.id, c.message)
