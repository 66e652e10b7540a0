"""`--impl scratch` trains like `--impl torch`, and checkpoints move between the two engines."""

import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_model
from charrnn.cli.app import app
from charrnn.training.train import train

from helpers import tiny_options, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("parity"), 6000)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_scratch_learns_as_well_as_torch(tmp_path, corpus, kind):
    runs = {}
    for impl in ("torch", "scratch"):
        runs[impl] = train(tiny_options(corpus, tmp_path / impl, model=kind, impl=impl, layers=2,
                                        max_steps=80, eval_every=80, lr=1e-2))
    # same seed, same initial weights, same batches, no dropout (the engines draw masks differently):
    # only floating-point rounding differs
    assert runs["scratch"]["val_loss"] == pytest.approx(runs["torch"]["val_loss"], rel=1e-4)
    assert runs["torch"]["val_loss"] < 3.0  # it learned something (uniform is ln 30 = 3.4)


def test_a_checkpoint_crosses_engines(tmp_path, corpus):
    run = tmp_path / "run"
    train(tiny_options(corpus, run, model="lstm", impl="torch", max_steps=20))
    torch_model, _ = load_model(run)
    scratch_model, _ = load_model(run, impl="scratch")
    assert type(scratch_model.rnn).__name__ == "ScratchLSTM"
    x = torch.randint(0, torch_model.vocab_size, (3, 17))
    torch.testing.assert_close(scratch_model(x)[0], torch_model(x)[0], rtol=1e-5, atol=1e-5)

    cli = CliRunner()
    ev = {impl: json.loads(cli.invoke(app, ["eval", str(run), "--impl", impl, "--json"]).stdout) for impl in ("torch", "scratch")}
    assert ev["scratch"]["loss"] == pytest.approx(ev["torch"]["loss"], rel=1e-5)
    samples = [cli.invoke(app, ["sample", str(run), "--impl", impl, "--prefix", "The ", "--seed", "4", "-n", "40"]).stdout
               for impl in ("torch", "scratch")]
    assert samples[0] == samples[1]
    # resume the torch run with the scratch engine: it continues, and the checkpoint stays loadable by both
    s = train({"max_steps": 30, "impl": "scratch"}, resume=str(run))
    assert s["steps"] == 30 and s["impl"] == "scratch"
    load_model(run, impl="torch")


def test_auto_picks_the_faster_engine_and_records_it(tmp_path, corpus):
    from charrnn.core.models import resolve_impl

    assert resolve_impl("gru", "auto", "cpu") == resolve_impl("rnn", "auto", "cpu") == "scratch"
    assert resolve_impl("lstm", "auto", "cpu") == "torch"
    assert resolve_impl("gru", "auto", "cuda") == "torch"  # cuDNN's fused kernels on a GPU
    assert resolve_impl("gru", "torch", "cpu") == "torch"  # an explicit choice is kept
    s = train(tiny_options(corpus, tmp_path / "run", model="gru", max_steps=5))  # impl defaults to auto
    assert s["impl"] == "scratch"
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model_config"]["impl"] == "scratch"
