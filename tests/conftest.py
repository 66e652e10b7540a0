"""Fixtures shared by the test suite.

Tests never touch the internet. Every test runs with its own empty data directory ($CHARRNN_DATA) and a
local corpus mirror ($CHARRNN_MIRROR): the shared copies in ../shared/corpora when they exist, otherwise a
directory that does not exist, so a default corpus falls back to pystdlib instead of going online. Any
urllib request to a host other than 127.0.0.1/localhost fails the test.

`tiny_run` is the one trained run shared by every test that only reads a run (session scope). Tests
that start a browser, a subprocess, torchrun or a server carry `@pytest.mark.slow` (registered in
pyproject.toml): `python -m pytest -m "not slow"` is the quick loop; CI runs everything.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# Exact copies of the public corpora, kept outside the repository (never copy them into it).
SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def require_shared_corpora() -> Path:
    """The folder holding timemachine.txt and tinyshakespeare.txt. Without it the test is skipped on a
    developer's machine, but fails under CI=true: a CI job that silently skips them tests less than it says."""
    if not all((SHARED_CORPORA / f"{n}.txt").is_file() for n in ("timemachine", "tinyshakespeare")):
        why = f"the corpus mirror {SHARED_CORPORA} (timemachine.txt, tinyshakespeare.txt) is absent"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{why}, and CI=true: provide the mirror", pytrace=False)
        pytest.skip(why)
    return SHARED_CORPORA


@pytest.fixture
def shared_corpora() -> Path:
    """The corpus mirror (see require_shared_corpora)."""
    return require_shared_corpora()


@pytest.fixture(autouse=True)
def _offline_corpora(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CHARRNN_DATA", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))  # the corpus cache, never ~/.cache
    # --threads auto keeps a count the user set: runs in tests (and their subprocesses) stay on one thread,
    # whatever the load, so that two runs compared bit for bit compute alike
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mirror = SHARED_CORPORA if SHARED_CORPORA.is_dir() else tmp_path_factory.mktemp("nomirror") / "absent"
    monkeypatch.setenv("CHARRNN_MIRROR", mirror.as_uri())
    # A local test server must not be routed through a proxy from the environment.
    monkeypatch.setenv("no_proxy", "*")

    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        full = url.full_url if isinstance(url, urllib.request.Request) else url
        host = urllib.parse.urlparse(full).hostname
        if host not in ("127.0.0.1", "localhost", None):
            raise AssertionError(f"a test tried to reach the internet: {full}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


@dataclass(frozen=True)
class TinyRun:
    run: Path  # the run directory: best.pt, last.pt, metrics.jsonl, config.yaml
    corpus: Path  # the 5,000 characters of pseudo-English it was trained on (helpers.write_corpus)
    summary: dict  # what train returned


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One trained run for every test that only reads one: 40 steps of helpers.tiny_options (a 1x32 LSTM,
    batches of 8 x 16, evaluated every 10 steps: more than one epoch) on write_corpus(5000), with charrnn's
    default seed and learning rate (a model whose continuations depend on the text before them, which
    `sample -i --carry`'s test needs). Trained once per session.

    Tests must not write into it (copy it first: shutil.copytree); its files are hashed here and checked
    at the end of the session, so a test that changes them fails instead of silently changing the others'."""
    from charrnn.training.train import train
    from helpers import tiny_options, write_corpus

    d = tmp_path_factory.mktemp("tiny-run")
    corpus = write_corpus(d, 5000)
    summary = train(tiny_options(corpus, d / "run", max_steps=40, seed=1337, lr=2e-3))
    run = Path(summary["run_dir"])

    def digest() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir()) if p.is_file()
                and p.suffix in (".pt", ".jsonl", ".yaml")}

    before = digest()
    yield TinyRun(run, corpus, summary)
    after = digest()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test wrote into the shared tiny run: {', '.join(changed)} changed (copy the run first)"


# The models in tests are tiny: one thread is as fast, and it stays fast when the machine is busy
# (two processes each spinning two OpenMP threads on two cores slow each other down badly).
import torch  # noqa: E402

torch.set_num_threads(1)
