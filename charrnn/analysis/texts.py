"""What `charrnn eval` reports: a checkpoint's per-character loss on a file (prepared as its training text
was) or on a split of its own corpus, with the layout scored and the trained-horizon warning.

    result = evaluate_text("runs/x", split="val")       # {"loss", "bpc", "perplexity", "chars", "layout", ...}
    result = evaluate_text("runs/x", text="other.txt", by_position=True)   # and the loss by position

The text comes from the analysis loader (`charrnn.analysis.subject`), the scores from
`charrnn.training.evaluate` (the same walk training's evaluation takes), the horizon from
`charrnn.analysis.horizon`.
"""

from __future__ import annotations

from charrnn.analysis.horizon import by_position as profile_by_position, horizon_of, past_horizon_note
from charrnn.analysis.subject import open_checkpoint
from charrnn.training.evaluate import eval_layout, evaluate_ids


def evaluate_text(ckpt_path, text=None, split: str | None = "val", device: str = "auto", impl: str | None = None,
                  data_dir: str | None = None, by_position: bool = False, progress=None) -> dict:
    """`charrnn eval`: the per-character loss of a checkpoint on a file or a split. The result says which
    checkpoint (and step) and which layout were scored, and warns when its streams run past the run's
    trained horizon; with `by_position`, the same streams' loss against characters since the zero state
    (`charrnn.analysis.horizon`). `progress(fraction scored)` is called as the scoring goes."""
    s = open_checkpoint(ckpt_path, device=device, impl=impl)
    s = s.with_text(text) if text is not None else s.with_split(split, data_dir)
    report = evaluate_ids(s.model, s.ids, s.device, chunk=256, progress=progress)
    rows, cols = eval_layout(report.chars)
    horizon = horizon_of(s.checkpoint.raw)
    result = {**report.to_dict(), "source": s.source, "checkpoint": s.checkpoint.path,
              "step": s.checkpoint.position.get("step"),
              "layout": {"streams": rows, "stream_chars": cols, "start": "zero state", "chunk": 256},
              "horizon": horizon, "warning": past_horizon_note(cols, horizon)}
    if by_position:
        result["by_position"] = profile_by_position(s.model, s.ids, s.device, horizon).to_dict()
    return result
