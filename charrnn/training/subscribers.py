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


class Evaluation:
    """Every --eval-every steps, and at the end unless the last step was just evaluated in full: score
    the val split and publish "eval". During training at most --eval-chars characters are scored (a fixed,
    evenly spread part of a longer split, `evaluate.window_layout`); the run's last evaluation also scores
    the whole split, and that is the val loss it reports. best.pt is chosen on the fixed part, the same
    characters every time. Under DDP every rank gathers the state; rank 0 evaluates."""

    def __init__(self, tr: Trainer):
        self.tr = tr
        run, every = tr.run, tr.cfg.eval_every
        # a restored run was evaluated at its step (its last.pt is written by an evaluation)
        self.last = {"step": run.step, "full": True} if run.step and run.step % every == 0 else {"step": -1, "full": False}

    def __call__(self, e: Event) -> None:
        tr = self.tr
        step = tr.run.step
        if e.kind == "step" and step % tr.cfg.eval_every == 0:
            self.evaluate(final=tr.budget.steps_done(step))
        elif e.kind == "finish" and (self.last["step"] != step or not self.last["full"]):
            self.evaluate(final=True)

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
            data.update(self._score(final, t0))
            # at an epoch's last step this runs before the epoch's bookkeeping: the epoch just completed is epoch_acc
            train_rep = (None if tr.epoch_complete() else tr.last_epoch) or LossReport(run.epoch_acc["nll"], run.epoch_acc["chars"])
            if train_rep.chars:
                data.update(train_loss=train_rep.loss, train_perplexity=train_rep.perplexity)
            tr.publish("eval", data, carried=everyone)
        if tr.ddp:
            tr.ddp.barrier()
        tr.t_log += time.perf_counter() - t0  # evaluation time is not training throughput

    def _score(self, final: bool, t0: float) -> dict:
        """The val loss (the fixed part; and the whole split when final); sets tr.last_val and tr.selection."""
        tr = self.tr
        val, chunk = tr.corpus.val, max(tr.cfg.seq_len, 128)
        if len(val) < 2:
            return {}
        part = evaluate_ids(tr.model, val, tr.device, chunk=chunk, max_chars=tr.cfg.eval_chars)
        whole = part if part.chars == len(val) - 1 or not final else evaluate_ids(tr.model, val, tr.device, chunk=chunk)
        tr.last_val, tr.selection = whole, part
        data = {"val_loss": whole.loss, "bpc": whole.bpc, "perplexity": whole.perplexity, "val_chars": whole.chars,
                "val_scope": "full" if whole.chars == len(val) - 1 else "part"}
        if whole is not part:
            data["val_loss_part"] = part.loss  # the number comparable with the earlier evaluations
        data["eval_seconds"] = time.perf_counter() - t0  # what scoring cost this run's wall clock
        return data


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
                          "max_chars": cfg.max_chars, "encoding_errors": cfg.encoding_errors},
        "train_config": to_dict(cfg),
        "corpus": {"name": corpus.name, "path": corpus.path, "train_chars": len(corpus.train),
                   "val_chars": len(corpus.val), "test_chars": len(corpus.test)},
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "schedule": {"kind": cfg.schedule, "lr": tr.optimizer.param_groups[0]["lr"]},
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if tr.device.type == "cuda" else None},
        "position": tr.run.position(tr.elapsed(), tr.epoch_complete()),
        "carried_state": carried_for_checkpoint(carried),
        "best_val_loss": tr.run.best_val,
        "val_loss": tr.last_val.loss if tr.last_val else None,
        "params": count_parameters(tr.model),
        "horizon": trained_horizon(to_dict(cfg), len(corpus.train)),  # how far from a zero state training ran
    }


class Samples:
    """Every --sample-every evaluations: a sample from the model, always from the run's seed."""

    def __init__(self, tr: Trainer):
        self.tr = tr
        self.evals = 0
        self.prefix = tr.cfg.sample_prefix or tr.corpus.vocab.decode(tr.corpus.train[:16])

    def __call__(self, e: Event) -> None:
        if e.kind != "eval":
            return
        self.evals += 1
        cfg = self.tr.cfg
        if cfg.sample_every and self.evals % cfg.sample_every == 0 and cfg.sample_length > 0:
            g = torch.Generator().manual_seed(cfg.seed)
            text = sample_text(self.tr.model, self.tr.corpus.vocab, self.prefix, cfg.sample_length, generator=g)
            self.tr.publish("sample", {"step": self.tr.run.step, "prefix": self.prefix, "text": text})


def default_subscribers(tr: Trainer, emit: Callable[[Event], None]) -> list:
    """The standard subscribers, in order: reports are written and shown before anything acts on them."""
    return [MetricsLog(tr), Reporter(emit), LogLine(tr), Evaluation(tr), Checkpoints(tr), Samples(tr)]
