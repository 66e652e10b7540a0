"""Failure paths, by fault injection: a save killed mid-way, a full disk, two runs in one directory,
kill -9 then resume, a checkpoint whose weights do not fit its config, weight decay on biases."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.core.checkpoint import load_checkpoint, save_checkpoint
from charrnn.core.config import ModelConfig, TrainConfig
from charrnn.core.errors import EXIT_WRITE_FAILED
from charrnn.core.models import CharRNN
from charrnn.training.optim import make_optimizer
from charrnn.training.train import train

from helpers import cli, error_line, tiny_options, write_corpus

ROOT = Path(__file__).resolve().parents[1]


def temps(run: Path) -> list[Path]:
    return sorted(run.glob(".*.tmp"))


@pytest.fixture
def run4(tmp_path):
    """A finished 4-step run (last.pt at step 4)."""
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    train(tiny_options(corpus, run, max_steps=4, eval_every=2, log_every=2))
    return run


def test_mismatched_weights_are_the_same_one_line_error_on_resume_as_on_sample(run4, tmp_path):
    ckpt = torch.load(run4 / "last.pt", weights_only=True)
    ckpt["model_config"]["hidden"] = 16  # the weights are 32 wide
    bad = tmp_path / "bad.pt"
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("format", "format_version", "charrnn_version")}, bad)
    on_sample = error_line(cli("sample", bad, "-n", "5", code=2))
    on_resume = error_line(cli("train", "--resume", bad, "--quiet", code=2))
    assert "weights do not match the recorded model config" in on_sample
    assert on_resume == on_sample


_KILLED_SAVE = """
import os, signal, sys, torch
import charrnn.core.checkpoint as c
ckpt = torch.load(sys.argv[1], weights_only=True)
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die after the bytes are written, before the rename
c.save_checkpoint(ckpt, sys.argv[1])
"""


@pytest.mark.slow
def test_a_save_killed_mid_way_leaves_a_temp_file_that_the_next_start_removes(run4):
    before = (run4 / "last.pt").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(run4 / "last.pt")], env=env, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    assert len(temps(run4)) == 1  # what a kill -9 mid-save leaves behind
    assert (run4 / "last.pt").read_bytes() == before  # the rename never happened
    cli("train", "--resume", run4, "--max-steps", "6", "--quiet")
    assert temps(run4) == []
    assert load_checkpoint(run4, prefer="last")["position"]["step"] == 6


class _FullDisk:
    """A file on a disk that fills up after `room` bytes: what a small tmpfs does to a save."""

    def __init__(self, f, room: int = 1000):
        self.f, self.room = f, room

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_is_one_line_exit_4_and_the_previous_checkpoint_loads(run4, monkeypatch):
    import charrnn.core.checkpoint

    real_fdopen = os.fdopen
    monkeypatch.setattr(charrnn.core.checkpoint.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode)))
    line = error_line(cli("train", "--resume", run4, "--max-steps", "8", "--quiet", code=EXIT_WRITE_FAILED))
    monkeypatch.undo()
    assert EXIT_WRITE_FAILED == 4
    assert "No space left on device" in line and ".pt" in line and "previous checkpoint there is intact" in line
    assert load_checkpoint(run4, prefer="last")["position"]["step"] == 4
    assert temps(run4) == []


def _wait_for(predicate, proc, what: str, limit: float = 120.0) -> None:
    """Poll for an event the other process causes (not a fixed sleep)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert proc.poll() is None, f"the first run ended early:\n{proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_run_into_a_held_directory_refuses_and_kill_9_frees_it_at_once(tmp_path):
    corpus = write_corpus(tmp_path, 3000)
    run = tmp_path / "run"
    args = ["--corpus", corpus, "--out", run, "--hidden", "16", "--batch-size", "4", "--seq-len", "8",
            "--eval-every", "3", "--log-every", "3", "--sample-every", "0", "--max-steps", "1000000", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "charrnn", "train", "--quiet", *map(str, args)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (run / "last.pt").exists(), first, "the first run's checkpoint")
        config = (run / "config.yaml").read_bytes()
        for second in (["train", *args, "--seed", "7"], ["train", "--resume", run]):
            line = error_line(cli(*second, "--quiet", code=2))
            assert f"{run} is in use by another charrnn run (pid {first.pid})" in line
        assert first.poll() is None and (run / "config.yaml").read_bytes() == config  # the first is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    step = load_checkpoint(run, prefer="last")["position"]["step"]
    cli("train", "--resume", run, "--max-steps", step + 2, "--quiet")  # at once: nothing to clean by hand
    assert load_checkpoint(run, prefer="last")["position"]["step"] == step + 2
    assert temps(run) == []


def test_weight_decay_shrinks_matrices_and_leaves_biases_alone():
    model = CharRNN(ModelConfig(model="lstm", vocab_size=5, hidden=4, embed=3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(TrainConfig(optimizer="sgd", lr=1.0, weight_decay=0.5), model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves anything: p <- p - lr * wd * p
    opt.step()
    for name, p in model.named_parameters():
        want = before[name] * 0.5 if p.dim() >= 2 else before[name]
        assert torch.equal(p.detach(), want), name
    assert any("bias" in n for n in before)
    assert len(make_optimizer(TrainConfig(weight_decay=0.0), model).param_groups) == 1  # the layout of older runs


def test_an_internal_error_is_one_line_and_exit_3(run4, monkeypatch, capsys):
    import charrnn.core.checkpoint
    from charrnn.cli.app import main

    def bug(target):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(charrnn.core.checkpoint, "describe", bug)
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(run4)])
    assert exit_.value.code == 3
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert err == ["charrnn: internal error: ZeroDivisionError: division by zero (set CHARRNN_DEBUG=1 for the traceback)"]


def test_eval_has_no_init_std_and_gradcheck_keeps_its_old_spellings(run4):
    assert "No such option" in cli("eval", run4, "--init-std", "0.01", code=2).output
    new = cli("gradcheck", "--model", "rnn", "--batch-size", "2", "--vocab-size", "4", "--json").stdout
    old = cli("gradcheck", "--model", "rnn", "--batch", "2", "--vocab", "4", "--json").stdout
    assert new.splitlines()[0] == old.splitlines()[0] and '"batch": 2' in new and '"vocab": 4' in new


def test_the_default_run_directory_passes_over_one_in_use(tmp_path, monkeypatch):
    from charrnn.training import rundir

    monkeypatch.chdir(tmp_path)
    assert rundir.default_run_dir("c", "lstm") == Path("runs/c-lstm")
    with rundir.hold(Path("runs/c-lstm")):  # a live run that has not saved a checkpoint yet
        assert rundir.in_use(Path("runs/c-lstm"))
        assert rundir.default_run_dir("c", "lstm") == Path("runs/c-lstm-2")
    assert not rundir.in_use(Path("runs/c-lstm"))
    assert rundir.default_run_dir("c", "lstm") == Path("runs/c-lstm")
