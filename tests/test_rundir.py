"""rundir.read_metrics, the one reader of a run's metrics.jsonl (plot's curves, diagnose's records): events in
order, blank lines ignored; a torn or foreign line skipped, or with strict=True an error naming path:line."""

from __future__ import annotations

import json

import pytest

from charrnn.core.errors import CharRNNError
from charrnn.training.rundir import read_metrics

EVENTS = [{"event": "log", "step": 1, "train_loss": 2.5}, {"event": "eval", "step": 2, "val_loss": 2.25, "text": "a\u2028b"}]


def test_reads_the_events_in_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n\n" for e in EVENTS), encoding="utf-8")
    assert read_metrics(path) == EVENTS == read_metrics(path, strict=True)


@pytest.mark.parametrize("bad", ['{"event": "log", "st', "[1, 2]"])
def test_a_bad_line_is_skipped_or_named(tmp_path, bad):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(EVENTS[0]) + "\n" + bad + "\n" + json.dumps(EVENTS[1]) + "\n", encoding="utf-8")
    assert read_metrics(path) == EVENTS
    with pytest.raises(CharRNNError, match=r"metrics\.jsonl:2: not a JSON line"):
        read_metrics(path, strict=True)


def test_an_unreadable_file_is_one_error(tmp_path):
    with pytest.raises(CharRNNError, match="cannot read"):
        read_metrics(tmp_path / "missing.jsonl")
