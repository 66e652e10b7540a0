"""The surprisal map (`eval --show/--html/--json`) and explore's server: scores checked against an
independent computation and against `charrnn eval`; the server's bound, errors and clean stop."""

import json
import math
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_model
from charrnn.cli.app import app
from charrnn.core.vocab import Vocab
from charrnn.analysis.explore import render_page
from charrnn.analysis.surprisal import score_ids, surprisal_rgb

from helpers import ctrl_c_as_in_a_terminal, make_text

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    """The session's tiny run and a 900-character text in its vocabulary."""
    text = tmp_path_factory.mktemp("surprisal") / "text.txt"
    text.write_text(make_text(900, seed=5), encoding="utf-8")
    return tiny_run.run, text


def cli(*args, code=0):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, f"exit {r.exit_code}, expected {code}:\n{r.output}"
    assert "Traceback" not in r.output
    return r


def reference_logp(model, ids) -> np.ndarray:
    """log p(x_{i+1} | x_<=i) for every position, from one forward call over the whole text (float64)."""
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[None, :-1], dtype=torch.long), None)  # (1, n-1, V)
    return torch.log_softmax(logits[0].double(), dim=-1).numpy()


def test_scores_match_one_forward_pass_across_chunks(run_dir):
    run, text = run_dir
    model, ckpt = load_model(run)
    vocab = Vocab(tuple(ckpt["vocab"]))
    ids = vocab.encode(text.read_text(encoding="utf-8")).astype(np.int64)
    scored = score_ids(model, ids, "cpu", chunk=7)  # many chunk boundaries: the state must carry across
    logp = reference_logp(model, ids)  # (n-1, V)
    want = -logp[np.arange(len(ids) - 1), ids[1:]] / math.log(2)
    assert math.isnan(scored.bits[0])
    np.testing.assert_allclose(scored.bits[1:], want, rtol=1e-5, atol=1e-6)
    order = np.argsort(-logp, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(scored.top_ids[1:], order)
    np.testing.assert_allclose(scored.top_probs[1:], np.exp(np.take_along_axis(logp, order, 1)), rtol=1e-5)
    worst = scored.worst(4)
    assert list(scored.bits[worst]) == sorted(scored.bits[1:], reverse=True)[:4]


def test_surprisal_sums_to_eval_loss_times_chars(run_dir):
    run, text = run_dir
    plain = json.loads(cli("eval", run, "--text", text, "--json", "--device", "cpu").stdout)
    shown = json.loads(cli("eval", run, "--text", text, "--json", "--show", "--device", "cpu").stdout)
    chars = shown["characters"]
    assert "".join(c["char"] for c in chars) == text.read_text(encoding="utf-8")
    assert chars[0]["bits"] is None and all(len(c["top"]) == 5 for c in chars[1:])
    total_nats = sum(c["bits"] for c in chars[1:]) * math.log(2)
    assert shown["chars"] == plain["chars"] == len(chars) - 1
    assert total_nats == pytest.approx(plain["loss"] * plain["chars"], rel=1e-6)
    assert shown["loss"] == pytest.approx(plain["loss"], rel=1e-6)


def test_show_prints_the_text_and_the_worst_spots(run_dir):
    run, text = run_dir
    r = cli("eval", run, "--text", text, "--show", "--max-chars", "120", "--device", "cpu")
    body = text.read_text(encoding="utf-8")[:120]
    assert body.replace("\n", "\u21b5\n").splitlines()[0] in r.stdout
    assert "first 120 of 900 characters" in r.stdout and "119 characters scored" in r.stdout
    assert "most surprising characters" in r.stdout and "model expected" in r.stdout


def test_html_page_inlines_everything_and_cannot_be_closed_by_the_text(run_dir, tmp_path):
    run, text = run_dir
    cli("eval", run, "--text", text, "--html", tmp_path / "map.html", "--device", "cpu")
    page = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    hostile = render_page({"chars": list("</script><b>x"), "bits": [None] * 13})
    assert hostile.count("</script>") == 2  # the two of the template, none from the data


def test_unknown_characters_are_one_line_and_exit_2(run_dir, tmp_path):
    run, _ = run_dir
    bad = tmp_path / "bad.txt"
    bad.write_text("the time € machine", encoding="utf-8")
    r = cli("eval", run, "--text", bad, "--show", code=2)
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "'€'" in r.stderr


def test_colour_scale_ends():
    assert surprisal_rgb(0.0) == (255, 255, 255)
    assert surprisal_rgb(4.0) == (255, 155, 155)
    assert surprisal_rgb(30.0) == surprisal_rgb(8.0) == (255, 55, 55)


# --------------------------------------------------------------------------------------- the server


def start_server(run, *args):
    """`charrnn explore RUN --serve --port 0` in a subprocess; returns (process, base URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "explore", str(run), "--serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=ctrl_c_as_in_a_terminal)
    line = proc.stderr.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no server address in {line!r}: {proc.stderr.read()}")
    return proc, f"http://127.0.0.1:{m.group(1)}/"


def post(url, body: bytes):
    req = urllib.request.Request(url + "score", data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_serve_scores_on_loopback_refuses_over_the_bound_and_stops_on_ctrl_c(run_dir):
    run, _ = run_dir
    proc, url = start_server(run, "--max-chars", "50")
    try:
        page = urllib.request.urlopen(url, timeout=30).read().decode("utf-8")
        assert '"serve": true' in page and '"max_chars": 50' in page
        status, data = post(url, json.dumps({"text": "the time machine"}).encode())
        assert status == 200 and "".join(data["chars"]) == "the time machine" and data["units"]["labels"]
        status, data = post(url, json.dumps({"text": "a" * 51}).encode())
        assert status == 413 and "51 characters" in data["error"] and "at most 50" in data["error"]
        status, data = post(url, b"x" * 10_000)  # announced length too big to hold 50 characters: unread
        assert status == 413
        status, data = post(url, b"__import__('os')")
        assert status == 400 and "JSON" in data["error"]
        status, data = post(url, json.dumps({"text": "the €"}).encode())
        assert status == 400 and "'€'" in data["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()


@pytest.mark.parametrize("kind,layers,impl", [("rnn", 3, "scratch"), ("gru", 2, "scratch"), ("gru", 1, "torch"), ("lstm", 2, "torch")])
def test_page_data_for_every_cell_layers_and_engine(kind, layers, impl):
    from charrnn.core.config import ModelConfig
    from charrnn.analysis.explore import page_data
    from charrnn.core.models import CharRNN

    vocab = Vocab(tuple(sorted(set("ab (cd)\n"))))
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model=kind, vocab_size=len(vocab), hidden=6, layers=layers, impl=impl)).eval()
    text = "ab (cd (a)) b\nab (c)\n" * 3
    data = page_data(model, vocab, vocab.encode(text), "cpu")
    per_layer = 12 if kind == "lstm" else 6  # h, and c for an LSTM
    assert len(data["units"]["labels"]) == layers * per_layer
    assert len(data["units"]["q"]) == math.ceil(len(text) * layers * per_layer / 3) * 4  # base64 of int8 (U, n)
    assert set(data["signals"]) == {"depth", "line-pos", "word-pos"}  # no quote in the text: nothing to rank
    assert all(np.isfinite(b) for b in data["bits"][1:]) and data["loss"] > 0
