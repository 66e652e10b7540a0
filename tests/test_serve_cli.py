"""`charrnn serve` without a server: the batcher against the one-request sampler, the options' rules, the
command's defaults, and the one line a missing extra gets."""

from __future__ import annotations

import sys
import threading
from dataclasses import fields

import pytest
import torch
import typer

from charrnn.cli.app import app
from charrnn.core.config import ModelConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generate.sample import sample
from charrnn.serve.config import ServeOptions, run_name
from charrnn.serve.engine import Batcher, Job, QueueFull, Sampling

from helpers import cli, error_line

VOCAB = Vocab(tuple(sorted(set("abcdefgh \n:ROMEO"))))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(model="lstm", vocab_size=len(VOCAB), hidden=24, layers=2)).eval()


def run_jobs(model, jobs, max_rows=64):
    """Submit every job at once, wait for all; the batch size of each step."""
    sizes, done = [], threading.Semaphore(0)
    b = Batcher(model, VOCAB, max_rows=max_rows, on_step=sizes.append)
    for job in jobs:
        job.on_update = lambda j, d: done.release() if j.done else None
        b.submit(job)
    b.start()
    for _ in jobs:
        assert done.acquire(timeout=60)
    b.stop(10)
    return sizes


SPECS = [dict(prefix=["ROMEO:", "ab", "", "hh gg"][i % 4], n=1 + i % 3, length=10 + 3 * i, t=[1.0, 0.7, 0.0][i % 3],
              k=[0, 3][i % 2], p=[1.0, 0.9][(i // 2) % 2], stop=[(), ("a",), ("ab", "\n\n")][i % 3], seed=i)
         for i in range(24)]


def test_batched_jobs_equal_one_request_sampling_with_the_same_seed(model):
    """Rows of 24 jobs with different prefixes, lengths, options and stop strings, stepped together:
    each job's texts and finish reasons are those of `sample` run alone with the job's seed."""
    jobs = [Job(s["prefix"], s["n"], s["length"], Sampling(s["t"], s["k"], s["p"]), s["stop"],
                generator=torch.Generator().manual_seed(s["seed"]), stream=bool(i % 2)) for i, s in enumerate(SPECS)]
    sizes = run_jobs(model, jobs)
    assert max(sizes) == sum(s["n"] for s in SPECS)  # all at once
    for s, job in zip(SPECS, jobs):
        ref = sample(model, VOCAB, s["prefix"], s["length"], temperature=s["t"], top_k=s["k"], top_p=s["p"],
                     num_samples=s["n"], stop=s["stop"], generator=torch.Generator().manual_seed(s["seed"]))
        assert job.texts == [r.text for r in ref.samples], s
        assert job.finish == ["stop" if r.stop else "length" for r in ref.samples], s


def test_finished_rows_leave_at_once_and_waiting_jobs_join_at_a_step_boundary(model):
    jobs = [Job("ab", 1, length, Sampling(), generator=torch.Generator().manual_seed(0)) for length in (3, 5, 4)]
    sizes = run_jobs(model, jobs, max_rows=2)
    # two rows fit: lengths 3 and 5 start; the 3 leaves after its third step and the 4 joins at once,
    # the 5 leaves after its fifth and the 4 finishes alone
    assert sizes == [2, 2, 2, 2, 2, 1, 1]
    assert [len(j.texts[0]) for j in jobs] == [3, 5, 4]


def test_a_cancelled_job_leaves_the_batch(model):
    steps, started = [], threading.Event()
    b = Batcher(model, VOCAB, on_step=lambda n: (steps.append(n), started.set()))
    job = Job("ab", 2, 10**7, Sampling())
    b.submit(job)
    b.start()
    assert started.wait(30)
    job.cancel()
    b.stop(30)  # returns only once the batch is empty
    assert not b._thread.is_alive() and b.active_rows == 0 and len(steps) < 10**6


def test_the_queue_is_bounded(model):
    b = Batcher(model, VOCAB, max_waiting=2)  # not started: jobs stay waiting
    b.submit(Job("a", 1, 5, Sampling()))
    b.submit(Job("a", 1, 5, Sampling()))
    with pytest.raises(QueueFull):
        b.submit(Job("a", 1, 5, Sampling()))


def test_another_host_needs_an_api_key():
    with pytest.raises(CharRNNError, match="--api-key"):
        ServeOptions(runs=("r",), host="0.0.0.0")
    assert ServeOptions(runs=("r",), host="0.0.0.0", api_key="k").host == "0.0.0.0"
    assert ServeOptions(runs=("r",), host="localhost").api_key is None


def test_the_command_refuses_another_host_without_a_key_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARRNN_API_KEY", raising=False)
    assert "--api-key" in error_line(cli("serve", tmp_path, "--host", "0.0.0.0", code=2))


def test_a_missing_run_is_one_line(tmp_path):
    assert "checkpoint" in error_line(cli("serve", tmp_path / "absent", code=2))


def test_without_the_extra_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now raises ImportError
    line = error_line(cli("serve", tmp_path, code=2))
    assert "pip install 'charrnn[serve]'" in line


def test_run_names():
    assert run_name("runs/shakespeare") == ("shakespeare", "runs/shakespeare")
    assert run_name("runs/x/best.pt") == ("x", "runs/x/best.pt")
    assert run_name("mine=runs/x") == ("mine", "runs/x")


def test_the_commands_defaults_are_serve_options_defaults():
    command = typer.main.get_command(app).commands["serve"]
    defaults = {f.name: f.default for f in fields(ServeOptions)}
    checked = 0
    for param in command.params:
        name = {"cors_origin": "cors_origins"}.get(param.name, param.name)
        if name in defaults and name not in ("runs", "api_key", "cors_origins"):
            assert param.default == defaults[name], name
            checked += 1
    assert checked == 13
