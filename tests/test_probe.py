"""charrnn.analysis.probe: the built-in signals follow their definitions, Pearson r matches an independent
computation, constants are reported rather than divided by, and the recorded activations are the
model's own state carried over the whole text."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from charrnn.analysis.activations import gather, record
from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN
from charrnn.analysis.signals import builtin_signals, pearson, rank_units


def test_builtin_signals_by_hand():
    text = 'a(b[c]"d e"\n)f g'
    s = builtin_signals(text)
    #              a  (  b  [  c  ]  "  d  _  e  "  \n )  f  _  g
    depth = [0, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    quote = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    line = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4]
    word = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 0, 1, 2, 0, 1]
    for name, want in (("depth", depth), ("quote", quote), ("line-pos", line), ("word-pos", word)):
        assert s[name].dtype == np.float64
        assert s[name].tolist() == want, name


def test_unmatched_close_does_not_go_negative():
    assert builtin_signals("))(")["depth"].tolist() == [0, 0, 1]


def _naive_r(x, y):
    """Pearson r by its textbook formula, in Python floats."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def test_pearson_matches_textbook_and_reports_constants():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=200)
    acts = np.stack([signal * 3 + 1, -signal, rng.normal(size=200), np.full(200, 0.7), signal + rng.normal(size=200)], 1)
    r = pearson(acts, signal)
    assert math.isnan(r[3])  # a constant unit: no correlation, no division by zero
    for j in (0, 1, 2, 4):
        assert abs(r[j] - _naive_r(acts[:, j].tolist(), signal.tolist())) < 1e-12
    ranking = rank_units(acts, signal)
    assert ranking.order[:2].tolist() in ([0, 1], [1, 0])
    assert ranking.order[-1] == 3 and ranking.constant_units.tolist() == [3]
    assert not ranking.signal_constant
    flat = rank_units(acts, np.ones(200))
    assert flat.signal_constant and np.isnan(flat.r).all()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_gather_is_the_state_carried_over_the_text(kind, impl):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model=kind, vocab_size=7, hidden=5, layers=2, impl=impl)).eval()
    ids = torch.randint(0, 7, (53,), generator=torch.Generator().manual_seed(1))
    acts = gather(model, ids.numpy(), chunk=10, gates=True)  # chunked: the state must carry across
    with torch.no_grad():
        whole = record(model, ids.unsqueeze(0))  # one pass over the whole text
    per_layer = 2 if kind == "lstm" else 1
    assert acts.matrix.shape == (53, 2 * 5 * per_layer)
    assert acts.labels[0] == (0, "h", 0) and acts.labels[-1] == (1, "c" if kind == "lstm" else "h", 4)
    for j, (layer, part, index) in enumerate(acts.labels):
        want = whole.layers[layer][part][0, :, index].double().numpy()
        np.testing.assert_allclose(acts.matrix[:, j], want, rtol=0, atol=1e-6)
    sig = {"lstm": {"input", "forget", "output"}, "gru": {"reset", "update"}, "rnn": set()}[kind]
    assert all(set(g) == sig for g in acts.gates)
    for g in acts.gates[0].values():
        assert g.shape == (53, 5)


# ---------------------------------------------------------------------------------- linear probe, CLI

from charrnn.analysis.probe import linear_probe  # noqa: E402


