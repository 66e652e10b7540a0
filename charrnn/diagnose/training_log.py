"""Reading a training log that a user's own loop wrote: CSV with a header, JSON lines, or charrnn's own
metrics.jsonl, into one set of aligned curves (`TrainingLog`). `charrnn.diagnose.log` judges them.

    log = read_log("train_log.csv")     # log.x_name ("epoch" | "step" | ...), log.x, log.train, log.val, ...

Columns are matched whatever their case and separators (`Train Loss`, `train_loss`, `loss/train`,
`train-loss` are one name): the x axis `epoch`, `step`, `iter`, `iteration` or `global_step`; the training
loss `train_loss` (`training_loss`, `loss`, `loss/train`, ...); optional `val_loss` (`valid`, `validation`,
`dev` or `eval` with `loss`), `grad_norm`, `lr` (`learning_rate`). Above a CSV header, a title or comment
line is skipped (a line starting with #, or any line before the first that names an x or a loss column).
An empty cell is NaN (no value in this row); a NaN the loop wrote is read as +inf (the loss diverged).
A header with no rows below it has its own message.
A malformed file is one CharRNNError naming the line and column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import re

import numpy as np

from charrnn.core.errors import CharRNNError

X_NAMES = ("epoch", "step", "iter", "iteration", "global_step")  # in order of preference
TRAIN_WORDS = {"loss", "train", "training", "avg", "mean", "epoch", "running"}  # a training-loss name uses only these
VAL_WORDS = {"val", "valid", "validation", "dev", "eval"}
HEADER_LOOK = 5  # lines looked at for the header of a CSV


def _words(name: str) -> list[str]:
    """A column name as lower-case words: "Train Loss", "train_loss", "loss/train" -> the same words."""
    return [w for w in re.split(r"[^a-z0-9]+", name.strip().lower()) if w]


def role(name: str) -> str | None:
    """What a column holds: "x" | "train" | "val" | "grad_norm" | "lr", or None."""
    words = _words(name)
    joined, ws = "_".join(words), set(words)
    if joined in X_NAMES:
        return "x"
    if "loss" in ws and ws & VAL_WORDS:
        return "val"
    if "loss" in ws and ws <= TRAIN_WORDS:
        return "train"
    if joined in ("grad_norm", "gradnorm", "gradient_norm", "grad_norm_total"):
        return "grad_norm"
    if joined in ("lr", "learning_rate"):
        return "lr"
    return None


@dataclass
class TrainingLog:
    """The curves of a log, one entry per row; NaN where a row has no value."""

    path: str
    format: str  # "csv" | "jsonl" | "charrnn metrics.jsonl"
    x_name: str  # "epoch" | "step" | ...
    x: np.ndarray  # (n,)
    train: np.ndarray  # (n,)
    val: np.ndarray | None = None
    grad_norm: np.ndarray | None = None
    lr: np.ndarray | None = None


def read_log(path) -> TrainingLog:
    """Parse a CSV with a header, JSON lines, or charrnn's metrics.jsonl; one clear error when malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CharRNNError(f"--log: file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CharRNNError(f"--log: cannot read {p}: {e}") from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise CharRNNError(f"--log: {p} is empty")
    if lines[0][1].lstrip().startswith("{"):
        rows = []
        for no, ln in lines:
            try:
                row = json.loads(ln)
            except json.JSONDecodeError as e:
                raise CharRNNError(f"--log: {p} line {no} is not JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise CharRNNError(f"--log: {p} line {no} is not a JSON object")
            rows.append((no, row))
        if any("event" in r for _, r in rows):
            return _from_charrnn_metrics(p, [r for _, r in rows])
        return _from_rows(p, "jsonl", rows)
    return _from_csv(p, [(no, ln) for no, ln in lines if not ln.lstrip().startswith("#")] or lines)


def _from_csv(p: Path, lines: list[tuple[int, str]]) -> TrainingLog:
    """A CSV (comma, tab or semicolon) whose header is the first of its first lines to name an x or a loss
    column; the lines above it (a title) are skipped."""
    def cells(ln: str) -> list[str]:
        delimiter = next((d for d in ",\t;" if d in ln), ",")
        return next(csv.reader([ln], delimiter=delimiter, skipinitialspace=True), [])

    start = next((i for i, (_, ln) in enumerate(lines[:HEADER_LOOK])
                  if any(role(c) in ("x", "train", "val") for c in cells(ln))), 0)
    lines = lines[start:]
    delimiter = next((d for d in ",\t;" if d in lines[0][1]), ",")
    header = [c.strip() for c in cells(lines[0][1])]
    if len(lines) == 1:
        raise CharRNNError(f"--log: {p} has a header ({', '.join(header)}) but no rows below it: the loop has "
                           "not logged anything yet (or logged to another file)")
    body = "\n".join(ln for _, ln in lines)
    reader = csv.DictReader(io.StringIO(body), delimiter=delimiter, skipinitialspace=True)
    rows = [(no, {(k or "").strip(): v for k, v in r.items()}) for (no, _), r in zip(lines[1:], reader)]
    return _from_rows(p, "csv", rows)


def _column(rows, want: str) -> str | None:
    """The column playing `want` ("x", "train", ...): for x the first of X_NAMES present; for train a name
    saying train before a bare "loss"; else the first in header order."""
    keys = list(dict.fromkeys(k for _, r in rows for k in r if k is not None))
    found = [k for k in keys if role(k) == want]
    if want == "x":
        found.sort(key=lambda k: X_NAMES.index("_".join(_words(k))))
    elif want == "train":
        found.sort(key=lambda k: not set(_words(k)) & {"train", "training"})
    return found[0] if found else None


def _number(value, path, line: int, column: str) -> float:
    """A cell as a float: empty / null -> NaN (no value in this row), 'nan' / 'inf' kept (a diverged loss)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return float("nan")
    if isinstance(value, bool):
        raise CharRNNError(f"--log: {path} line {line}: {column} is {value!r}, not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CharRNNError(f"--log: {path} line {line}: {column} is {value!r}, not a number") from None
    return math.inf if math.isnan(x) else x  # a NaN the loop wrote is a diverged value; NaN here means "no value"


def _from_rows(path, fmt: str, rows) -> TrainingLog:
    x_col, train_col = _column(rows, "x"), _column(rows, "train")
    if x_col is None or train_col is None:
        found = sorted({k for _, r in rows for k in r})
        missing = " and no ".join(w for w, c in (("epoch (or step) column", x_col), ("train_loss column", train_col)) if c is None)
        raise CharRNNError(f"--log: {path} has no {missing} (columns found: {', '.join(found) or 'none'})")
    val_col, gn_col, lr_col = _column(rows, "val"), _column(rows, "grad_norm"), _column(rows, "lr")

    def col(name):
        return None if name is None else np.array([_number(r.get(name), path, no, name) for no, r in rows])

    train = col(train_col)
    if np.isnan(train).all():
        raise CharRNNError(f"--log: {path}: the {train_col} column has no values")
    return TrainingLog(str(path), fmt, "_".join(_words(x_col)), col(x_col), train, col(val_col), col(gn_col), col(lr_col))


def _from_charrnn_metrics(path, events: list[dict]) -> TrainingLog:
    """charrnn's own record: `log` events (train loss over the last --log-every steps, grad norm, lr) by
    step, with the val loss of the `eval` event at the same step."""
    logs = [e for e in events if e.get("event") == "log" and e.get("train_loss") is not None]
    if not logs:
        raise CharRNNError(f"--log: {path} is a charrnn metrics.jsonl without any log events")
    val = {int(e["step"]): e["val_loss"] for e in events if e.get("event") == "eval" and e.get("val_loss") is not None}

    def col(key):
        return np.array([_number(e.get(key), path, i + 1, key) for i, e in enumerate(logs)])

    vals = np.array([_number(val.get(int(e["step"])), path, 0, "val_loss") for e in logs]) if val else None
    return TrainingLog(str(path), "charrnn metrics.jsonl", "step", col("step"), col("train_loss"), vals,
                       col("grad_norm"), col("lr"))
