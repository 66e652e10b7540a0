"""A page to explore what a model makes of a text: `charrnn explore` and `charrnn eval --html`.

    data = page_data(model, vocab, ids, device, source="my.txt")          # JSON-ready
    html = render_page(data)                                                # one self-contained file

The page (the template `explore.html` beside this module: inline style and script, nothing fetched)
colours the text by surprisal (`charrnn.analysis.surprisal.score_ids`, the same scores `eval --show` prints);
hovering a character shows the model's top-5 guesses for it; a unit picker recolours the text by one
unit's activation after each character; for each built-in signal of `charrnn.analysis.signals` (depth, quote,
line-pos, word-pos) the units ranked by |Pearson r| are listed, and a click selects one.

Activations travel as int8: unit u's values divided by its largest |value| on this text, times 127
(the page shows colours, for which 1/254 of the range is plenty), base64-encoded unit after unit.
"""

from __future__ import annotations

import base64
import json
from html import escape as html_escape
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.core.errors import CharRNNError
from charrnn.analysis.activations import gather
from charrnn.analysis.signals import builtin_signals, rank_units
from charrnn.analysis.surprisal import Scored, context, score_ids

RANKED = 15  # units listed per signal
WORST = 10  # most surprising characters listed


def page_data(model, vocab, ids, device, source: str = "", checkpoint: str = "", units: bool = True) -> dict:
    """Everything the page shows, for the text ids (n,): chars, bits, top-5, worst spots, summary; with
    `units`, every unit's activations and the ranking of units for each built-in signal."""
    scored = score_ids(model, ids, device)
    text = vocab.decode(scored.ids)
    data = {
        "source": source,
        "checkpoint": checkpoint,
        "chars": list(text),
        "bits": [None] + [round(float(b), 6) for b in scored.bits[1:]],
        "top": top_rows(scored, vocab),
        "worst": worst_rows(scored, text, WORST),
        "summary": scored.summary,
        "loss": scored.loss,
        "scored_chars": scored.chars,
        "units": None,
        "signals": {},
    }
    if units:
        data.update(unit_data(model, scored.ids, text, device))
    return data


def empty_data(message: str) -> dict:
    """What the served page shows before anything is scored."""
    return {"source": "", "checkpoint": "", "chars": [], "bits": [], "top": [], "worst": [], "summary": message,
            "loss": None, "scored_chars": 0, "units": None, "signals": {}}


def top_rows(scored: Scored, vocab) -> list[list]:
    """Per position, [[char, probability], ...] of the model's top guesses for it (empty for position 0)."""
    rows = [[]]
    for ids, probs in zip(scored.top_ids[1:].tolist(), scored.top_probs[1:].tolist()):
        rows.append([[vocab.chars[i], round(p, 4)] for i, p in zip(ids, probs)])
    return rows


def worst_rows(scored: Scored, text: str, n: int) -> list[dict]:
    """The n most surprising characters with their context and the model's first guess."""
    rows = []
    for i in scored.worst(n):
        before, after = context(text, i)
        rows.append({"i": i, "bits": round(float(scored.bits[i]), 4), "char": text[i].replace("\n", "\u21b5"),
                     "before": before, "after": after})
    return rows


def unit_data(model, ids, text: str, device) -> dict:
    """Activations (quantised, see the module docstring) and the ranked units per built-in signal."""
    acts = gather(model, ids, device)  # (n, U) float64: state after reading character i
    scale = np.abs(acts.matrix).max(axis=0)  # (U,)
    scale[scale == 0] = 1.0
    q = np.rint(acts.matrix / scale * 127).astype(np.int8).T  # (U, n): unit after unit
    signals = {}
    for name, signal in builtin_signals(text).items():
        ranking = rank_units(acts.matrix, signal)
        if ranking.signal_constant:
            continue  # e.g. no brackets in the text: nothing to rank against
        top = [int(u) for u in ranking.order if not np.isnan(ranking.r[u])][:RANKED]
        signals[name] = [{"unit": u, "r": round(float(ranking.r[u]), 4)} for u in top]
    return {
        "units": {"labels": [acts.label(j) for j in range(len(acts.labels))],
                  "scale": [round(float(s), 6) for s in scale],
                  "q": base64.b64encode(q.tobytes()).decode("ascii")},
        "signals": signals,
    }


def render_page(data: dict, serve: bool = False, max_chars: int = 0, title: str = "charrnn explore") -> str:
    """The page with `data` inlined, titled `title` (eval --html names the text it scored). `</` is
    escaped so that no text can close the script element."""
    template = resources.files("charrnn.analysis").joinpath("explore.html").read_text(encoding="utf-8")
    template = template.replace("<title>charrnn explore</title>", f"<title>{html_escape(title)}</title>", 1)
    payload = json.dumps({**data, "serve": serve, "max_chars": max_chars}, ensure_ascii=False)
    return template.replace("__DATA__", payload.replace("</", "<\\/"))


def write_page(path: str | Path, html: str) -> Path:
    path = Path(path)
    try:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    except OSError as e:
        raise CharRNNError(f"cannot write {path}: {e.strerror or e}") from None
    return path
