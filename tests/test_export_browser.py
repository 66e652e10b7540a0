"""The exported web page in a real browser: headless Chromium from Debian's packages, driven by Playwright.

References are torch's: `charrnn sample -t 0` through the CLI for greedy text, and one sequence forward
of the checkpoint for the probabilities a T=1 sample must follow. Any console error, page exception or
network request other than the page itself fails the test. Without Chromium (or the playwright
package) the tests skip with the reason.
"""

import re

import numpy as np
import pytest
import torch

from charrnn.export.export import export

from helpers import chromium_or_skip, cli, launch_chromium
from test_export import CHARS, MODELS, PREFIX, greedy_cli, make_checkpoint, torch_probs

chromium_or_skip()  # skips this module, with the reason, when Chromium or playwright is missing

pytestmark = pytest.mark.slow
DRAWS = 20_000


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("web-models")
    return {name: make_checkpoint(d / f"{name}.pt", seed=i, **cfg) for i, (name, cfg) in enumerate(MODELS.items())}


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture
def open_page(browser):
    """open_page(path) -> a tab on the page, ready; the test fails on console errors, page exceptions or
    any request beyond the page's own file."""
    tabs, errors, requests = [], [], []

    def opener(path):
        tab = browser.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto(path.as_uri())
        tab.wait_for_selector("body[data-state=ready]", timeout=20_000)
        tabs.append((tab, path.as_uri()))
        return tab

    yield opener
    for tab, url in tabs:
        tab.close()
        assert set(requests) <= {url}, f"the page fetched {set(requests) - {url}}"
    assert errors == [], f"errors on the page: {errors}"


def generate_in_page(tab, prefix: str, length: int, temperature: float = 0.0, seed: str = "") -> str:
    """Type into the page's controls, press Generate, wait until it is done; the text it shows."""
    tab.fill("#prefix", prefix)
    tab.fill("#temperature", str(temperature))
    tab.fill("#length", str(length))
    tab.fill("#seed", seed)
    tab.click("#generate")
    tab.wait_for_selector("body[data-state=done]", timeout=60_000)
    return tab.text_content("#output")


@pytest.mark.parametrize("name", list(MODELS))
def test_the_pages_greedy_text_is_charrnn_sample_t0(checkpoints, open_page, tmp_path, name):
    report = export(checkpoints[name], "web", tmp_path / "page.html")
    tab = open_page(report.files[0])
    for prefix in (PREFIX, ""):
        assert generate_in_page(tab, prefix, 500) == greedy_cli(checkpoints[name], prefix, 500)
    assert re.fullmatch(r"generated 500 characters in \d+\.\d\d s", tab.text_content("#status"))
    assert tab.text_content("#rate").endswith(" chars/s") and float(tab.get_attribute("#rate", "data-rate")) > 0


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_a_seeded_t1_sample_follows_the_models_probabilities(checkpoints, open_page, tmp_path, name):
    """20,000 characters drawn at T=1: for each character its count is within 5 standard errors of the
    sum of torch's probabilities for it along the same text (a sum of independent Bernoulli draws)."""
    tab = open_page(export(checkpoints[name], "web", tmp_path / "page.html").files[0])
    text = tab.evaluate("([p, n]) => charrnn.generate(p, n, {temperature: 1, seed: 12345})", [PREFIX, DRAWS])
    assert len(list(text)) == DRAWS  # code points: 😀 is one character, two UTF-16 units
    assert text == tab.evaluate("([p, n]) => charrnn.generate(p, n, {temperature: 1, seed: 12345})", [PREFIX, DRAWS])
    p = torch_probs(checkpoints[name], PREFIX + text)[len(PREFIX) - 1 :]  # (DRAWS, V)
    counts = np.bincount([CHARS.index(c) for c in text], minlength=len(CHARS))
    expected, sd = p.sum(0), np.sqrt((p * (1 - p)).sum(0))
    z = (counts - expected) / np.maximum(sd, 1e-12)
    assert np.abs(z).max() < 5, f"character {CHARS[int(np.abs(z).argmax())]!r} is {np.abs(z).max():.1f} standard errors off"
    assert (counts > 0).sum() >= 10, "the sample should spread over the vocabulary"


def test_half_precision_page_is_greedy_on_the_rounded_weights(checkpoints, open_page, tmp_path):
    """--half: the page's text is charrnn's greedy text for the model with every weight rounded to float16,
    and the file is close to half the float32 page's size."""
    full = export(checkpoints["gru"], "web", tmp_path / "full.html").files[0]
    r = cli("export", checkpoints["gru"], "--format", "web", "--half", "--out", tmp_path / "half.html")
    half = tmp_path / "half.html"
    assert f"wrote {half} (" in r.stdout
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.65
    sd = torch.load(checkpoints["gru"], weights_only=True)
    sd["model"] = {k: v.half().float() for k, v in sd["model"].items()}
    torch.save(sd, tmp_path / "rounded.pt")
    tab = open_page(half)
    assert generate_in_page(tab, PREFIX, 300) == greedy_cli(tmp_path / "rounded.pt", PREFIX, 300)
    assert "float16 weights" in tab.text_content("#about")


def test_the_page_preprocesses_the_prefix_and_refuses_unknown_characters(open_page, tmp_path):
    ckpt = make_checkpoint(tmp_path / "c.pt", chars=tuple(" abcdefghijklmnopqrstuvwxyzé"), preprocessing={"letters_only": True},
                           model="rnn", layers=1, hidden=12)
    tab = open_page(export(ckpt, "web", tmp_path / "page.html").files[0])
    for raw in ("The Time-Machine,\nby H. G. Wells", "École 42 ² ½!\u2028x_y"):
        from charrnn.core.vocab import preprocess

        assert tab.evaluate("t => charrnn.preprocess(t)", raw) == preprocess(raw, letters_only=True)
    shown = generate_in_page(tab, "The Time-Machine,\nby H. G. Wells", 50)
    assert shown == greedy_cli(ckpt, "The Time-Machine,\nby H. G. Wells", 50)
    assert shown.startswith("the time machineby h g wells")
    assert tab.text_content("#status").startswith('the prefix was preprocessed as the training text was: "the time machineby h g wells"; generated 50')
    tab.fill("#prefix", "no 日本")
    tab.click("#generate")
    assert tab.text_content("#status") == 'the prefix has 2 character(s) the model never saw: "日", "本"'
    assert tab.get_attribute("#status", "class") == "error"


def test_stop_ends_a_long_run(checkpoints, open_page, tmp_path):
    tab = open_page(export(checkpoints["lstm"], "web", tmp_path / "page.html").files[0])
    tab.fill("#length", "100000000")
    tab.click("#generate")
    tab.wait_for_function("document.querySelector('#output').textContent.length > 2000")
    tab.click("#stop")
    tab.wait_for_selector("body[data-state=done]", timeout=10_000)
    n = int(tab.text_content("#status").split()[2])
    assert tab.text_content("#status").startswith("stopped after") and 2000 < n < 100_000_000
    assert len(list(tab.text_content("#output"))) == n  # the empty prefix shows nothing, nor the seed character
