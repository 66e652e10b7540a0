"""`charrnn diagnose`: real faulty models and runs, each caught by the check meant for it.

Healthy charrnn runs (rnn, gru, lstm) are trained for real on 30k characters of the Time Machine and
must get no fail. The faults are bugs as people write them, not flags: a d2l-style model that normalises
its hidden state over the batch dimension, one that keeps a (1, H) state pooled over the batch, one that
stores self.h, one whose output reads a hidden state it never updates (so it can only learn character
frequencies), a run trained on random windows with carried state, and a tanh RNN whose recurrent matrix
was scaled until gradients explode.
"""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_checkpoint, save_checkpoint
from charrnn.cli.app import app
from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint, diagnose_model
from charrnn.diagnose.measure import unigram_entropy
from charrnn.training.train import train

from conftest import require_shared_corpora

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "timemachine.txt"
IDS = ["loss.recorded_match", "loss.batch_invariance", "loss.baselines", "loss.ngram_yardstick", "loss.curves",
       "loss.worked_example", "loss.trained_horizon",
       "state.shape", "state.row_independence", "state.call_independence", "state.reset_vs_carry", "state.warmup",
       "state.memory_horizon", "grad.bptt_norms", "grad.spectral_radius", "grad.saturation", "grad.training_record"]
OPTS = DiagnoseOptions(max_chars=8000, seed=0)

# A d2l-style RNN written outside charrnn (chapter 8.5): its own parameters, one-hot input, a Python loop
# over time, a `vocab`, begin_state. The faulty variants below change one line each.
D2L_SOURCE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class D2LRNN(nn.Module):
    def __init__(self, vocab, num_hiddens=32):
        super().__init__()
        self.vocab = list(vocab)
        self.vocab_size, self.num_hiddens = len(self.vocab), num_hiddens
        V, H = self.vocab_size, num_hiddens
        self.W_xh = nn.Parameter(torch.randn(V, H) * 0.1)
        self.W_hh = nn.Parameter(torch.randn(H, H) * 0.1)
        self.b_h = nn.Parameter(torch.zeros(H))
        self.W_hq = nn.Parameter(torch.randn(H, V) * 0.1)
        self.b_q = nn.Parameter(torch.zeros(V))

    def begin_state(self, batch_size, device=None):
        return (torch.zeros((batch_size, self.num_hiddens), device=device),)

    def step(self, x, H):
        return torch.tanh(x @ self.W_xh + H @ self.W_hh + self.b_h)

    def forward(self, X, state):
        H, = state
        outputs = []
        for x in F.one_hot(X.T, self.vocab_size).float():  # time-major loop, x: (B, V)
            H = self.step(x, H)
            outputs.append(H @ self.W_hq + self.b_q)
        return torch.stack(outputs, dim=1), (H,)  # (B, T, V)


def build():
    import os
    model = D2LRNN(os.environ["D2L_VOCAB"])
    model.load_state_dict(torch.load(os.environ["D2L_WEIGHTS"], weights_only=True))
    return model
