"""Sampling: warm-up once then one step per character, determinism, temperature / top-k / top-p."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.data import Vocab
from charrnn.errors import CharRNNError
from charrnn.models import CharRNN
from charrnn.sample import generate, next_ids, sample_text

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
