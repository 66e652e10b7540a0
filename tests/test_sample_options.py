"""`charrnn sample` options: stop strings, beam search, log-probabilities, --prefix-file, escapes.

Stop strings are checked on a scripted model that generates exactly the text a test chooses, and on a
random model against the same seeded run without stop strings, cut where str.find says. Beam search
is checked against greedy decoding, against exhaustive search on a tiny vocabulary, and with
log-probabilities recomputed by one teacher-forced forward pass.
"""

import itertools
import json
import math

import pytest
import torch

from charrnn.generate.beam import beam_search
from charrnn.core.config import ModelConfig
from charrnn.core.vocab import Vocab
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.generate.sample import Finished, StopWatch, sample, stream, unescape

from test_cli import error_line, run

VOCAB = Vocab(tuple(sorted(set("abcdefgh \n:ROMEO"))))


class ScriptedModel(torch.nn.Module):
    """Predicts `text` character by character, whatever it is fed: after its i-th input (counting
    from the first prefix character) the most likely next character is text[i + 1]. At temperature 0
    it generates text[len(prefix):] after `prefix`, then "a" forever, so a test decides exactly what gets
    generated."""

    def __init__(self, text: str, vocab: Vocab = VOCAB):
        super().__init__()
        self.vocab_size = len(vocab)
        index = vocab.index()
        self.ids = torch.tensor([index[c] for c in text[1:]] + [index["a"]] * 1000)
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # a device for sample.prime

    def begin_state(self, b, device=None):
        return torch.zeros(1, b, 1, dtype=torch.long)  # (1, B, 1): inputs consumed so far

    def forward(self, x, state):
        pos = state[0, :, :1] + torch.arange(x.shape[1])  # (B, T)
        logits = torch.nn.functional.one_hot(self.ids[pos], self.vocab_size).float() * 10.0  # (B, T, V)
        return logits, state + x.shape[1]


def shown_and_text(model, prefix, stop, include=False):
    """Everything `stream` showed, step by step, and its final Sample."""
    events = list(stream(model, VOCAB, prefix, 40, temperature=0, stop=stop, include_stop=include))
    assert isinstance(events[-1], Finished)
    return "".join(e[0] for e in events[:-1]), events[-1].samples[0]


def test_a_stop_string_inside_the_prefix_does_not_end_generation():
    model = ScriptedModel("a\n\nb" + "cdefgh abc")
    shown, s = shown_and_text(model, "a\n\nb", ["\n\n"])
    assert s.text == shown == "cdefgh abc" + "a" * 30 and s.stop is None


@pytest.mark.parametrize("include", [False, True])
def test_a_stop_string_across_the_prefix_boundary_ends_it(include):
    model = ScriptedModel("ROMEO:\n" + "\nhead")
    shown, s = shown_and_text(model, "ROMEO:\n", ["\n\n"], include)
    assert s.stop == "\n\n" and s.text == shown == ("\n" if include else "")
    # a stop string that begins in the prefix: its generated part is never shown, not even for a moment
    model = ScriptedModel("abcd" + "efabc")
    shown, s = shown_and_text(model, "abcd", ["def"])
    assert shown == s.text == "" and s.stop == "def"


def test_false_starts_are_held_back_then_shown_and_the_first_stop_wins():
    model = ScriptedModel(":" + "ab ab ab\nab\n\nc\n\nd")
    for include, want in [(False, "ab ab ab\nab"), (True, "ab ab ab\nab\n\n")]:
        shown, s = shown_and_text(model, ":", ["\n\n", "b\nab\n\nc"], include)
        assert s.text == shown == want and s.stop == "\n\n"
    watch = StopWatch(("abc",), include=False)
    assert [watch.push(c) for c in "xabab"] == ["x", "", "", "ab", ""] and watch.flush() == "ab"


def first_stop_end(full: str, start: int, stops) -> int | None:
    """Where the first stop string ending after `start` ends in `full` (an independent search)."""
    ends = [full.find(s, max(0, start - len(s) + 1)) + len(s) for s in stops if full.find(s, max(0, start - len(s) + 1)) >= 0]
    return min(ends) if ends else None


