"""Issue 15's acceptance run for `charrnn probe`: on a corpus of nested brackets, an LSTM with 64 units
trained for 90 s has a unit that follows the depth (|r| >= 0.95), and a GRU of the same size holds the
depth linearly (held-out probe R^2 >= 0.9).

    python benchmarks/probe_brackets.py [--seconds 90] [--out /tmp/probe-brackets]

It drives the CLI as a user would (`charrnn train`, then `charrnn probe --json`) and prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import make_brackets  # noqa: E402


def charrnn(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "charrnn", *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="training budget per model")
    ap.add_argument("--out", default="/tmp/probe-brackets", help="where the corpus and the runs go")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "brackets.txt").write_text(make_brackets(300_000, seed=1))
    (out / "probe.txt").write_text(make_brackets(20_000, seed=2))  # unseen text of the same kind
    for model in ("lstm", "gru"):
        run = out / model
        charrnn("train", "--corpus", str(out / "brackets.txt"), "--model", model, "--hidden", "64", "--seq-len", "100",
                "--batch-size", "32", "--lr", "0.003", "--minutes", str(args.seconds / 60), "--eval-every", "100",
                "--out", str(run), "--quiet")
        report = json.loads(charrnn("probe", str(run), "--text", str(out / "probe.txt"), "--signal", "depth", "--json"))
        depth = report["signals"][0]
        best = depth["top"][0]
        print(f"{model} 64 units, {args.seconds:g}s: best unit L{best['layer']}.{best['part']}[{best['index']}] "
              f"r {best['r']:+.4f}; linear probe held-out R^2 {depth['probe']['r2']:.4f}")


if __name__ == "__main__":
    main()