'''


def _d2l_module(tmp_path: Path):
    path = tmp_path / "d2l_model.py"
    path.write_text(D2L_SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("d2l_model_for_tests", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


def _fit(model, text: str, steps: int = 150, T: int = 32, B: int = 16, lr: float = 0.01, seed: int = 0):
    """Train a user model for real: random windows, Adam, clipped gradients."""
    g = torch.Generator().manual_seed(seed)
    index = {c: i for i, c in enumerate(model.vocab)}
    ids = torch.tensor([index[c] for c in text])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - T - 1, (B,), generator=g)
        xy = ids[starts[:, None] + torch.arange(T + 1)]
        logits, _ = model(xy[:, :-1], model.begin_state(B))
        loss = F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def _by_id(report) -> dict:
    return {c.id: c for c in report.checks}


@pytest.fixture(scope="module")
def one_thread():
    """2 shared cores: one thread per process avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, one_thread) -> Path:
    require_shared_corpora()  # skipped without the mirror, failed under CI=true
    path = tmp_path_factory.mktemp("corpus") / "tm30k.txt"
    path.write_text(CORPUS.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict[str, Path]:
    """Real charrnn runs: three healthy ones and one trained on random windows with carried state."""
    root = tmp_path_factory.mktemp("runs")
    specs = {
        "rnn": {"model": "rnn"}, "gru": {"model": "gru"}, "lstm": {"model": "lstm"},
        "random-carry": {"model": "gru", "sampling": "random", "state": "carry"},
    }
    out = {}
    for name, extra in specs.items():
        summary = train({"corpus": str(corpus), "hidden": 48, "max_steps": 200, "eval_every": 100, "out": str(root / name),
                         "seq_len": 32, "batch_size": 16, "sample_every": 0, "seed": 0, "lr": 5e-3, "val_frac": 0.2,
                         "threads": 1, **extra})
        out[name] = Path(summary["run_dir"])
    return out


@pytest.fixture(scope="module")
def d2l(corpus, tmp_path_factory):
    """The d2l model module (written to a file outside charrnn) and the corpus text."""
    mod, path = _d2l_module(tmp_path_factory.mktemp("d2l"))
    return mod, path, corpus.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ maths


def test_unigram_entropy_of_uniform_text_is_ln_k():
    assert unigram_entropy(np.arange(1000) % 5, 7) == pytest.approx(math.log(5))


# --------------------------------------------------------------------------------------------- healthy


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_healthy_checkpoint_has_no_fail(runs, name):
    report = diagnose_checkpoint(runs[name], options=OPTS)
    checks = _by_id(report)
    assert [c.id for c in report.checks] == IDS
    assert report.verdict != "fail", report.summary
    assert checks["loss.recorded_match"].status == "ok"  # the recorded val loss is recomputed exactly
    assert checks["loss.recorded_match"].values["rel_diff"] < 1e-5
    for cid in ("loss.batch_invariance", "loss.baselines", "state.row_independence", "state.call_independence"):
        assert checks[cid].status == "ok", checks[cid].message
    assert checks["loss.baselines"].values["loss"] < checks["loss.baselines"].values["unigram_entropy"]
    d = report.to_dict()
    json.dumps(d, allow_nan=False)  # every number is JSON
    assert {c["status"] for c in d["checks"]} <= {"ok", "warn", "fail", "skip"}


def test_worked_example_uses_the_runs_numbers(runs):
    c = _by_id(diagnose_checkpoint(runs["lstm"], options=OPTS))["loss.worked_example"]
    v = c.values
    assert v["seq_len"] == 32 and v["batch_size"] == 16
    assert v["div_sequences"] == pytest.approx(v["per_char"] * 32)
    assert v["div_dataset_len_chars"] == pytest.approx(v["per_char"] * v["batches"] / v["chars"])


# ---------------------------------------------------------------------------------------------- faults


def test_random_windows_with_carried_state_is_flagged(runs):
    checks = _by_id(diagnose_checkpoint(runs["random-carry"], options=OPTS))
    c = checks["state.reset_vs_carry"]
    assert c.status == "warn"
    assert "random windows with carried state" in c.message
    assert c.values["sampling"] == "random" and c.values["state_policy"] == "carry"
    assert "state.reset_vs_carry" not in [x.id for x in diagnose_checkpoint(runs["gru"], options=OPTS).checks if x.status != "ok"]


def test_exploding_recurrent_matrix_is_flagged(runs, tmp_path):
    """Scale a trained tanh RNN's W_hh to spectral radius 5: its dynamics turn chaotic and dL/dh_t grows
    geometrically with distance."""
    ckpt = load_checkpoint(runs["rnn"])
    W = ckpt["model"]["rnn.weight_hh_l0"]
    ckpt["model"]["rnn.weight_hh_l0"] = W * (5.0 / torch.linalg.eigvals(W.double()).abs().max().item())
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("path", "format", "format_version", "charrnn_version")},
                    tmp_path / "best.pt")
    checks = _by_id(diagnose_checkpoint(tmp_path / "best.pt", options=OPTS))
    assert checks["grad.bptt_norms"].status == "fail", checks["grad.bptt_norms"].message
    assert checks["grad.bptt_norms"].values["per_step_factor"] > 1
    assert checks["grad.spectral_radius"].status == "warn"
    assert checks["grad.spectral_radius"].values["max_spectral_radius"] == pytest.approx(5.0, rel=1e-4)


def test_model_that_learned_only_unigram_frequencies_fails_baselines(d2l, corpus):
    """d2l bug: the output reads H, but the loop assigns the new state to another name, so H stays the
    initial zeros and the logits are b_q alone. Trained for real, b_q learns the character frequencies."""
    mod, _, text = d2l

    class StaleH(mod.D2LRNN):
        def forward(self, X, state):
            H, = state
            outputs = []
            for x in F.one_hot(X.T, self.vocab_size).float():
                H_new = self.step(x, H)
                outputs.append(H @ self.W_hq + self.b_q)  # bug: H, not H_new
            return torch.stack(outputs, dim=1), (H_new,)

    torch.manual_seed(0)
    model = _fit(StaleH(sorted(set(text))), text, steps=150, lr=0.05)
    checks = _by_id(diagnose_model(model, corpus, OPTS))
    assert checks["loss.baselines"].status == "fail", checks["loss.baselines"].message
    assert checks["loss.baselines"].values["loss"] >= checks["loss.baselines"].values["unigram_entropy"]
    assert checks["loss.baselines"].values["loss"] < checks["loss.baselines"].values["uniform"]  # it did learn frequencies
    assert checks["state.memory_horizon"].status == "warn"  # its output never depends on the input


def test_hidden_state_normalised_over_the_batch_leaks_between_rows(d2l, corpus):
    """d2l bug: a 'layer norm' of the hidden state over dim 0, which is the batch, not the features."""
    mod, _, text = d2l

    class BatchNormedH(mod.D2LRNN):
        def step(self, x, H):
            H = torch.tanh(x @ self.W_xh + H @ self.W_hh + self.b_h)
            return (H - H.mean(0)) / (H.std(0, correction=0) + 1e-5)

    torch.manual_seed(0)
    checks = _by_id(diagnose_model(BatchNormedH(sorted(set(text))).eval(), corpus, OPTS))
    assert checks["state.row_independence"].status == "fail"
    assert checks["loss.batch_invariance"].status == "fail"
    assert checks["state.call_independence"].status == "ok"


def test_state_pooled_over_the_batch_leaks_between_rows(d2l, corpus):
    """A (1, H) state 'for any batch size': begin_state has no batch dimension and forward returns the
    batch mean, so the next call gives every row the same mixture of all rows."""
    mod, _, text = d2l

    class PooledState(mod.D2LRNN):
        def begin_state(self, batch_size, device=None):
            return (torch.zeros((1, self.num_hiddens), device=device),)

        def forward(self, X, state):
            logits, (H,) = super().forward(X, state)
            return logits, (H.mean(0, keepdim=True),)

    torch.manual_seed(0)
    checks = _by_id(diagnose_model(PooledState(sorted(set(text))).eval(), corpus, OPTS))
    c = checks["state.row_independence"]
    assert c.status == "fail", c.message
    assert c.values["state_batch_dims"] == [None]


@pytest.mark.parametrize("when", ["always", "none"])
def test_state_kept_between_calls_is_flagged(d2l, corpus, when):
    """self.h: 'always' ignores the state it is given; 'none' uses self.h when called without one."""
    mod, _, text = d2l

    class Stateful(mod.D2LRNN):
        h = None

        def forward(self, X, state):
            if self.h is not None and self.h.shape[0] == X.shape[0] and (when == "always" or state is None):
                state = (self.h,)
            elif state is None:
                state = self.begin_state(X.shape[0])
            logits, (H,) = super().forward(X, state)
            self.h = H.detach()
            return logits, (H,)

    torch.manual_seed(0)
    checks = _by_id(diagnose_model(Stateful(sorted(set(text))).eval(), corpus, OPTS))
    c = checks["state.call_independence"]
    assert c.status == "fail", c.message
    key = "max_diff_fresh_state" if when == "always" else "max_diff_state_none"
    assert c.values[key] > 1e-3


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_d2l_model_through_model_factory(d2l, corpus, tmp_path, monkeypatch):
    mod, path, text = d2l
    torch.manual_seed(0)
    model = _fit(mod.D2LRNN(sorted(set(text))), text, steps=200)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    monkeypatch.setenv("D2L_VOCAB", "".join(sorted(set(text))))
    monkeypatch.setenv("D2L_WEIGHTS", str(tmp_path / "weights.pt"))
    result = CliRunner().invoke(app, ["diagnose", "--model-factory", f"{path}:build", "--text", str(corpus),
                                      "--max-chars", "8000", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (1 if report["verdict"] == "fail" else 0), result.stderr
    checks = {c["id"]: c for c in report["checks"]}
    assert list(checks) == IDS
    for cid in ("loss.recorded_match", "loss.curves", "grad.training_record"):
        assert checks[cid]["status"] == "skip" and checks[cid]["message"]
    for cid in ("state.row_independence", "state.call_independence", "loss.batch_invariance", "loss.baselines"):
        assert checks[cid]["status"] == "ok", checks[cid]["message"]
    assert checks["grad.spectral_radius"]["values"]["matrices"]["W_hh"]["size"] == 32
    assert report["subject"]["kind"] == "factory"


def test_cli_module_colon_function_from_cwd_and_failing_exit_code(d2l, corpus, tmp_path, monkeypatch):
    """module:function resolved from the current directory; a model with a failing check exits 1 after
    the report."""
    (tmp_path / "leaky.py").write_text(D2L_SOURCE + textwrap.dedent('''
        class Leaky(D2LRNN):
            def step(self, x, H):
                H = torch.tanh(x @ self.W_xh + H @ self.W_hh + self.b_h)
                return H - H.mean(0)

        def make():
            import os
            torch.manual_seed(0)
            return Leaky(os.environ["D2L_VOCAB"])
    '''), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("D2L_VOCAB", "".join(sorted(set(d2l[2]))))
    result = CliRunner().invoke(app, ["diagnose", "--model-factory", "leaky:make", "--text", str(corpus), "--max-chars", "4000"])
    assert result.exit_code == 1
    assert "state.row_independence" in result.stderr and "FAIL" in result.stderr
    assert "check(s) failed" in result.stderr


def test_cli_checkpoint_report_and_json(runs):
    result = CliRunner().invoke(app, ["diagnose", str(runs["gru"]), "--max-chars", "6000", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] in ("ok", "warn")
    assert "Hidden-state reset" in result.stderr and "grad.bptt_norms" in result.stderr


@pytest.mark.parametrize("args, needle", [
    (["diagnose"], "give a checkpoint or --model-factory"),
    (["diagnose", "--model-factory", "x:y"], "needs --text"),
    (["diagnose", "--model-factory", "no_such_module_xyz:f", "--text", "README.md"], "cannot import"),
    (["diagnose", "/nonexistent/run"], "not found"),
])
def test_cli_bad_input_exits_2(args, needle):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert needle in result.stderr
