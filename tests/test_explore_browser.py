"""The explore page in a real browser: headless Chromium from Debian's packages, driven by Playwright.

One tiny model and one page for the module. The checks compare what the browser shows with values
computed here independently of charrnn.analysis.surprisal and charrnn.analysis.explore: surprisal colours from one torch
forward pass, the hover's top-5 guesses, a unit's colour from the LSTM's own output, a ranked unit's r
from numpy's corrcoef. Any console error or uncaught exception on the page fails the test. Without
Chromium (or the playwright package) the tests skip with the reason; .ci/run installs both.
"""

import math
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_model
from charrnn.cli.app import app
from charrnn.core.vocab import Vocab

from helpers import chromium_or_skip, ctrl_c_as_in_a_terminal, launch_chromium, make_text

chromium_or_skip()  # skips this module, with the reason, when Chromium or playwright is missing

pytestmark = pytest.mark.slow  # a real browser

DEPTH, MAX_BITS = 200, 8.0  # the page's colour scale, restated: white at 0, 255 - DEPTH at MAX_BITS bits


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


@pytest.fixture(scope="module")
def page_file(tiny_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("explore")
    text = d / "text.txt"
    text.write_text(make_text(400, seed=7), encoding="utf-8")
    r = CliRunner().invoke(app, ["explore", str(tiny_run.run), "--text", str(text), "--out", str(d / "page.html")])
    assert r.exit_code == 0, r.output
    assert f"wrote {d / 'page.html'}" in r.stdout
    return tiny_run.run, text.read_text(encoding="utf-8"), d / "page.html"


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture
def page(browser):
    """A fresh tab that records console errors and page exceptions; the test fails if any occurred."""
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    tab.close()
    assert errors == [], f"errors on the page: {errors}"


@pytest.fixture(scope="module")
def reference(page_file):
    """Independent numbers for the page's text: log-probabilities (n-1, V) and, from nn.LSTM itself fed one
    character at a time, layer 0's h and c after each character: {"h": (n, H), "c": (n, H)}."""
    run, text, _ = page_file
    model, ckpt = load_model(run, impl="torch")
    vocab = Vocab(tuple(ckpt["vocab"]))
    ids = torch.as_tensor(vocab.encode(text).astype(np.int64))[None]  # (1, n)
    hs, cs, state = [], [], None
    with torch.no_grad():
        logits, _ = model(ids[:, :-1], None)
        for x in torch.nn.functional.one_hot(ids, len(vocab)).float().split(1, dim=1):  # (1, 1, V) each
            _, state = model.rnn(x, state)
            hs.append(state[0][0, 0])
            cs.append(state[1][0, 0])
    units = {"h": torch.stack(hs).double().numpy(), "c": torch.stack(cs).double().numpy()}
    return vocab, torch.log_softmax(logits[0].double(), -1).numpy(), units


def char_style(page, i: int) -> tuple[int, ...]:
    return rgb(page.eval_on_selector(f"#text span.ch[data-i='{i}']", "e => getComputedStyle(e).backgroundColor"))


def test_text_is_there_coloured_by_surprisal(page, page_file, reference):
    _, text, path = page_file
    vocab, logp, _ = reference
    page.goto(path.as_uri())
    shown = page.eval_on_selector_all("#text span.ch", "spans => spans.map(s => s.textContent).join('')")
    assert shown == text.replace("\n", "\u21b5")
    ids = vocab.encode(text)
    bits = -logp[np.arange(len(text) - 1), ids[1:]] / math.log(2)  # bits[i-1]: surprisal of character i
    for i in (1, 2, 50, int(np.argmax(bits)) + 1, int(np.argmin(bits)) + 1, len(text) - 1):
        g = 255 - DEPTH * min(bits[i - 1] / MAX_BITS, 1.0)
        got = char_style(page, i)
        assert got[0] == 255 and abs(got[1] - g) <= 1 and got[1] == got[2], (i, bits[i - 1], got)
    assert char_style(page, 0) == (0, 0, 0) or page.eval_on_selector(
        "#text span.ch[data-i='0']", "e => e.style.backgroundColor") == ""  # nothing predicts the first


def test_hover_shows_the_top_5_guesses(page, page_file, reference):
    _, text, path = page_file
    vocab, logp, _ = reference
    page.goto(path.as_uri())
    i = 60
    page.hover(f"#text span.ch[data-i='{i}']")
    assert page.is_visible("#tip")
    rows = page.eval_on_selector_all("#tip table.top tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    order = np.argsort(-logp[i - 1])[:5]
    assert [r[0] for r in rows] == [repr(vocab.chars[j]).replace("' '", "'\u2423'").replace("'\\n'", "'\u21b5'") for j in order]
    assert [float(r[1].rstrip("%")) for r in rows] == pytest.approx([100 * math.exp(logp[i - 1, j]) for j in order], abs=0.06)  # shown to 0.1%, sent to 0.01%
    head = page.inner_text("#tip .tip-head")
    bits = -logp[i - 1, vocab.encode(text[i])[0]] / math.log(2)
    assert f"{bits:.2f} bits" in head


def test_unit_picker_recolours_by_activation(page, page_file, reference):
    _, text, path = page_file
    h = reference[2]["h"]
    page.goto(path.as_uri())
    u = 5
    page.select_option("#unit", label=f"L0.h[{u}]")
    assert page.input_value("#mode") == "unit"
    scale = np.abs(h[:, u]).max()
    for i in (0, 10, 100, len(text) - 1):
        v = h[i, u] / scale
        a = 255 - DEPTH * abs(v)
        want = (a, a, 255) if v >= 0 else (255, a, a)
        got = char_style(page, i)
        assert all(abs(x - y) <= 2.5 for x, y in zip(got, want)), (i, v, got, want)


def test_ranked_units_select_on_click(page, page_file, reference):
    _, text, path = page_file
    units = reference[2]
    page.goto(path.as_uri())
    page.select_option("#signal", "line-pos")
    first = page.locator("#ranked li").first
    unit = int(first.get_attribute("data-unit"))
    label, r_shown = re.match(r"(\S+)\s+r = (-?[\d.]+)", first.inner_text()).groups()
    line_pos = np.array([len(text[: i + 1].rsplit("\n", 1)[-1]) if text[i] != "\n" else 0 for i in range(len(text))])
    kind, index = re.match(r"L0\.([hc])\[(\d+)\]$", label).groups()
    r = np.corrcoef(units[kind][:, int(index)], line_pos)[0, 1]
    assert float(r_shown) == pytest.approx(r, abs=6e-4)
    every = np.concatenate([units["h"], units["c"]], axis=1)  # (n, 2H)
    best = max(abs(np.corrcoef(every[:, j], line_pos)[0, 1]) for j in range(every.shape[1]))
    assert abs(r) == pytest.approx(best, abs=1e-6)  # the first listed is the best of all h and c units
    first.click()
    assert page.input_value("#unit") == str(unit) and page.input_value("#mode") == "unit"
    assert "on" in first.get_attribute("class")


def test_eval_html_map_has_no_units_and_still_hovers(page, page_file, tmp_path):
    run, text, _ = page_file
    src = tmp_path / "t.txt"
    src.write_text(text, encoding="utf-8")
    r = CliRunner().invoke(app, ["eval", str(run), "--text", str(src), "--html", str(tmp_path / "map.html")])
    assert r.exit_code == 0, r.output
    page.goto((tmp_path / "map.html").as_uri())
    assert page.locator("#text span.ch").count() == len(text)
    assert not page.is_visible("#unit") and not page.is_visible("#signals")
    page.hover("#text span.ch[data-i='3']")
    assert page.locator("#tip table.top tr").count() == 5


def test_served_page_scores_typed_text_and_refuses_over_the_bound(page, page_file):
    run, _, _ = page_file
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "explore", str(run), "--serve", "--port", "0",
                             "--max-chars", "40"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        page.goto(url)
        page.fill("#input", "the time machine")
        page.click("#score")
        page.wait_for_function("document.querySelectorAll('#text span.ch').length === 16")
        assert "15 characters scored" in page.inner_text("#summary")
        page.fill("#input", "a" * 41)
        page.click("#score")
        page.wait_for_selector("#error:not(:empty)")
        assert "41 characters" in page.inner_text("#error") and "at most 40" in page.inner_text("#error")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
