"""How long `charrnn diagnose` takes on a 2x512 LSTM tinyshakespeare checkpoint (target: under 60 s on
2 CPU cores with the default --max-chars 50000).

    python benchmarks/diagnose_speed.py                       # trains 30 steps, then times diagnose
    python benchmarks/diagnose_speed.py --ckpt runs/tinyshakespeare-lstm --max-chars 20000

The checkpoint is trained briefly (--max-steps) into a temporary directory unless --ckpt is given: the
weights' quality does not change the cost of a diagnosis, the architecture and the val split do. The
table gives the time of each check (the measurements shared by several checks are charged to the first
check that needs them) and the total. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint
from charrnn.training.train import train

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", help="an existing checkpoint or run directory (default: train one)")
    ap.add_argument("--corpus", default=str(CORPUS), help="text to train on (default: the shared tinyshakespeare)")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--max-chars", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--keep", help="train into this directory and keep it (reused by later runs with --ckpt)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = None
    ckpt = args.ckpt
    train_s = None
    if ckpt is None:
        tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="diagnose-bench-")
        t0 = time.perf_counter()
        summary = train({"corpus": args.corpus, "model": "lstm", "layers": 2, "hidden": 512, "max_steps": args.max_steps,
                         "eval_every": args.max_steps, "batch_size": 32, "seq_len": 64, "sample_every": 0,
                         "out": args.keep or str(Path(tmp.name) / "run"), "seed": 0, "device": "cpu"})
        train_s = time.perf_counter() - t0
        ckpt = summary["run_dir"]

    marks: list[tuple[str, str, float]] = []
    t0 = time.perf_counter()
    last = t0

    def on_check(check):
        nonlocal last
        now = time.perf_counter()
        marks.append((check.id, check.status, now - last))
        last = now

    report = diagnose_checkpoint(ckpt, options=DiagnoseOptions(max_chars=args.max_chars, device="cpu"), on_check=on_check)
    total = time.perf_counter() - t0

    subj = report.subject
    print(f"diagnose {subj['model']} on {subj['text']} ({subj['text_chars']:,} chars), --max-chars {args.max_chars:,}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if train_s is not None:
        print(f"checkpoint: trained {args.max_steps} steps in {train_s:.1f}s (not timed below)")
    print(f"\n{'check':<26}{'status':<8}{'seconds':>9}")
    for cid, status, dt in marks:
        print(f"{cid:<26}{status:<8}{dt:>9.2f}")
    print(f"{'total':<34}{total:>9.2f}   (target < 60 s)  verdict: {report.verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"total_s": total, "checks": marks, "max_chars": args.max_chars,
                                               "threads": torch.get_num_threads(), "model": subj["model"],
                                               "text_chars": subj["text_chars"]}, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
