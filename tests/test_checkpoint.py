"""Checkpoint safety: a save that fails part-way (disk full, a crash) leaves the previous checkpoint
loadable and nothing half-written under the final name.

The fault is injected in one place, `interrupted_write`: torch.save writes only the first half of its
bytes and then fails, whether it was given a path or a file object. Re-point it there if the checkpoint
module ever writes through another function.
"""

from __future__ import annotations

import io

import pytest
import torch

from charrnn.core.checkpoint import load_checkpoint, save_checkpoint
from charrnn.core.errors import CharRNNError


def payload(marker: float) -> dict:
    return {"model_config": {"model": "rnn", "vocab_size": 3, "hidden": 2}, "vocab": ["a", "b", "c"],
            "model": {"w": torch.full((64, 64), marker)}}


@pytest.fixture
def interrupted_write(monkeypatch):
    """Call it to make every later torch.save write half of the checkpoint, then fail as a full disk would."""
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()[: len(buf.getvalue()) // 2]
        if hasattr(f, "write"):
            f.write(data)
            f.flush()
        else:
            with open(f, "wb") as out:
                out.write(data)
        raise OSError(28, "No space left on device")

    return lambda: monkeypatch.setattr(torch, "save", half_then_fail)


def test_a_save_interrupted_part_way_keeps_the_previous_checkpoint(tmp_path, interrupted_write):
    path = tmp_path / "last.pt"
    save_checkpoint(payload(1.0), path)
    interrupted_write()
    with pytest.raises((OSError, CharRNNError)):
        save_checkpoint(payload(2.0), path)
    ckpt = load_checkpoint(path)  # still the first, whole checkpoint
    assert float(ckpt["model"]["w"][0, 0]) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"], "a temporary file was left behind"


def test_a_first_save_interrupted_part_way_leaves_nothing_at_the_final_path(tmp_path, interrupted_write):
    path = tmp_path / "best.pt"
    interrupted_write()
    with pytest.raises((OSError, CharRNNError)):
        save_checkpoint(payload(1.0), path)
    assert not path.exists(), "a half-written checkpoint sits under the final name"
    assert list(tmp_path.iterdir()) == []
