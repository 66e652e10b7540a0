"""charrnn.analysis.ngram: Kneser-Ney probabilities equal hand-computed values on a tiny text, every distribution
sums to one, the model's per-character losses are eval's, the advantage classes follow their
definitions, and `charrnn eval --ngram` runs end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.core.config import ModelConfig
from charrnn.training.evaluate import char_nll, evaluate_ids
from charrnn.core.models import CharRNN
from charrnn.analysis.ngram import CLASSES, KneserNey, char_classes

A, B, C = 0, 1, 2  # vocabulary a, b, c; the training text "abaab" never shows c


def test_kneser_ney_by_hand():
    # Worked by hand for "abaab" (V = 3):
    #   raw unigrams a:3 b:2 -> n1 = 0, so D = 0.5;  N = 5, 2 types
    #     P1(a) = 2.5/5 + 0.5*2/5 * 1/3 = 1/2 + 1/15      P1(c) = 1/15
    #   raw bigrams ab:2 ba:1 aa:1 -> n1 = 2, n2 = 1, D = 2/(2+2) = 1/2
    #   continuation unigrams (distinct predecessors): a:{a,b} = 2, b:{a} = 1 -> n1 = 1, n2 = 1, D = 1/3
    #     Pc(a) = (2-1/3)/3 + (1/3)*2/3 * 1/3 = 17/27;  Pc(b) = 8/27;  Pc(c) = 2/27
    #   order 2, context a: c(a.) = 3, 2 types:  P(b|a) = 1.5/3 + 0.5*2/3 * 8/27 = 1/2 + 8/81,  P(c|a) = 2/81
    #   context b: c(b.) = 1, 1 type:  P(a|b) = 0.5/1 + 0.5 * 17/27 = 1/2 + 17/54
    lm = KneserNey(np.array([A, B, A, A, B]), vocab_size=3, order=2)
    nll = lm.char_nll(np.array([B, A, C, B]))  # scores a|b, c|a, b|c (context c never seen: back off)
    want1 = [1 / 2 + 1 / 15, 1 / 15, 1.5 / 5 + 1 / 15]  # P1(a), P1(c), P1(b)
    want2 = [1 / 2 + 17 / 54, 2 / 81, 8 / 27]
    np.testing.assert_allclose(nll[0], -np.log(want1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(nll[1], -np.log(want2), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(-lm.char_nll(np.array([A, B]))[1]), [1 / 2 + 8 / 81], rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_every_distribution_sums_to_one(order):
    rng = np.random.default_rng(order)
    train = rng.integers(0, 5, 400) % np.array([2, 5, 3, 5])[rng.integers(0, 4, 400)]  # uneven, some gaps
    lm = KneserNey(train, vocab_size=6, order=order)  # id 5 never occurs
    for context in ([1], [0, 2, 1], [4, 4, 4], [5, 5, 0], [3, 1, 2, 0]):
        probs = [lm.prob(np.array(context + [w]), order)[-1] for w in range(6)]
        assert all(p > 0 for p in probs)
        assert abs(sum(probs) - 1.0) < 1e-12, (context, sum(probs))


def test_higher_order_learns_a_deterministic_text():
    train = np.array([0, 1, 2, 3] * 200)
    nll = KneserNey(train, vocab_size=4, order=3).char_nll(np.array([0, 1, 2, 3] * 20)).mean(axis=1)
    assert abs(nll[0] - math.log(4)) < 0.01  # the unigram knows only the (uniform) frequencies
    assert nll[1] < 0.02 and nll[2] < 0.02  # the next character follows from the last one


def test_char_nll_is_evals_loss():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="gru", vocab_size=9, hidden=8, layers=2)).eval()
    ids = np.random.default_rng(1).integers(0, 9, 5000)
    per_char = char_nll(model, ids, "cpu")
    report = evaluate_ids(model, ids, "cpu")
    assert per_char.shape == (4999,)
    assert abs(per_char.mean() - report.loss) < 1e-6


def test_char_nll_is_each_streams_own_forward_in_text_order():
    """Independent of evaluate's chunk walk: each of eval's streams run in one call from a zero state."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="lstm", vocab_size=9, hidden=8, layers=1)).eval()
    ids = np.random.default_rng(2).integers(0, 9, 4 * 2048 + 3)  # 4 streams, the last one ragged
    n = len(ids) - 1
    rows, cols = 4, math.ceil(n / 4)
    want = np.zeros(n)
    with torch.no_grad():
        for r in range(rows):
            seg = torch.as_tensor(ids[r * cols : min((r + 1) * cols, n) + 1])
            logits, _ = model(seg[None, :-1], model.begin_state(1, "cpu"))  # (1, t, V)
            want[r * cols : r * cols + len(seg) - 1] = F.cross_entropy(logits[0].double(), seg[1:], reduction="none").numpy()
    got = char_nll(model, ids, "cpu", chunk=100)
    assert got.shape == (n,) and np.abs(got - want).max() < 1e-5


