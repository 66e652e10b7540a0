"""The n-gram yardstick: how much better than counting is the model, and where does its advantage come from?

    lm = KneserNey(train_ids, vocab_size=V, order=5)
    nll = lm.char_nll(eval_ids)               # (orders, len(eval_ids) - 1): -log p of ids[1:], per order
    report = compare(ckpt, order=5)           # what `charrnn eval RUN --ngram 5` prints

Interpolated Kneser-Ney (Chen & Goodman 1998, section 3.5; Jurafsky & Martin ch. 3) with one absolute
discount per level, D_k = n1 / (n1 + 2 n2) from the level's count-of-counts (0.5 when n1 = 0, where the
formula would leave nothing for unseen characters).
For the order-n model, with h the last k-1 characters before w:

    P_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k * N1+(h .) / c_k(h .) * P_{k-1}(w | h minus its first)
    P_k(w | h) = P_{k-1}(w | h minus its first)                    when c_k(h .) = 0 (context never seen)
    P_0(w)     = 1 / V                                             (every character of the vocabulary)

c_n is the raw count of the n-gram; at lower levels c_k is the continuation count N1+(. h w), the number of
distinct characters seen before h w. N1+(h .) is the number of distinct w with c_k(h w) > 0. The first
characters of a text use the shorter history they have. Each distribution sums to one over the vocabulary
(a test holds it to that). Every character but the first is scored, as `charrnn eval` scores them, and
the loss is total NLL / characters scored.

The model's advantage (n-gram loss minus model loss) is split by the kind of character predicted: a
closing bracket or quote whose opener lies beyond the n-gram's reach (N or more characters back: the
paper's long-range error class), one within reach, the first character of a line or of a word, and the
rest. Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks", section 4.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.core.errors import CharRNNError
from charrnn.training.evaluate import LossReport, char_nll

MAX_ORDER = 10


def _discount(counts: np.ndarray) -> float:
    """D = n1 / (n1 + 2 n2) from how many n-grams were seen once (n1) and twice (n2)."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5