def test_linear_probe_finds_a_linear_signal_and_not_a_random_one():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(3000, 20))
    hidden = acts @ rng.normal(size=20)
    fit = linear_probe(acts, hidden + 0.1 * rng.normal(size=3000))
    assert fit.r2 > 0.99 and fit.fit_chars == 2400 and fit.test_chars == 600
    assert fit.penalty in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    noise = linear_probe(acts, rng.normal(size=3000))
    assert noise.r2 < 0.05  # held out: nothing to find, and a fit to noise does not carry over
    assert linear_probe(acts, np.r_[rng.normal(size=2400), np.zeros(600)]).r2 is None  # constant held-out part


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs: a 2-layer LSTM (torch engine) and a 3-layer GRU (scratch engine)."""
    from charrnn.training.train import train
    from tests.helpers import make_text, tiny_options

    d = tmp_path_factory.mktemp("probe")
    lines = 'He said "the (time) machine" and\n"[moved]" through {space}.\n'
    text = d / "probe.txt"
    text.write_text(lines * 20)
    corpus = d / "corpus.txt"
    corpus.write_text(make_text(3000) + lines * 20)  # every character of the probe text is in the vocabulary
    for name, kind, layers, impl in (("lstm", "lstm", 2, "torch"), ("gru", "gru", 3, "scratch"), ("rnn", "rnn", 1, "torch")):
        train(tiny_options(corpus, d / name, model=kind, layers=layers, impl=impl, hidden=8, max_steps=5), on_event=lambda e: None)
    return d, text


def _cli(*args):
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_probe_json_matches_an_independent_computation(runs):
    d, text = runs
    res = _cli("probe", d / "lstm", "--text", text, "--signal", "depth", "--signal", "quote", "--signal-regex", "paren=\\(.*?\\)",
               "--gates", "--json", "--top", "40")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["units"] == 2 * 2 * 8 and [s["name"] for s in r["signals"]] == ["depth", "quote", "paren"]
    chars = text.read_text()
    from charrnn.core.checkpoint import load_model
    from charrnn.core.vocab import Vocab

    model, ckpt = load_model(d / "lstm")
    ids = torch.as_tensor(Vocab(tuple(ckpt["vocab"])).encode(chars).astype(np.int64))
    with torch.no_grad():
        trace = record(model.double(), ids.unsqueeze(0))  # one pass, float64, no chunks
    paren = np.array([float(i in {j for a in range(len(chars)) if chars[a] == "(" for j in range(a, chars.index(")", a) + 1)})
                      for i in range(len(chars))])
    wants = {"depth": builtin_signals(chars)["depth"], "quote": builtin_signals(chars)["quote"], "paren": paren}
    for sig in r["signals"]:
        assert len(sig["top"]) == 32
        for u in sig["top"]:
            unit = trace.layers[u["layer"]][u["part"]][0, :, u["index"]].numpy()
            assert abs(u["r"] - np.corrcoef(unit, wants[sig["name"]])[0, 1]) < 1e-6
        assert [abs(u["r"]) for u in sig["top"]] == sorted((abs(u["r"]) for u in sig["top"]), reverse=True)
    for g in r["gates"]:  # the saturation fractions, from the recorded gates
        gate = trace.layers[g["layer"]]["gates"][g["gate"]][0].numpy()
        assert abs(g["left"] - (gate < 0.1).mean()) < 1e-6 and abs(g["right"] - (gate > 0.9).mean()) < 1e-6
    assert {g["gate"] for g in r["gates"]} == {"input", "forget", "output"}


def test_cli_probe_table_and_user_errors(runs, tmp_path):
    d, text = runs
    res = _cli("probe", d / "gru", "--text", text, "--signal", "line-pos", "--signal", "word-pos", "--gates")
    assert res.exit_code == 0, res.output
    assert "line-pos" in res.stdout and "held-out R^2" in res.stdout and "update" in res.stdout
    assert "3 layer(s)" in res.stdout
    flat = tmp_path / "flat.txt"
    flat.write_text("the machine moved through time and space\n" * 5)
    res = _cli("probe", d / "rnn", "--text", flat, "--signal", "quote", "--signal", "depth")
    assert res.exit_code == 0 and "quote: constant on this text" in res.stdout and "depth: constant" in res.stdout
    short = tmp_path / "sig.txt"
    short.write_text("1\n2\n3\n")
    for args, message in (
        (("--signal-file", f"n={short}"), "has 3 numbers but the text has"),
        (("--signal", "nesting"), "is not a built-in signal"),
        (("--signal-regex", "x=("), "not a valid regular expression"),
        (("--signal-regex", "noequals"), "takes NAME=PATTERN"),
        (("--gates",), "no sigmoid gates"),
        ((), "name something to probe"),
    ):
        res = _cli("probe", d / "rnn", "--text", flat, *args)
        assert res.exit_code == 2 and message in res.stderr, (args, res.output)
        assert "Traceback" not in res.output


def test_cli_probe_signal_file_and_plot(runs, tmp_path):
    d, text = runs
    n = len(text.read_text())
    f = tmp_path / "pos.txt"
    f.write_text("\n".join(str(i % 7) for i in range(n)) + "\n")
    res = _cli("probe", d / "lstm", "--text", text, "--signal-file", f"mod7={f}", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["signals"][0]["name"] == "mod7"
    pytest.importorskip("matplotlib")
    png = tmp_path / "gates.png"
    res = _cli("probe", d / "gru", "--text", text, "--gates", "--plot", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


FACTORY = '''
import torch
from charrnn.analysis.activations import record
from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN


class Mine(torch.nn.Module):
    """A user's model: forward, begin_state, vocab, and record(x, state) -> (layers, state)."""

    def __init__(self, expose):
        super().__init__()
        torch.manual_seed(0)
        self.inner = CharRNN(ModelConfig(model="lstm", vocab_size=len(VOCAB), hidden=6))
        self.vocab = VOCAB
        if expose:
            self.record = lambda x, state: (lambda t: ([dict(l) for l in t.layers], t.state))(record(self.inner, x, state))

    def forward(self, x, state):
        return self.inner(x, state)

    def begin_state(self, batch_size, device=None):
        return self.inner.begin_state(batch_size, device)


