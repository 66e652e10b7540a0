"""charrnn's benchmark suite: one command, tables on stdout, everything in a JSON file.

    python benchmarks/run.py                       # all sections (about 40 minutes on 2 cores)
    python benchmarks/run.py --quick               # fewer configs and steps, 68 s candidates only, 100 MB only
    python benchmarks/run.py --only throughput --json bench.json
    python benchmarks/run.py --only quality --set levers --match 68s --repeat 2    # the regularisers
    flock /tmp/charrnn-cpu.lock python benchmarks/run.py    # on a shared machine: nobody else timing

Sections (--only picks one):
    throughput  chars/s of charrnn's loop vs a raw PyTorch loop vs a d2l-style loop, GFLOP/s vs the
                matmul peak measured in the same run (benchmarks/throughput.py)
    small       small models (hidden 64-512): the recurrent core's training step for torch / scratch x
                fp32 / bf16, next to the same matmuls alone (benchmarks/small.py; --with-compile adds
                a GRU loop compiled whole by torch.compile, minutes of compiling per width)
    quality     time to quality, side by side: each preset as shipped and with one lever removed or
                swapped (fp32, torch's GRU, the minGRU prototype of benchmarks/mingru.py), each a fresh
                `charrnn train` process with the whole command timed; validation loss (nats/char) on
                tinyshakespeare's last 10%. --repeat N runs the list N times, interleaved: on a shared
                machine one run can see 20-30% more or fewer steps than the next. --set levers: the
                regularisers (locked dropout, weight drop, embedding dropout, AR/TAR, EMA) one at a
                time on each preset; --match picks candidates by label, --extra adds one
    sampling    chars/s of charrnn.generate.sample.generate for a 1x512 LSTM at batch 1 and 64 after a
                1,000-character prefix, for 1k and 10k characters (the cost per character must not grow),
                next to the same call before issue 10 (--baseline REV), with --stop and log-probabilities,
                and beam search (K = 1, 4)
    memory      peak RSS and start-up of training on 100 MB and 1 GB corpora, cold and cached
                (benchmarks/footprint.py)

Corpora come from the data directory / mirror as for `charrnn train` (--data-dir, --mirror, or
$CHARRNN_DATA / $CHARRNN_MIRROR). Not part of the tests: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however this is started

import torch  # noqa: E402

SECTIONS = ("throughput", "small", "quality", "sampling", "memory")
HERE = Path(__file__).resolve().parent
# (label, preset, extra flags, entry point): the preset as shipped first, then one lever at a time
CANDIDATES = [
    ("68s as shipped", "shakespeare-68s", [], None),
    ("68s fp32 (--no-amp)", "shakespeare-68s", ["--no-amp"], None),
    ("68s torch nn.GRU", "shakespeare-68s", ["--impl", "torch"], None),
    ("68s minGRU 2x256", "shakespeare-68s", ["--hidden", "256", "--layers", "2"], HERE / "mingru.py"),
    ("5min as shipped", "shakespeare-5min", [], None),
    ("5min fp32 (--no-amp)", "shakespeare-5min", ["--no-amp"], None),
    ("5min before: 384, d 0.1", "shakespeare-5min", ["--no-amp", "--hidden", "384", "--dropout", "0.1",
                                                     "--dropout-kind", "elementwise"], None),
]
QUICK_CANDIDATES = CANDIDATES[:2]
# the regularisers of issue 25, each alone on top of the preset as shipped, then together (--set levers)
_LOCKED = ["--dropout-kind", "locked"]
LEVERS = [
    ("68s as shipped", "shakespeare-68s", [], None),
    ("68s locked dropout 0.1", "shakespeare-68s", ["--dropout", "0.1", *_LOCKED], None),
    ("68s elementwise 0.1", "shakespeare-68s", ["--dropout", "0.1", "--dropout-kind", "elementwise"], None),
    ("68s weight drop 0.1", "shakespeare-68s", ["--weight-drop", "0.1"], None),
    ("68s embed dropout 0.05", "shakespeare-68s", ["--embed-dropout", "0.05"], None),
    ("68s AR 1, TAR 1", "shakespeare-68s", ["--ar", "1", "--tar", "1"], None),
    ("68s EMA 0.99", "shakespeare-68s", ["--ema", "0.99"], None),
    ("5min as shipped", "shakespeare-5min", [], None),  # dropout 0.25, locked (elementwise before issue 25)
    ("5min elementwise 0.25", "shakespeare-5min", ["--dropout-kind", "elementwise"], None),
    ("5min weight drop 0.2", "shakespeare-5min", ["--weight-drop", "0.2"], None),
    ("5min embed dropout 0.1", "shakespeare-5min", ["--embed-dropout", "0.1"], None),
    ("5min AR 2, TAR 1", "shakespeare-5min", ["--ar", "2", "--tar", "1"], None),
    ("5min EMA 0.995", "shakespeare-5min", ["--ema", "0.995"], None),
    ("5min locked + EMA 0.995", "shakespeare-5min", [*_LOCKED, "--ema", "0.995"], None),
]
SETS = {"engines": CANDIDATES, "levers": LEVERS}


def machine() -> dict:
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def quality(quick: bool, data: dict, repeat: int = 1, log=print, candidates: list | None = None) -> list[dict]:
    """Each candidate as a user runs it: a fresh `charrnn train` process, wall time of the whole command.
    The list runs `repeat` times in turn, so every candidate meets the machine's slow and fast minutes."""
    rows = []
    for round_ in range(repeat):
        for label, preset, flags, entry in candidates or (QUICK_CANDIDATES if quick else CANDIDATES):
            rows.append(_quality_run(label, preset, flags, entry, data))
            r = rows[-1]
            log(f"{label:26s} wall {r['wall_s']:6.1f} s (training {r['train_s']:6.1f} s, {r['steps']:5d} steps, "
                f"{r['epochs']:.2f} epochs)  val loss {r['val_loss']:.4f}" + (f"  (round {round_ + 1})" if repeat > 1 else ""))
    if repeat > 1:
        for label in dict.fromkeys(r["candidate"] for r in rows):
            vals = sorted(r["val_loss"] for r in rows if r["candidate"] == label)
            log(f"{label:26s} val loss median {vals[len(vals) // 2]:.4f}, range {vals[0]:.4f}-{vals[-1]:.4f}")
    return rows


