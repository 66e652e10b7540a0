"""train --init-from: a new run from a trained model's weights. Old characters keep their ids and, at
step 0, their predictions; new characters get rows of their own; the architecture comes from the
checkpoint; the fine-tuned run trains, samples and resumes like any other."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn.core.checkpoint import load_model
from charrnn.cli.app import app
from charrnn.core.vocab import Vocab
from charrnn.training.train import train
from helpers import make_text, tiny_options, write_corpus

runner = CliRunner()
NEW_TEXT = make_text(5000, seed=7).replace("the", "thé").replace("a", "A") + "42 times; 7 more?\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    run = tmp / "base"
    train(tiny_options(write_corpus(tmp), run, max_steps=40, embed=8))
    new = tmp / "new.txt"
    new.write_text(NEW_TEXT, encoding="utf-8")
    return run, new


def logprobs(model, vocab, text):
    x = torch.tensor(vocab.encode(text).astype("int64"))[None]
    with torch.no_grad():
        return torch.log_softmax(model(x)[0][0].double(), dim=-1)  # (T, V)


@pytest.mark.parametrize("embed", [8, 0])
def test_old_predictions_do_not_move_at_step_0(tmp_path, embed):
    base = tmp_path / "base"
    train(tiny_options(write_corpus(tmp_path), base, max_steps=40, embed=embed))
    new = tmp_path / "new.txt"
    new.write_text(NEW_TEXT, encoding="utf-8")
    # one SGD step at lr 1e-30 leaves every weight as it was initialised: the step-0 model, saved
    train(tiny_options(new, tmp_path / "ft", init_from=str(base), max_steps=1, eval_every=1, optimizer="sgd",
                       lr=1e-30, clip=0.0, model=None, hidden=None, layers=None))
    old_model, old_ck = load_model(base)
    new_model, new_ck = load_model(tmp_path / "ft" / "last.pt")
    old_vocab, new_vocab = Vocab(tuple(old_ck["vocab"])), Vocab(tuple(new_ck["vocab"]))
    V = len(old_vocab)
    assert new_vocab.chars[:V] == old_vocab.chars  # old characters keep their ids
    added = new_vocab.chars[V:]
    assert sorted(added) == sorted(set(NEW_TEXT) - set(old_vocab.chars))
    text = make_text(600, seed=3)  # old characters only
    old_lp, new_lp = logprobs(old_model, old_vocab, text), logprobs(new_model, new_vocab, text)
    # among the old characters the distribution is the old one exactly (a softmax's ratios) ...
    torch.testing.assert_close(torch.log_softmax(new_lp[:, :V], -1), old_lp, rtol=0, atol=1e-5)
    # ... and the new characters start nearly impossible, so absolute log-probabilities barely move
    assert new_lp[:, V:].exp().sum(-1).max() < 1e-2
    assert (new_lp[:, :V] - old_lp).abs().max() < 1e-2


def test_fine_tuning_learns_the_new_text_and_samples_new_characters(base, tmp_path):
    run, new = base
    r = runner.invoke(app, ["train", "--init-from", str(run), "--corpus", str(new), "--out", str(tmp_path / "ft"),
                            "--max-steps", "60", "--eval-every", "30", "--batch-size", "8", "--seq-len", "16", "--json"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "6 new character(s) get new rows" in said and "é" in said
    evals = [e for e in map(json.loads, (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()) if e["event"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    s = runner.invoke(app, ["sample", str(tmp_path / "ft"), "--prefix", "thé 42", "--length", "20", "--seed", "1"])
    assert s.exit_code == 0, s.output
    assert s.stdout.startswith("thé 42")


def test_architecture_flags_that_conflict_are_one_clear_error(base, tmp_path):
    run, new = base
    r = runner.invoke(app, ["train", "--init-from", str(run), "--corpus", str(new), "--out", str(tmp_path / "ft"),
                            "--hidden", "64", "--max-steps", "5"])
    assert r.exit_code == 2
    assert "--hidden 64" in r.output and "hidden=32" in r.output
    assert not (tmp_path / "ft").exists()


def test_a_fine_tuned_run_resumes_exactly(base, tmp_path):
    run, new = base
    opts = dict(init_from=str(run), model=None, hidden=None, layers=None)
    train(tiny_options(new, tmp_path / "whole", max_steps=20, **opts))
    train(tiny_options(new, tmp_path / "split", max_steps=10, **opts))
    train({"max_steps": 20}, resume=str(tmp_path / "split"))
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_source_checkpoint_is_read_once(base, tmp_path, monkeypatch):
    import charrnn.training.train as train_module

    run, new = base
    reads = []
    real_load = train_module.load
    monkeypatch.setattr(train_module, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    train(tiny_options(new, tmp_path / "ft", max_steps=2, init_from=str(run), model=None, hidden=None, layers=None))
    assert len(reads) == 1, reads


def test_a_grown_vocabulary_encodes_and_decodes():
    v = Vocab(("b", "d", "a", "é", "c"))  # old characters, then appended ones: not sorted
    text = "abcédcba"
    ids = v.encode(text)
    assert list(ids) == [2, 0, 4, 3, 1, 4, 0, 2]
    assert v.decode(ids) == text
    with pytest.raises(Exception, match="not in the model's vocabulary"):
        v.encode("abz")
