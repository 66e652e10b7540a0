"""The Python API (`charrnn/__init__.py`) and the README's "From Python" section: every ```python snippet
of that section runs as written, in order, in a fresh directory holding the corpus it names; then what
the API returned is checked against numbers computed here without charrnn's scoring, sampling or
probing code (one torch forward pass, a hand-written greedy loop, numpy's corrcoef)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charrnn
from charrnn.core.checkpoint import load_model
from charrnn.core.errors import CharRNNError
from charrnn.core.vocab import Vocab

from helpers import make_text

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## From Python"


def snippets(readme: str = README.read_text(encoding="utf-8")) -> list[str]:
    """The ```python blocks of the "From Python" section (up to the next `## ` heading), in order."""
    start = readme.index(SECTION + "\n")
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_snippets_for_every_part_of_the_api():
    code = "\n".join(snippets())
    for call in ("charrnn.train(", "charrnn.load(", ".sample(", ".stream(", ".beam(", ".score(", ".diagnose(",
                 ".probe(", "charrnn.diagnose_model("):
        assert call in code, f"the README's From Python section shows no {call}"


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run the snippets in a fresh directory with input.txt in it; returns (directory, their namespace)."""
    import os

    d = tmp_path_factory.mktemp("api")
    (d / "input.txt").write_text(make_text(12_000), encoding="utf-8")
    namespace: dict = {"__name__": "__readme__"}
    here = os.getcwd()
    os.chdir(d)
    try:
        for i, code in enumerate(snippets()):
            try:
                exec(compile(code, f"README From Python, snippet {i + 1}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"README From Python snippet {i + 1} failed: {type(e).__name__}: {e}\n{code}") from e
    finally:
        os.chdir(here)
    return d, namespace


def direct_logp(run_dir: Path, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, log p(x_{i+1} | x_<=i) (n-1, V) in float64) from one forward pass of the checkpoint's model."""
    model, ckpt = load_model(run_dir)
    ids = Vocab(tuple(ckpt["vocab"])).encode(text).astype(np.int64)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[None, :-1]), None)  # (1, n-1, V)
    return ids, torch.log_softmax(logits[0].double(), dim=-1).numpy()


def test_train_returns_the_run_directory_and_its_summary(readme_run):
    d, ns = readme_run
    run = ns["run"]
    assert isinstance(run, charrnn.Trained) and run.run_dir == d / "runs" / "demo"  # stored absolute (--out ~/x works)
    assert (d / run.run_dir / "best.pt").is_file() and run.summary["steps"] == 200
    evals = [json.loads(line) for line in (d / run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert run.summary["val_loss"] == pytest.approx([e for e in evals if e["event"] == "eval"][-1]["val_loss"])


def test_score_is_the_cross_entropy_of_one_forward_pass(readme_run):
    d, ns = readme_run
    s = ns["s"]
    text = "The time traveller said that a machine could move through time."
    ids, logp = direct_logp(d / "runs/demo", text)
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]  # (n-1,) nats
    assert s.text == text and s.report.chars == len(text) - 1
    assert s.report.loss == pytest.approx(float(nll.mean()), rel=1e-5)
    np.testing.assert_allclose(s.bits[1:], nll / math.log(2), rtol=1e-5, atol=1e-6)
    assert s.worst(1) == [int(np.argmax(nll)) + 1]


def test_the_notebook_picture_colours_each_character_by_its_surprisal(readme_run):
    d, ns = readme_run
    s = ns["s"]
    page = s._repr_html_()
    spans = re.findall(r'<span style="background:rgb\((\d+), (\d+), (\d+)\)" title="([^"]*)">([^<]*)</span>', page)
    assert "".join(c for *_, c in spans) == s.text
    ids, logp = direct_logp(d / "runs/demo", s.text)
    bits = -logp[np.arange(len(ids) - 1), ids[1:]] / math.log(2)
    for (r, g, b, title, _), want in zip(spans[1:], bits):
        shade = 255 - math.floor(200 * min(want / 8.0, 1.0) + 0.5)  # white at 0 bits, 55 at 8 or more
        assert (int(r), int(g), int(b)) == (255, shade, shade)
        assert title.startswith(f"{want:.2f} bits")
    top = int(np.argmax(logp[0]))  # the model's first guess for character 1
    assert repr(s.tokens[top]).replace("'", "&#x27;") in spans[1][3].split("expected ")[1].split(",")[0]
    assert (spans[0][0], spans[0][1], spans[0][2]) == ("255", "255", "255")  # nothing predicts the first


def greedy(run_dir: Path, prefix: str, n: int) -> str:
    """Greedy decoding by hand: the whole text re-fed from a zero state for every character."""
    model, ckpt = load_model(run_dir)
    vocab = Vocab(tuple(ckpt["vocab"]))
    text = prefix
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.as_tensor(vocab.encode(text).astype(np.int64)[None]), None)
            text += vocab.chars[int(logits[0, -1].argmax())]
    return text


