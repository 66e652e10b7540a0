"""A corpus of many files (--corpus DIR or a glob): which files, in which order, joined how, split where;
training on it works and resumes exactly; bad files are one clear error naming the file."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.core.config import TrainConfig
from charrnn.core.errors import CharRNNError
from charrnn.data.dataset import prepare_corpus
from charrnn.data.documents import list_documents
from charrnn.training.train import train
from helpers import make_text, tiny_options

runner = CliRunner()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "letters"
    (root / "b").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.txt").write_text("first document\nends here", encoding="utf-8")  # no final newline
    (root / "b" / "c.txt").write_text("\ufeffthird, in a folder\n", encoding="utf-8")  # a BOM is not text
    (root / "b.txt").write_text("second\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("never read\n", encoding="utf-8")
    (root / ".git" / "HEAD").write_text("ref: never read\n", encoding="utf-8")
    return root


# sorted by path components: a.txt, b/c.txt, b.txt ("b" < "b.txt"); each ends with a newline, then a blank line
EXPECTED = "first document\nends here\n\nthird, in a folder\n\nsecond\n\n"


def test_a_directory_is_its_visible_files_joined_in_path_order(tree):
    corpus = prepare_corpus(TrainConfig(corpus=str(tree), val_frac=0.0))
    assert corpus.name == "letters"
    assert corpus.vocab.decode(corpus.train) == EXPECTED


def test_a_glob_selects_files_and_names_the_corpus_after_its_folder(tree):
    corpus = prepare_corpus(TrainConfig(corpus=str(tree / "**" / "*.txt"), val_frac=0.0))
    assert corpus.name == "letters"
    assert corpus.vocab.decode(corpus.train) == EXPECTED
    only_top = prepare_corpus(TrainConfig(corpus=str(tree / "*.txt"), val_frac=0.0))
    assert only_top.vocab.decode(only_top.train) == "first document\nends here\n\nsecond\n\n"


def test_validation_is_the_end_of_the_joined_text(tree):
    corpus = prepare_corpus(TrainConfig(corpus=str(tree), val_frac=0.25))
    n_val = len(corpus.val)
    assert n_val > 0
    assert corpus.vocab.decode(corpus.val) == EXPECTED[-n_val:]
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == EXPECTED


def test_an_edited_file_is_joined_again(tree):
    prepare_corpus(TrainConfig(corpus=str(tree), val_frac=0.0))
    (tree / "b.txt").write_text("second, longer now\n", encoding="utf-8")
    corpus = prepare_corpus(TrainConfig(corpus=str(tree), val_frac=0.0))
    assert "second, longer now\n\n" in corpus.vocab.decode(corpus.train)


def test_invalid_utf8_names_the_file_and_empty_folders_are_an_error(tree, tmp_path):
    (tree / "b" / "bad.txt").write_bytes(b"ok \xff bad\n")
    r = runner.invoke(app, ["train", "--corpus", str(tree), "--out", str(tmp_path / "run"), "--max-steps", "1"])
    assert r.exit_code == 2
    assert "bad.txt is not valid UTF-8" in " ".join(r.output.split())
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["train", "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "run2")])
    assert r.exit_code == 2 and "no files there" in r.output


def test_a_directory_corpus_trains_and_resumes_exactly(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    texts = [make_text(2500, seed=i) for i in range(4)]
    for i, t in enumerate(texts):
        (root / f"doc{i}.txt").write_text(t, encoding="utf-8")
    joined = sum(len(t) + (not t.endswith("\n")) + 1 for t in texts)  # a newline where missing, an empty line
    train(tiny_options(root, tmp_path / "whole", max_steps=16, eval_every=8))
    train(tiny_options(root, tmp_path / "split", max_steps=8, eval_every=8))
    train({"max_steps": 16}, resume=str(tmp_path / "split"))
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["corpus"]["train_chars"] + a["corpus"]["val_chars"] == joined
    assert a["corpus"] == b["corpus"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_a_glob_that_climbs_out_with_dot_dot_finds_its_files(tree, tmp_path, monkeypatch):
    """'..' starts with a dot but is no hidden file: only the part below the pattern's folder counts."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    name, files = list_documents("../letters/*.txt")
    assert name == "letters" and [p.name for p in files] == ["a.txt", "b.txt"]
    climbed = prepare_corpus(TrainConfig(corpus="../letters/**/*.txt", val_frac=0.0))
    assert climbed.vocab.decode(climbed.train) == EXPECTED == prepare_corpus(
        TrainConfig(corpus="../letters", val_frac=0.0)).vocab.decode(climbed.train)
    # below the pattern's folder a hidden part still hides a file, whatever the pattern matches
    assert [p.name for p in list_documents("../letters/**/*")[1]] == ["a.txt", "c.txt", "b.txt"]
    with pytest.raises(CharRNNError, match="no files there"):
        list_documents("../letters/.*")  # .hidden.txt: matched, and still hidden
