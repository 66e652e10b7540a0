"""Training, orchestrated: configs -> device -> corpus -> batches -> model -> the loop -> a summary.

    summary = train(options, on_event=print)   # options: flat dict of ModelConfig/TrainConfig keys

The engine reports progress as `Event`s through a callback and never prints; the CLI draws them. It
writes a run directory:

    runs/<name>/config.yaml     the effective config (model and training, flat, flag names)
    runs/<name>/metrics.jsonl   one JSON object per log or eval event
    runs/<name>/last.pt         the latest checkpoint (every evaluation, the end, Ctrl-C / SIGTERM)
    runs/<name>/best.pt         the checkpoint with the lowest validation loss

Loss bookkeeping is per character everywhere: each step's loss is the mean NLL over the B*T characters
it scores, and every aggregate (log interval, epoch, evaluation) is total NLL / total characters scored.

Hidden state: with the 'reset' policy every batch starts from zero state; with 'carry' the final state
of batch k (detached: truncated BPTT) starts batch k+1, and each epoch starts from zero. A resumed run
restores weights, optimizer, RNG, data position and carried state, so on CPU it continues bit for bit.

Launched by torchrun with several processes, each rank trains on its share of the rows of every batch
under DistributedDataParallel and only rank 0 writes and reports (see `charrnn.training.distributed`).

This module sets a run up and hands it to the pieces that do the work:
    charrnn.training.loop         the loop: train_step, the events it publishes, the Trainer they share
    charrnn.training.subscribers  metrics.jsonl, log lines, evaluation, checkpoints, samples (loop subscribers)
    charrnn.training.runstate     RunState (the checkpoint's position) and Budget
    charrnn.training.optim        the optimizer (weight decay on matrices only) and the learning-rate schedule
    charrnn.training.rundir       the run directory: its lock, stale temporary files, config.yaml
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from charrnn import __version__
from charrnn.training import distributed
from charrnn.training import finetune
from charrnn.training import rundir
from charrnn.core.checkpoint import Checkpoint, Preprocessing, load, load_checkpoint
from charrnn.core.config import MODEL_KEYS, ModelConfig, TrainConfig, coerce, split_options, to_dict
from charrnn.data.batches import Batches
from charrnn.data.corpora import CATALOG
from charrnn.data.documents import is_pattern
from charrnn.data.dataset import prepare_corpus
from charrnn.core.device import resolve_device  # noqa: F401  (re-exported: older callers import it from here)
from charrnn.core.errors import CharRNNError
from charrnn.generate.sample import prepare_prefix
from charrnn.training.ema import WeightAverage
from charrnn.training.evaluate import LossReport, perplexity
from charrnn.training.loop import Event, Trainer, run_loop
from charrnn.core.models import CharRNN, count_parameters, resolve_impl
from charrnn.training.optim import make_optimizer
from charrnn.training.runstate import Budget, RunState
from charrnn.core.scratch import BF16_MIN_HIDDEN, bf16_pays
from charrnn.training.subscribers import default_subscribers, part_is_whole
from charrnn.training.threads import ThreadChoice, choose_threads, using_threads

# Keys that may change when a run is resumed; everything else (architecture, data, batching, optimizer)
# is taken from the checkpoint, because changing it would not continue the same run.
RESUMABLE_KEYS = {
    "impl", "epochs", "max_steps", "minutes", "device", "threads", "amp", "compile", "eval_every", "eval_chars",
    "log_every", "sample_every", "sample_prefix", "sample_length", "data_dir", "mirror", "out",
}


def build_configs(options: dict[str, Any], resume: str | None = None,
                  init: Checkpoint | None = None) -> tuple[ModelConfig, TrainConfig, Checkpoint | None]:
    """Flat options (flags, YAML, preset) -> configs. On resume the checkpoint's configs are the base
    and only RESUMABLE_KEYS may be given. `init`: the --init-from checkpoint when the caller has read
    it already (it is read here otherwise)."""
    options = _paths_at_the_door(coerce({k: v for k, v in options.items() if v is not None}))
    if resume is None:
        if options.get("init_from"):  # fine-tuning: the architecture and preprocessing of that checkpoint
            options = finetune.options_for(options, init or load(options["init_from"]))
        model_kw, train_kw = split_options(options)
        return ModelConfig(**model_kw), TrainConfig(**train_kw), None
    if options.get("init_from"):
        raise CharRNNError("give either --resume (continue that run) or --init-from (a new run from its weights), "
                           "not both")
    ck = load(resume, prefer="last")
    saved_train = ck.raw.get("train_config")
    if not isinstance(saved_train, dict):
        raise CharRNNError(f"{ck.path} holds no training state to resume (was it written by charrnn train?)")
    fixed = sorted(k for k, v in options.items() if k not in RESUMABLE_KEYS and v != {**ck.raw["model_config"], **saved_train}.get(k))
    if fixed:
        raise CharRNNError(
            f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming; "
            f"these come from the checkpoint (start a new run with --out to change them)"
        )
    train_kw = {**saved_train, **{k: v for k, v in options.items() if k not in MODEL_KEYS}}
    if "out" not in options:
        train_kw["out"] = str(Path(ck.path).parent)
    mcfg = ck.model_config if options.get("impl") is None else replace(ck.model_config, impl=options["impl"])
    return mcfg, TrainConfig(**train_kw), ck


PATH_KEYS = ("out", "data_dir", "init_from")


def _paths_at_the_door(options: dict[str, Any]) -> dict[str, Any]:
    """~ expanded and relative paths made absolute, so that a run (its config.yaml and checkpoints) works
    from any folder: --resume, eval and diagnose from elsewhere find the corpus. A catalog name stays a
    name; a glob stays a pattern, made absolute."""
    out = dict(options)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = os.path.abspath(os.path.expanduser(out[key]))
    corpus = out.get("corpus")
    if isinstance(corpus, str) and corpus and corpus not in CATALOG:
        path = os.path.expanduser(corpus)
        if os.path.exists(path) or is_pattern(corpus):  # else left as typed, for the error that names it
            out["corpus"] = os.path.abspath(path)
    return out


def train(options: dict[str, Any], resume: str | None = None, on_event: Callable[[Event], None] | None = None,
          started: float | None = None,
          subscribers: Sequence[Callable[[Trainer], Callable[[Event], None]]] = ()) -> dict[str, Any]:
    """Run (or resume) one training run described by flat `options`; returns a summary dict. `started`:
    when the command began (time.perf_counter()), which is when a --minutes budget starts; default now.
    `subscribers`: factories called with the Trainer once the run is set up; what they return sees every
    event before the standard subscribers do (e.g. `charrnn.watch.subscriber.TrainWatch`)."""
    t0 = time.perf_counter() if started is None else started  # reading the corpus is part of the command too
    emit = on_event or (lambda e: None)
    # a checkpoint to fine-tune from is read once: for its configs here and for its weights in _train
    init = load(options["init_from"]) if options.get("init_from") and resume is None else None
    mcfg, cfg, ck = build_configs(options, resume, init)
    typed = options.get("corpus") or ((ck.raw.get("corpus") or {}).get("as_typed") if ck else None)
    threads = choose_threads(cfg.threads)
    with using_threads(threads.count):  # the caller's count is restored after the run
        ddp = distributed.setup(cfg.device, cfg.batch_size)  # None unless torchrun started several processes
        try:
            return _train(mcfg, cfg, ck, init, emit if ddp is None or ddp.is_main else (lambda e: None), ddp,
                          threads, t0, typed, subscribers)
        finally:
            distributed.teardown(ddp)


def _train(mcfg: ModelConfig, cfg: TrainConfig, ck: Checkpoint | None, init: Checkpoint | None,
           emit: Callable[[Event], None], ddp: distributed.DistContext | None, threads: ThreadChoice,
           t0: float, typed: str | None = None, extra: Sequence = ()) -> dict[str, Any]:
    """Set the run up, hold its directory while the loop runs, and summarise it. ck: the checkpoint
    being resumed; init: the one being fine-tuned from (never both); t0: when the command began;
    typed: --corpus as the user wrote it (the config keeps it absolute)."""
    device = ddp.device if ddp else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    corpus = prepare_corpus(cfg, vocab=ck.vocab if ck else None, notice=lambda m: emit(Event("notice", {"message": m})))
    corpus.as_typed = typed
    if init is not None:  # fine-tuning: the old characters keep their ids, new ones are appended
        corpus, added = finetune.grow_vocab(init.vocab, corpus)
        emit(Event("notice", {"message": f"fine-tuning from {init.path}: " + (
            f"{len(added)} new character(s) get new rows: {''.join(added)!r}" if added else "no new characters")}))
    cfg = _sample_prefix(cfg, corpus.vocab, emit)
    mcfg = replace(mcfg, vocab_size=len(corpus.vocab), impl=resolve_impl(mcfg.model, mcfg.impl, device))
    batches = Batches(corpus.train, cfg.batch_size, cfg.seq_len, cfg.sampling, cfg.seed, pin_memory=device.type == "cuda")
    if (why := cfg.state_mismatch()) is not None:
        emit(Event("warning", {"message": f"--sampling {cfg.sampling} with --state {cfg.state_policy()}: {why}"}))
    model = ck.build_model(device, mcfg.impl) if ck else CharRNN(mcfg).to(device)
    if init is not None:
        finetune.load_grown(model, init, corpus.train, torch.Generator().manual_seed(cfg.seed))
    model.train()
    run_dir = Path(cfg.out) if cfg.out else rundir.default_run_dir(corpus.name, mcfg.model)
    main = ddp is None or ddp.is_main  # the one process that writes the run directory
    with rundir.hold(run_dir) if main else contextlib.nullcontext():
        if ck is None and rundir.holds_run(run_dir):
            raise CharRNNError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --out")
        tr = _trainer(mcfg, cfg, ck, corpus, batches, model, device, run_dir, ddp, t0)
        if main:
            rundir.remove_stale_temps(run_dir)
            if ck is not None:
                rundir.truncate_metrics(run_dir / "metrics.jsonl", tr.run.step)
            effective = {**{k: v for k, v in to_dict(mcfg).items() if k != "vocab_size"}, **to_dict(cfg), "corpus": cfg.corpus or corpus.name}
            rundir.write_config(run_dir, effective)
        tr.subscribers.extend([make(tr) for make in extra] + default_subscribers(tr, emit))
        try:
            tr.publish("start", {**_start_data(tr, resumed=ck is not None), "threads": threads.count, "threads_how": threads.how})
            interrupted = run_loop(tr)
        finally:
            for subscriber in tr.subscribers:  # metrics.jsonl, and any other file a subscriber keeps open
                getattr(subscriber, "close", lambda: None)()
    summary = _summary(tr, interrupted)
    emit(Event("end", summary))
    return summary


def _sample_prefix(cfg: TrainConfig, vocab, emit: Callable[[Event], None]) -> TrainConfig:
    """--sample-prefix prepared as the corpus was (as `charrnn sample` prepares its prefix) and checked
    against the vocabulary now, before the first step, rather than at the first sample hours later."""
    if not (cfg.sample_prefix and cfg.sample_every and cfg.sample_length > 0):
        return cfg  # no samples, or the corpus's own first characters
    pre = Preprocessing(lowercase=cfg.lowercase, letters_only=cfg.letters_only, newline=cfg.newline)
    prefix, note = prepare_prefix(cfg.sample_prefix, pre, vocab, what=f"--sample-prefix {cfg.sample_prefix!r}",
                                  listed="give one from the corpus, or --sample-prefix ''")
    if note is not None:
        emit(Event("notice", {"message": note}))
    return replace(cfg, sample_prefix=prefix)


def _trainer(mcfg, cfg, ck, corpus, batches, model, device, run_dir, ddp, t0: float) -> Trainer:
    """Optimizer, batches, budget and position (restored on resume), wrapped up as a Trainer whose clock
    started at t0."""
    optimizer = make_optimizer(cfg, model)
    rows = ddp.rows(cfg.batch_size) if ddp else slice(None)
    run = RunState()
    if ck is not None:
        try:
            optimizer.load_state_dict(ck.raw["optimizer"])
        except ValueError as e:  # e.g. a run saved before biases were excluded from weight decay
            raise CharRNNError(f"{ck.path}: its optimizer state does not fit this run's optimizer ({e})") from None
        run = RunState.from_checkpoint(ck.raw, rows, device)
        torch.set_rng_state(ck.raw["rng"]["torch"])
        if device.type == "cuda" and ck.raw["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck.raw["rng"]["cuda"])
    if ddp and ddp.rank:  # dropout masks differ between ranks (weights and data do not)
        torch.manual_seed(cfg.seed + 7919 * ddp.rank + run.step)
    ema = _weight_average(cfg, ck, model)
    fwd = ddp.wrap(model) if ddp else model  # DDP averages the gradients over ranks in backward
    fwd = torch.compile(fwd) if cfg.compile else fwd
    budget = Budget.of(cfg, batches.epoch(run.epoch)["num_batches"])
    tr = Trainer(cfg, mcfg, corpus, model, fwd, optimizer, batches, budget, run, run_dir, device, ddp,
                 autocast=_autocast(cfg, device), t_start=t0, ema=ema)
    tr.t_log = time.perf_counter()  # throughput counts training only, not the set-up
    return tr


def _weight_average(cfg: TrainConfig, ck, model: CharRNN) -> WeightAverage | None:
    """--ema's average, starting from the model's weights; on resume the checkpoint's "model" is the
    average (already in `model`) and its "trained_model" the weights training continues from."""
    trained = ck.raw.get("trained_model") if ck is not None else None
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None  # a copy of what the model holds now
    if trained is not None:
        model.load_state_dict(trained)
    return ema


def _start_data(tr: Trainer, resumed: bool) -> dict[str, Any]:
    if tr.cfg.amp and (why := _no_bf16(tr.device)):
        tr.publish("warning", {"message": why})
    elif tr.cfg.amp and tr.mcfg.impl == "scratch" and not bf16_pays(tr.mcfg.model, tr.mcfg.hidden):
        tr.publish("notice", {"message": f"--amp: the {tr.mcfg.hidden}-wide scratch {tr.mcfg.model.upper()} layers keep "
                              f"fp32 matmuls (bf16 measured slower below {BF16_MIN_HIDDEN[tr.mcfg.model]} units); "
                              f"the output layer runs in bf16"})
    return {
        "run_dir": str(tr.run_dir), "corpus": tr.corpus.name, "path": tr.corpus.path, "vocab_size": len(tr.corpus.vocab),
        "train_chars": len(tr.corpus.train), "val_chars": len(tr.corpus.val), "test_chars": len(tr.corpus.test),
        "model": tr.mcfg.model, "impl": tr.mcfg.impl, "params": count_parameters(tr.model), "device": str(tr.device),
        "steps_per_epoch": tr.steps_per_epoch, "total_steps": tr.budget.steps or None, "minutes": tr.cfg.minutes or None,
        "step": tr.run.step, "state_policy": tr.cfg.state_policy(), "resumed": resumed, "version": __version__,
        "precision": "bf16 autocast" if isinstance(tr.autocast, torch.autocast) else "fp32",
    }


def _summary(tr: Trainer, interrupted: bool) -> dict[str, Any]:
    last_val, best_val = tr.last_val, tr.run.best_val
    best_pt = tr.run_dir / "best.pt"
    summary = {
        "run_dir": str(tr.run_dir), "corpus": tr.corpus.name, "model": tr.mcfg.model, "impl": tr.mcfg.impl,
        "params": count_parameters(tr.model), "device": str(tr.device), "steps": tr.run.step, "epochs": tr.epochs_done(),
        "chars": tr.run.step * tr.tokens_per_step, "seconds": tr.elapsed(), "interrupted": interrupted,
        "train_loss": (tr.last_epoch or LossReport(tr.run.epoch_acc["nll"], tr.run.epoch_acc["chars"])).loss,
        # the training loss is a running mean of the loss of each step's batch, over an epoch of changing weights
        "train_loss_of": _train_loss_of(tr),
        "val_loss": last_val.loss if last_val else None, "val_bpc": last_val.bpc if last_val else None,
        "val_perplexity": last_val.perplexity if last_val else None,
        # the val loss is of the run's last weights (last.pt), on the whole split or, when --minutes left no
        # time for all of it, a part
        "val_scope": None if not last_val else "full" if last_val.chars >= len(tr.corpus.val) - 1 else "part",
        "val_chars": last_val.chars if last_val else None,
        "best_val_loss": best_val if math.isfinite(best_val) else None,
        "best_val_scope": "full" if part_is_whole(tr) else "part",  # best.pt is chosen on the --eval-chars part
        "best_step": tr.best_step if tr.best_step is not None or not best_pt.exists() or not tr.main
        else (load_checkpoint(best_pt).get("position") or {}).get("step"),  # saved by an earlier session
        "checkpoint": str(tr.run_dir / ("best.pt" if best_pt.exists() else "last.pt")),
    }
    tr_loss = summary["train_loss"]
    summary["train_perplexity"] = perplexity(tr_loss) if tr_loss == tr_loss else None
    return summary


def _train_loss_of(tr: Trainer) -> str:
    """What the summary's train loss is the mean of: "epoch 5", or "the first 37 steps of epoch 6"."""
    if tr.last_epoch is not None:
        return f"epoch {tr.run.epoch}"
    steps = tr.run.epoch_acc["chars"] // max(tr.tokens_per_step, 1)
    return f"the first {steps:,} step{'s' * (steps != 1)} of epoch {tr.run.epoch + 1}"


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast when asked for (CUDA, or a CPU with bf16 kernels); otherwise a no-op context."""
    if not cfg.amp or _no_bf16(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _no_bf16(device: torch.device) -> str | None:
    """Why --amp cannot run on this device, or None. On a CPU without native bf16 (AVX512-BF16 / AMX)
    oneDNN has no bf16 LSTM kernel at all (nn.LSTM fails), and emulated bf16 would be slower than fp32."""
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "--amp: this CPU has no native bf16 support (AVX512-BF16 or AMX); training in fp32"
    return None
