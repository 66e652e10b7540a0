"""Fine-tuning: start a new run from a trained model's weights (`charrnn train --init-from CKPT`).

Unlike --resume, which continues one run exactly, --init-from begins a new run: fresh optimizer,
schedule, budget and data position, on any corpus. The architecture comes from the checkpoint.

The vocabulary grows, it is never renumbered: characters the model knew keep their ids, and characters
it never saw are appended (in code-point order) with new rows:

    input   one-hot column of W_ih (layer 0) = 0, or an embedding row ~ N(0, 1) as nn.Embedding's
    output  head row = 0, bias = b_new

With a zero head row the new characters' logit is the constant b_new, so among the old characters the
predicted distribution is exactly what it was (a softmax's ratios do not depend on other classes). b_new
is set EPS nats-probability below the smallest log-normaliser seen on a sample of the new text, so at
step 0 each new character has probability at most EPS there, and an old character's log-probability
moves by at most about (number of new characters) x EPS.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from charrnn.core.checkpoint import Checkpoint
from charrnn.core.config import ModelConfig
from charrnn.core.vocab import Vocab
from charrnn.data.dataset import Corpus
from charrnn.core.errors import CharRNNError

EPS = 1e-4  # starting probability (at most) of each new character
ARCHITECTURE = ("model", "hidden", "layers", "embed", "init_std")  # taken from the checkpoint, never changed


def options_for(options: dict[str, Any], ck: Checkpoint) -> dict[str, Any]:
    """The options of a fine-tuning run: the checkpoint's architecture (a flag that asks for a different
    one is an error; dropout and impl may change, they do not change the weights' shapes) and, unless
    given, its preprocessing (a lower-cased model keeps reading lower-cased text)."""
    pre = {"lowercase": ck.preprocessing.lowercase, "letters_only": ck.preprocessing.letters_only,
           "newline": ck.preprocessing.newline}
    saved = ck.raw["model_config"]
    clash = [k for k in ARCHITECTURE if k in options and options[k] != saved.get(k)]
    if clash:
        given = ", ".join(f"--{k.replace('_', '-')} {options[k]}" for k in clash)
        kept = ", ".join(f"{k}={saved.get(k)}" for k in clash)
        raise CharRNNError(f"{given}: --init-from takes the architecture from {ck.path} ({kept}); "
                           "drop the flag, or train from scratch without --init-from")
    return {**pre, **{k: saved[k] for k in ARCHITECTURE if k in saved},
            **{k: v for k, v in options.items() if k not in ARCHITECTURE}}


def grow_vocab(old: Vocab, corpus: Corpus) -> tuple[Corpus, list[str]]:
    """Re-encode a corpus (built with its own vocabulary) with the old vocabulary extended by the
    characters it lacks. -> (corpus with the grown vocabulary, the added characters)."""
    old_index = old.index()
    added = [c for c in corpus.vocab.chars if c not in old_index]
    grown = Vocab(tuple(old.chars) + tuple(added))
    index = grown.index()
    lut = np.array([index[c] for c in corpus.vocab.chars], dtype=grown.dtype)  # corpus id -> grown id

    def remap(ids):
        return lut[np.asarray(ids)] if len(ids) else np.asarray(ids, dtype=grown.dtype)

    return replace(corpus, vocab=grown, train=remap(corpus.train), val=remap(corpus.val), test=remap(corpus.test)), added


@torch.no_grad()
def load_grown(model, ck: Checkpoint, sample_ids: np.ndarray, generator: torch.Generator) -> None:
    """Copy the checkpoint's weights into `model` (built for the grown vocabulary) and initialise the
    rows of the new characters as the module docstring says. sample_ids: some of the new training text."""
    cfg: ModelConfig = model.config
    old = ck.raw["model"]
    V_old = old["head.weight"].shape[0]
    state = model.state_dict()
    for name, t in old.items():
        if name not in state:
            raise CharRNNError(f"{ck.path}: unexpected tensor {name!r} for a {cfg.model} model")
        if name == "embedding.weight":
            state[name][:V_old] = t
            state[name][V_old:] = torch.randn(state[name][V_old:].shape, generator=generator)
        elif name == "rnn.weight_ih_l0" and cfg.embed == 0:
            state[name][:, :V_old] = t
            state[name][:, V_old:] = 0.0  # one-hot columns of the new characters: no input yet
        elif name in ("head.weight", "head.bias"):
            state[name][:V_old] = t
            state[name][V_old:] = 0.0
        else:
            state[name].copy_(t)
    model.load_state_dict(state)
    if model.vocab_size > V_old:
        model.head.bias[V_old:] = _new_bias(model, V_old, sample_ids)


def _new_bias(model, V_old: int, sample_ids: np.ndarray) -> float:
    """log(EPS) below the smallest log-normaliser of the old logits over a sample of the new text."""
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.asarray(sample_ids[:2048]).astype(np.int64))[None].to(model.head.weight.device)
    logits, _ = model(x)  # (1, T, V): the new rows contribute a constant 0 so far
    lse = torch.logsumexp(logits[0, :, :V_old].float(), dim=-1)  # (T,)
    model.train(was_training)
    return float(lse.min()) + math.log(EPS)