@pytest.fixture
def lstm():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(model="lstm", vocab_size=len(VOCAB), hidden=24, layers=2)).eval()


@pytest.mark.parametrize("include", [False, True])
def test_each_row_stops_on_its_own_where_the_unstopped_run_first_contains_a_stop(lstm, include):
    prefix, stops, n = "ROMEO: a", ["a", "E\n"], 8
    free = sample(lstm, VOCAB, prefix, 60, num_samples=n, generator=torch.Generator().manual_seed(4)).samples
    got = sample(lstm, VOCAB, prefix, 60, num_samples=n, stop=stops, include_stop=include, score=True,
                 generator=torch.Generator().manual_seed(4)).samples
    lengths = set()
    for f, g in zip(free, got):
        full = prefix + f.text
        end = first_stop_end(full, len(prefix), stops)
        if end is None:
            assert g.text == f.text and g.stop is None and g.scored == 60
            continue
        stop = next(s for s in sorted(stops, key=len, reverse=True) if full[:end].endswith(s))
        cut = end if include else max(len(prefix), end - len(stop))
        assert g.text == full[len(prefix) : cut] and g.stop == stop and g.scored == end - len(prefix)
        lengths.add(end)
    assert len(lengths) > 2  # the rows really stopped at different places


def teacher_forced_logprob(model, prefix: str, text: str) -> float:
    """ln p(text | prefix) from one forward pass over prefix + text, in float64."""
    m = CharRNN(model.config).double().eval()
    m.load_state_dict(model.state_dict())
    idx = VOCAB.index()
    ids = torch.tensor([[idx[c] for c in prefix + text]])
    with torch.no_grad():
        logp = m(ids[:, :-1], m.begin_state(1))[0].log_softmax(-1)[0]  # (P + T - 1, V)
    rows = torch.arange(len(prefix) - 1, len(prefix) + len(text) - 1)
    return logp[rows, ids[0, len(prefix) :]].sum().item()


def test_reported_log_probability_is_the_models(lstm):
    s = sample(lstm, VOCAB, "ab", 50, temperature=0.7, score=True, generator=torch.Generator().manual_seed(1)).samples[0]
    assert s.scored == 50
    assert s.logprob == pytest.approx(teacher_forced_logprob(lstm, "ab", s.text), abs=1e-4)


@pytest.mark.parametrize("stop", [(), ("b",)])
def test_beam_of_one_is_greedy(lstm, stop):
    for prefix in ("ROMEO:", "ab", ""):
        greedy = sample(lstm, VOCAB, prefix, 40, temperature=0, stop=stop, score=True).samples[0]
        beam = beam_search(lstm, VOCAB, prefix, 40, width=1, stop=stop).samples[0]
        assert beam.text == greedy.text and beam.stop == greedy.stop
        assert beam.logprob == pytest.approx(greedy.logprob, abs=1e-4)


@pytest.mark.parametrize("kind,seed", [("lstm", 2), ("gru", 3)])  # seeds where a beam beats greedy
def test_beam_is_deterministic_and_scores_at_least_as_well_as_greedy(kind, seed):
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(model=kind, vocab_size=len(VOCAB), hidden=24, layers=1)).eval()
    greedy = sample(model, VOCAB, "ROMEO:", 30, temperature=0).samples[0].text
    g = teacher_forced_logprob(model, "ROMEO:", greedy) / 30
    better = 0
    for width in (2, 3, 5, 8):
        a = beam_search(model, VOCAB, "ROMEO:", 30, width=width).samples[0]
        b = beam_search(model, VOCAB, "ROMEO:", 30, width=width).samples[0]
        assert a == b and len(a.text) == 30
        lp = teacher_forced_logprob(model, "ROMEO:", a.text)
        assert a.logprob == pytest.approx(lp, abs=1e-4)
        assert lp / 30 >= g - 1e-9
        better += lp / 30 > g + 1e-6
    assert better  # the beam finds something greedy misses, or this test proves little


