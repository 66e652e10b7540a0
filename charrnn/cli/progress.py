"""Rich rendering of training events for the terminal (the engine itself never prints).

`TrainDisplay` is the `on_event` callback of `charrnn.training.train.train`: a progress bar with step, epoch,
loss, bpc, chars/s and ETA; a table row per evaluation; now and then a short sample from a fixed prefix.
Everything goes to stderr, so stdout stays free for `--json`.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from charrnn.training.loop import Event


def _fmt(x, digits=4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _scope(scope: str | None, chars: int | None) -> str:
    """"whole val split" or "part of the val split (16,384 chars)"."""
    return "whole val split" if scope == "full" else f"part of the val split ({chars:,} chars)"


class TrainDisplay:
    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.header_printed = False
        self.total = None
        self.minutes = None
        self.start_step = 0

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"on_{event.kind}", None)
        if handler is not None:
            handler(event.data)

    def on_notice(self, d):
        if not self.quiet:  # --quiet keeps only warnings and errors
            self.console.print(f"[cyan]note:[/] {escape(d['message'])}")

    def on_warning(self, d):
        self.console.print(f"[yellow]warning:[/] {escape(d['message'])}")

    def on_start(self, d):
        self.total, self.minutes, self.start_step = d["total_steps"], d["minutes"], d["step"]
        if self.quiet:
            return
        verb = "resuming" if d["resumed"] else "training"
        precision = "" if d["precision"] == "fp32" else f" ({d['precision']})"
        self.console.print(
            f"[bold]{verb}[/] {d['model']} ({d['impl']}, {d['params']:,} parameters) on [bold]{escape(d['corpus'])}[/] "
            f"({d['train_chars']:,} train / {d['val_chars']:,} val chars, vocab {d['vocab_size']}) "
            f"on {d['device']}{precision}{self._threads(d)}; "
            f"state {d['state_policy']}; {d['steps_per_epoch']:,} steps per epoch -> {escape(d['run_dir'])}"
        )
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        # under --minutes alone the bar measures time (per mille of the budget), else steps
        total = self.total if self.total else 1000
        self.task = self.progress.add_task("train", total=total, completed=self._completed(d["step"], 0.0), info="")
        self.progress.start()

    @staticmethod
    def _threads(d) -> str:
        """" with 1 thread (auto: 2 cores, 1.3 busy)" on a CPU; nothing where threads do not apply."""
        if "threads" not in d or not str(d["device"]).startswith("cpu"):
            return ""
        return f" with {d['threads']} thread{'s' * (d['threads'] != 1)} ({escape(d['threads_how'])})"

    def on_scoring(self, d):
        """An evaluation that takes a while: its progress in the bar's place."""
        if self.progress is not None:
            self.progress.update(self.task, info=f"scoring {d['what']}: {d['fraction']:.0%}")

    def _completed(self, step: int, progress: float) -> float:
        if self.total:
            return min(step, self.total) if not self.minutes else max(step, progress * self.total)
        return progress * 1000

    def on_log(self, d):
        if self.progress is None:
            return
        info = (f"step {d['step']:,} ep {d['epoch']:.2f} loss {_fmt(d['train_loss'])} bpc {_fmt(d['bpc'], 3)} "
                f"{d['chars_per_sec']:,.0f} ch/s")
        self.progress.update(self.task, completed=self._completed(d["step"], d.get("progress", 0.0)), info=info)

    def on_eval(self, d):
        if self.quiet:
            return
        if not self.header_printed:
            self.console.print(f"[bold]{'step':>8} {'epoch':>6} {'train loss':>10} {'val loss':>9} {'val bpc':>8} {'val ppl':>8} {'time':>7}[/]")
            self.header_printed = True
        self.console.print(
            f"{d['step']:>8,} {d['epoch']:>6.2f} {_fmt(d.get('train_loss')):>10} {_fmt(d.get('val_loss')):>9} "
            f"{_fmt(d.get('bpc'), 3):>8} {_fmt(d.get('perplexity'), 2):>8} {d['time']:>6.1f}s"
        )

    def on_sample(self, d):
        if self.quiet:
            return
        text = d["text"].replace("\n", "\u23ce ")
        self.console.print(f"  [dim]sample:[/] [green]{escape(text)}[/]")

    def on_checkpoint(self, d):
        self.stop()
        if d.get("interrupted"):
            self.console.print(f"stopped at step {d['step']:,}; saved {escape(d['path'])}")

    def on_end(self, d):
        self.stop()
        if self.quiet:
            return
        parts = [f"{d['steps']:,} steps", f"{d['seconds']:.1f}s"]
        if d.get("train_loss") is not None:
            of = f"running mean over {d['train_loss_of']}, " if d.get("train_loss_of") else ""
            parts.append(f"train loss {_fmt(d['train_loss'])} ({of}ppl {_fmt(d.get('train_perplexity'), 3)})")
        if d.get("val_loss") is not None:
            scope = f"; {_scope(d.get('val_scope'), d.get('val_chars'))} of the last weights (last.pt)" if d.get("val_scope") else ""
            parts.append(f"val loss {_fmt(d['val_loss'])} nats, {_fmt(d['val_bpc'], 3)} bpc, ppl {_fmt(d['val_perplexity'], 3)}{scope}")
        self.console.print("[bold]done:[/] " + ", ".join(parts))
        if d.get("best_step") is not None and d.get("best_val_loss") is not None:
            self.console.print(f"best.pt: step {d['best_step']:,}, val loss {_fmt(d['best_val_loss'])} on "
                               f"{'the whole' if d.get('best_val_scope') == 'full' else 'the --eval-chars part of the'} "
                               f"val split (what best.pt is chosen on)")
        self.console.print(f"checkpoint: {escape(d['checkpoint'])}   sample it: charrnn sample {escape(d['run_dir'])}")
        self.console.print(f"curves: charrnn plot {escape(d['run_dir'])}   (add --terminal to draw them here)")

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

