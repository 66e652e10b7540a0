"""Where a watch's words go: one plain line per new finding, the summary table, and metrics.jsonl.

    line = finding_line(finding)       # "watch.loss_scale fail at step 2: ... Fix: ..."
    say = channel("log")               # "log" (logger "charrnn.watch", WARNING) | "warnings" | "print" | None | callable
    text = table(checks, steps)        # the report: one row per check, "not checked" rows name what enables them
    MetricsFile(path).add(...)         # `log` events that `charrnn plot` and `charrnn diagnose --log` read

Plain text only: the terminal colours belong to `charrnn.cli`, which hands `charrnn train --watch` its
own channel.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from charrnn.core.errors import CharRNNError, write_failed

LOGGER = logging.getLogger("charrnn.watch")
CHANNELS = ("log", "warnings", "print")


class WatchWarning(UserWarning):
    """A finding of charrnn.watch, when output="warnings"."""


def finding_line(f: dict) -> str:
    return f"{f['id']} {f['status']} at step {f['step']}: {f['message']}" + (f". Fix: {f['advice']}" if f.get("advice") else "")


def channel(output: Any) -> Callable[[str], None]:
    """A function that says one text the way `output` asks."""
    if output is None:
        return lambda text: None
    if callable(output):
        return output
    if output == "log":
        return lambda text: LOGGER.warning(text)
    if output == "warnings":
        return lambda text: warnings.warn(text, WatchWarning, stacklevel=4)
    if output == "print":
        return lambda text: print(text, file=sys.stderr, flush=True)
    raise CharRNNError(f"output must be one of {', '.join(CHANNELS)}, None or a callable, not {output!r}")


def table(checks: list, steps: int) -> str:
    """The report: id, status, the step it was stated (or decided) at, and what was seen."""
    rows = [("check", "status", "step", "what")]
    for c in checks:
        what = c.summary or {"not checked": f"needs {c.enable}", "pending": "not enough steps yet to tell"}.get(c.status, "")
        rows.append((c.id, c.status, "" if c.step is None else str(c.step), what))
    w0, w1, w2 = (max(len(r[i]) for r in rows) for i in range(3))
    lines = [f"charrnn.watch after {steps} step{'s' * (steps != 1)}:"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c:>{w2}}  {d}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)


class MetricsFile:
    """Appends charrnn's metrics.jsonl events: a `log` event every `every` steps (the reported loss as
    train_loss, averaged over the interval, so that `diagnose --log` judges the loop's own numbers; the
    recomputed per-character loss as char_loss) and a `finding` event per finding."""

    def __init__(self, path: str | Path, every: int):
        self.path = Path(path)
        if every < 1:
            raise CharRNNError("log_every must be at least 1")
        self.every = every
        try:
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise write_failed(self.path, e, "the watch writes no metrics") from None
        self.t0 = time.perf_counter()
        self.acc: dict[str, list] = {}

    def add(self, step: int, chars: int | None, **values) -> None:
        for k, v in values.items():
            if v is not None:
                self.acc.setdefault(k, []).append(v)
        if step % self.every == 0:
            self.flush(step, chars)

    def flush(self, step: int, chars: int | None) -> None:
        if not self.acc:
            return
        event = {"event": "log", "step": step, "time": time.perf_counter() - self.t0}
        if chars is not None:
            event["chars"] = chars
        for k, vs in self.acc.items():
            event[k] = vs[-1] if k == "lr" else sum(vs) / len(vs)
        self.acc = {}
        self.write(event)

    def write(self, event: dict) -> None:
        try:
            self.file.write(json.dumps(_plain(event)) + "\n")
            self.file.flush()
        except OSError as e:
            raise write_failed(self.path, e, "the training loop is unaffected") from None

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def _plain(x: Any) -> Any:
    """JSON-ready: numpy and torch scalars to Python numbers (inf / NaN stay, as JSON's Infinity / NaN)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return x.item()
    return x