def test_sample_stream_and_beam(readme_run):
    d, ns = readme_run
    m = charrnn.load(d / "runs/demo")
    want = greedy(d / "runs/demo", "The ", 30)
    assert m.sample("The ", 30, temperature=0) == want
    assert m.beam("The ", 30, width=1) == want
    assert m.sample("The ", 40, seed=3) == m.sample("The ", 40, seed=3)
    assert {m.sample("The ", 40, seed=k) for k in range(4)} != {m.sample("The ", 40, seed=0)}
    assert "The " + "".join(m.stream("The ", 40, seed=3)) == m.sample("The ", 40, seed=3)
    stopped = m.sample("The ", 200, seed=1, stop=[" "])
    assert " " not in stopped[4:] and len(stopped) < 204
    with pytest.raises(CharRNNError, match="never saw"):
        m.sample("€", 5)


def test_probe_ranks_the_unit_numpy_finds_most_correlated(readme_run):
    d, ns = readme_run
    best = ns["best"]
    text = (d / "input.txt").read_text(encoding="utf-8")[:2000]
    line_pos = np.zeros(len(text))
    for i, ch in enumerate(text):  # characters since the last newline, the newline itself 0
        line_pos[i] = 0 if ch == "\n" else (line_pos[i - 1] + 1 if i else 1)
    model, ckpt = load_model(d / "runs/demo", impl="torch")
    x = F.one_hot(torch.as_tensor(Vocab(tuple(ckpt["vocab"])).encode(text).astype(np.int64)), len(ckpt["vocab"]))
    state, units = None, []
    with torch.no_grad():
        for step in x.float()[None].split(1, dim=1):  # (1, 1, V): one character at a time through nn.LSTM
            _, state = model.rnn(step, state)
            units.append(torch.cat([state[0][0, 0], state[1][0, 0]]).numpy())  # h then c of layer 0
    acts = np.stack(units)  # (n, 2H)
    H = model.config.hidden
    r = [abs(np.corrcoef(acts[:, j], line_pos)[0, 1]) for j in range(2 * H)]
    column = best["index"] + (H if best["part"] == "c" else 0)
    assert abs(best["r"]) == pytest.approx(r[column], abs=1e-6)
    assert r[column] == pytest.approx(max(r), abs=1e-6)


def test_diagnose_returns_its_report(readme_run):
    d, ns = readme_run
    report = ns["report"]
    text = (d / "input.txt").read_text(encoding="utf-8")
    assert report.verdict in ("ok", "warn", "fail") and report.summary.startswith(report.verdict)
    assert report.subject["text_chars"] == int(len(text) * 0.1)  # the val split (--val-frac 0.1, the default)
    json.dumps(report.to_dict())
    own = charrnn.diagnose_model(ns["Tiny"](ns["vocab"]), d / "input.txt", max_chars=1000)
    assert own.subject["kind"] == "factory" and own.subject["text_chars"] == len(text)


def test_train_options_take_preset_then_config_then_keywords(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("hidden: 12\nlayers: 2\n", encoding="utf-8")
    run = charrnn.train(yaml_file, preset="d2l-8.5", corpus=str(corpus), out=str(tmp_path / "r"), layers=1,
                        max_steps=1, eval_every=1, sample_every=0, batch_size=4, seq_len=8, minutes=0, epochs=0)
    m = run.load()
    assert (m.config.hidden, m.config.layers) == (12, 1)  # the config over the preset's 512, the keyword over the config
    # the preset's letters_only: a prefix is prepared as the corpus was (lower-cased, non-letters to one space)
    assert m.sample("The Time-Machine!", 3, temperature=0).startswith("the time machine")
    assert m.score("The Time!").text == "the time"
    assert run.summary["steps"] == 1
    with pytest.raises(CharRNNError, match="unknown config key"):
        charrnn.train(corpus=str(corpus), out=str(tmp_path / "r2"), hiden=8)


@pytest.mark.slow
def test_importing_charrnn_imports_no_torch():
    code = "import sys, charrnn, charrnn.core.errors; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
