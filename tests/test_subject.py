"""charrnn.analysis.subject, the one loader of the analyses: the text it hands every analysis is the file
prepared as training prepared its corpus, or the split training made, checked here against the
corpus re-read and re-split by hand; a user's vocabulary maps unknown characters to its '<unk>'; no
analysis or diagnose module loads a model or a corpus any other way; and the way from `eval --show` to
the encoded text only goes down the stages."""

from __future__ import annotations

import sys

from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.analysis.subject import encode_for, open_checkpoint, user_subject
from charrnn.core.errors import CharRNNError
from charrnn.core.vocab import Vocab

from test_layout import import_graph


def test_splits_are_the_corpus_cut_as_training_cut_it(tiny_run):
    s = open_checkpoint(tiny_run.run)
    text = tiny_run.corpus.read_text(encoding="utf-8")
    vocab = Vocab.from_text(text)
    n_val = int(len(text) * 0.1)  # --val-frac 0.1, no test split: train is what comes before
    for split, part in (("train", text[: len(text) - n_val]), ("val", text[len(text) - n_val :])):
        on = s.with_split(split)
        assert on.source == f"{tiny_run.corpus.stem} {split} split"  # the corpus's name: its file's stem
        np.testing.assert_array_equal(on.ids, vocab.encode(part))
        assert on.text == part
    with pytest.raises(CharRNNError, match="the test split of .* is empty"):
        s.with_split("test")
    with pytest.raises(CharRNNError, match="--split must be train, val or test"):
        s.with_split("dev")


def test_a_file_is_prepared_as_the_training_text_was(tmp_path):
    from charrnn.training.train import train
    from helpers import tiny_options, write_corpus

    corpus = write_corpus(tmp_path, 2000)
    train(tiny_options(corpus, tmp_path / "run", max_steps=1, eval_every=1, lowercase=True))
    other = tmp_path / "other.txt"
    other.write_text("The Time Machine.\nThe Traveller", encoding="utf-8")
    s = open_checkpoint(tmp_path / "run").with_text(other)
    assert s.text == "the time machine.\nthe traveller" and s.source == str(other)
    np.testing.assert_array_equal(s.ids, s.vocab.encode("the time machine.\nthe traveller"))
    np.testing.assert_array_equal(s.encode("THE TIME"), s.vocab.encode("the time"))
    first = s.first(8)
    assert first.text == "the time" and len(first.ids) == 8
    assert first.source == f"{other}, first 8 of {len(s.ids)} characters"
    assert s.first(1000) is s  # nothing cut, nothing said


class _User(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.lin = vocab, torch.nn.Linear(2, 2)

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, 2, device=device)

    def forward(self, x, state):
        return torch.zeros(*x.shape, len(self.vocab)), state


def test_a_user_vocabulary_reads_unknown_characters_as_its_unk(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcaxb", encoding="utf-8")
    s = user_subject(_User(["a", "b", "<unk>", "c"]), torch.device("cpu"), "mine:build").with_text(text)
    np.testing.assert_array_equal(s.ids, [0, 1, 3, 0, 2, 1])
    assert s.unknown == 1 and s.text == "abcaxb" and s.factory == "mine:build"
    with pytest.raises(CharRNNError, match=r"1 character\(s\) not in the model's vocab .* 'x'"):
        encode_for(["a", "b", "c"], "abx")
    with pytest.raises(CharRNNError, match="has no training corpus"):
        s.with_split("val")


LOADERS = {"core.checkpoint", "core.userfile", "data.dataset"}


def user_importers_in(module: str) -> set[str]:
    """The names a module takes from core.userfile that import a user's file or module."""
    import ast

    path = Path(__file__).resolve().parents[1] / "charrnn" / (module.replace(".", "/") + ".py")
    names = {a.name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom) and node.module == "charrnn.core.userfile" for a in node.names}
    return names & {"import_file", "import_module"}


def test_only_the_subject_loads_models_and_corpora_for_the_analyses():
    """Every analysis and diagnose module that needs a model or a text asks the subject; none borrows a
    loader from a sibling command (probe once imported diagnose's, explore probe's)."""
    graph = import_graph()
    # core.userfile also says whose code raised (blame, call_user): only its importers count as loaders
    borrowers = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] in ("analysis", "diagnose")
                       and m != "analysis.subject" for d in deps & LOADERS
                       if d != "core.userfile" or user_importers_in(m))
    assert not borrowers, "load through charrnn.analysis.subject: " + ", ".join(borrowers)
    commands = {"analysis.probe", "analysis.texts", "analysis.explore", "analysis.ngram"}
    assert not [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("analysis.") for d in deps & commands
                if d != m and (m, d) != ("analysis.explore_server", "analysis.explore")  # one command: explore --serve
                ], "an analysis module imports a command's module"


RANK = {"core": 0, "data": 1, "generate": 2, "training": 3, "analysis": 4, "diagnose": 5}


def stage_paths(fn) -> set[tuple[str, ...]]:
    """Run fn and collect, for every call it makes, the charrnn stages on the call stack, outermost first,
    runs of one stage collapsed: ("analysis", "data", "core") is analysis calling data calling core."""
    paths = set()

    def on_call(frame, event, arg):
        if event != "call":
            return
        stages, f = [], frame
        while f is not None:
            name = f.f_globals.get("__name__", "")
            if name.startswith("charrnn."):
                stage = name.split(".")[1]
                if not stages or stages[-1] != stage:
                    stages.append(stage)
            f = f.f_back
        paths.add(tuple(reversed(stages)))

    sys.setprofile(on_call)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return paths


def test_eval_show_reaches_the_encoded_text_down_the_stages_once(tiny_run, tmp_path):
    """`eval --show`'s loader, on a split and on a file: on every call stack each stage appears once and
    the stages only go down (once texts -> checkpoint -> texts -> data -> texts -> ... went back up)."""
    from charrnn.analysis.surprisal import load_for_scoring

    text = tmp_path / "t.txt"
    text.write_text(tiny_run.corpus.read_text(encoding="utf-8")[:300], encoding="utf-8")
    paths = stage_paths(lambda: load_for_scoring(tiny_run.run, split="val", max_chars=500))
    paths |= stage_paths(lambda: load_for_scoring(tiny_run.run, text=text, max_chars=500))
    assert {("analysis", "data", "core"), ("analysis", "core")} <= paths  # the corpus read, the checkpoint loaded
    bad = [p for p in paths if [RANK[s] for s in p] != sorted((RANK[s] for s in p), reverse=True) or len(set(p)) < len(p)]
    assert not bad, f"call stacks that go back up a stage: {bad[:3]}"