def test_a_wide_beam_is_exhaustive_search():
    vocab = Vocab(tuple("abcd"))
    torch.manual_seed(3)
    model = CharRNN(ModelConfig(model="gru", vocab_size=4, hidden=8, layers=1)).eval()
    old = VOCAB
    globals()["VOCAB"] = vocab  # teacher_forced_logprob scores with this vocabulary
    try:
        scores = {"".join(t): teacher_forced_logprob(model, "ab", "".join(t)) for t in itertools.product("abcd", repeat=3)}
    finally:
        globals()["VOCAB"] = old
    best = max(scores, key=scores.get)
    found = beam_search(model, vocab, "ab", 3, width=16).samples[0]  # 16 = 4^2: nothing is ever pruned
    assert found.text == best and found.logprob == pytest.approx(scores[best], abs=1e-5)


def test_beam_with_a_stop_string_ends_there_and_normalises_by_length():
    # the script's continuation is the only likely one: the beam follows it and stops at the stop string
    model = ScriptedModel("ROMEO:" + "abc\n\ndef")
    s = beam_search(model, VOCAB, "ROMEO:", 40, width=3, stop=["\n\n"]).samples[0]
    assert s.text == "abc" and s.stop == "\n\n" and s.scored == 5
    s = beam_search(model, VOCAB, "ROMEO:", 40, width=3, stop=["\n\n"], include_stop=True).samples[0]
    assert s.text == "abc\n\n"
    assert s.logprob_per_char == pytest.approx(s.logprob / 5)


class BigramModel(torch.nn.Module):
    """p(next | previous character) from a table: the log-probability of any text is known exactly."""

    def __init__(self, vocab: Vocab, table: dict[str, dict[str, float]]):
        super().__init__()
        self.vocab_size, index = len(vocab), vocab.index()
        probs = torch.full((len(vocab), len(vocab)), 1e-6)
        for prev, nxt in table.items():
            for c, p in nxt.items():
                probs[index[prev], index[c]] = p
        self.register_buffer("logp", (probs / probs.sum(1, keepdim=True)).log())
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def begin_state(self, b, device=None):
        return torch.zeros(1, b, 1)

    def forward(self, x, state):
        return self.logp[x], state  # (B, T, V)


def test_beam_compares_finished_texts_per_character_not_in_total():
    # after "x": "." (the stop string) has p 0.4, "a" 0.35; after "a", "a" again has p 0.99. The one-character
    # text "." is likelier in total (-0.92 against -1.14 for ten a's) but far less likely per character.
    vocab = Vocab(tuple(".abx"))
    model = BigramModel(vocab, {"x": {".": 0.4, "a": 0.35, "b": 0.25}, "a": {"a": 0.99, ".": 0.01}})
    s = beam_search(model, vocab, "x", 10, width=2, stop=["."]).samples[0]
    assert s.text == "a" * 10 and s.stop is None
    assert s.logprob == pytest.approx(math.log(0.35) + 9 * math.log(0.99 / (0.99 + 0.01 + 2e-6)), abs=1e-4)
    greedy = sample(model, vocab, "x", 10, temperature=0, stop=["."], score=True).samples[0]
    assert greedy.text == "" and greedy.stop == "." and greedy.logprob_per_char < s.logprob_per_char


