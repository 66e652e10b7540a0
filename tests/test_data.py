"""Text decoding, preprocessing, vocabulary, splits and d2l's two minibatch schemes."""

import numpy as np
import pytest
import torch

from charrnn.core.vocab import Vocab, preprocess, read_text
from charrnn.data.batches import Batches, split
from charrnn.core.errors import CharRNNError


def test_utf8_any_script_and_smallest_dtype(tmp_path):
    latin = "hello, world\n"
    assert Vocab.from_text(latin).dtype == np.uint8
    # Chinese text needs more than 256 ids: the ids switch to uint16 and still round-trip.
    cjk = "".join(chr(0x4E00 + i) for i in range(600)) + "时间机器。\n"
    p = tmp_path / "zh.txt"
    p.write_text(cjk * 3, encoding="utf-8")
    text = read_text(p)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert len(vocab) == len(set(text)) > 256
    assert ids.dtype == np.uint16
    assert vocab.decode(ids) == text
    assert list(vocab.chars) == sorted(set(text))


def test_invalid_utf8_names_the_offset_and_replace_on_request(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"good text \xff\xfe more")
    with pytest.raises(CharRNNError, match=r"not valid UTF-8: byte 0xff at offset 10.*--encoding-errors replace"):
        read_text(p)
    assert read_text(p, "replace") == "good text \ufffd\ufffd more"


def test_missing_and_directory_paths_are_clear_errors(tmp_path):
    with pytest.raises(CharRNNError, match="file not found"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(CharRNNError, match="is a directory"):
        read_text(tmp_path)


def test_d2l_letters_only_preprocessing():
    text = "The Time Machine, by H. G. Wells [1898]\n\n\nI\nThe Time Traveller (for so it will be...)\n"
    # d2l: per line, runs of non-letters -> one space, strip, lower; lines joined with nothing between
    assert preprocess(text, letters_only=True) == "the time machine by h g wellsithe time traveller for so it will be"
    assert preprocess("AbC", lowercase=True) == "abc"
    assert preprocess("abcdef", max_chars=4) == "abcd"
    assert preprocess("Ünïcode 42 字", letters_only=True) == "ünïcode 字"


def test_encode_rejects_unknown_characters():
    vocab = Vocab.from_text("abc")
    with pytest.raises(CharRNNError, match=r"2 character\(s\) not in the model's vocabulary: 'x', 'y'"):
        vocab.encode("abxcy")


def test_split_is_contiguous_90_10():
    ids = np.arange(1000)
    train, val, test = split(ids, 0.1, 0.0)
    assert len(train) == 900 and len(val) == 100 and len(test) == 0
    assert np.array_equal(np.concatenate([train, val]), ids)
    train, val, test = split(ids, 0.1, 0.05)
    assert (len(train), len(val), len(test)) == (850, 100, 50) and test[0] == 950


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_batches_shapes_and_targets_shifted_by_one(sampling):
    ids = np.arange(5000, dtype=np.int64)  # ids equal to positions: X and Y reveal where they came from
    b = Batches(ids, batch_size=4, seq_len=7, sampling=sampling, seed=3)
    plan = b.epoch(0)
    for k in range(plan["num_batches"]):
        x, y = b.batch(plan, k)
        assert x.shape == y.shape == (4, 7) and x.dtype == torch.long
        assert torch.equal(y, x + 1)  # the target is the next character
        assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # each row is a contiguous window


def test_random_sampling_windows_are_disjoint_shuffled_and_offset():
    ids = np.arange(3000, dtype=np.int64)
    T = 10
    b = Batches(ids, batch_size=5, seq_len=T, sampling="random", seed=0)
    offsets = set()
    for e in range(8):
        plan = b.epoch(e)
        offsets.add(plan["offset"])
        starts = torch.cat([b.batch(plan, k)[0][:, 0] for k in range(plan["num_batches"])])
        assert 0 <= plan["offset"] < T
        assert ((starts - plan["offset"]) % T == 0).all()  # windows on the offset's grid
        assert len(set(starts.tolist())) == len(starts)  # never the same window twice
        assert not torch.equal(starts, starts.sort().values)  # shuffled
    assert len(offsets) > 1  # the offset changes between epochs
    # the plan is a pure function of (seed, epoch): a resumed run sees the same batches
    again = Batches(ids, batch_size=5, seq_len=T, sampling="random", seed=0)
    assert torch.equal(again.epoch(3)["starts"], b.epoch(3)["starts"])


def test_sequential_streams_are_contiguous_across_batches():
    ids = np.arange(4000, dtype=np.int64)
    b = Batches(ids, batch_size=6, seq_len=9, sampling="sequential", seed=1)
    plan = b.epoch(0)
    assert 0 <= plan["offset"] <= 9
    prev = None
    for k in range(plan["num_batches"]):
        x, y = b.batch(plan, k)
        if prev is not None:
            # row r of batch k starts exactly where row r of batch k-1 stopped
            assert torch.equal(x[:, 0], prev[:, -1] + 1)
        prev = x
    # rows are disjoint stretches of the text, in order
    first = b.batch(plan, 0)[0][:, 0]
    assert (first.diff() == plan["stream_len"]).all()


def test_corpus_shorter_than_one_batch_is_an_error():
    with pytest.raises(CharRNNError, match=r"needs at least 1,024"):
        Batches(np.arange(500), batch_size=32, seq_len=31, sampling="random", seed=0)