def _quality_run(label: str, preset: str, flags: list[str], entry: Path | None, data: dict) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, *([str(entry)] if entry else ["-m", "charrnn"]), "train", "--preset", preset,
               *flags, "--out", out + "/run", "--json", "--quiet"]
        cmd += [a for k, v in data.items() if v for a in (f"--{k.replace('_', '-')}", str(v))]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-1500:]}")
    s = json.loads(r.stdout.strip().splitlines()[-1])
    return {"candidate": label, "preset": preset, "flags": flags, "wall_s": wall, "train_s": s["seconds"],
            "steps": s["steps"], "epochs": s["epochs"], "chars": s["chars"], "val_loss": s["val_loss"],
            "best_val_loss": s["best_val_loss"], "params": s["params"]}


# sample.py as it was before stop strings, beam search and the interactive loop (issue 10): the
# "before" column of the sampling section. Any revision can be compared with --baseline REV.
SAMPLING_BASELINE = "492d0df"


def baseline_sampler(rev: str):
    """charrnn/generate/sample.py at git revision `rev`, imported as a module of its own (None without git)."""
    import types

    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:charrnn/generate/sample.py"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    mod = types.ModuleType(f"sample_{rev}")
    exec(compile(r.stdout, f"{rev}:charrnn/generate/sample.py", "exec"), mod.__dict__)
    return mod


def sampling(quick: bool, data: dict, log=print, baseline: str = SAMPLING_BASELINE) -> list[dict]:
    """Batch-1 and batch-64 sampling after a 1,000-character prefix, before and after, side by side.

    Each variant is timed in interleaved rounds and keeps its best (the least disturbed on a shared
    machine). `before` is generate() of sample.py at `baseline`; `now` the same call today; `stop+score`
    what `charrnn sample --stop ... --show-logprob` runs (a stop string that never occurs, so every
    character is checked, and the log-probability of each); `beam K` chars of the result per second.
    Rates per second of wall time and per CPU-second of this process (torch single-threaded, as the
    benchmark runs it on a shared machine, CPU time is the steadier measure under load); the prefix
    warm-up is included."""
    from charrnn.generate.beam import beam_search
    from charrnn.core.config import ModelConfig, TrainConfig
    from charrnn.data.dataset import prepare_corpus
    from charrnn.core.models import CharRNN
    from charrnn.generate import sample as now

    corpus = prepare_corpus(TrainConfig(corpus="tinyshakespeare", **data))
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="lstm", vocab_size=len(corpus.vocab), hidden=512)).eval()
    vocab, prefix = corpus.vocab, corpus.vocab.decode(corpus.train[:1000])
    before = baseline_sampler(baseline)
    if before is None:
        log(f"(no baseline: `git show {baseline}:charrnn/generate/sample.py` failed; 'before' is left out)")

    def gen(mod, batch, length):
        g = torch.Generator().manual_seed(0)
        return lambda: sum(1 for _ in mod.generate(model, vocab, prefix, length, num_samples=batch, generator=g))

    def stop_score(batch, length):
        g = torch.Generator().manual_seed(0)
        return lambda: sum(1 for e in now.stream(model, vocab, prefix, length, num_samples=batch, generator=g,
                                                 stop=["QQ\n&&"], score=True)) - 1

    def beam(width, length):
        return lambda: len(beam_search(model, vocab, prefix, length, width).samples[0].text)

    rows = []
    for batch in (1, 64):
        for length in (1000,) if quick and batch > 1 else (1000, 10000):
            rounds = 1 if length > 1000 else 2 if quick else 3  # a long run averages the noise out itself
            variants = {"now": gen(now, batch, length), "stop+score": stop_score(batch, length)}
            if before is not None:
                variants = {"before": gen(before, batch, length), **variants}
            if batch == 1:
                variants.update({"beam 1": beam(1, length), "beam 4": beam(4, length)} if length <= 1000 else {})
            wall, cpu = {k: float("inf") for k in variants}, {k: float("inf") for k in variants}
            for _ in range(rounds):
                for k, run in variants.items():
                    t, c = time.perf_counter(), time.process_time()
                    run()
                    wall[k] = min(wall[k], time.perf_counter() - t)
                    cpu[k] = min(cpu[k], time.process_time() - c)
            chars = {k: length if k.startswith("beam") else batch * length for k in variants}
            row = {"model": "lstm 1x512", "batch": batch, "prefix": len(prefix), "length": length,
                   **{f"{k} chars/s": chars[k] / wall[k] for k in variants},
                   **{f"{k} chars/cpu-s": chars[k] / cpu[k] for k in variants}}
            rows.append(row)
            for unit in ("chars/s", "chars/cpu-s"):
                log(f"batch {batch:3d}  length {length:6d}  {unit:11s}  " + "   ".join(
                    f"{k} {row[f'{k} {unit}']:7.0f}" for k in variants))
    return rows


