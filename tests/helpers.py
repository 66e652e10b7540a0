"""Small builders shared by the tests: a text corpus on disk and a quick training run."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("the time traveller said that a machine could move through time as we move through space "
         "and nobody at the table believed him except the medical man who watched the model vanish").split()


def make_text(n_chars: int = 6000, seed: int = 0) -> str:
    """Pseudo-English with some structure to learn (fixed for a seed)."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:n_chars]


def write_corpus(tmp_path: Path, n_chars: int = 6000, name: str = "corpus.txt", seed: int = 0) -> Path:
    p = tmp_path / name
    p.write_text(make_text(n_chars, seed), encoding="utf-8")
    return p


def tiny_options(corpus: Path, out: Path, **over) -> dict:
    """A run small enough for a unit test (about a second on 2 cores)."""
    opts = dict(corpus=str(corpus), out=str(out), model="lstm", hidden=32, layers=1, batch_size=8, seq_len=16,
                max_steps=30, eval_every=10, log_every=5, sample_every=0, seed=0, lr=3e-3)
    opts.update(over)
    return opts


def cli(*args, code: int = 0):
    """Run the charrnn CLI in-process; assert its exit code and that no traceback was printed."""
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == code, f"exit {r.exit_code}, expected {code}:\n{r.output}"
    assert "Traceback" not in r.output
    return r


def error_line(r) -> str:
    """The one line a failed command printed on stderr."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    assert lines[0].startswith("charrnn: error: ")
    return lines[0]


def make_brackets(n_chars: int = 20000, seed: int = 0, max_depth: int = 8) -> str:
    """Random letters, '(' and ')', every line closed back to depth 0 before its newline: the corpus on
    which a model must count to predict (')' is impossible at depth 0; a line can only end there)."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        length, depth, line = rng.randint(20, 70), 0, []
        while len(line) < length or depth:
            closing_time = len(line) + depth >= length  # close what is open before the line ends
            u = rng.random()
            if depth and (closing_time or u < 0.25):
                line.append(")")
                depth -= 1
            elif not closing_time and depth < max_depth and u < 0.5:
                line.append("(")
                depth += 1
            else:
                line.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
        out.append("".join(line) + "\n")
        size += len(line) + 1
    return "".join(out)  # whole lines: the text ends at depth 0 too


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn for a child the test will SIGINT: a test run started in the background inherits SIGINT
    ignored, and Python keeps an ignored SIGINT ignored; restore the default so Ctrl-C reaches the child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def chromium_or_skip():
    """(Debian's Chromium, playwright.sync_api) for a browser test module, or skip the module with the
    reason; .ci/run installs both."""
    import shutil

    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)", allow_module_level=True)
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    return chromium, sync_api


def launch_chromium():
    """A headless Chromium driven by Playwright, closed when the generator is: the browser fixtures."""
    chromium, sync_api = chromium_or_skip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()