@dataclass
class _Level:
    """The k-grams of one level: sorted codes, their counts (raw or continuation) and, per context (the
    first k-1 characters), the total count and the number of distinct followers."""

    codes: np.ndarray  # (G,) int64, sorted; a k-gram c_1..c_k is sum c_i V^(k-i)
    counts: np.ndarray  # (G,) float64
    ctx_codes: np.ndarray  # (H,) sorted context codes
    ctx_total: np.ndarray  # (H,) sum of counts over the followers
    ctx_types: np.ndarray  # (H,) number of followers with a positive count
    discount: float

    @classmethod
    def build(cls, codes: np.ndarray, counts: np.ndarray, V: int) -> "_Level":
        keep = counts > 0
        codes, counts = codes[keep], counts[keep].astype(np.float64)
        ctx, first = np.unique(codes // V, return_index=True)  # codes sorted, so each context is a run
        total = np.add.reduceat(counts, first) if len(codes) else np.zeros(0)
        types = np.diff(np.append(first, len(codes)))
        return cls(codes, counts, ctx, total, types.astype(np.float64), _discount(counts))


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == query, else 0 (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(len(query))
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0.0)


def _gram_codes(ids: np.ndarray, k: int, V: int) -> np.ndarray:
    """Codes of the k-grams ending at positions k-1 .. len(ids)-1, as int64."""
    ids = ids.astype(np.int64)
    n = len(ids) - k + 1
    code = np.zeros(max(n, 0), dtype=np.int64)
    for j in range(k):
        code = code * V + ids[j : j + n]
    return code


class KneserNey:
    """Interpolated Kneser-Ney character models of orders 1..order, fitted on one id sequence."""

    def __init__(self, train_ids, vocab_size: int, order: int):
        if not 1 <= order <= MAX_ORDER:
            raise CharRNNError(f"--ngram must be between 1 and {MAX_ORDER} (got {order})")
        if vocab_size ** order >= 2**62:
            raise CharRNNError(f"a {order}-gram over {vocab_size} characters does not fit the counting table; use a smaller --ngram")
        ids = np.asarray(train_ids)
        if len(ids) < order:
            raise CharRNNError(f"the training text has {len(ids)} characters: too few for a {order}-gram")
        self.V, self.order = vocab_size, order
        self.raw: list[_Level] = []  # raw[k-1]: level k with raw counts (the top level of the order-k model)
        self.cont: list[_Level] = []  # cont[k-1]: level k with continuation counts (a lower level)
        for k in range(1, order + 1):
            codes, counts = np.unique(_gram_codes(ids, k, vocab_size), return_counts=True)
            self.raw.append(_Level.build(codes, counts, vocab_size))
            # N1+(. g): distinct characters seen before g = distinct (k+1)-grams ending in g
            longer = np.unique(_gram_codes(ids, k + 1, vocab_size))
            suffix, n_before = np.unique(longer % vocab_size**k, return_counts=True)
            self.cont.append(_Level.build(suffix, n_before, vocab_size))

    def char_nll(self, ids) -> np.ndarray:
        """-log P(ids[t] | ids[:t]) for t = 1..len-1 under the models of order 1..order: (order, len-1)."""
        ids = np.asarray(ids).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.V):
            raise CharRNNError("ids outside the n-gram model's vocabulary")
        return np.stack([-np.log(self.prob(ids, n)) for n in range(1, self.order + 1)])

    def prob(self, ids: np.ndarray, n: int) -> np.ndarray:
        """P(ids[t] | up to n-1 previous ids) for t = 1..len-1 under the order-n model: (len-1,)."""
        V, T = self.V, len(ids) - 1
        pos = np.arange(1, T + 1)  # the positions predicted
        p = np.full(T, 1.0 / V)  # P_0: uniform over the vocabulary
        for k in range(1, n + 1):
            level = self.raw[k - 1] if k == n else self.cont[k - 1]
            ok = pos - (k - 1) >= 0  # enough history for a (k-1)-character context
            start = np.where(ok, pos - (k - 1), 0)
            gram = np.zeros(T, dtype=np.int64)
            for j in range(k):
                gram = gram * V + ids[np.minimum(start + j, pos)]
            c = _lookup(level.codes, level.counts, gram)
            total = _lookup(level.ctx_codes, level.ctx_total, gram // V)
            types = _lookup(level.ctx_codes, level.ctx_types, gram // V)
            seen = ok & (total > 0)
            safe = np.where(seen, total, 1.0)
            D = level.discount
            p = np.where(seen, np.maximum(c - D, 0.0) / safe + D * types / safe * p, p)
        return p


# ------------------------------------------------------------------------------- where the gain comes from

CLASSES = ("closes beyond reach", "closes within reach", "starts a line", "starts a word", "other")
_PAIRS = {")": "(", "]": "[", "}": "{"}


def char_classes(text: str, order: int) -> np.ndarray:
    """The class (index into CLASSES) of each character of `text` as a prediction target. A closing
    bracket or double quote is 'beyond reach' when its opener is `order` or more characters back, outside
    the order-gram's context of order-1 characters."""
    cls = np.full(len(text), CLASSES.index("other"))
    stack: list[tuple[str, int]] = []
    quote_at = None
    for t, ch in enumerate(text):
        opened = None
        if ch in _PAIRS and stack and stack[-1][0] == _PAIRS[ch]:
            opened = stack.pop()[1]
        elif ch in "([{":
            stack.append((ch, t))
        elif ch == '"':
            opened, quote_at = (quote_at, None) if quote_at is not None else (None, t)
        if opened is not None:
            cls[t] = CLASSES.index("closes beyond reach" if t - opened >= order else "closes within reach")
        elif t > 0 and text[t - 1] == "\n":
            cls[t] = CLASSES.index("starts a line")
        elif t > 0 and text[t - 1] == " ":
            cls[t] = CLASSES.index("starts a word")
    return cls


def breakdown(model_nll: np.ndarray, ngram_nll: np.ndarray, classes: np.ndarray) -> list[dict]:
    """Per class: characters, model and n-gram loss (nats/char), the model's advantage per character of
    the class, and its contribution to the overall advantage (the class's summed advantage / all characters
    scored: the contributions add up to n-gram loss - model loss). Arrays are aligned on the scored characters."""
    gain = ngram_nll - model_nll
    rows = []
    for i, name in enumerate(CLASSES):
        m = classes == i
        k = int(m.sum())
        rows.append({"class": name, "chars": k,
                     "model_loss": float(model_nll[m].mean()) if k else None,
                     "ngram_loss": float(ngram_nll[m].mean()) if k else None,
                     "advantage": float(gain[m].mean()) if k else None,
                     "contribution": float(gain[m].sum() / len(gain)) if k else None})
    return rows


def compare(ckpt_path, order: int, text=None, split: str | None = "val", device: str = "auto", impl: str | None = None,
            data_dir: str | None = None) -> dict:
    """`charrnn eval --ngram N`: the model's per-character loss next to Kneser-Ney 1..N-grams fitted on the
    run's training split, on the same evaluation text, and the model's advantage by class."""
    from charrnn.analysis.subject import open_checkpoint

    s = open_checkpoint(ckpt_path, device, impl).with_corpus(data_dir, why="--ngram fits the n-grams on the run's training split")
    s = s.with_text(text) if text is not None else s.with_split(split)
    lm = KneserNey(s.corpus.train, len(s.tokens), order)
    ng = lm.char_nll(s.ids)  # (order, n)
    mine = char_nll(s.model, s.ids, s.device)
    cls = char_classes(s.text, order)[1:]  # classes of the scored characters
    n = len(mine)
    return {"source": s.source, "checkpoint": s.checkpoint.path, "chars": n, "train_chars": int(len(s.corpus.train)),
            "model": LossReport(float(mine.sum()), n).to_dict(),
            "ngrams": [{"order": k + 1, **LossReport(float(ng[k].sum()), n).to_dict()} for k in range(order)],
            "breakdown": breakdown(mine, ng[-1], cls), "order": order}


YARDSTICK_ORDER = 3  # diagnose's loss.ngram_yardstick: a model that cannot beat a 3-gram is not using its state
YARDSTICK_MARGIN = 0.02  # ok only when the model's loss is at least 2% below the 3-gram's
