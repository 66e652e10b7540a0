"""What the commands print: rich tables and lines built from the engine's reports. Nothing is printed here.

Each function takes a report (the object an engine function returns, or the dict its --json form
prints) and returns rich renderables (Tables and markup strings). The CLI decides where they go:
stdout when they are the command's product, stderr when stdout carries JSON. Text that came from the
user (file names, messages quoting their input) is escaped, so it is never read as markup.
"""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

STATUS_COLOUR = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
PASS, FAIL = "[green]PASS[/]", "[bold red]FAIL[/]"
NOT_CONCLUDED = "[yellow]not concluded[/]"  # gradcheck --user on float32 code (issue 20)


def _table(columns: list[str], right: list[str], title: str | None = None, no_wrap: bool = False,
           pad_edge: bool = False, title_justify: str = "left") -> Table:
    """A plain table: `columns` left-aligned, then `right` right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=pad_edge, title=title, title_justify=title_justify)
    for col in columns:
        table.add_column(col, no_wrap=no_wrap)
    for col in right:
        table.add_column(col, justify="right", no_wrap=no_wrap)
    return table


def gradcheck_table(report) -> Table:
    """`charrnn gradcheck`: one row per (model, tensor, method) comparison."""
    table = _table(["model", "tensor", "method"], ["abs err", "rel err", "n", "result"], no_wrap=True)
    for r in report.rows:
        tensor = r.tensor.split("/", 1)[-1]  # the model has its own column
        table.add_row(r.model, tensor, r.method, f"{r.max_abs:.1e}", f"{r.max_rel:.1e}", str(r.checked),
                      PASS if r.passed else FAIL)
    return table


def user_gradcheck_table(report) -> Table:
    """`charrnn gradcheck --user`: one row per tensor of the user's parameters; a row the float32 finding
    leaves open reads "not concluded", not FAIL (issue 20)."""
    table = _table(["tensor", "shape"], ["abs err", "rel err", "abs tol", "n", "wrong from", "result"], no_wrap=True)
    for t in report.tensors:
        err = (f"{t.max_abs:.1e}", f"{t.max_rel:.1e}") if t.max_abs is not None else ("-", "-")
        table.add_row(escape(t.name), "x".join(map(str, t.shape)) or "()", *err, f"{t.abs_tol:.0e}", str(t.checked),
                      f"T = {t.wrong_from}" if t.wrong_from else "-",
                      PASS if t.passed else NOT_CONCLUDED if t.result == "not concluded" else FAIL)
    return table


def position_table(prof: dict) -> Table:
    """`eval --by-position`: loss by characters since the zero state, bins past the horizon marked."""
    title = f"loss by characters since the zero state ({prof['streams']} streams of {prof['stream_chars']:,})"
    table = _table([], ["positions", "loss", "perplexity", "chars"], title=title, title_justify="center")
    for b in prof["bins"]:
        mark = " [yellow]past horizon[/]" if b["past_horizon"] else ""
        table.add_row(f"{b['from']}-{b['to']}{mark}", f"{b['loss']:.4f}", f"{b['perplexity']:.3f}", f"{b['chars']:,}")
    return table


def ngram_report(r: dict, order: int) -> list:
    """`eval --ngram`: the model against 1..order-gram Kneser-Ney, and where it beats the longest one."""
    lines = [f"{escape(r['source'])}: {r['chars']:,} characters scored; n-grams: interpolated Kneser-Ney fitted on "
             f"the {r['train_chars']:,}-character training split"]
    table = _table([], ["model", "nats/char", "bits/char", "perplexity"], pad_edge=True)
    for name, row in [("this model", r["model"])] + [(f"{g['order']}-gram", g) for g in r["ngrams"]]:
        table.add_row(name, f"{row['loss']:.4f}", f"{row['bpc']:.4f}", f"{row['perplexity']:.3f}")
    lines.append(table)
    table = _table([], ["character", "count", "model", f"{order}-gram", "advantage", "contribution"], pad_edge=True,
                   title=f"where the model beats the {order}-gram (advantage = n-gram loss - model loss, nats/char)")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for b in r["breakdown"]:
        table.add_row(b["class"], f"{b['chars']:,}", fmt(b["model_loss"], ".3f"), fmt(b["ngram_loss"], ".3f"),
                      fmt(b["advantage"], "+.3f"), fmt(b["contribution"], "+.4f"))
    lines.append(table)
    gain = r["ngrams"][-1]["loss"] - r["model"]["loss"]
    lines.append(f"[dim]contribution: a class's advantage summed over its characters / all {r['chars']:,} characters; "
                 f"they add up to the {order}-gram's loss minus the model's, {gain:+.4f} nats/char[/]")
    lines.append(f"[dim]'beyond reach': a closing bracket or quote whose opener is {order} or more characters back, "
                 f"outside the {order}-gram's context[/]")
    return lines


def check_lines(checks) -> list[str]:
    """`diagnose`: one line per check (status, id, message) and, for a warning or failure, its advice."""
    lines = []
    for c in checks:
        lines.append(f"  [{STATUS_COLOUR[c.status]}]{c.status.upper():4}[/] [bold]{c.id}[/]  {escape(c.message)}")
        if c.status in ("warn", "fail") and c.advice:
            lines.append(f"        [italic]→ {escape(c.advice)}[/]")
    return lines


def log_curves_table(subj: dict, most: int = 20) -> Table:
    """`diagnose --log`: the recorded curves next to the per-character ones, at most `most` rows spread
    evenly over the log (the first and the last included)."""
    curves, div = subj["curves"], subj["divisors"]
    names = [n for n in ("train", "val") if f"{n}_recorded" in curves]
    table = _table([], [subj["x"], *(f"{n} {c}" for n in names for c in (
        "recorded", "per char" + (f" (÷ {div[n]:.4g})" if div[n] != 1 else "")))], title="recorded vs per character")
    rows = len(curves["x"])
    most = min(rows, most)
    shown = sorted({round(k * (rows - 1) / max(most - 1, 1)) for k in range(most)})
    fmt = lambda v: "-" if v is None or v != v else f"{v:.4g}"  # noqa: E731  (NaN: no value in this row)
    for i in shown:
        table.add_row(f"{curves['x'][i]:g}", *[fmt(curves[f"{n}_{c}"][i]) for n in names for c in ("recorded", "corrected")])
    return table


def probe_report(report: dict) -> list:
    """`charrnn probe`: per signal the best-correlated units and the linear probe; the gate saturation."""
    lines = [f"{escape(str(report.get('checkpoint') or report.get('factory')))}: {report['model']}; {report['units']} "
             f"units over the first {report['chars']:,} of {report['text_chars']:,} characters of {escape(report['text'])}"]
    for sig in report["signals"]:
        if sig["constant"]:
            lines.append(f"\n[bold]{sig['name']}[/]: constant on this text ({sig['mean']:g}): no unit can follow it")
            continue
        table = _table([], ["rank", "layer", "h/c", "unit", "r"], pad_edge=True,
                       title=f"{sig['name']} (mean {sig['mean']:.3g}, std {sig['std']:.3g})")
        for i, u in enumerate(sig["top"], 1):
            table.add_row(str(i), str(u["layer"]), u["part"], str(u["index"]), f"{u['r']:+.4f}")
        lines.append(table)
        if sig["constant_units"]:
            lines.append(f"  {sig['constant_units']} unit(s) constant on this text (no correlation)")
        p = sig["probe"]
        r2 = "undefined (the signal is constant on the held-out part)" if p["r2"] is None else f"{p['r2']:.4f}"
        lines.append(f"  linear probe from all units: held-out R^2 {r2} (ridge, penalty {p['penalty']:g} x rows, "
                     f"fitted on the first {p['fit_chars']:,} characters, scored on the last {p['test_chars']:,})")
    if "gates" in report:
        table = _table([], ["layer", "gate", "< 0.1", "> 0.9", "units mostly < 0.1", "units mostly > 0.9"],
                       pad_edge=True, title="gate saturation: share of (character, unit) pairs")
        for g in report["gates"]:
            table.add_row(str(g["layer"]), g["gate"], f"{g['left']:.3f}", f"{g['right']:.3f}",
                          f"{g['units_mostly_left']}/{g['units']}", f"{g['units_mostly_right']}/{g['units']}")
        lines.append(table)
    return lines


def info_table(d: dict) -> Table:
    """`charrnn info`: key and value per row; nested dicts as k=v lists."""
    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in d.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    return table
