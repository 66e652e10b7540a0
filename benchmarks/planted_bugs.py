"""Plant realistic bugs one at a time in a copy of the tree and check that the test suite goes red.

    python benchmarks/planted_bugs.py                 # every entry, each against the tests meant to catch it
    python benchmarks/planted_bugs.py --full          # every entry against the whole suite (slow)
    python benchmarks/planted_bugs.py --only sgd-momentum,clip-never-clips
    python benchmarks/planted_bugs.py --list

Each entry is one exact edit (file, old text, new text) and one line saying which behaviour it breaks;
`old` must occur exactly once in the file, so an entry that no longer applies after a refactor is
reported as STALE (re-point it) rather than silently skipped. The tree (charrnn/, tests/, examples/, pyproject.toml,
README.md) is copied to a temporary directory next to a link to ../shared (the corpus mirror the tests look for),
the edit is applied there, and pytest runs with -x; the table says caught / missed and the first test
that failed. The unmodified copy is run first on the same tests: a baseline that fails makes every
"caught" meaningless, so the script stops there.

Exit status: 0 when every entry was caught, 1 when one was missed, 2 for a stale entry or a red baseline.
Mutation tools (mutmut, cosmic-ray) generate thousands of mutants, too many for a torch suite on 2 cores;
this hand-placed list of the bugs that matter runs in minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    file: str  # relative to the repository root
    old: str  # exact text, occurring once
    new: str
    breaks: str  # the behaviour it breaks, one line
    tests: tuple[str, ...]  # test files (or file::test) of the quick mode
    k: str = ""  # and a pytest -k expression narrowing them, for speed


BUGS = [
    # checkpoint safety
    Bug("ckpt-plain-save", "charrnn/core/checkpoint.py",
        'fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)',
        "fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
        "a save interrupted part-way destroys the previous checkpoint", ("tests/test_checkpoint.py",)),
    Bug("ckpt-unsafe-load", "charrnn/core/checkpoint.py", 'map_location="cpu", weights_only=True)',
        'map_location="cpu", weights_only=False)', "loading a checkpoint may run code", ("tests/test_cli.py",), "never_runs_code"),
    # sampling
    Bug("sample-seed-ignored", "charrnn/generate/sample.py", "return seed, torch.Generator().manual_seed(seed)",
        "return seed, torch.Generator().manual_seed(0)", "`sample --seed` does not change the text", ("tests/test_cli.py",), "sample"),
    Bug("sample-generator-unused", "charrnn/generate/sample.py", "u = torch.rand(cum.shape[0], 1, generator=generator,",
        "u = torch.rand(cum.shape[0], 1, generator=None,", "the same seed does not give the same text",
        ("tests/test_sample.py",)),
    Bug("temperature-multiplies", "charrnn/generate/sample.py", "logits = logits.float() / temperature",
        "logits = logits.float() * temperature", "temperature sharpens where it should flatten",
        ("tests/test_sample.py",)),
    Bug("prefix-state-dropped", "charrnn/generate/sample.py", "_, state = model(ids[:, i : min(i + chunk, ids.shape[1] - 1)], state)",
        "_, _ = model(ids[:, i : min(i + chunk, ids.shape[1] - 1)], state)", "generation forgets what the prefix said", ("tests/test_sample.py",)),
    Bug("greedy-argmin", "charrnn/generate/sample.py", "return logits.argmax(dim=-1)", "return logits.argmin(dim=-1)",
        "temperature 0 picks the least likely character", ("tests/test_sample.py",)),
    Bug("letters-only-prefix", "charrnn/core/checkpoint.py",
        "return self.text(prefix)",
        "return prefix.lower() if self.lowercase or self.letters_only else prefix",
        "`sample --prefix` on a letters-only model keeps punctuation and digits", ("tests/test_cli.py",), "letters"),
    Bug("letters-only-eval-text", "charrnn/core/checkpoint.py",
        "return preprocess(raw, self.lowercase, self.letters_only, newline=self.newline)",
        "return preprocess(raw, self.lowercase, newline=self.newline)",
        "`eval --text` on a letters-only model skips the corpus preprocessing", ("tests/test_cli.py",), "eval_text and letters"),
    # training maths
    Bug("clip-never-clips", "charrnn/training/loop.py", "grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))",
        'grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))',
        "--clip measures the gradient norm but never clips", ("tests/test_train_maths.py",)),
    Bug("sgd-momentum", "charrnn/training/optim.py", "torch.optim.SGD(groups, lr=cfg.lr)",
        "torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)",
        "--optimizer sgd silently uses momentum", ("tests/test_train_maths.py",)),
    Bug("adamw-no-decay", "charrnn/training/optim.py", "torch.optim.AdamW(groups, lr=cfg.lr)",
        "torch.optim.AdamW(parameter_groups(model, 0.0), lr=cfg.lr)", "AdamW ignores --weight-decay", ("tests/test_train_maths.py",)),
    Bug("adamw-is-adam", "charrnn/training/optim.py", "torch.optim.AdamW(groups, lr=cfg.lr)",
        "torch.optim.Adam(groups, lr=cfg.lr)",
        "--optimizer adamw applies L2 through the gradient (Adam), not decoupled decay", ("tests/test_train_maths.py",)),
    Bug("adam-no-decay", "charrnn/training/optim.py", "return torch.optim.Adam(groups, lr=cfg.lr)",
        "return torch.optim.Adam(model.parameters(), lr=cfg.lr)", "Adam ignores --weight-decay", ("tests/test_train_maths.py",)),
    Bug("lr-schedule-ignored", "charrnn/training/loop.py", 'group["lr"] = lr_at(tr.cfg, run.step, tr.progress())',
        'group["lr"] = tr.cfg.lr',
        "--warmup and --schedule never reach the optimizer", ("tests/test_train_maths.py",)),
    Bug("grad-not-zeroed", "charrnn/training/loop.py", "optimizer.zero_grad(set_to_none=True)",
        "None  # optimizer.zero_grad(set_to_none=True)", "gradients accumulate across steps",
        ("tests/test_train_maths.py",)),
    Bug("eval-with-dropout", "charrnn/training/evaluate.py", "    model.eval()\n    total", "    total", "evaluation scores with dropout on",
        ("tests/test_train_maths.py",), "evaluation_scores"),
    Bug("no-dropout-before-head", "charrnn/core/models.py", "logits = self.head(dropped)",
        "logits = self.head(out)", "--dropout no longer acts before the output layer",
        ("tests/test_train_maths.py", "tests/test_models.py")),
    Bug("train-in-eval-mode", "charrnn/training/loop.py", "    tr.model.train()\n    try:", "    tr.model.eval()\n    try:",
        "the training loop runs the model in eval mode (no dropout)", ("tests/test_train_maths.py",), "training_mode"),
    Bug("loss-div-batch-twice", "charrnn/training/loop.py",
        "loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  #",
        "loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / x.shape[0]  #",
        "the training loss is divided by the batch size twice", ("tests/test_train_maths.py",)),
    Bug("loss-div-dataset-len", "charrnn/training/loop.py", "run.count(nll, tr.tokens_per_step, gn, clip)",
        "run.count(nll, len(tr.corpus.train), gn, clip)", "the logged training loss is divided by the dataset length",
        ("tests/test_train_maths.py",)),
    Bug("loss-sum-not-mean", "charrnn/training/loop.py", "nll = loss_value * tr.tokens_per_step", "nll = loss_value * tr.cfg.batch_size",
        "the logged loss is per sequence step, not per character", ("tests/test_train_maths.py",)),
    Bug("carry-not-carried", "charrnn/training/loop.py", 'run.carried = state if policy == "carry" else None', "run.carried = None",
        "--state carry starts every batch from zero", ("tests/test_train.py",)),
    Bug("carry-not-detached", "charrnn/training/loop.py",
        "state = detach_state(run.carried)  # truncated BPTT", "state = run.carried  # truncated BPTT",
        "the carried state keeps its graph (no truncation)", ("tests/test_train.py",)),
    Bug("eval-chars-padded", "charrnn/training/evaluate.py", "return np.arange(rows)[:, None] * cols, cols, n  #",
        "return np.arange(rows)[:, None] * cols, cols, rows * cols  #", "evaluation divides by padded positions, not characters scored",
        ("tests/test_cli.py", "tests/test_train.py", "tests/test_data.py")),
    Bug("ddp-grad-summed", "charrnn/training/loop.py", "    (loss + ar_tar(raw, dropped, ar, tar) if ar or tar else loss).backward()",
        "    (loss * (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1)).backward()",
        "under torchrun the gradient is summed over ranks, not averaged", ("tests/test_distributed.py",)),
    # precision
    Bug("amp-silently-fp32", "charrnn/training/train.py", "return torch.autocast(device_type=device.type, dtype=torch.bfloat16)",
        "return contextlib.nullcontext()", "--amp on a bf16 CPU trains in fp32", ("tests/test_train_maths.py",)),
    Bug("amp-fallback-silent", "charrnn/training/train.py", "if tr.cfg.amp and (why := _no_bf16(tr.device)):",
        "if tr.cfg.amp and False and (why := _no_bf16(tr.device)):", "--amp without bf16 falls back without a warning",
        ("tests/test_train_maths.py",)),
    # the two defects of issue 14
    Bug("eval-previous-epoch", "charrnn/training/subscribers.py", "(None if tr.epoch_complete() else tr.last_epoch)",
        "(None if False else tr.last_epoch)",
        "the eval at an epoch's end reports the previous epoch's train perplexity", ("tests/test_cli.py",), "epoch"),
    Bug("info-epoch-index", "charrnn/core/checkpoint.py", '"epoch": pos.get("epochs_completed", pos.get("epoch")),',
        '"epoch": pos.get("epoch"),', "`info` shows the epoch index, not epochs completed", ("tests/test_cli.py",), "epoch"),
    # sample's options (issue 10)
    Bug("stop-ignores-prefix", "charrnn/generate/sample.py",
        'self.tail = before[len(before) - self.keep + 1 :] if self.keep > 1 else ""', 'self.tail = ""',
        "a stop string that begins in the prefix and ends in the generated text does not stop it",
        ("tests/test_sample_options.py",), "prefix_boundary"),
    Bug("stop-shown-early", "charrnn/generate/sample.py", "if any(s.startswith(self.tail[-k:]) for s in self.stops):",
        "if any(s.startswith(self.held[-k:]) for s in self.stops):",
        "the generated start of a stop string that began in the prefix is printed", ("tests/test_sample_options.py",),
        "prefix_boundary"),
    Bug("prime-chunk-overlap", "charrnn/generate/sample.py", "for i in range(0, ids.shape[1] - 1, chunk):",
        "for i in range(0, ids.shape[1] - 1, max(1, chunk - 1)):", "a long --prefix-file feeds characters twice",
        ("tests/test_sample_options.py",), "chunks"),
    Bug("beam-wrong-parent-state", "charrnn/generate/beam.py", "state, x = _select(state, src),",
        "state, x = _select(state, src * 0),", "beam search continues every beam from the best one's state",
        ("tests/test_sample_options.py",), "beam"),
    Bug("beam-no-length-norm", "charrnn/generate/beam.py", "found, ctx = max(done, key=lambda d: d[0].logprob_per_char)",
        "found, ctx = max(done, key=lambda d: d[0].logprob)",
        "beam search prefers short continuations (total, not per-character, log-probability)",
        ("tests/test_sample_options.py",), "beam"),
    Bug("interactive-carry-ignored", "charrnn/generate/interactive.py", "context = self.context if self.carry else self.start",
        "context = self.start", "`sample -i --carry` starts every prompt afresh", ("tests/test_interactive.py",), "carry"),
    # diagnose's own fail paths
    Bug("diag-scale-never-fires", "charrnn/diagnose/checks_loss.py", "if not (1 / SCALE_RATIO <= ratio <= SCALE_RATIO):",
        "if not (1 / SCALE_RATIO / 100 <= ratio <= SCALE_RATIO * 100):",
        "diagnose's train-vs-val scale check cannot fire", ("tests/test_diagnose_fail_paths.py",)),
    Bug("diag-first-loss-never-fires", "charrnn/diagnose/checks_loss.py", "if first > FIRST_LOSS_MAX * lnV:",
        "if first > FIRST_LOSS_MAX * lnV * 100:", "diagnose's 'first loss is not per character' check cannot fire",
        ("tests/test_diagnose_fail_paths.py",)),
    Bug("diag-carry-sign", "charrnn/diagnose/checks_state.py", "gain_c, se_c = paired(reset - carry)",
        "gain_c, se_c = paired(carry - reset)", "diagnose reads a carry gain as a loss and vice versa",
        ("tests/test_diagnose_fail_paths.py", "tests/test_diagnose.py")),
    Bug("diag-recorded-never-fails", "charrnn/diagnose/checks_loss.py", 'verdict = "fail"\n', 'verdict = "warn"\n',
        "diagnose's recorded-loss check cannot fail", ("tests/test_diagnose_fail_paths.py",)),
    Bug("diag-nonfinite-grads", "charrnn/diagnose/checks_grad.py", "        if not finite.all():",
        "        if not finite.any():", "diagnose misses a non-finite recorded gradient norm",
        ("tests/test_diagnose_fail_paths.py",)),
    Bug("diag-warmup-gap-sign", "charrnn/diagnose/measure.py", "gap += (nll_r - nll_c).sum(0).cpu()",
        "gap += (nll_c - nll_r).sum(0).cpu()", "diagnose's warm-up length measures the gap the wrong way round",
        ("tests/test_diagnose_fail_paths.py",), "warmup"),
    Bug("diag-warmup-off-by-one", "charrnn/diagnose/checks_state.py", "warm = int(ok_from[0]) if len(ok_from) else None",
        "warm = int(ok_from[0]) + 1 if len(ok_from) else None", "diagnose's warm-up length is one character off",
        ("tests/test_diagnose_fail_paths.py",), "warmup"),
    Bug("diag-saturation-never-warns", "charrnn/diagnose/checks_grad.py", "    if worst > SATURATION_WARN:",
        "    if worst > SATURATION_WARN * 2:", "diagnose's saturation check cannot warn",
        ("tests/test_diagnose_fail_paths.py",)),
    # bounded evaluation (--eval-chars)
    Bug("eval-windows-at-start", "charrnn/training/evaluate.py", "np.linspace(0, n_targets - cols, rows)",
        "np.linspace(0, max_chars - cols, rows)", "--eval-chars scores only the start of the split",
        ("tests/test_bounded_eval.py",)),
    Bug("eval-windows-overlap", "charrnn/training/evaluate.py", "np.linspace(0, n_targets - cols, rows)",
        "np.linspace(0, n_targets // rows, rows)", "--eval-chars windows overlap and miss the split's end",
        ("tests/test_bounded_eval.py",)),
    Bug("eval-final-part-only", "charrnn/training/subscribers.py", 'and (self.last["step"] != step or not self.last["full"]):',
        'and self.last["step"] != step:', "a run whose last evaluation was the part never scores the whole split",
        ("tests/test_bounded_eval.py",)),
    # fine-tuning (--init-from)
    Bug("finetune-renumbered", "charrnn/training/finetune.py", "grown = Vocab(tuple(old.chars) + tuple(added))",
        "grown = Vocab(tuple(sorted(set(old.chars) | set(added))))",
        "--init-from renumbers the old characters (sorted with the new ones)", ("tests/test_finetune.py",)),
    Bug("finetune-new-rows-likely", "charrnn/training/finetune.py", "model.head.bias[V_old:] = _new_bias(",
        "model.head.bias[V_old:] = 0.0 * _new_bias(", "--init-from does not make the new characters unlikely at step 0",
        ("tests/test_finetune.py",)),
    # stop strings and beam search
    Bug("stop-cut-wrong", "charrnn/generate/sample.py", "- len(s))]", "- 1)]",
        "--stop takes off one character, not the stop string", ("tests/test_sample_options.py",)),
    Bug("stop-in-prefix", "charrnn/generate/sample.py", "self.stop: str | None = None",
        "self.stop: str | None = next((s for s in stops if s in before), None)",
        "a stop string inside the prefix ends generation", ("tests/test_sample_options.py",)),
    Bug("beam-width-off-by-one", "charrnn/generate/beam.py", "torch.topk(cand.flatten(), min(width, cand.numel()))",
        "torch.topk(cand.flatten(), min(width + 1, cand.numel()))", "beam search keeps one beam too many (K=1 is not greedy)",
        ("tests/test_sample_options.py",), "beam"),
    # scoring, baselines, probes
    Bug("surprisal-bits-as-nats", "charrnn/analysis/surprisal.py", "np.nansum(self.bits) * math.log(2)", "np.nansum(self.bits)",
        "the surprisal's total is in bits where eval's loss is in nats", ("tests/test_surprisal.py",)),
    Bug("ngram-discount", "charrnn/analysis/ngram.py", "n1 / (n1 + 2 * n2)", "n1 / (n1 + n2)",
        "the Kneser-Ney discount is not n1 / (n1 + 2 n2)", ("tests/test_ngram.py",)),
    Bug("probe-pearson-axis", "charrnn/analysis/signals.py", "ac /= np.sqrt((ac * ac).sum(axis=0))", "ac /= np.sqrt((ac * ac).sum())",
        "probe's Pearson r normalises by all units together", ("tests/test_probe.py",)),
    # the run directory
    Bug("rundir-lock-shared", "charrnn/training/rundir.py", "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)", "two runs can write into one directory at once",
        ("tests/test_failures.py",)),
    Bug("rundir-stale-temps-kept", "charrnn/training/rundir.py", 'STALE_TEMPS = ".*.pt.*.tmp"', 'STALE_TEMPS = ".*.pt.tmp"',
        "the temp file of a save killed mid-way is never removed", ("tests/test_failures.py",)),
    # diagnose --log and gradcheck --user
    Bug("diaglog-partial-batch", "charrnn/diagnose/scale.py", "nb = math.ceil(size / B)", "nb = size // B",
        "diagnose --log's len(dataset) factor forgets the last partial batch", ("tests/test_diagnose_log.py",)),
    Bug("diaglog-sum-t-factor", "charrnn/diagnose/scale.py", "return Factor(T, f\"T = {T}",
        "return Factor(T - 1, f\"T = {T}", "diagnose --log's summed-over-T factor is T - 1",
        ("tests/test_diagnose_log.py",)),
    Bug("usergrad-scale-inverted", "charrnn/gradcheck/findings.py", "k = float(u @ d / (d @ d))", "k = float(u @ d / (u @ u))",
        "gradcheck --user names the inverse of the gradient's scale factor", ("tests/test_usergrad.py",)),
    # bf16 matmuls in the scratch layers under --amp
    Bug("amp-scratch-stays-fp32", "charrnn/core/scratch.py",
        "return torch.bfloat16 if on and bf16_pays(kind, hidden) else None", "return None",
        "--amp leaves the scratch layers' matmuls in fp32 (the speed-up silently gone)", ("tests/test_scratch.py",), "bf16"),
    Bug("amp-narrow-layers-bf16", "charrnn/core/scratch.py", "return hidden >= BF16_MIN_HIDDEN[kind]", "return True",
        "narrow layers multiply in bf16 too, where it measured slower", ("tests/test_scratch.py",), "narrow"),
    Bug("amp-gru-hidden-bias-dropped", "charrnn/core/scratch.py", "_addmm(b_hh, hs[t], W_hhT, lowp, out=gh[t])",
        "_addmm(b_hh * (lowp is None), hs[t], W_hhT, lowp, out=gh[t])",
        "under --amp the GRU's recurrent bias is lost", ("tests/test_scratch.py",), "bf16"),
    # ---- regrouping, the analysis loader and the Python API (issue 19): entries go below this line ----
    # the CLI split and its two defects (cli helper)
    Bug("train-prefix-unprepared", "charrnn/training/train.py", "return replace(cfg, sample_prefix=prefix)", "return cfg",
        "--lowercase --sample-prefix ROMEO: samples from an upper-case prefix the model never saw",
        ("tests/test_train.py",), "sample_prefix"),
    Bug("train-prefix-unchecked", "charrnn/training/train.py", "prefix, note = prepare_prefix(cfg.sample_prefix, pre, vocab,",
        "prefix, note = prepare_prefix(cfg.sample_prefix, pre, None,",
        "a --sample-prefix the model cannot read kills the run at its first sample, after the run directory is written",
        ("tests/test_train.py",), "cannot_read"),
    Bug("sample-prefix-unprepared", "charrnn/generate/sample.py", "prepared = preprocessing.prefix(prefix)",
        "prepared = prefix", "`sample` feeds a lower-cased model the prefix as typed",
        ("tests/test_interactive.py",), "prepares"),
    Bug("glob-hidden-whole-path", "charrnn/data/documents.py", "_visible(p.relative_to(base))", "_visible(p)",
        "--corpus '../docs/*.txt' finds no files ('..' taken for a hidden folder)", ("tests/test_documents.py",), "climbs"),
    Bug("flags-lose-to-config", "charrnn/core/config.py",
        "options.update({k: v for k, v in given.items() if k in OPTION_KEYS})",
        "options = {**{k: v for k, v in given.items() if k in OPTION_KEYS}, **options}",
        "a --config file's value wins over the flag given with it", ("tests/test_cli.py",), "config_file_with_flags"),
    Bug("flag-named-by-parameter", "charrnn/cli/app.py", 'next((o for o in p.opts if o.startswith("--")), None)',
        "p.name", "--out and --compile are dropped (their parameters are out_dir, compile_)",
        ("tests/test_cli.py",), "config_file_with_flags"),
    Bug("interactive-error-ends-session", "charrnn/generate/interactive.py", "yield Message(str(e), error=True)",
        "raise", "a prompt with a character the model never saw ends the interactive session",
        ("tests/test_interactive.py",), "goes_on"),
    Bug("map-bpc-in-decibans", "charrnn/training/evaluate.py", "return loss / math.log(2)", "return loss / math.log(10)",
        "bits per character computed with the wrong logarithm", ("tests/test_cli.py",), "bits_and_perplexity"),
    Bug("subject-split-always-train", "charrnn/analysis/subject.py", "ids = getattr(corpus, split)", "ids = corpus.train",
        "eval --split val, --ngram, explore and diagnose read the training split whatever was asked", ("tests/test_subject.py",)),
    Bug("subject-file-not-prepared", "charrnn/analysis/subject.py", "text = self.preprocessing.read(path)",
        "text = read_text(path)", "a --text file reaches the analyses without the run's preprocessing (lowercase, letters only)",
        ("tests/test_subject.py",)),
    Bug("subject-unk-to-id-0", "charrnn/analysis/subject.py", "ids[ids < 0] = unk", "ids[ids < 0] = 0",
        "a user's model reads unknown characters as its first token instead of its '<unk>'", ("tests/test_subject.py",)),
    Bug("api-prefix-not-prepared", "charrnn/__init__.py", "return prepare_prefix(prefix, self.subject.preprocessing, self.vocab)[0]",
        "return prefix",
        "charrnn.load(...).sample feeds a prefix the model never saw (no lower-casing on a letters-only run)",
        ("tests/test_api.py",), "preset"),
    Bug("api-html-colour-shifted", "charrnn/analysis/surprisal.py", "surprisal_rgb(self.bits[i])",
        "surprisal_rgb(self.bits[max(i - 1, 1)])", "the notebook picture colours each character by its neighbour's surprisal",
        ("tests/test_api.py",), "notebook"),
    Bug("api-config-over-keywords", "charrnn/__init__.py",
        "merged = {**merge_options({}, preset=preset, config=config), **options}",
        "merged = {**options, **merge_options({}, preset=preset, config=config)}",
        "charrnn.train lets the config file override the keywords (the command line's precedence inverted)",
        ("tests/test_api.py",), "preset"),

    # ---- diagnose and gradcheck on code nobody here wrote (issue 20): entries go below this line ----
    Bug("diag-row0-only", "charrnn/diagnose/measure_state.py", "return list(dict.fromkeys([0, rows - 1, middle]))",
        "return [0]", "row independence perturbs row 0 only: the last row's state given to all passes",
        ("tests/test_diagnose_d2l.py",), "one_rows_state"),
    Bug("diag-shape-never-compared", "charrnn/diagnose/measure_state.py", '"same_layout": not diffs,',
        '"same_layout": True,', "a returned state in another layout than begin_state's passes",
        ("tests/test_diagnose_d2l.py",), "loses_its_batch_axis"),
    Bug("diag-blames-user-for-charrnn", "charrnn/core/userfile.py", 'return Blame("charrnn", f, inside)',
        'return Blame("user", f, inside)', "an exception raised in charrnn's own code is reported as the model's",
        ("tests/test_diagnose_d2l.py",), "inside_charrnn"),
    Bug("diag-debug-hides-user-frames", "charrnn/diagnose/context.py", 'f"{_unpack_hint(ctx, e)}") from e',
        'f"{_unpack_hint(ctx, e)}") from None', "CHARRNN_DEBUG=1 stops inside charrnn: the user's frames are hidden",
        ("tests/test_diagnose_d2l.py",), "bare_state_unpacked"),
    Bug("diag-radius-inherits-skip", "charrnn/diagnose/checks_grad.py",
        'return None, f"the measurement raised {type(e).__name__}: see grad.bptt_norms"', "raise",
        "the spectral radius is skipped whenever the gradient measurement fails, though it needs only the weights",
        ("tests/test_diagnose_d2l.py",), "learners_forward"),
    Bug("diag-symptom-unlinked", "charrnn/diagnose/context.py", "        if not failed:\n            continue",
        "        if True:\n            continue", "a symptom check no longer points back to its failed root cause",
        ("tests/test_diagnose_d2l.py",), "flattened"),
    Bug("usergrad-float32-rows-fail", "charrnn/gradcheck/user.py",
        'row.passed, row.result, row.wrong_at, row.wrong_from = False, "not concluded", [], None',
        'row.passed, row.result = False, "fail"', "gradcheck --user marks float32 rows FAIL while its finding says "
        "nothing can be concluded", ("tests/test_usergrad.py",), "float32"),

    # ---- a newcomer's first run (issue 21): entries go below this line ----
    Bug("threads-auto-ignores-load", "charrnn/training/threads.py", "count = max(1, min(cores, math.floor(cores - busy + 0.5)))",
        "count = cores", "--threads auto computes with every core however busy the machine is",
        ("tests/test_newcomer.py",), "auto_takes"),
    Bug("minutes-no-reserve", "charrnn/training/subscribers.py", "tr.reserve = min(need, RESERVE_SHARE * tr.budget.seconds)",
        "tr.reserve = 0.0", "--minutes stops training at the budget and then runs the final evaluation past it",
        ("tests/test_newcomer.py",), "minutes_bounds"),
    Bug("minutes-evals-by-steps-only", "charrnn/training/subscribers.py",
        "if seconds and tr.ddp is None else 0.0", "if False else 0.0",
        "a --minutes run evaluates and samples only every --eval-every steps", ("tests/test_newcomer.py",), "by_the_clock"),
    Bug("eval-progress-silent", "charrnn/training/subscribers.py",
        "self.tr.publish(\"scoring\", {", "(lambda *a: None)(\"scoring\", {",
        "a long evaluation reports no progress", ("tests/test_newcomer.py",), "progress"),
    Bug("ckpt-val-scope-always-full", "charrnn/training/subscribers.py",
        "return None if tr.last_val is None else \"full\" if tr.last_val.chars >= len(tr.corpus.val) - 1 else \"part\"",
        "return None if tr.last_val is None else \"full\"", "a checkpoint calls the loss of a part of the val split full",
        ("tests/test_newcomer.py",), "minutes_bounds or say_what"),
    Bug("diagnose-part-vs-full", "charrnn/diagnose/checks_loss.py", "if part and part < n:", "if False:",
        "diagnose compares a recorded loss of part of the val split with the whole split (a false warning)",
        ("tests/test_newcomer.py",), "diagnose_compares"),

    Bug("log-header-exact-names", "charrnn/diagnose/training_log.py", "    words = _words(name)\n",
        "    words = [name.strip().lower()]\n", "diagnose --log refuses headers such as 'Train Loss' or 'loss/train'",
        ("tests/test_newcomer.py",), "headers"),
    Bug("log-title-read-as-header", "charrnn/diagnose/training_log.py", "    lines = lines[start:]\n", "    lines = lines[0:]\n",
        "diagnose --log takes a title line above the header for the header", ("tests/test_newcomer.py",), "title"),
    Bug("log-header-only-columns-none", "charrnn/diagnose/training_log.py", "    if len(lines) == 1:\n", "    if False:\n",
        "a header with no rows is reported as 'columns found: none'", ("tests/test_newcomer.py",), "without_rows"),
    Bug("corpus-stored-as-typed", "charrnn/training/train.py", 'out["corpus"] = os.path.abspath(path)', 'out["corpus"] = corpus',
        "a relative --corpus is stored as typed: --resume from another folder cannot find it", ("tests/test_newcomer.py",), "relative"),
    Bug("out-tilde-literal", "charrnn/training/train.py", 'PATH_KEYS = ("out", "data_dir", "init_from")',
        'PATH_KEYS = ("data_dir", "init_from")', "--out '~/runs/x' creates a folder named ~", ("tests/test_newcomer.py",), "tilde"),
    Bug("cache-in-users-folder", "charrnn/data/documents.py", "    folder = cache_dir()\n",
        "    folder = files[0].parent\n", "a directory corpus writes its joined text into the user's folder",
        ("tests/test_newcomer.py",), "directory_corpus"),
    Bug("weight-decay-negative-trains", "charrnn/core/config.py", "_check(self.weight_decay >= 0,", "_check(True,",
        "--weight-decay -0.1 trains", ("tests/test_newcomer.py",), "one_line"),
    Bug("usage-error-box", "charrnn/cli/app.py", "except _UsageError as e:", "except ZeroDivisionError as e:",
        "a usage error is typer's six-line box, not one line", ("tests/test_newcomer.py",), "one_line"),
    Bug("quiet-prints-notes", "charrnn/cli/progress.py", "if not self.quiet:  # --quiet keeps only warnings and errors",
        "if True:", "--quiet still prints notes", ("tests/test_newcomer.py",), "quiet"),
    Bug("top-p-zero-means-off", "charrnn/cli/generate.py", "if not 0.0 < top_p <= 1.0:", "if not 0.0 <= top_p <= 1.0:",
        "--top-p 0 silently means off", ("tests/test_newcomer.py",), "top_p"),

    Bug("piped-interactive-exit-0", "charrnn/cli/generate.py", "    if failed and not tty:\n", "    if False:\n",
        "piped sample -i exits 0 after a prompt failed", ("tests/test_newcomer.py",), "piped"),
    Bug("ctrl-c-silent", "charrnn/cli/app.py", 'print("charrnn: interrupted (Ctrl-C)", file=sys.stderr)', "pass",
        "Ctrl-C during sample exits 130 without a word", ("tests/test_newcomer.py",), "ctrl_c"),
    Bug("html-title-explore", "charrnn/cli/evaluate.py", 'render_page(data, title=f"charrnn eval: {source}")', "render_page(data)",
        "the eval --html page is titled 'charrnn explore'", ("tests/test_newcomer.py",), "html"),
    Bug("help-extra-swallowed", "charrnn/cli/train.py", "(needs 'charrnn\\\\[tensorboard]')", "(needs 'charrnn[tensorboard]')",
        "rich swallows [tensorboard] in train --help", ("tests/test_newcomer.py",), "bracket or extras"),
    Bug("crlf-no-note", "charrnn/data/dataset.py", '    if found and cfg.newline == "keep" and not cfg.letters_only and notice:',
        "    if False:", "a corpus with Windows line endings trains with \\r in its vocabulary without a word",
        ("tests/test_newcomer.py",), "line_endings"),
    Bug("crlf-normalize-ignored", "charrnn/core/vocab.py", '    if newline == "normalize":\n', '    if False:\n',
        "--newline normalize keeps the carriage returns", ("tests/test_newcomer.py",), "line_endings or newline"),
    Bug("summary-val-scope-unlabelled", "charrnn/training/train.py",
        '"val_scope": None if not last_val else "full" if last_val.chars >= len(tr.corpus.val) - 1 else "part",',
        '"val_scope": None,', "the train summary does not say which val loss it shows", ("tests/test_newcomer.py",), "which_val_loss"),

    # ---- serve (issue 22): entries go below this line ----
    Bug("serve-shared-rng", "charrnn/serve/engine.py",
        "torch.rand(UNIFORM_BLOCK, self.n, generator=self.generator)",
        "torch.rand(UNIFORM_BLOCK, self.n)",
        "a seeded request draws from the process's RNG: its text depends on the other requests",
        ("tests/test_serve_cli.py",), "batched_jobs"),
    Bug("serve-new-rows-in-front", "charrnn/serve/engine.py", "r.state = _cat(r.state, context.state)",
        "r.state = _cat(context.state, r.state)",
        "a joining job's state is put before the running rows while its rows are listed after them",
        ("tests/test_serve_cli.py",), "batched_jobs"),
    Bug("serve-finished-rows-stay", "charrnn/serve/engine.py",
        "if job.finish[row] is None and not job.cancelled]", "if not job.cancelled]",
        "finished rows keep stepping in the batch instead of leaving at once",
        ("tests/test_serve_cli.py",), "leave_at_once"),
    Bug("serve-prompt-not-preprocessed", "charrnn/serve/completions.py", "prompts = [prepare(p) for p in raw]",
        "prompts = list(raw)", "prompts skip the run's preprocessing (`charrnn sample` applies it)",
        ("tests/test_serve.py",), "preprocessed"),
    Bug("serve-stop-shown", "charrnn/serve/engine.py", "StopWatch(self.stops, include=False, before=self.prompt)",
        "StopWatch(self.stops, include=True, before=self.prompt)", "the stop string is sent as part of the text",
        ("tests/test_serve.py",), "stop_strings"),
    Bug("serve-any-bearer", "charrnn/serve/app.py", "hmac.compare_digest(token.strip(), self.key)",
        "bool(token.strip())", "any bearer token is accepted as the API key",
        ("tests/test_serve_errors.py",), "api_key"),
    Bug("serve-chunked-body-unlimited", "charrnn/serve/app.py", "            if seen[0] > self.limit:\n",
        "            if False:\n", "a body sent without Content-Length escapes --max-body",
        ("tests/test_serve_errors.py",), "413"),
    Bug("serve-queue-unbounded", "charrnn/serve/engine.py", "if len(self.waiting) >= self.max_waiting:",
        "if False:", "the queue grows without bound instead of answering 429",
        ("tests/test_serve_errors.py",), "429"),
    Bug("serve-disconnect-keeps-row", "charrnn/serve/completions.py",
        "            self.cancel()  # a client that went away frees its rows at the next step",
        "            pass", "a client that disconnects mid-stream keeps its row stepping to the end",
        ("tests/test_serve.py",), "disconnects"),
    Bug("serve-sigterm-cuts", "charrnn/serve/server.py", "timeout_graceful_shutdown=None",
        "timeout_graceful_shutdown=0", "SIGTERM cuts the requests in flight instead of finishing them",
        ("tests/test_serve.py",), "sigterm"),

    # ---- export (issue 23): entries go below this line ----
    Bug("onnx-gru-reset-is-update", "charrnn/export/to_onnx.py", 'r = g.op("Sigmoid", g.op("Add", ir, hr))',
        'r = g.op("Sigmoid", g.op("Add", iz, hz))', "the ONNX GRU's reset gate reads the update gate's weights",
        ("tests/test_export.py",), "onnx and logits"),
    Bug("onnx-lstm-forget-is-input", "charrnn/export/to_onnx.py", 'g.op("Mul", g.op("Sigmoid", f), c)',
        'g.op("Mul", g.op("Sigmoid", i), c)', "the ONNX LSTM keeps its cell through the input gate, not the forget gate",
        ("tests/test_export.py",), "onnx and greedy"),
    Bug("sampler-gru-gates-swapped", "charrnn/export/charrnn_sampler.py", "return (1.0 - z) * n + z * h  # (H,)",
        "return z * n + (1.0 - z) * h  # (H,)", "the NumPy sampler's GRU keeps the candidate where it should keep the old state",
        ("tests/test_export.py",), "numpy_sampler_greedy"),
    Bug("sampler-top-k-one-more", "charrnn/export/charrnn_sampler.py", "kth = np.sort(z)[-top_k]",
        "kth = np.sort(z)[-top_k - 1]", "the NumPy sampler's top-k keeps k + 1 characters",
        ("tests/test_export.py",), "top_k"),
    Bug("sampler-letters-only-joins-with-space", "charrnn/export/charrnn_sampler.py",
        'return "".join(_NON_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines())',
        'return " ".join(_NON_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines())',
        "the NumPy sampler prepares a letters-only prefix unlike the training text (lines joined by a space)",
        ("tests/test_export.py",), "preprocesses"),
    Bug("export-temp-left-behind", "charrnn/export/bundle.py", "            Path(tmp).unlink(missing_ok=True)\n",
        "            pass\n", "a failed export leaves its temporary file behind", ("tests/test_export.py",), "failed_write"),
    Bug("web-lstm-output-gate-is-forget", "charrnn/export/page.html", "h[j] = o * Math.tanh(c[j]);",
        "h[j] = f * Math.tanh(c[j]);", "the web page's LSTM shows its cell through the forget gate",
        ("tests/test_export_browser.py",), "greedy and lstm"),
    Bug("web-draw-skips-id-0", "charrnn/export/page.html", "for (let i = 0; i < cums.length; i++) if (cums[i] > u) return i;",
        "for (let i = 1; i < cums.length; i++) if (cums[i] > u) return i;",
        "the web page's inverse-CDF draw never returns character 0 (its mass goes to character 1)",
        ("tests/test_export_browser.py",), "seeded and gru"),
    Bug("web-half-writes-float32", "charrnn/export/to_web.py", 'a.astype("<f2" if half else "<f4")', 'a.astype("<f4")',
        "--half labels float32 bytes as float16", ("tests/test_export_browser.py",), "half"),
    Bug("web-seed-ignored", "charrnn/export/page.html", "mulberry32(opts.seed ?? Math.floor(Math.random() * 4294967296))",
        "mulberry32(Math.floor(Math.random() * 4294967296))", "the web page's seed does not make a sample repeatable",
        ("tests/test_export_browser.py",), "seeded and rnn"),

    # ---- watch (issue 24): entries go below this line ----
    Bug("diaglog-val-yardstick-ignored", "charrnn/diagnose/log.py",
        "found = explaining(first / ref, ([NO_FACTOR] if val_ref else []) + inside)", "found = explaining(first / ref, inside)",
        "diagnose --log gives an unstable run's train curve a factor although val, per character, sits at its level",
        ("tests/test_diagnose_log.py",), "smooth_train or instability"),
    Bug("watch-ratio-inverted", "charrnn/watch/checks.py", "r = s.loss / s.ce", "r = s.ce / s.loss",
        "watch.loss_scale compares the cross-entropy with the loss the wrong way round (names 1/T for a loss summed over T)",
        ("tests/test_watch_torch.py",), "summed_loss_factor"),
    Bug("watch-contiguity-first-column", "charrnn/watch/state.py", "cont = prev_y[:, -1] == s.x[:, 0]",
        "cont = prev_y[:, 0] == s.x[:, 0]", "the watch cannot see that sequential batches continue each other",
        ("tests/test_watch_train.py",), "state_policy"),
    Bug("watch-graph-not-checked", "charrnn/watch/state.py",
        "if s.state_in_graph and carried is not None and carried.all():",
        "if s.state_in_graph and carried is not None and carried.all() and s.n > 100:",
        "a state_in that still carries the previous batch's graph is not flagged", ("tests/test_watch_torch.py",), "no_detach"),
    Bug("watch-writes-the-users-weights", "charrnn/watch/params.py", "torch._foreach_copy_(self.prev, ps)",
        "torch._foreach_copy_(ps, self.prev)", "the watch's snapshot is copied into the user's weights",
        ("tests/test_watch_api.py",), "changes_no_tensor"),
    Bug("watch-probabilities-as-logits", "charrnn/watch/arrays.py",
        "self.probs = bool(s2.min() >= 0 and s2.max() <= 1 and (s2.sum(-1) - 1).abs().max() < 1e-3)", "self.probs = False",
        "softmax outputs of a NumPy loop are read as logits", ("tests/test_watch_numpy.py", "tests/test_watch_api.py"),
        "healthy or cross_entropy_it_compares"),
    Bug("watch-floor-in-bits", "charrnn/watch/checks.py", "return float(-(p * np.log(p)).sum()), \"the unigram",
        "return float(-(p * np.log2(p)).sum()), \"the unigram", "watch.flat's unigram floor in bits against a loss in nats",
        ("tests/test_watch_api.py",), "ignores_its_inputs"),
    Bug("watch-update-low-too-low", "charrnn/watch/checks.py", "UPDATE_LOW, UPDATE_HIGH = 1e-4, 0.3",
        "UPDATE_LOW, UPDATE_HIGH = 1e-6, 0.3", "a learning rate 1000x too small goes unnoticed", ("tests/test_watch_torch.py",),
        "lr_small"),

    # ---- regularisation inside the time budget (issue 25): entries go below this line ----
    Bug("weight-drop-mask-not-in-backward", "charrnn/core/scratch.py", "dW_hh = dW_hh * w_mask  # d(W * M)/dW = M",
        "pass", "the scratch backward forgets the DropConnect mask on dW_hh", ("tests/test_regularise.py",), "gradcheck or engines"),
    Bug("locked-mask-not-in-backward", "charrnn/core/scratch.py", "dx = dx * x_mask  # d(x * m)/dx = m",
        "pass", "the scratch backward forgets the locked-dropout mask on dx", ("tests/test_regularise.py",), "gradcheck or engines"),
    Bug("locked-mask-per-step", "charrnn/core/regularise.py", "keep_mask((x.shape[0], 1, x.shape[2]), p, x)",
        "keep_mask(x.shape, p, x)", "--dropout-kind locked draws a mask per character, as elementwise does",
        ("tests/test_regularise.py",), "locked or once"),
    Bug("weight-drop-keeps-all", "charrnn/core/regularise.py",
        'weights = [keep_mask(getattr(core, f"weight_hh_l{k}").shape, wd, like) if wd else None for k in range(L)]',
        'weights = [keep_mask(getattr(core, f"weight_hh_l{k}").shape, wd, like) * 0 + 1 if wd else None for k in range(L)]',
        "--weight-drop keeps every weight", ("tests/test_regularise.py",), "weight_drop or once"),
    Bug("torch-engine-ignores-weight-mask", "charrnn/core/regularise.py", "w_hh = w_hh * masks.weights[k]", "w_hh = w_hh",
        "the torch engine trains without the DropConnect mask", ("tests/test_regularise.py",), "engines or weight_drop"),
    Bug("embed-dropout-per-position", "charrnn/core/regularise.py", "return inp * keep[ids].unsqueeze(-1)",
        "return inp * keep_mask(ids.shape, p, inp).unsqueeze(-1)",
        "--embed-dropout drops positions, not characters", ("tests/test_regularise.py",), "embedding or once"),
    Bug("ar-tar-not-trained", "charrnn/training/loop.py", "(loss + ar_tar(raw, dropped, ar, tar) if ar or tar else loss).backward()",
        "loss.backward()", "--ar and --tar are computed but never reach the gradient", ("tests/test_regularise.py",), "ar_tar"),
    Bug("tar-of-dropped-outputs", "charrnn/core/regularise.py", "(raw[:, 1:] - raw[:, :-1])", "(dropped[:, 1:] - dropped[:, :-1])",
        "TAR penalises the dropped-out outputs (AWD-LSTM takes the raw ones)", ("tests/test_regularise.py",), "awd"),
    Bug("ema-no-warmup", "charrnn/training/ema.py", "return min(self.decay, (1.0 + step) / (10.0 + step))", "return self.decay",
        "the average starts held back by the random initialisation", ("tests/test_regularise.py",), "formula"),
    Bug("ema-not-evaluated", "charrnn/training/subscribers.py", "with averaged(tr.ema):  # --ema", "if True:  # --ema",
        "evaluation and best.pt score the trained weights, not the average", ("tests/test_regularise.py",), "ema"),
    Bug("ema-resume-loses-trained", "charrnn/training/train.py", "    if trained is not None:\n        model.load_state_dict(trained)",
        "    pass", "a resumed --ema run trains on from the average instead of its own weights", ("tests/test_regularise.py",), "ema"),
    Bug("ema-swap-not-restored", "charrnn/training/ema.py", "                for p, k in zip(self.params, kept):\n                    p.copy_(k)",
        "                pass", "after an evaluation the model trains on from the averaged weights", ("tests/test_regularise.py",), "ema"),
    Bug("old-checkpoint-turns-locked", "charrnn/core/checkpoint.py", 'cfg.setdefault("dropout_kind", "elementwise")', "pass",
        "a run saved before --dropout-kind resumes with locked dropout", ("tests/test_regularise.py",), "before_dropout_kind"),
]


def copy_tree(root: Path) -> Path:
    """charrnn/, tests/, examples/ (the user-style scripts some tests load), pyproject.toml and README.md
    under root/tree, with root/shared linked to the real mirror."""
    tree = root / "tree"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
    for name in ("charrnn", "tests", "benchmarks", "examples"):
        shutil.copytree(REPO / name, tree / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (root / "shared").symlink_to(shared)
    return tree


def plant(tree: Path, bug: Bug) -> str | None:
    """Apply the edit in the copy; returns why it cannot be applied, or None."""
    path = tree / bug.file
    if not path.is_file():
        return f"{bug.file} does not exist"
    text = path.read_text(encoding="utf-8")
    count = text.count(bug.old)
    if count != 1:
        return f"{bug.old!r} occurs {count} times in {bug.file}"
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
    return None


def pytest(tree: Path, args: list[str], timeout: float) -> tuple[bool, str, float]:
    """(passed, first failing test or a reason, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f}s", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if r.returncode == 0:
        return True, "", seconds
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", r.stdout, re.M)
    lines = (r.stdout + r.stderr).strip().splitlines()  # empty when, say, -k selected no test (exit 5)
    return False, failed[0] if failed else lines[-1][:120] if lines else f"pytest exit {r.returncode}, no output", seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="run the whole suite for every entry, not only its tests")
    ap.add_argument("--only", default="", help="comma-separated entry names to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the entries and exit")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    args = ap.parse_args(argv)
    wanted = [n for n in args.only.split(",") if n]
    unknown = sorted(set(wanted) - {b.name for b in BUGS})
    if unknown:
        ap.error(f"unknown entries: {', '.join(unknown)}")
    bugs = [b for b in BUGS if not wanted or b.name in wanted]
    if args.list:
        for b in bugs:
            print(f"{b.name:28} {b.file:28} {b.breaks}")
        return 0

    def tests_of(selected: list[Bug]) -> list[str]:
        if args.full:
            return []
        files = sorted({t for b in selected for t in b.tests})
        return files + ["-k", selected[0].k] if len(selected) == 1 and selected[0].k else files

    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        (Path(tmp) / "base").mkdir()
        base = copy_tree(Path(tmp) / "base")
        ok, why, secs = pytest(base, tests_of(bugs), args.timeout)
        print(f"baseline ({'whole suite' if args.full else ' '.join(tests_of(bugs))}): "
              f"{'green' if ok else 'RED: ' + why} in {secs:.0f}s", flush=True)
        if not ok:
            return 2
        rows, status = [], 0
        for i, bug in enumerate(bugs):
            root = Path(tmp) / f"bug{i}"
            root.mkdir()
            tree = copy_tree(root)
            stale = plant(tree, bug)
            if stale:
                rows.append((bug, "STALE", stale, 0.0))
                status = max(status, 2)
            else:
                passed, first, secs = pytest(tree, tests_of([bug]), args.timeout)
                rows.append((bug, "missed" if passed else "caught", first, secs))
                if passed:
                    status = max(status, 1)
            b, verdict, detail, secs = rows[-1]
            print(f"{verdict:7} {b.name:28} {secs:5.0f}s  {b.breaks}\n        {detail}", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    caught = sum(r[1] == "caught" for r in rows)
    print(f"\n{caught} of {len(rows)} planted bugs caught"
          + "".join(f"\n  {r[1]}: {r[0].name} ({r[0].breaks})" for r in rows if r[1] != "caught"))
    return status


if __name__ == "__main__":
    sys.exit(main())