class CountingModel(torch.nn.Module):
    """Records the shape of every input it is fed."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.vocab_size, self.shapes = inner, inner.vocab_size, []

    def begin_state(self, b, device=None):
        return self.inner.begin_state(b, device)

    def forward(self, x, state):
        self.shapes.append(tuple(x.shape))
        return self.inner(x, state)


def test_stop_strings_and_beams_cost_one_step_per_character(lstm):
    counting = CountingModel(lstm)
    sample(counting, VOCAB, "ROMEO: ab", 30, num_samples=3, stop=["hhh"], score=True,
           generator=torch.Generator().manual_seed(0))
    assert counting.shapes == [(3, 8)] + [(3, 1)] * 30  # the prefix once, then one step per character
    counting.shapes.clear()
    beam_search(counting, VOCAB, "ROMEO: ab", 30, width=4)
    # the beam: prefix once, 30 steps of at most 4 rows; then greedy competes with its own 30 steps
    beam, greedy = counting.shapes[:31], counting.shapes[31:]
    assert beam[0] == (1, 8) and all(s[1] == 1 and s[0] <= 4 for s in beam[1:])
    assert greedy == [(1, 8)] + [(1, 1)] * 30


def test_unescape_and_bad_stop_strings():
    assert unescape(r"\n\n") == "\n\n" and unescape(r"a\tb\\n") == "a\tb\\n" and unescape(r"\x41\u00e9") == "Aé"
    for bad in (r"\q", "end\\"):
        with pytest.raises(CharRNNError, match="unknown escape"):
            unescape(bad)
    with pytest.raises(CharRNNError, match="needs two hex digits"):
        unescape(r"\x4")
    model = ScriptedModel("ab")
    with pytest.raises(CharRNNError, match="can never occur"):
        sample(model, VOCAB, "a", 5, stop=["xyz"])
    with pytest.raises(CharRNNError, match="empty"):
        sample(model, VOCAB, "a", 5, stop=[""])


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ckpt(tiny_run):
    return tiny_run.run


def test_cli_stop_rows_and_scores_in_json(ckpt):
    js = json.loads(run("sample", ckpt, "-p", "The", "--stop", r"e\n", "--stop", " ", "--num-samples", "5",
                        "--seed", "2", "-n", "80", "--json").stdout)
    assert js["stop"] == ["e\n", " "]
    for text, sc in zip(js["samples"], js["scores"]):
        gen = text[3:]
        assert " " not in gen and "e\n" not in gen
        assert sc["stop"] in ("e\n", " ", None) and sc["chars_scored"] == len(gen) + len(sc["stop"] or "")
        assert sc["bits_per_char"] > 0
    assert len({len(t) for t in js["samples"]}) > 1


def test_cli_prefix_file_equals_the_same_prefix(ckpt, tmp_path):
    prime = "The time traveller said that a machine\ncould move through time as we move "
    f = tmp_path / "prime.txt"
    f.write_text(prime, encoding="utf-8")
    a = run("sample", ckpt, "--prefix-file", f, "-t", "0", "-n", "40").stdout
    b = run("sample", ckpt, "--prefix", prime, "-t", "0", "-n", "40").stdout
    assert a == b and a.startswith(prime)


def test_cli_beam_prints_one_text_and_its_log_probability(ckpt):
    r = run("sample", ckpt, "-p", "The ", "--beam", "3", "-n", "30", "--show-logprob")
    assert r.stdout.startswith("The ") and len(r.stdout) == 4 + 30 + 1
    assert "nats/char" in r.stderr and "over 30 generated characters" in r.stderr
    js = json.loads(run("sample", ckpt, "-p", "The ", "--beam", "1", "-n", "30", "--json").stdout)
    greedy = json.loads(run("sample", ckpt, "-p", "The ", "-t", "0", "-n", "30", "--json").stdout)
    assert js["samples"] == greedy["samples"]


@pytest.mark.parametrize("args,message", [
    (["--beam", "3", "-t", "0.5"], "--beam is deterministic"),
    (["--beam", "3", "--num-samples", "2"], "--beam is deterministic"),
    (["--prefix", "a", "--prefix-file", "x.txt"], "either --prefix or --prefix-file"),
    (["--prefix-file", "/nonexistent/prime.txt"], "file not found"),
    (["--stop", r"\q"], "unknown escape"),
    (["--stop", "Ж"], "can never occur"),
    (["--interactive", "--json"], "--interactive"),
])
def test_cli_bad_sampling_options_are_one_line_errors(ckpt, args, message):
    assert message in error_line(run("sample", ckpt, *args, code=2))


def test_a_long_prime_fed_in_chunks_gives_the_same_state(lstm):
    from charrnn.generate.sample import inference, prime

    text = "ROMEO: abc deg hh\nab ROMEO hgf" * 3
    with inference(lstm):
        whole, chunked = prime(lstm, VOCAB, text), prime(lstm, VOCAB, text, chunk=7)
        idx = VOCAB.index()
        _, want = lstm(torch.tensor([[idx[c] for c in text[:-1]]]), lstm.begin_state(1))
    assert whole.last.tolist() == chunked.last.tolist() == [idx[text[-1]]]
    for a, b, w in zip(whole.state, chunked.state, want):
        torch.testing.assert_close(a, w)
        torch.testing.assert_close(b, w)
