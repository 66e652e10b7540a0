"""Generate text from a model after warming its state up on a prefix.

The prefix is fed through the network once (one forward call over all of it); each generated character
then costs exactly one step with the carried state, so the cost per character does not grow with the
length. `num_samples` continuations are generated together as one batch, and all randomness comes from
an explicit torch.Generator: the same seed gives the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.data import Vocab
from charrnn.errors import CharRNNError


def check_prefix(vocab: Vocab, prefix: str) -> None:
    missing = vocab.unknown(prefix)
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise CharRNNError(
            f"the prefix has {len(missing)} character(s) the model never saw: {shown} "
            f"(its vocabulary has {len(vocab)} characters; `charrnn info` lists them)"
        )


def seed_char(vocab: Vocab) -> str:
    """What an empty prefix starts from: a newline, else a space, else the first character."""
    for c in ("\n", " "):
        if c in vocab.chars:
            return c
    return vocab.chars[0]


def next_ids(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
             generator: torch.Generator | None) -> torch.Tensor:
    """logits (N, V) -> one id per row (N,). temperature 0 is greedy; top-k and top-p (nucleus) keep
    the k most likely / the smallest set whose probability reaches p, then renormalise."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep tokens until the mass before them reaches p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    # inverse-CDF draw: one uniform per row, the first id whose cumulative probability exceeds it
    # (right=True never picks a zero-probability id); cheaper than torch.multinomial for one draw per row
    cum = logits.softmax(dim=-1).cpu().cumsum(dim=-1)  # (N, V)
    u = torch.rand(cum.shape[0], 1, generator=generator, dtype=cum.dtype) * cum[:, -1:]  # (N, 1)
    ids = torch.searchsorted(cum, u, right=True).clamp_(max=cum.shape[1] - 1)
    return ids.squeeze(1).to(logits.device)


def generate(model, vocab: Vocab, prefix: str = "", length: int = 200, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, num_samples: int = 1,
             generator: torch.Generator | None = None) -> Iterator[list[str]]:
    """Yield `length` steps, each a list of `num_samples` new characters (one per sample).
    The prefix is checked here, before the first character is generated."""
    check_prefix(vocab, prefix)
    return _generate(model, vocab, prefix, length, temperature, top_k, top_p, num_samples, generator)


@torch.no_grad()
def _generate(model, vocab, prefix, length, temperature, top_k, top_p, num_samples, generator):
    device = next(model.parameters()).device
    start = prefix or seed_char(vocab)
    index = vocab.index()
    was_training = model.training
    model.eval()
    try:
        ids = torch.tensor([index[c] for c in start], device=device).repeat(num_samples, 1)  # (N, P)
        state = model.begin_state(num_samples, device)
        # warm-up: everything but the last prefix character in one call; the last one is the first input
        if ids.shape[1] > 1:
            _, state = model(ids[:, :-1], state)
        x = ids[:, -1]  # (N,)
        step = _stepper(model)
        for _ in range(length):
            logits, state = step(x, state)  # (N, V)
            x = next_ids(logits, temperature, top_k, top_p, generator)  # (N,)
            yield [vocab.chars[i] for i in x.tolist()]
    finally:
        model.train(was_training)


def _stepper(model):
    """One character per row, (N,) ids -> (N, V) logits: `model.step` where the model has one
    (CharRNN's fast single-step path), else a forward call on an (N, 1) input."""
    if hasattr(model, "step"):
        return model.step

    def step(x, state):
        logits, state = model(x[:, None], state)  # (N, 1, V)
        return logits[:, -1], state

    return step


def sample_text(model, vocab: Vocab, prefix: str, length: int, generator: torch.Generator | None = None,
                temperature: float = 1.0) -> str:
    """One sample as a string: the prefix followed by `length` generated characters."""
    chars = [step[0] for step in generate(model, vocab, prefix, length, temperature, generator=generator)]
    return prefix + "".join(chars)
