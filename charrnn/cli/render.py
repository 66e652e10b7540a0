"""What the commands print: rich tables and lines built from the engine's reports. Nothing is printed here.

Each function takes a report (the object an engine function returns, or the dict its --json form
prints) and returns rich renderables (Tables and markup strings). The CLI decides where they go:
stdout when they are the command's product, stderr when stdout carries JSON. Text that came from the
user (file names, messages quoting their input) is escaped, so it is never read as markup.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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


def corpora_table(root, status, wide: bool) -> Table:
    """`charrnn download --list`: every catalog corpus, whether it is here and verified, and where."""
    table = Table(title=f"corpora in {root}", title_justify="left")
    for column in ("name", "bytes", "sha1", "status", "path") + (("description",) if wide else ()):
        # The short columns never wrap; a long path folds rather than squeezing them to nothing.
        table.add_column(column, no_wrap=column not in ("path", "description"), overflow="fold" if column == "path" else "ellipsis")
    for entry, path, ok in status:
        state = "[green]verified[/]" if ok else "[red]corrupt[/]" if path.exists() else "[dim]missing[/]"
        size = f"{entry.size:,}" if entry.size else f"{path.stat().st_size:,}" if ok else "-"
        row = [entry.name, size, (entry.sha1 or "local")[:8], state, str(path)]
        table.add_row(*row + ([entry.description] if wide else []))
    return table


# ------------------------------------------------------------------- surprisal map (`eval --show`)


def surprisal_map(chars: list[str], bits: list) -> Text:
    """The text as rich Text, each character on the background of its surprisal in bits (None for the
    first, which nothing predicts), in the page's colours; newlines shown as a dim ↵ before the break."""
    from charrnn.analysis.surprisal import surprisal_rgb

    out = Text()
    for c, b in zip(chars, bits):
        style = "" if b is None else "black on rgb({},{},{})".format(*surprisal_rgb(b))
        if c == "\n":
            out.append("\u21b5", style=(style + " dim").strip())
            out.append("\n")
        else:
            out.append(c, style=style)
    return out


def surprisal_legend() -> Text:
    from charrnn.analysis.surprisal import MAX_BITS, surprisal_rgb

    legend = Text("surprisal: ")
    for b in range(0, int(MAX_BITS) + 1, 2):
        legend.append(f" {b}{'+' if b == MAX_BITS else ''} ", style="black on rgb({},{},{})".format(*surprisal_rgb(b)))
    legend.append(" bits")
    return legend


def worst_table(rows: list[dict], top: list[list]) -> Table:
    """The most surprising characters (rows from explore.worst_rows) with what the model expected."""
    table = Table(title="most surprising characters", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("bits", "right"), ("at", "right"), ("context", "left"), ("model expected", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows:
        guesses = ", ".join(f"{c!r} {p:.0%}" for c, p in top[r["i"]][:3])
        table.add_row(f"{r['bits']:.2f}", str(r["i"]), escape(f"…{r['before']}[{r['char']}]{r['after']}…"), escape(guesses))
    return table


def logprob_line(sample) -> str:
    """`sample --show-logprob`: one generated sample's log-probability per character under the model.
    Plain text (it may quote a stop string the user typed): print it without markup."""
    d = sample.as_dict()
    ended = f", ended by {sample.stop!r}" if sample.stop else ""
    return (f"log-probability {d['logprob_per_char']:.4f} nats/char ({d['bits_per_char']:.3f} bits/char) "
            f"over {d['chars_scored']} generated characters{ended}")


def eval_line(result: dict) -> str:
    """`charrnn eval`: the loss, bits per character and perplexity of one text, and how it was laid out."""
    lay = result["layout"]
    scored = f" ({Path(result['checkpoint']).name} step {result['step']})" if result.get("step") is not None else ""
    return (f"{escape(result['source'])}{scored}: loss {result['loss']:.4f} nats/char, {result['bpc']:.4f} bits/char, "
            f"perplexity {result['perplexity']:.3f} over {result['chars']:,} characters "
            f"({lay['streams']} stream(s) of {lay['stream_chars']:,} characters, each from a zero state)")


def horizon_line(result: dict) -> str:
    """`eval --by-position`: the loss within the run's trained horizon and past it."""
    from charrnn.training.evaluate import perplexity

    prof = result["by_position"]
    within, beyond = prof["loss_within_horizon"], prof["loss_beyond_horizon"]
    tail = f", past it {beyond:.4f} (perplexity {perplexity(beyond):.3f})" if beyond is not None else ""
    return (f"trained horizon {prof['horizon']:,} characters ({result['horizon']['layout']}): loss within it "
            f"{within:.4f} (perplexity {perplexity(within):.3f}){tail}")


def gradcheck_header(opts) -> str:
    """`charrnn gradcheck`: what was checked."""
    return (f"gradcheck: {', '.join(opts.models)}, {opts.layers} layer(s), hidden {opts.hidden}, batch {opts.batch}, "
            f"seq-len {opts.seq_len}, vocab {opts.vocab}, embed {opts.embed}, float64"
            + (f", fixed masks: weight drop {opts.weight_drop:g}, locked dropout {opts.dropout:g}" if opts.weight_drop or opts.dropout else ""))


def user_gradcheck_report(spec: str, opts, report) -> list:
    """`charrnn gradcheck --user`: what was checked, the table per tensor, and the findings."""
    import math

    lengths = ", ".join(map(str, opts.lengths))
    checked, total = sum(t.checked for t in report.tensors), sum(math.prod(t.shape) for t in report.tensors)
    lines = [f"gradcheck --user {escape(spec)}: vocab {report.vocab_size}, {len(report.tensors)} tensors; your "
             f"loss_and_grads at T = {lengths} against central differences of your loss (float64, eps "
             f"{opts.eps:g}) on {checked} of {total} elements; {report.evaluations} calls, {report.seconds:.1f}s",
             user_gradcheck_table(report),
             f"[dim]abs err, rel err and n at T = {opts.seq_len}; an element passes within abs tol or rel "
             f"{report.to_dict()['rel_tol']:g}[/]"]
    return lines + [f"[bold]{f.id}[/]: {escape(f.message)}" for f in report.findings]


def diagnose_header(report, max_chars: int) -> list[str]:
    """`charrnn diagnose`: the verdict, and what was measured on what."""
    subj = report.subject
    what = subj.get("checkpoint") or subj.get("factory")
    return [f"[{STATUS_COLOUR[report.verdict]}]{escape(report.summary)}[/]",
            f"[dim]{escape(str(what))}: {escape(str(subj.get('model')))}, vocab {subj.get('vocab_size')}; "
            f"text {escape(str(subj.get('text')))} ({subj.get('text_chars'):,} chars, up to {max_chars:,} scored per check); "
            f"{report.seconds:.1f}s[/]"]


def log_header(report) -> list[str]:
    """`charrnn diagnose --log`: the verdict, the log read and the sizes it was read with."""
    subj = report.subject
    known = ", ".join(f"{k} {subj[k]}" for k in ("batch_size", "seq_len", "train_size", "val_size") if subj[k] is not None)
    unigram = f", unigram entropy {subj['unigram_entropy']:.3f}" if subj["unigram_entropy"] is not None else ""
    return [f"[{STATUS_COLOUR[report.verdict]}]{escape(report.summary)}[/]",
            f"[dim]{escape(subj['log'])} ({subj['format']}, {subj['rows']} row{'s' if subj['rows'] != 1 else ''}); vocab {subj['vocab_size']}: "
            f"ln V = {subj['ln_vocab']:.3f}{unigram}; {escape(known) or 'no --batch-size / --seq-len given'}[/]"]