def test_char_classes():
    text = 'ab(c)d(efgh) "xy z"\nq'
    cls = [CLASSES[i] for i in char_classes(text, order=3)]
    assert cls[4] == "closes within reach"  # ')' 2 characters after its '('
    assert cls[11] == "closes beyond reach"  # ')' 5 characters after its '('
    assert cls[18] == "closes beyond reach"  # the quote closing 5 characters after it opened
    assert cls[17] == "starts a word" and cls[20] == "starts a line"
    assert cls[1] == "other" and cls[13] == "starts a word"  # the opening quote follows a space


def test_cli_eval_ngram(tiny_run):
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    run = tiny_run.run
    res = CliRunner().invoke(app, ["eval", str(run), "--ngram", "3", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert [g["order"] for g in r["ngrams"]] == [1, 2, 3]
    plain = json.loads(CliRunner().invoke(app, ["eval", str(run), "--json", "--device", "cpu"]).stdout)
    assert abs(r["model"]["loss"] - plain["loss"]) < 1e-5 and r["chars"] == plain["chars"]
    assert r["ngrams"][2]["loss"] < r["ngrams"][0]["loss"]  # pseudo-English: context helps a counter too
    assert sum(b["chars"] for b in r["breakdown"]) == r["chars"]
    parts = sum(b["contribution"] or 0.0 for b in r["breakdown"])
    assert abs(parts - (r["ngrams"][2]["loss"] - r["model"]["loss"])) < 1e-9
    for b in r["breakdown"]:
        if b["chars"]:
            assert abs(b["advantage"] - (b["ngram_loss"] - b["model_loss"])) < 1e-9
            assert abs(b["contribution"] - b["advantage"] * b["chars"] / r["chars"]) < 1e-9
    res = CliRunner().invoke(app, ["eval", str(run), "--ngram", "3"])
    assert res.exit_code == 0 and "3-gram" in res.stdout and "starts a word" in res.stdout
    res = CliRunner().invoke(app, ["eval", str(run), "--ngram", "11"])
    assert res.exit_code == 2 and "--ngram must be between 1 and 10" in res.stderr


class _Counter(torch.nn.Module):
    """A hand-made model of the text ('a' * 6 + 'b') repeated: with `memory` it counts the a's since the
    last b in its state (and knows what comes next); without, it sees only the current character."""

    def __init__(self, memory: bool):
        super().__init__()
        self.vocab, self.vocab_size, self.memory = ["a", "b"], 2, memory

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, device=device)

    def forward(self, x, state):
        logits = []
        for t in range(x.shape[1]):
            state = torch.where(x[:, t] == 1, torch.zeros_like(state), state + 1)  # a's since the last b
            if self.memory:
                p_b = torch.where(state == 6, 0.99, 0.01)
            else:
                p_b = torch.where(x[:, t] == 1, 0.01, 1 / 6)  # after a 'b' an 'a'; after an 'a', b in 1 of 6
            logits.append(torch.stack([torch.log(1 - p_b), torch.log(p_b)], dim=-1))
        return torch.stack(logits, dim=1), state


@pytest.mark.parametrize("memory,status", [(True, "ok"), (False, "warn")])
def test_diagnose_ngram_yardstick(memory, status):
    from charrnn.diagnose import REGISTRY, DiagnoseOptions, Subject
    from charrnn.diagnose.checks_loss import check_ngram_yardstick
    from charrnn.diagnose.context import Context

    ids = torch.tensor(([0] * 6 + [1]) * 400)
    ctx = Context(Subject(_Counter(memory), ids, 2, {}), DiagnoseOptions(max_chars=2000))
    check = check_ngram_yardstick(ctx)
    assert "loss.ngram_yardstick" in [r.id for r in REGISTRY]
    assert check.status == status, check.message
    v = check.values
    # the 3-gram sees at most "aa": after it, b comes 1 time in 5 -> about (4/5 ln 5/4 + 1/5 ln 5) * 5/7 nats/char
    assert abs(v["ngram_loss"] - (0.8 * math.log(1.25) + 0.2 * math.log(5)) * 5 / 7) < 0.02
    assert "first half of the measured text" in v["fitted_on"]
    if not memory:
        assert "state is reset every window" in check.advice
