"""Properties of a text, character by character, and the units of a model that follow them.

    signals = builtin_signals(text)               # {"depth", "quote", "line-pos", "word-pos"}: (N,) float64
    name, values = regex_signal(text, "num=[0-9]+")            # 1.0 inside a match, 0.0 elsewhere
    name, values = file_signal("sent=sentiment.txt", len(text))  # one number per character, one per line
    ranking = rank_units(acts.matrix, signals["depth"])       # acts: charrnn.analysis.activations.gather
    ranking.r[ranking.order[0]]                   # the unit that follows depth best, its Pearson r

Activation i is the state *after* reading character i (state carried from zero over the whole text),
so every signal is defined as the property of the text up to and including character i:

    depth     nesting depth of ()[]{} after the character (an opening bracket counts itself, a closing
              one does not); a closing bracket with nothing open leaves the depth at 0
    quote     1 from an opening double quote up to the character before its closing quote, else 0
    line-pos  characters since the last newline (the newline itself is 0)
    word-pos  characters since the last space or newline (the space itself is 0)

Pearson r is computed in float64 over every character. A unit that never changes, or a signal that
never changes, has no correlation: it is reported as constant (r = nan), never divided by zero.
`charrnn probe` ranks units and fits its linear probe on these; the explore page lists the ranked units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.core.errors import CharRNNError

BUILTIN_SIGNALS = ("depth", "quote", "line-pos", "word-pos")
_OPEN, _CLOSE = "([{", ")]}"


def builtin_signals(text: str) -> dict[str, np.ndarray]:
    """The four built-in signals of `text`, each (len(text),) float64 (definitions in the module doc)."""
    n = len(text)
    depth = np.zeros(n)
    quote = np.zeros(n)
    line_pos = np.zeros(n)
    word_pos = np.zeros(n)
    d, inside, lp, wp = 0, False, 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            d += 1
        elif ch in _CLOSE:
            d = max(d - 1, 0)
        if ch == '"':
            inside = not inside
        lp = 0 if ch == "\n" else lp + 1
        wp = 0 if ch in " \n" else wp + 1
        depth[i], quote[i], line_pos[i], word_pos[i] = d, float(inside), lp, wp
    return {"depth": depth, "quote": quote, "line-pos": line_pos, "word-pos": word_pos}


# ---------------------------------------------------------------------------------------- unit ranking


@dataclass
class Ranking:
    """Pearson r of every unit with one signal, and the units in order of |r| (constant ones last)."""

    r: np.ndarray  # (units,) float64; nan for a constant unit, all nan for a constant signal
    order: np.ndarray  # (units,) unit indices, largest |r| first, constant units at the end
    constant_units: np.ndarray  # indices of units that never change on this text
    signal_constant: bool  # the signal never changes: no unit can correlate with it


def pearson(acts: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """r of each column of acts (N, U) with signal (N,), float64; nan where a column or the signal is
    constant (it has no correlation; nothing is divided by zero)."""
    a = np.asarray(acts, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    if a.ndim != 2 or s.shape != (a.shape[0],):
        raise CharRNNError(f"activations {a.shape} and signal {s.shape} do not line up character for character")
    r = np.full(a.shape[1], np.nan)
    if len(s) < 2 or np.ptp(s) == 0:
        return r
    live = np.ptp(a, axis=0) > 0  # (U,): a unit with one value throughout has no correlation
    ac = a[:, live] - a[:, live].mean(axis=0)
    sc = s - s.mean()
    # Normalised before the product so that neither sum of squares can overflow or underflow.
    ac /= np.sqrt((ac * ac).sum(axis=0))
    sc /= np.sqrt(sc @ sc)
    r[live] = np.clip(sc @ ac, -1.0, 1.0)
    return r


def rank_units(acts: np.ndarray, signal: np.ndarray) -> Ranking:
    """Rank the units of acts (N, U) by |Pearson r| with signal (N,)."""
    r = pearson(acts, signal)
    s = np.asarray(signal, dtype=np.float64)
    constant_signal = len(s) < 2 or np.ptp(s) == 0
    constant_units = np.flatnonzero(np.ptp(np.asarray(acts), axis=0) == 0)
    key = np.where(np.isnan(r), -1.0, np.abs(r))  # constant units sort after every real r
    order = np.argsort(-key, kind="stable")
    return Ranking(r, order, constant_units, bool(constant_signal))


# ------------------------------------------------------------------------------------------ user signals


def regex_signal(text: str, spec: str) -> tuple[str, np.ndarray]:
    """`NAME=PATTERN` -> (NAME, 1.0 on every character inside a match of PATTERN, 0.0 elsewhere)."""
    name, pattern = _split_spec(spec, "--signal-regex", "NAME=PATTERN")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise CharRNNError(f"--signal-regex {name}: {pattern!r} is not a valid regular expression: {e}") from None
    values = np.zeros(len(text))
    for m in compiled.finditer(text):
        values[m.start() : m.end()] = 1.0
    return name, values


def file_signal(spec: str, n_chars: int) -> tuple[str, np.ndarray]:
    """`NAME=F` -> (NAME, the numbers in F, one per line, one per character of the probed text)."""
    name, path = _split_spec(spec, "--signal-file", "NAME=FILE")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise CharRNNError(f"--signal-file {name}: cannot read {path}: {e.strerror or e}") from None
    values = np.empty(len(lines))
    for i, line in enumerate(lines):
        try:
            values[i] = float(line)
        except ValueError:
            raise CharRNNError(f"--signal-file {name}: line {i + 1} of {path} is not a number: {line[:40]!r}") from None
    if len(values) != n_chars:
        raise CharRNNError(f"--signal-file {name}: {path} has {len(values):,} numbers but the text has {n_chars:,} characters "
                           "(after the model's preprocessing); give one number per character, one per line")
    if not np.isfinite(values).all():
        raise CharRNNError(f"--signal-file {name}: {path} holds nan or infinite values")
    return name, values


def _split_spec(spec: str, flag: str, form: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise CharRNNError(f"{flag} takes {form} (got {spec!r})")
    return name, value
