"""Sampling: warm-up once then one step per character, determinism, temperature / top-k / top-p."""

import pytest
import torch

from charrnn.core.config import ModelConfig
from charrnn.core.vocab import Vocab
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.generate.sample import generate, next_ids, sample_text

VOCAB = Vocab(tuple(sorted(set("abcdefgh \n:ROMEO"))))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(model="lstm", vocab_size=len(VOCAB), hidden=24, layers=2)).eval()


def test_same_seed_same_text_and_prefix_first(model):
    a = sample_text(model, VOCAB, "ROMEO:", 50, generator=torch.Generator().manual_seed(1))
    b = sample_text(model, VOCAB, "ROMEO:", 50, generator=torch.Generator().manual_seed(1))
    c = sample_text(model, VOCAB, "ROMEO:", 50, generator=torch.Generator().manual_seed(2))
    assert a == b and a != c
    assert a.startswith("ROMEO:") and len(a) == 56


class CountingModel(torch.nn.Module):
    """Wraps a model and records the length of every input it is fed."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.lengths = inner, []

    def begin_state(self, b, device=None):
        return self.inner.begin_state(b, device)

    def forward(self, x, state):
        self.lengths.append(x.shape[1])
        return self.inner(x, state)


def test_prefix_is_fed_once_then_one_step_per_character(model):
    counting = CountingModel(model)
    prefix = "abc deg hh"
    steps = list(generate(counting, VOCAB, prefix, 30, generator=torch.Generator().manual_seed(0)))
    assert len(steps) == 30
    # one call for prefix[:-1], then exactly one single-character call per generated character
    assert counting.lengths == [len(prefix) - 1] + [1] * 30


def test_warm_up_equals_feeding_the_prefix_step_by_step(model):
    idx = VOCAB.index()
    prefix = "abcabc ROMEO"
    ids = torch.tensor([[idx[c] for c in prefix]])
    _, s_once = model(ids, model.begin_state(1))
    s_steps = model.begin_state(1)
    for t in range(ids.shape[1]):
        _, s_steps = model(ids[:, t : t + 1], s_steps)
    for a, b in zip(s_once, s_steps):
        torch.testing.assert_close(a, b)


def test_greedy_is_deterministic_and_top_k_1_is_greedy(model):
    g1 = sample_text(model, VOCAB, "ab", 40, generator=None, temperature=0)
    g2 = sample_text(model, VOCAB, "ab", 40, generator=torch.Generator().manual_seed(9), temperature=0)
    k1 = "ab" + "".join(s[0] for s in generate(model, VOCAB, "ab", 40, top_k=1, generator=torch.Generator().manual_seed(5)))
    assert g1 == g2 == k1


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(next_ids(logits, 1.0, 2, 1.0, g).tolist()) == {0, 1}
    assert set(next_ids(logits, 1.0, 0, 0.75, g).tolist()) == {0, 1}  # 0.5 < 0.75 <= 0.8
    assert set(next_ids(logits, 1.0, 0, 0.5, g).tolist()) == {0}
    assert set(next_ids(logits, 1.0, 0, 1.0, g).tolist()) == {0, 1, 2, 3}


def test_batch_of_samples_are_independent_streams(model):
    g = torch.Generator().manual_seed(3)
    steps = list(generate(model, VOCAB, "ROMEO:", 40, num_samples=4, generator=g))
    texts = ["".join(s[i] for s in steps) for i in range(4)]
    assert len(set(texts)) > 1  # different random draws per row


def test_unknown_prefix_characters_are_listed_before_anything_runs(model):
    with pytest.raises(CharRNNError, match=r"2 character\(s\) the model never saw: 'Z', 'x'"):
        generate(model, VOCAB, "abZcx", 10)


def test_empty_prefix_starts_from_a_newline(model):
    counting = CountingModel(model)
    list(generate(counting, VOCAB, "", 5, generator=torch.Generator().manual_seed(0)))
    assert counting.lengths == [1] * 5


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("impl,embed", [("torch", 0), ("torch", 6), ("scratch", 0)])
def test_one_step_path_equals_a_length_one_forward(kind, impl, embed):
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(model=kind, impl=impl, vocab_size=9, hidden=12, layers=2, embed=embed, dropout=0.3)).eval()
    x = torch.randint(0, 9, (4, 7))
    _, state = m(x, m.begin_state(4))  # a non-zero state to step from
    ids = torch.randint(0, 9, (4,))
    want_logits, want_state = m(ids[:, None], state)
    got_logits, got_state = m.step(ids, state)
    torch.testing.assert_close(got_logits, want_logits[:, -1])
    for a, b in zip(got_state if kind == "lstm" else (got_state,), want_state if kind == "lstm" else (want_state,)):
        torch.testing.assert_close(a, b)


class FixedLogits(torch.nn.Module):
    """A model whose prediction is always `logits`, whatever the input and state."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def begin_state(self, batch_size, device=None):
        return torch.zeros(1, batch_size, 1)

    def forward(self, x, state):
        return self.logits.expand(*x.shape, -1), state  # (B, T, V)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_draw_frequencies_match_softmax_of_logits_over_temperature(temperature):
    vocab = Vocab(tuple("abcde"))
    logits = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.5])
    n = 20_000
    g = torch.Generator().manual_seed(0)
    first = next(generate(FixedLogits(logits), vocab, "a", 1, temperature, num_samples=n, generator=g))
    freq = torch.tensor([first.count(c) / n for c in vocab.chars], dtype=torch.float64)
    p = torch.softmax(logits.double() / temperature, 0)
    # 5 standard errors of a frequency from n draws, per character (seeded: the outcome is fixed)
    tol = 5 * torch.sqrt(p * (1 - p) / n)
    assert ((freq - p).abs() <= tol).all(), f"T={temperature}: frequencies {freq.tolist()} vs softmax(logits/T) {p.tolist()}"


def test_different_seeds_give_different_text(model):
    texts = {sample_text(model, VOCAB, "ab", 40, generator=torch.Generator().manual_seed(s)) for s in range(3)}
    assert len(texts) == 3, "the generator's seed does not reach the draws"


def test_greedy_continues_the_state_the_prefix_left(model):
    """Each greedy character is the argmax of the model's prediction after the prefix and what followed,
    computed here by one forward over the whole text from a zero state."""
    with torch.no_grad():
        for w in model.parameters():  # larger weights: the prediction depends strongly on the context
            w.mul_(4)
    index = VOCAB.index()
    differs_from_last_char_only = 0
    for prefix in ["abcab", "ROMEO:", "hadge fe", "\nOM", "deed aa"]:
        out = "".join(c[0] for c in generate(model, VOCAB, prefix, 6, temperature=0))
        text = prefix
        for ch in out:
            ids = torch.tensor([[index[c] for c in text]])
            with torch.no_grad():
                logits, _ = model(ids, model.begin_state(1))
                alone, _ = model(ids[:, -1:], model.begin_state(1))
            assert ch == VOCAB.chars[int(logits[0, -1].argmax())], f"after {text!r} greedy chose {ch!r}"
            differs_from_last_char_only += int(logits[0, -1].argmax() != alone[0, -1].argmax())
            text += ch
    assert differs_from_last_char_only > 0  # the test can tell a dropped prefix state apart
