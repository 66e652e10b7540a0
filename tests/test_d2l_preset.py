"""`--preset d2l-9.5` against d2l 1.0 section 9.5's recipe, number by number (the book's values are written
here from its code: TimeMachine(batch_size=1024, num_steps=32, num_train=10000, num_val=5000),
RNNScratch(num_hiddens=32, sigma=0.01), RNNLMScratch(lr=1), Trainer(max_epochs=100, gradient_clip_val=1))."""

from __future__ import annotations

import numpy as np

from charrnn.core.config import load_preset
from charrnn.data.batches import Batches, split
from charrnn.training.train import build_configs

BOOK = {"num_steps": 32, "num_hiddens": 32, "sigma": 0.01, "lr": 1.0, "clip": 1.0, "steps": 100 * 10,
        "train_windows": 10_000, "val_windows": 5_000}


def test_d2l_9_5_preset_is_the_books_recipe():
    mcfg, cfg, _ = build_configs(load_preset("d2l-9.5"))
    assert (mcfg.model, mcfg.hidden, mcfg.embed, mcfg.init_std) == ("rnn", BOOK["num_hiddens"], 0, BOOK["sigma"])
    assert (cfg.seq_len, cfg.lr, cfg.clip, cfg.optimizer) == (BOOK["num_steps"], BOOK["lr"], BOOK["clip"], "sgd")
    assert cfg.sampling == "random" and cfg.state_policy() == "reset"  # shuffled windows, a zero state each batch
    # the book trains on the windows starting at 0 .. 9,999 (characters 0 .. 10,031), validates on the next 5,000
    train, val, _ = split(np.arange(cfg.max_chars), cfg.val_frac, cfg.test_frac)
    assert len(train) == BOOK["train_windows"] + BOOK["num_steps"] and len(val) == BOOK["val_windows"]
    # one batch per epoch whatever the epoch's random offset, so the epochs are the book's 1,000 steps
    batches = Batches(train, cfg.batch_size, cfg.seq_len, cfg.sampling, seed=cfg.seed)
    assert {batches.epoch(e)["num_batches"] for e in range(64)} == {1}
    assert cfg.epochs == BOOK["steps"]