VOCAB = sorted(set(' \\n"()[]{}.HSTadeghimnorstuvcp'))


def build():
    return Mine(True)


def hidden():
    return Mine(False)


def broken():
    m = Mine(False)
    m.record = lambda x, state: ([{"hidden": x}], state)
    return m
'''


def test_cli_probe_model_factory(runs, tmp_path):
    _, text = runs
    src = tmp_path / "mine.py"
    src.write_text(FACTORY)
    res = _cli("probe", "--model-factory", f"{src}:build", "--text", text, "--signal", "depth", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["units"] == 12  # h and c of one 6-unit layer
    res = _cli("probe", "--model-factory", f"{src}:hidden", "--text", text, "--signal", "depth")
    assert res.exit_code == 2 and "does not expose its states" in res.stderr
    res = _cli("probe", "--model-factory", f"{src}:broken", "--text", text, "--signal", "depth")
    assert res.exit_code == 2 and "must return (layers, new_state)" in res.stderr


def test_bracket_depth_is_tracked_by_a_unit_and_held_linearly():
    """Issue 15's acceptance, small: on nested brackets an LSTM grows a depth unit (|r| >= 0.9) and a
    GRU's state holds depth linearly (held-out R^2 >= 0.9); 300 steps of 16 units each."""
    import tempfile
    from pathlib import Path

    from charrnn.analysis.probe import ProbeOptions, probe
    from charrnn.training.train import train
    from tests.helpers import make_brackets, tiny_options

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "b.txt").write_text(make_brackets(40000, seed=1, max_depth=3))
        (d / "p.txt").write_text(make_brackets(4000, seed=2, max_depth=3))
        got = {}
        for kind in ("lstm", "gru"):
            opts = tiny_options(d / "b.txt", d / kind, model=kind, hidden=16, max_steps=300, seq_len=32, batch_size=16,
                                lr=1e-2, eval_every=1000)
            train(opts, on_event=lambda e: None)
            got[kind] = probe(d / kind, d / "p.txt", ProbeOptions(signals=("depth",)))["signals"][0]
    assert abs(got["lstm"]["top"][0]["r"]) >= 0.9, got["lstm"]["top"][0]
    assert got["gru"]["probe"]["r2"] >= 0.9, got["gru"]["probe"]
