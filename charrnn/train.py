"""The training loop: batches -> forward -> per-character loss -> backward -> clip -> step.

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
under DistributedDataParallel and only rank 0 writes and reports (see `charrnn.distributed`).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml

from charrnn import __version__
from charrnn.checkpoint import load_checkpoint, model_config, save_checkpoint
from charrnn.config import MODEL_KEYS, ModelConfig, TrainConfig, coerce, split_options, to_dict
from charrnn.data import Batches, Vocab, prepare_corpus
from charrnn import distributed, finetune
from charrnn.errors import CharRNNError
from charrnn.evaluate import LossReport, evaluate_ids
from charrnn.models import CharRNN, count_parameters, detach_state, resolve_impl
from charrnn.sample import sample_text

# Keys that may change when a run is resumed; everything else (architecture, data, batching, optimizer)
# is taken from the checkpoint, because changing it would not continue the same run.
RESUMABLE_KEYS = {
    "impl", "epochs", "max_steps", "minutes", "device", "threads", "amp", "compile", "eval_every", "eval_chars",
    "log_every", "sample_every", "sample_prefix", "sample_length", "data_dir", "mirror", "out",
}
DEFAULT_EPOCHS = 10  # when no budget is given at all


@dataclass
class Event:
    """Something the training loop reports: kind is start | notice | warning | log | eval | sample |
    epoch | checkpoint | end; data holds plain values."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, then MPS, then CPU. Asking for a device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CharRNNError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharRNNError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Learning rate for `step` (0-based) at `progress` in [0, 1] of the run's budget.

    Linear warm-up over `warmup` steps, then constant or a cosine from lr down to lr * min_lr_frac
    across the rest of the budget, whatever the budget's kind (steps, epochs or minutes)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    p = min(max(progress, 0.0), 1.0)
    low = cfg.lr * cfg.min_lr_frac
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * p))


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _default_run_dir(corpus: str, model: str) -> Path:
    """runs/<corpus>-<model>, or the first of -2, -3, ... that holds no run yet."""
    base = Path("runs") / f"{corpus}-{model}"
    candidate, i = base, 1
    while (candidate / "last.pt").exists() or (candidate / "best.pt").exists():
        i += 1
        candidate = Path(f"{base}-{i}")
    return candidate


def build_configs(options: dict[str, Any], resume: str | None = None) -> tuple[ModelConfig, TrainConfig, dict | None]:
    """Flat options (flags, YAML, preset) -> configs. On resume the checkpoint's configs are the base
    and only RESUMABLE_KEYS may be given."""
    options = coerce({k: v for k, v in options.items() if v is not None})
    if resume is None:
        if options.get("init_from"):  # fine-tuning: the architecture and preprocessing of that checkpoint
            options = finetune.options_for(options, load_checkpoint(options["init_from"]))
        model_kw, train_kw = split_options(options)
        return ModelConfig(**model_kw), TrainConfig(**train_kw), None
    ckpt = load_checkpoint(resume, prefer="last")
    saved_train = ckpt.get("train_config")
    if not isinstance(saved_train, dict):
        raise CharRNNError(f"{ckpt['path']} holds no training state to resume (was it written by charrnn train?)")
    fixed = sorted(k for k, v in options.items() if k not in RESUMABLE_KEYS and v != {**ckpt["model_config"], **saved_train}.get(k))
    if fixed:
        raise CharRNNError(
            f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming; "
            f"these come from the checkpoint (start a new run with --out to change them)"
        )
    train_kw = {**saved_train, **{k: v for k, v in options.items() if k not in MODEL_KEYS}}
    if "out" not in options:
        train_kw["out"] = str(Path(ckpt["path"]).parent)
    mcfg = model_config(ckpt, impl=options.get("impl"))
    return mcfg, TrainConfig(**train_kw), ckpt


class _Stop(Exception):
    """Raised at a step boundary after Ctrl-C or SIGTERM asked the run to stop."""