def _candidates(args) -> list | None:
    """The quality candidates --set, --match and --extra ask for (None: the default list)."""
    if args.set == "engines" and not args.match and not args.extra:
        return None
    chosen = [c for c in SETS[args.set] if not args.match or any(m in c[0] for m in args.match)]
    for spec in args.extra:
        label, _, flags = spec.partition("=")
        words = flags.split()
        if "--preset" not in words:
            raise SystemExit(f"--extra {spec!r}: give the preset as --preset NAME among the flags")
        i = words.index("--preset")
        chosen.append((label, words[i + 1], words[:i] + words[i + 2 :], None))
    return chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--quick", action="store_true", help="a smaller, faster run")
    ap.add_argument("--json", metavar="PATH", default="benchmark-results.json", help="where to write the results")
    ap.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    ap.add_argument("--data-dir", help="corpora folder (as charrnn train --data-dir)")
    ap.add_argument("--mirror", help="corpus mirror (as charrnn train --mirror)")
    ap.add_argument("--baseline", default=SAMPLING_BASELINE, metavar="REV",
                    help="the git revision whose charrnn/generate/sample.py is the sampling section's 'before'")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="quality: run the candidate list N times, interleaved")
    ap.add_argument("--set", choices=sorted(SETS), default="engines",
                    help="quality: the candidates: engines (precision, engine, cell) or levers (the regularisers)")
    ap.add_argument("--match", metavar="TEXT", action="append",
                    help="quality: only the candidates whose label contains TEXT (repeatable), e.g. --match 68s")
    ap.add_argument("--extra", metavar="LABEL=FLAGS", action="append", default=[],
                    help="quality: one more candidate, e.g. '5min best=--preset shakespeare-5min --ema 0.995' "
                         "(the first --preset names the preset)")
    ap.add_argument("--with-compile", action="store_true", help="small: add a torch.compile'd GRU loop (minutes per width)")
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "charrnn-bench"),
                    help="where the memory section writes its big corpora (kept for the next run)")
    args = ap.parse_args(argv)
    data = {"data_dir": args.data_dir, "mirror": args.mirror}
    sections = args.only or list(SECTIONS)
    results = {"machine": machine(), "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    m = results["machine"]
    print(f"# {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), cuda: {m['cuda']}")

    if "throughput" in sections:
        import throughput

        print("\n## Training throughput (chars/s; overhead = raw / charrnn - 1)")
        print(throughput.HEADER)
        results["throughput"] = throughput.run(args.quick, data)
    if "small" in sections:
        import small

        print("\n## Small models: one training step of the recurrent core (batch 32 x 100, 64-wide input), chars/s")
        print(small.HEADER)
        results["small"] = small.run(args.quick, with_compile=args.with_compile)
        print("\n## The presets' models, whole training steps (fp32 vs --amp, interleaved, best of 5)")
        results["small_presets"] = small.preset_steps()
        print("\n## The presets' models with each regulariser (--amp, interleaved, best of 5)")
        results["small_levers"] = small.lever_steps()
    if "sampling" in sections:
        print(f"\n## Sampling speed (1x512 LSTM; before = charrnn/generate/sample.py at {args.baseline})")
        results["sampling"] = sampling(args.quick, data, baseline=args.baseline)
    if "memory" in sections:
        import footprint
        from charrnn.data import corpora

        print("\n## Memory and start-up on big corpora (20 training steps, fresh process)")
        try:
            _, src = corpora.resolve_corpus("tinyshakespeare", corpora.data_dir(args.data_dir), args.mirror)
        except Exception:
            src = None
        results["memory"] = footprint.run([100] if args.quick else [100, 1000], Path(args.work_dir),
                                          Path(src) if src else None)
    if "quality" in sections:
        print("\n## Time to quality (tinyshakespeare, 90/10, whole command)")
        results["quality"] = quality(args.quick, data, repeat=args.repeat, candidates=_candidates(args))
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
