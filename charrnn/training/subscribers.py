"""What happens around the training loop, as subscribers of its events (see `charrnn.training.loop`).

    MetricsLog   log / eval / epoch events -> one JSON line each in metrics.jsonl
    Reporter     the reported events -> the caller's on_event callback (the CLI's display)
    LogLine      every --log-every steps (and at the end) -> a "log" event
    Evaluation   every --eval-every steps (and at the end) -> an "eval" event with the val loss
    Checkpoints  eval -> best.pt (when the val loss improved) and last.pt; stop -> last.pt
    Samples      every --sample-every evaluations -> a "sample" event

`default_subscribers` gives them in the order the run needs (an eval is logged before it is saved).
A new subscriber (TensorBoard, a plot) is one more callable appended to `trainer.subscribers`.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import torch

from charrnn.core.config import to_dict
from charrnn.core.checkpoint import save_checkpoint
from charrnn.core.errors import write_failed
from charrnn.training.ema import averaged, weights_label
from charrnn.training.evaluate import LossReport, evaluate_ids
from charrnn.data.batches import trained_horizon
from charrnn.training.loop import REPORTED, Event, Trainer
from charrnn.core.models import count_parameters
from charrnn.training.runstate import carried_for_checkpoint
from charrnn.generate.sample import sample_text


class MetricsLog:
    """Appends log, eval and epoch events to run_dir/metrics.jsonl (rank 0 only)."""

    KINDS = ("log", "eval", "epoch")

    def __init__(self, tr: Trainer):
        self.path = tr.run_dir / "metrics.jsonl"
        try:
            self.file = open(self.path, "a", encoding="utf-8") if tr.main else None
        except OSError as e:
            raise write_failed(self.path, e, "no checkpoint was touched") from None

    def __call__(self, e: Event) -> None:
        if self.file is None or e.kind not in self.KINDS:
            return
        try:
            self.file.write(json.dumps({"event": e.kind, **e.data}) + "\n")
            self.file.flush()
        except OSError as err:
            raise write_failed(self.path, err, "the last checkpoint saved is intact") from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Reporter:
    """Passes the run's reports (not the loop's own step / finish / stop signals) to `emit`."""

    def __init__(self, emit: Callable[[Event], None]):
        self.emit = emit

    def __call__(self, e: Event) -> None:
        if e.kind in REPORTED:
            self.emit(Event(e.kind, e.data))


class LogLine:
    """Every --log-every steps, and once at the end for a partial interval: a "log" event."""

    def __init__(self, tr: Trainer):
        self.tr = tr

    def __call__(self, e: Event) -> None:
        acc = self.tr.run.acc
        if e.kind == "step" and self.tr.run.step % self.tr.cfg.log_every == 0 or e.kind == "finish" and acc["steps"]:
            self.log()

    def log(self) -> None:
        tr, run = self.tr, self.tr.run
        now = time.perf_counter()
        rep = LossReport(run.acc["nll"], run.acc["chars"])
        steps = max(run.acc["steps"], 1)
        tr.publish("log", {"step": run.step, "epoch": tr.epochs_done(), "chars": run.step * tr.tokens_per_step,
                           "train_loss": rep.loss, "bpc": rep.bpc, "lr": tr.optimizer.param_groups[0]["lr"],
                           "grad_norm": run.acc["gn"] / steps, "clipped": run.acc["clipped"] / steps,
                           "chars_per_sec": run.acc["chars"] / max(now - tr.t_log, 1e-9), "time": tr.elapsed(),
                           "progress": tr.progress()})
        run.reset_log()
        tr.t_log = time.perf_counter()


# Under --minutes, evaluations (and so samples and checkpoints) also come by the clock: one at least
# every budget/12 seconds, within these bounds, so a slow machine shows the model learning early.
EVAL_SECONDS = (15.0, 300.0)
RESERVE_SHARE = 0.2  # at most this share of a --minutes budget is kept for the final evaluation
RESERVE_MARGIN = 1.25  # the final evaluation's estimated seconds are stretched by this, for a noisy clock...
RESERVE_EXTRA = 1.0  # ...and this many seconds added for its sample and checkpoints
PROGRESS_AFTER, PROGRESS_EVERY = 2.0, 0.5  # an evaluation reports how far it is after 2 s, then every 0.5 s


class Evaluation:
    """Every --eval-every steps (under --minutes also every EVAL_SECONDS-bounded slice of the budget), and
    at the end unless the last step was just evaluated in full: score the val split and publish "eval".
    During training at most --eval-chars characters are scored (a fixed, evenly spread part of a longer
    split, `evaluate.window_layout`); the run's last evaluation also scores the whole split, and that is the
    val loss it reports (its `val_scope` says "full", or "part" when --minutes left no time for all of it).
    best.pt is chosen on the fixed part, the same characters every time. Under --minutes the time the final
    evaluation will take (measured at each evaluation) is kept back from the budget (`Trainer.reserve`),
    so the whole command ends within it. An evaluation running longer than PROGRESS_AFTER seconds
    publishes "scoring" events. Under DDP every rank gathers the state; rank 0 evaluates."""

    def __init__(self, tr: Trainer):
        self.tr = tr
        run, every = tr.run, tr.cfg.eval_every
        # a restored run was evaluated at its step (its last.pt is written by an evaluation)
        self.last = {"step": run.step, "full": True} if run.step and run.step % every == 0 else {"step": -1, "full": False}
        seconds = tr.budget.seconds
        # by the clock only in one process: ranks' clocks differ, and an evaluation is a collective call
        self.interval = min(max(seconds / 12, EVAL_SECONDS[0]), EVAL_SECONDS[1]) if seconds and tr.ddp is None else 0.0
        self.t_last = tr.elapsed()  # the first comes EVAL_SECONDS into training, not at its first step after a slow set-up
        self.rate = 0.0  # characters scored per second, measured at the evaluations so far
        self.part_step = -1  # the step whose fixed part tr.selection scored

    def __call__(self, e: Event) -> None:
        tr = self.tr
        step = tr.run.step
        if e.kind == "step":
            if step % tr.cfg.eval_every == 0 or self.interval and tr.elapsed() - self.t_last >= self.interval:
                self.evaluate(final=tr.budget.steps_done(step))
            self.keep_reserve()
        elif e.kind == "finish" and (self.last["step"] != step or not self.last["full"]):
            self.evaluate(final=True)

    def keep_reserve(self) -> None:
        """Under --minutes: keep back the final evaluation's seconds, estimated from the latest evaluation's
        speed (before the first, from twice the training speed: scoring is a forward pass only), and at
        most RESERVE_SHARE of the budget; the final evaluation is bounded to what fits (`_final_bound`)."""
        tr = self.tr
        if not tr.budget.seconds or len(tr.corpus.val) < 2:
            return
        rate = self.rate or 2 * tr.run.step * tr.tokens_per_step / max(tr.elapsed(), 1e-9)
        n = len(tr.corpus.val) - 1
        chars = n + (0 if part_is_whole(tr) else tr.cfg.eval_chars)  # the final scores the part, then the whole
        need = RESERVE_MARGIN * chars / max(rate, 1e-9) + RESERVE_EXTRA
        tr.reserve = min(need, RESERVE_SHARE * tr.budget.seconds)

    def _final_bound(self) -> int:
        """Characters the final evaluation may score: 0 = the whole split; under --minutes, what the rest
        of the budget (the reserve) can score at the measured speed."""
        tr = self.tr
        if not tr.budget.seconds or not self.rate:
            return 0
        # at the speed just measured, in what is left, or at least in the time kept for it (the last step
        # may have run a little into it)
        fits = int(max(tr.budget.seconds - tr.elapsed(), tr.reserve - RESERVE_EXTRA, 0.0) * self.rate)
        return 0 if fits >= len(tr.corpus.val) - 1 else max(int(fits / RESERVE_MARGIN), 1)

    def _whole(self, final: bool) -> bool:
        n, bound = len(self.tr.corpus.val) - 1, self.tr.cfg.eval_chars
        return final or not bound or n <= bound

    def evaluate(self, final: bool = False) -> None:
        tr, run = self.tr, self.tr.run
        t0 = time.perf_counter()
        self.last = {"step": run.step, "full": self._whole(final)}  # every rank: it decides the end
        everyone = tr.gathered_state()
        if tr.main:  # rank 0 evaluates and saves while the others wait
            data = {"step": run.step, "epoch": tr.epochs_done(), "chars": run.step * tr.tokens_per_step, "time": tr.elapsed()}
            with averaged(tr.ema):  # --ema: the average is what is evaluated (and saved, and sampled)
                data.update(self._score(final, t0))
            # at an epoch's last step this runs before the epoch's bookkeeping: the epoch just completed is epoch_acc
            train_rep = (None if tr.epoch_complete() else tr.last_epoch) or LossReport(run.epoch_acc["nll"], run.epoch_acc["chars"])
            if train_rep.chars:
                data.update(train_loss=train_rep.loss, train_perplexity=train_rep.perplexity)
            tr.publish("eval", data, carried=everyone)
        if tr.ddp:
            tr.ddp.barrier()
        tr.t_log += time.perf_counter() - t0  # evaluation time is not training throughput
        self.t_last = tr.elapsed()

    def _score(self, final: bool, t0: float) -> dict:
        """The val loss (the fixed part; and the whole split, or what --minutes leaves time for, when final);
        sets tr.last_val and tr.selection."""
        tr = self.tr
        val, chunk = tr.corpus.val, max(tr.cfg.seq_len, 128)
        if len(val) < 2:
            return {}
        if self.part_step == tr.run.step and tr.selection is not None:  # the finish after an evaluation step
            part = tr.selection
        else:
            part = evaluate_ids(tr.model, val, tr.device, chunk=chunk, max_chars=tr.cfg.eval_chars,
                                progress=self._reporter("the validation split" if part_is_whole(tr) else "part of the validation split"))
            self._measured(part.chars, time.perf_counter() - t0)
            self.part_step = tr.run.step
        whole = part
        if final and part.chars < len(val) - 1:
            bound = self._final_bound()
            if not bound or bound > part.chars:
                t1 = time.perf_counter()
                whole = evaluate_ids(tr.model, val, tr.device, chunk=chunk, max_chars=bound,
                                     progress=self._reporter("the validation split"))
                self._measured(whole.chars, time.perf_counter() - t1)
            if whole.chars < len(val) - 1:
                tr.publish("notice", {"message": f"--minutes left time to score {whole.chars:,} of the validation split's "
                                                 f"{len(val) - 1:,} characters at the end: the val loss is of that part "
                                                 f"(charrnn eval scores all of it)"})
        tr.last_val, tr.selection = whole, part
        data = {"val_loss": whole.loss, "bpc": whole.bpc, "perplexity": whole.perplexity, "val_chars": whole.chars,
                "val_scope": "full" if whole.chars == len(val) - 1 else "part"}
        if whole is not part:
            data["val_loss_part"] = part.loss  # the number comparable with the earlier evaluations
        data["eval_seconds"] = time.perf_counter() - t0  # what scoring cost this run's wall clock
        return data

    def _measured(self, chars: int, seconds: float) -> None:
        """Fold one scoring's speed into the estimate (halfway: one slow moment on a busy machine moves it
        but does not make it)."""
        rate = chars / max(seconds, 1e-9)
        self.rate = rate if not self.rate else (self.rate + rate) / 2

    def _reporter(self, what: str) -> Callable[[float], None]:
        """A progress callback for evaluate_ids that publishes "scoring" once the scoring has taken a while."""
        t0 = time.perf_counter()
        last = [t0]

        def report(fraction: float) -> None:
            now = time.perf_counter()
            if now - t0 >= PROGRESS_AFTER and (now - last[0] >= PROGRESS_EVERY or fraction >= 1.0):
                last[0] = now
                self.tr.publish("scoring", {"what": what, "fraction": fraction, "step": self.tr.run.step})

        return report


def part_is_whole(tr: Trainer) -> bool:
    """Whether --eval-chars covers the whole validation split (then every evaluation is of all of it)."""
    return not tr.cfg.eval_chars or len(tr.corpus.val) - 1 <= tr.cfg.eval_chars


class Checkpoints:
    """Saves best.pt and last.pt after each evaluation, and last.pt when the run is stopped."""

    def __init__(self, tr: Trainer):
        self.tr = tr

    def __call__(self, e: Event) -> None:
        tr = self.tr
        if e.kind == "eval":
            if tr.selection is not None and tr.selection.loss < tr.run.best_val:
                tr.run.best_val = tr.selection.loss
                self.save("best.pt", e.carried)
                tr.best_step = tr.run.step
            self.save("last.pt", e.carried)
        elif e.kind == "stop":
            if tr.main:
                self.save("last.pt", e.carried)
            tr.publish("checkpoint", {"path": str(tr.run_dir / "last.pt"), "step": tr.run.step, "interrupted": True})

    def save(self, name: str, carried) -> None:
        """Rank 0 only; `carried` is the state of all B streams."""
        save_checkpoint(snapshot(self.tr, carried), self.tr.run_dir / name)


def snapshot(tr: Trainer, carried) -> dict:
    """The checkpoint of the run as it stands: everything a resume or a consumer needs."""
    cfg, corpus = tr.cfg, tr.corpus
    return {
        "model_config": to_dict(tr.mcfg),
        "vocab": list(corpus.vocab.chars),
        "preprocessing": {"lowercase": cfg.lowercase, "letters_only": cfg.letters_only,
                          "max_chars": cfg.max_chars, "encoding_errors": cfg.encoding_errors, "newline": cfg.newline},
        "train_config": to_dict(cfg),
        "corpus": {"name": corpus.name, "path": corpus.path, "as_typed": corpus.as_typed, "train_chars": len(corpus.train),
                   "val_chars": len(corpus.val), "test_chars": len(corpus.test)},
        "model": tr.ema.state_dict() if tr.ema else tr.model.state_dict(),  # what sample, eval, serve... load
        "weights": weights_label(cfg.ema),
        "trained_model": tr.model.state_dict() if tr.ema else None,  # with --ema: what --resume trains on
        "optimizer": tr.optimizer.state_dict(),
        "schedule": {"kind": cfg.schedule, "lr": tr.optimizer.param_groups[0]["lr"]},
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if tr.device.type == "cuda" else None},
        "position": tr.run.position(tr.elapsed(), tr.epoch_complete()),
        "carried_state": carried_for_checkpoint(carried),
        "best_val_loss": tr.run.best_val,  # on the fixed part best.pt is chosen on (best_val_scope says which)
        "best_val_scope": "full" if part_is_whole(tr) else "part",
        "val_loss": tr.last_val.loss if tr.last_val else None,  # this checkpoint's latest evaluation...
        "val_scope": _scope(tr),  # ...of the whole split ("full") or of a part of it ("part")
        "val_chars": tr.last_val.chars if tr.last_val else None,
        "params": count_parameters(tr.model),
        "horizon": trained_horizon(to_dict(cfg), len(corpus.train)),  # how far from a zero state training ran
    }


def _scope(tr: Trainer) -> str | None:
    return None if tr.last_val is None else "full" if tr.last_val.chars >= len(tr.corpus.val) - 1 else "part"


class Samples:
    """Every --sample-every evaluations (and under --minutes at the first): a sample from the model,
    always from the run's seed."""

    def __init__(self, tr: Trainer):
        self.tr = tr
        self.evals = 0
        self.prefix = tr.cfg.sample_prefix or tr.corpus.vocab.decode(tr.corpus.train[:16])

    def __call__(self, e: Event) -> None:
        if e.kind != "eval":
            return
        self.evals += 1
        cfg = self.tr.cfg
        # under --minutes the first evaluation brings a sample too: a slow machine shows the model early
        first = self.evals == 1 and self.tr.budget.seconds
        if cfg.sample_every and (self.evals % cfg.sample_every == 0 or first) and cfg.sample_length > 0:
            g = torch.Generator().manual_seed(cfg.seed)
            with averaged(self.tr.ema):
                text = sample_text(self.tr.model, self.tr.corpus.vocab, self.prefix, cfg.sample_length, generator=g)
            self.tr.publish("sample", {"step": self.tr.run.step, "prefix": self.prefix, "text": text})


def default_subscribers(tr: Trainer, emit: Callable[[Event], None]) -> list:
    """The standard subscribers, in order: reports are written and shown before anything acts on them."""
    return [MetricsLog(tr), Reporter(emit), LogLine(tr), Evaluation(tr), Checkpoints(tr), Samples(tr)]