def train(options: dict[str, Any], resume: str | None = None, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Run (or resume) one training run described by flat `options`; returns a summary dict."""
    emit = on_event or (lambda e: None)
    mcfg, cfg, ckpt = build_configs(options, resume)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ddp = distributed.setup(cfg.device, cfg.batch_size)  # None unless torchrun started several processes
    try:
        return _train(mcfg, cfg, ckpt, emit if ddp is None or ddp.is_main else (lambda e: None), ddp)
    finally:
        distributed.teardown(ddp)


def _train(mcfg: ModelConfig, cfg: TrainConfig, ckpt: dict | None, emit: Callable[[Event], None],
           ddp: distributed.DistContext | None) -> dict[str, Any]:
    main = ddp is None or ddp.is_main  # the one process that writes the run directory
    rows = ddp.rows(cfg.batch_size) if ddp else slice(None)  # this process's rows of every batch
    local_batch = cfg.batch_size // (ddp.world if ddp else 1)
    device = ddp.device if ddp else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    corpus = prepare_corpus(cfg, vocab=Vocab(tuple(ckpt["vocab"])) if ckpt else None,
                            notice=lambda m: emit(Event("notice", {"message": m})))
    init = load_checkpoint(cfg.init_from) if cfg.init_from and ckpt is None else None
    if init is not None:  # the old characters keep their ids; new ones are appended
        corpus, added = finetune.grow_vocab(Vocab(tuple(init["vocab"])), corpus)
        emit(Event("notice", {"message": f"fine-tuning from {init['path']}: " + (
            f"{len(added)} new character(s) get new rows: {''.join(added)!r}" if added else "no new characters")}))
    mcfg = replace(mcfg, vocab_size=len(corpus.vocab), impl=resolve_impl(mcfg.model, mcfg.impl, device))
    batches = Batches(corpus.train, cfg.batch_size, cfg.seq_len, cfg.sampling, cfg.seed, pin_memory=device.type == "cuda")
    policy = cfg.state_policy()
    if (why := cfg.state_mismatch()) is not None:
        emit(Event("warning", {"message": f"--sampling {cfg.sampling} with --state {policy}: {why}"}))

    model = CharRNN(mcfg).to(device)
    if init is not None:
        finetune.load_grown(model, init, corpus.train, torch.Generator().manual_seed(cfg.seed))
    optimizer = make_optimizer(cfg, model)
    run_dir = Path(cfg.out) if cfg.out else _default_run_dir(corpus.name, mcfg.model)
    if ckpt is None and ((run_dir / "last.pt").exists() or (run_dir / "best.pt").exists()):
        raise CharRNNError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --out")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # Where we are: restored from the checkpoint on resume.
    step, epoch, k, elapsed_before, best_val = 0, 0, 0, 0.0, float("inf")
    carried = None
    acc = {"nll": 0.0, "chars": 0, "gn": 0.0, "clipped": 0, "steps": 0}  # since the last log line
    ep_acc = {"nll": 0.0, "chars": 0}  # since the start of the epoch
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        pos = ckpt["position"]
        step, epoch, k = pos["step"], pos["epoch"], pos["batch"]
        elapsed_before, best_val = pos["elapsed"], ckpt.get("best_val_loss", float("inf"))
        acc, ep_acc = dict(pos["acc"]), dict(pos["epoch_acc"])
        if ckpt.get("carried_state") is not None:
            s = ckpt["carried_state"]  # (layers, B, H): every stream of the global batch
            carried = tuple(t[:, rows].to(device) for t in s) if isinstance(s, (list, tuple)) else s[:, rows].to(device)
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        if main:
            _truncate_metrics(run_dir / "metrics.jsonl", step)

    effective = {**{k_: v for k_, v in to_dict(mcfg).items() if k_ != "vocab_size"}, **to_dict(cfg), "corpus": cfg.corpus or corpus.name}
    if main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(effective, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if ddp and ddp.rank:  # dropout masks differ between ranks (weights and data do not)
        torch.manual_seed(cfg.seed + 7919 * ddp.rank + step)

    fwd = ddp.wrap(model) if ddp else model  # DDP averages the gradients over ranks in backward
    fwd = torch.compile(fwd) if cfg.compile else fwd
    autocast = _autocast(cfg, device)
    if cfg.amp and (why := _no_bf16(device)):
        emit(Event("warning", {"message": why}))
    steps_per_epoch = batches.epoch(epoch)["num_batches"]
    epochs = cfg.epochs or (0 if (cfg.max_steps or cfg.minutes) else DEFAULT_EPOCHS)
    step_budget = min(b for b in (cfg.max_steps, epochs * steps_per_epoch) if b) if (cfg.max_steps or epochs) else 0
    budget_s = cfg.minutes * 60.0
    sample_prefix = cfg.sample_prefix or corpus.vocab.decode(corpus.train[:16])
    clip = cfg.clip if cfg.clip > 0 else float("inf")
    tokens_per_step = cfg.batch_size * cfg.seq_len
    params = [p for p in model.parameters() if p.requires_grad]
    metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if main else None
    t_start = time.perf_counter()
    t_log = t_start
    evals_done = 0
    # the last evaluation's step and whether it scored the whole split (a restored run evaluated at its step)
    last_eval = {"step": step, "full": True} if ckpt is not None and step and step % cfg.eval_every == 0 else {"step": -1, "full": False}
    last_val: LossReport | None = None
    last_epoch: LossReport | None = None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    def epochs_done() -> float:
        """Epochs completed, fractional: what every metrics event calls "epoch"."""
        return round(epoch + k / max(steps_per_epoch, 1), 4)

    def local_progress() -> float:
        return max(step / step_budget if step_budget else 0.0, elapsed() / budget_s if budget_s else 0.0)

    def time_up() -> bool:
        return bool(budget_s and elapsed() >= budget_s)

    # With several processes, rank 0's clock decides (see the all-reduce in the loop): every rank must set
    # the same learning rate and stop at the same step.
    synced = {"progress": local_progress(), "time_up": False, "stop": False}

    def progress() -> float:
        return synced["progress"] if ddp else local_progress()

    def budget_done() -> bool:
        return (step_budget and step >= step_budget) or (synced["time_up"] if ddp else time_up())

    def record(kind: str, data: dict) -> None:
        if metrics is not None:
            metrics.write(json.dumps({"event": kind, **data}) + "\n")
            metrics.flush()
        emit(Event(kind, data))

    def checkpoint(name: str, carried) -> None:
        """Rank 0 only; `carried` is the state of all B streams (gathered from the ranks)."""
        save_checkpoint({
            "model_config": to_dict(mcfg),
            "vocab": list(corpus.vocab.chars),
            "preprocessing": {"lowercase": cfg.lowercase, "letters_only": cfg.letters_only,
                              "max_chars": cfg.max_chars, "encoding_errors": cfg.encoding_errors},
            "train_config": to_dict(cfg),
            "corpus": {"name": corpus.name, "path": corpus.path, "train_chars": len(corpus.train),
                       "val_chars": len(corpus.val), "test_chars": len(corpus.test)},
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": {"kind": cfg.schedule, "lr": optimizer.param_groups[0]["lr"]},
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
            "position": {"step": step, "epoch": epoch, "batch": k, "elapsed": elapsed(),
                         "acc": dict(acc), "epoch_acc": dict(ep_acc)},
            "carried_state": None if carried is None else
                [t.detach().cpu() for t in carried] if isinstance(carried, tuple) else carried.detach().cpu(),
            "best_val_loss": best_val,
            "val_loss": last_val.loss if last_val else None,
            "params": count_parameters(model),
        }, run_dir / name)

    def log_line() -> None:
        nonlocal acc, t_log
        now = time.perf_counter()
        rep = LossReport(acc["nll"], acc["chars"])
        record("log", {"step": step, "epoch": epochs_done(), "chars": step * tokens_per_step,
                       "train_loss": rep.loss, "bpc": rep.bpc, "lr": optimizer.param_groups[0]["lr"],
                       "grad_norm": acc["gn"] / max(acc["steps"], 1), "clipped": acc["clipped"] / max(acc["steps"], 1),
                       "chars_per_sec": acc["chars"] / max(now - t_log, 1e-9), "time": elapsed(),
                       "progress": progress()})
        acc = {"nll": 0.0, "chars": 0, "gn": 0.0, "clipped": 0, "steps": 0}
        t_log = time.perf_counter()

    def evaluate_and_save(final: bool = False) -> None:
        nonlocal best_val, last_val, evals_done, t_log
        t0 = time.perf_counter()
        # every rank keeps this record: it decides whether the run ends with one more (whole) evaluation
        last_eval.update(step=step, full=final or not cfg.eval_chars or len(corpus.val) - 1 <= cfg.eval_chars)
        everyone = ddp.gather_rows(carried) if ddp else carried
        if not main:  # rank 0 evaluates and saves while the others wait
            ddp.barrier()
            t_log += time.perf_counter() - t0
            return
        data = {"step": step, "epoch": epochs_done(), "chars": step * tokens_per_step, "time": elapsed()}
        bounded = None
        if len(corpus.val) > 1:
            # best.pt is chosen on the same fixed part of the split every time; the last evaluation of a run
            # also scores the whole split, and that is the val loss the run reports
            bounded = evaluate_ids(model, corpus.val, device, chunk=max(cfg.seq_len, 128), max_chars=cfg.eval_chars)
            whole = bounded.chars == len(corpus.val) - 1
            last_val = bounded if whole or not final else evaluate_ids(model, corpus.val, device, chunk=max(cfg.seq_len, 128))
            data.update(val_loss=last_val.loss, bpc=last_val.bpc, perplexity=last_val.perplexity, val_chars=last_val.chars,
                        val_scope="full" if last_val.chars == len(corpus.val) - 1 else "part")
            if last_val is not bounded:
                data["val_loss_part"] = bounded.loss  # the number comparable with the earlier evaluations
            data["eval_seconds"] = time.perf_counter() - t0  # what scoring cost this run's wall clock
        train_rep = last_epoch or LossReport(ep_acc["nll"], ep_acc["chars"])
        if train_rep.chars:
            data.update(train_loss=train_rep.loss, train_perplexity=train_rep.perplexity)
        record("eval", data)
        if bounded is not None and bounded.loss < best_val:
            best_val = bounded.loss
            checkpoint("best.pt", everyone)
        checkpoint("last.pt", everyone)
        evals_done += 1
        if cfg.sample_every and evals_done % cfg.sample_every == 0 and cfg.sample_length > 0:
            g = torch.Generator().manual_seed(cfg.seed)
            text = sample_text(model, corpus.vocab, sample_prefix, cfg.sample_length, generator=g)
            emit(Event("sample", {"step": step, "prefix": sample_prefix, "text": text}))
        if ddp:
            ddp.barrier()
        t_log += time.perf_counter() - t0  # evaluation time is not training throughput

    emit(Event("start", {
        "run_dir": str(run_dir), "corpus": corpus.name, "path": corpus.path, "vocab_size": len(corpus.vocab),
        "train_chars": len(corpus.train), "val_chars": len(corpus.val), "test_chars": len(corpus.test),
        "model": mcfg.model, "impl": mcfg.impl, "params": count_parameters(model), "device": str(device),
        "steps_per_epoch": steps_per_epoch, "total_steps": step_budget or None, "minutes": cfg.minutes or None,
        "step": step, "state_policy": policy, "resumed": ckpt is not None, "version": __version__,
    }))

    interrupted = False
    stop = {"requested": False}
    old_handlers = _install_signal_handlers(stop)
    model.train()
    try:
        while not budget_done():
            plan = batches.epoch(epoch)
            while k < plan["num_batches"] and not budget_done():
                if synced["stop"] if ddp else stop["requested"]:
                    raise _Stop()
                x, y = batches.batch(plan, k)  # (B, T) each
                x, y = x[rows], y[rows]  # (B/W, T): this process's streams
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if policy == "reset" or k == 0 or carried is None:
                    state = model.begin_state(local_batch, device)
                else:
                    state = detach_state(carried)  # truncated BPTT: values carry on, the graph stops here
                for g_ in optimizer.param_groups:
                    g_["lr"] = lr_at(cfg, step, progress())
                with autocast:
                    logits, state = fwd(x, state)  # (B, T, V)
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  # mean NLL per character
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gn = float(torch.nn.utils.clip_grad_norm_(params, clip))
                optimizer.step()
                carried = state if policy == "carry" else None
                step, k = step + 1, k + 1
                if ddp:  # one all-reduce: the global batch's loss, rank 0's progress and clock, anyone's Ctrl-C
                    loss_value, synced["progress"], synced["time_up"], synced["stop"] = ddp.agree(
                        loss, local_progress(), time_up(), stop["requested"])
                else:
                    loss_value = loss.item()
                nll = loss_value * tokens_per_step
                acc["nll"] += nll
                acc["chars"] += tokens_per_step
                acc["gn"] += gn
                acc["clipped"] += int(gn > clip)
                acc["steps"] += 1
                ep_acc["nll"] += nll
                ep_acc["chars"] += tokens_per_step
                if not math.isfinite(gn) or not math.isfinite(nll):
                    emit(Event("warning", {"message": f"step {step}: loss or gradient is not finite (loss {nll / tokens_per_step:.4g}, "
                                           f"grad norm {gn:.4g}); lower --lr or keep --clip on"}))
                if step % cfg.log_every == 0:
                    log_line()
                if step % cfg.eval_every == 0:
                    evaluate_and_save(final=bool(step_budget and step >= step_budget))
            if k >= plan["num_batches"]:  # the epoch is complete
                last_epoch = LossReport(ep_acc["nll"], ep_acc["chars"])
                record("epoch", {"step": step, "epoch": epoch + 1, "train_loss": last_epoch.loss,
                                 "train_perplexity": last_epoch.perplexity, "time": elapsed()})
                epoch, k, carried = epoch + 1, 0, None
                ep_acc = {"nll": 0.0, "chars": 0}
        if acc["steps"]:
            log_line()
        if last_eval["step"] != step or not last_eval["full"]:
            evaluate_and_save(final=True)
    except _Stop:
        interrupted = True
        everyone = ddp.gather_rows(carried) if ddp else carried
        if main:
            checkpoint("last.pt", everyone)
        emit(Event("checkpoint", {"path": str(run_dir / "last.pt"), "step": step, "interrupted": True}))
    finally:
        _restore_signal_handlers(old_handlers)
        if metrics is not None:
            metrics.close()

    total = elapsed()
    summary = {
        "run_dir": str(run_dir), "corpus": corpus.name, "model": mcfg.model, "impl": mcfg.impl,
        "params": count_parameters(model), "device": str(device), "steps": step, "epochs": epochs_done(),
        "chars": step * tokens_per_step, "seconds": total, "interrupted": interrupted,
        "train_loss": (last_epoch or LossReport(ep_acc["nll"], ep_acc["chars"])).loss,
        "val_loss": last_val.loss if last_val else None, "val_bpc": last_val.bpc if last_val else None,
        "val_perplexity": last_val.perplexity if last_val else None,
        "best_val_loss": best_val if math.isfinite(best_val) else None,
        "checkpoint": str(run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "last.pt")),
    }
    tr = summary["train_loss"]
    summary["train_perplexity"] = math.exp(min(tr, 700)) if tr == tr else None
    emit(Event("end", summary))
    return summary


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast when asked for (CUDA, or a CPU with bf16 kernels); otherwise a no-op context."""
    import contextlib

    if not cfg.amp or _no_bf16(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _no_bf16(device: torch.device) -> str | None:
    """Why --amp cannot run on this device, or None. On a CPU without native bf16 (AVX512-BF16 / AMX)
    oneDNN has no bf16 LSTM kernel at all (nn.LSTM fails), and emulated bf16 would be slower than fp32."""
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "--amp: this CPU has no native bf16 support (AVX512-BF16 or AMX); training in fp32"
    return None


def _install_signal_handlers(stop: dict):
    """Ctrl-C and SIGTERM ask the loop to stop at the next step boundary, where it saves last.pt (so the
    saved state is always consistent). A second Ctrl-C interrupts at once. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if stop["requested"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop["requested"] = True

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(old) -> None:
    if old is not None:
        for sig, h in old.items():
            signal.signal(sig, h)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint's step (they will be written again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(l + "\n" for l in kept), encoding="utf-8")
