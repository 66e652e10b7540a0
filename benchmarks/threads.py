"""--threads auto against torch's default thread count, on a machine where another CPU-bound process runs.

    python benchmarks/threads.py                  # 2 rounds of 20 steps each, with one busy process
    python benchmarks/threads.py --busy 0         # the same on whatever else the machine is running

Each round trains the same short run (the default LSTM, 512 units, on the Time Machine mirror or a
generated text) twice, in subprocesses, as a user does: `charrnn train --threads auto` and `--threads 0`
(torch's default: one thread per core), in alternating order, while --busy processes spin a pure-Python
loop (one core's worth of work each, as a browser tab or a second job). Throughput is the median
chars/s of the run's log intervals (metrics.jsonl: start-up and evaluations excluded). The table shows
every round; the last line the ratio of the medians (auto / default). The machine's own load average is
printed before and after: on a shared machine it is part of what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "corpora" / "timemachine.txt"

SPIN = "import time\nt = time.time()\nwhile time.time() - t < {seconds}:\n    sum(range(1000))\n"


def run(threads: str, corpus: Path, out: Path, steps: int) -> tuple[float, str]:
    """One training run in a subprocess; (median chars/s of its log intervals, its threads line)."""
    cmd = [sys.executable, "-m", "charrnn", "train", "--corpus", str(corpus), "--out", str(out), "--threads", threads,
           "--max-steps", str(steps), "--log-every", "5", "--eval-every", str(10 * steps), "--sample-every", "0",
           "--val-frac", "0.01"]  # a small split: the run's final evaluation is not what is measured
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"charrnn train failed:\n{done.stderr}")
    logs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [e["chars_per_sec"] for e in logs if e["event"] == "log"][1:]  # the first interval holds the warm-up
    line = next((l.strip() for l in done.stderr.replace("\n", " ").split(";") if "thread" in l), "?")
    return statistics.median(rates), line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--busy", type=int, default=1, help="CPU-bound processes running meanwhile")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-threads-"))
    corpus = MIRROR
    if not corpus.is_file():
        sys.path.insert(0, str(REPO))
        from tests.helpers import write_corpus

        corpus = write_corpus(tmp, 200_000)
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f}; {args.busy} busy process(es); "
          f"{args.steps} steps per run on {corpus.name}")
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=3600)]) for _ in range(args.busy)]
    results: dict[str, list[float]] = {"auto": [], "0": []}
    try:
        time.sleep(2.0 if args.busy else 0.0)  # the spinners are running before the first run starts
        for r in range(args.rounds):
            for threads in (("auto", "0") if r % 2 == 0 else ("0", "auto")):
                rate, line = run(threads, corpus, tmp / f"r{r}-{threads}", args.steps)
                results[threads].append(rate)
                print(f"round {r + 1}  --threads {threads:<4}  {rate:>9,.0f} chars/s   ({line})", flush=True)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    auto, default = statistics.median(results["auto"]), statistics.median(results["0"])
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(f"median chars/s: auto {auto:,.0f}, torch's default {default:,.0f}; auto / default = {auto / default:.2f}x")


if __name__ == "__main__":
    main()
