"""Beam search over characters: the continuation the model itself finds most likely per character.

    result = beam_search(model, vocab, "ROMEO:", length=200, width=5, stop=("\n\n",))
    result.samples[0].text, result.samples[0].logprob_per_char

K beams (rows of one batch) advance together, one single-character step each, with their states
carried: the cost per character is K steps and does not grow with the text. At every step the K most
likely continuations of all K x V candidates survive (they all have the same length, so ranking them
by total or by per-character log-probability is the same). A continuation that ends with a stop string
is set aside as finished, and the beam narrows. At the end the finished and the surviving
continuations are compared by their length-normalised log-probability, ln p / characters.

With K = 1 this is greedy decoding. Beam search is not monotone in K, so for K > 1 greedy decoding runs
as well and competes: the result never scores below greedy's by the model's own measure. Nothing is
random: the same model and prefix give the same text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from charrnn.core.vocab import Vocab
from charrnn.core.errors import CharRNNError
from charrnn.generate.sample import (Context, Finished, Sample, StopWatch, check_prefix, check_stops, inference, prime,
                            sample, stepper)


def beam_search(model, vocab: Vocab, prefix: str = "", length: int = 200, width: int = 5,
                stop: Sequence[str] = (), include_stop: bool = False,
                context: Context | None = None) -> Finished:
    """The best continuation (one Sample, scored) after `prefix` (fed after `context` when given),
    at most `length` characters, ending at its first stop string when one occurs."""
    check_prefix(vocab, prefix)
    stops = check_stops(vocab, stop)
    if width < 1:
        raise CharRNNError(f"the beam width must be at least 1, not {width}")
    with inference(model):
        best = _beams(model, vocab, prime(model, vocab, prefix, 1, context), length, width, stops, prefix)
    if width > 1:  # greedy competes (see the module docstring); on a tie the beam's answer stays
        greedy = sample(model, vocab, prefix, length, temperature=0.0, stop=stops, include_stop=True, score=True,
                        context=context)
        if greedy.samples[0].logprob_per_char > best.samples[0].logprob_per_char:
            best = greedy
    found = best.samples[0]
    if found.stop is not None and not include_stop:
        found = Sample(_without_stop(found.text, found.stop, prefix), found.logprob, found.scored, found.stop)
    return Finished([found], best.context)


def _without_stop(text: str, stop: str, prefix: str) -> str:
    """Generated text minus the generated part of the stop string that ends it (a stop string may
    begin in the prefix: only its generated characters can be taken off)."""
    watch = StopWatch((stop,), include=False, before=prefix)
    return "".join(watch.push(c) for c in text)


def _beams(model, vocab, start: Context, length, width, stops, prefix) -> Finished:
    """The search itself, stop strings shown in the texts (the caller takes them off)."""
    if length == 0:
        return Finished([Sample("", 0.0, 0, None)], start)
    step, V = stepper(model), model.vocab_size
    state, x = start.state, start.last  # one row to begin with; (L, 1, H) state, (1,) ids
    scores = torch.zeros(1, dtype=torch.float64)  # (R,) ln p of each beam so far
    texts = [""]
    done: list[tuple[Sample, Context]] = []
    keep_chars = max((len(st) for st in stops), default=1)
    tail = prefix[len(prefix) - keep_chars + 1 :] if keep_chars > 1 else ""  # where a stop string may begin
    for t in range(length):
        logits, state = step(x, state)  # (R, V)
        cand = scores[:, None] + logits.double().log_softmax(-1).cpu()  # (R, V): every one-character extension
        top = torch.topk(cand.flatten(), min(width, cand.numel()))  # sorted, ties broken by position
        parents, ids = (top.indices // V).tolist(), (top.indices % V).tolist()
        keep = []
        for j, (p, i, s) in enumerate(zip(parents, ids, top.values.tolist())):
            text = texts[p] + vocab.chars[i]
            # endswith looks at most keep_chars back: into the prefix's tail only while the text is shorter
            ended = next((st for st in stops if (tail + text[-keep_chars:]).endswith(st)), None)
            if ended is None:
                keep.append(j)
                continue
            row = torch.tensor([p])
            done.append((Sample(text, s, t + 1, ended), Context(_select(state, row), torch.tensor([i]))))
        if not keep:
            break
        rows = torch.tensor(keep)
        src = top.indices[rows] // V
        state, x = _select(state, src), (top.indices[rows] % V).to(start.last.device)
        scores, texts = top.values[rows], [texts[parents[j]] + vocab.chars[ids[j]] for j in keep]
    else:  # ran to the length limit: the survivors compete too
        for r, (s, text) in enumerate(zip(scores.tolist(), texts)):
            done.append((Sample(text, s, length, None), Context(_select(state, torch.tensor([r])), x[r : r + 1])))
    found, ctx = max(done, key=lambda d: d[0].logprob_per_char)  # the first of equals: the most likely early
    return Finished([found], ctx)


def _select(state, rows: torch.Tensor):
    """The rows (beams) `rows` of a state, (L, R, H) -> (L, len(rows), H), for h and c alike."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows.to(s.device)) for s in state)
    return state.index_select(1, rows.to(state.device))
