"""`charrnn train --watch`: the watch's checks on charrnn's own loop, through the subscriber the CLI hands
to the engine. The experiments the issue names: random windows with the state carried (a fail), sequential
batches with the state reset (a warning), and the loop as designed (nothing)."""

from __future__ import annotations

import pytest

from charrnn.training.train import train
from charrnn.watch.subscriber import TrainWatch
from helpers import cli, tiny_options, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("watchcorpus"), 20000)


def _run(corpus, out, **over):
    events = []
    train(tiny_options(corpus, out, model="gru", max_steps=40, eval_every=40, log_every=10, **over),
          on_event=events.append, subscribers=[TrainWatch])
    warnings = [e.data["message"] for e in events if e.kind == "warning" and e.data["message"].startswith("watch.")]
    table = [e.data["message"] for e in events if e.kind == "notice" and e.data["message"].startswith("charrnn.watch")]
    return warnings, table


@pytest.mark.parametrize("over, found", [
    ({}, []),
    ({"sampling": "random"}, []),
    ({"sampling": "random", "state": "carry"}, ["watch.state_across_random fail"]),
    ({"state": "reset"}, ["watch.state_reset_contiguous warn"]),
])
def test_train_watch_names_the_state_policy_experiments(corpus, tmp_path, over, found):
    warnings, table = _run(corpus, tmp_path / "run", **over)
    assert [" ".join(w.split()[:2]) for w in warnings] == found, warnings
    assert len(table) == 1 and "watch.loss_scale              ok" in table[0]  # charrnn's loss is per character
    assert "watch.state_not_detached      ok" in table[0] and "not checked" not in table[0]


def test_the_watch_leaves_the_run_unchanged(corpus, tmp_path):
    """Seeded CPU training is bit-reproducible: with and without the watch, the same losses."""
    a = train(tiny_options(corpus, tmp_path / "a", model="gru", max_steps=20, eval_every=20))
    b = train(tiny_options(corpus, tmp_path / "b", model="gru", max_steps=20, eval_every=20), subscribers=[TrainWatch])
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]


def test_the_cli_flag(corpus, tmp_path):
    r = cli("train", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--model", "gru", "--hidden", "16",
            "--batch-size", "8", "--seq-len", "16", "--max-steps", "20", "--eval-every", "20", "--sampling", "random",
            "--state", "carry", "--sample-every", "0", "--watch")
    assert "watch.state_across_random fail at step 9" in r.output and "charrnn.watch after 20 steps" in r.output
