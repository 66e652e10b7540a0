"""Does `--impl scratch` learn the Time Machine as well as `--impl torch`? Same seed, same steps.

    python benchmarks/impl_parity.py [--steps 300] [--hidden 256] [--mirror file:///path/to/corpora]

Trains each cell type with both engines and prints the validation loss side by side, with the relative
difference (the target is within 2%) and the training throughput of each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from charrnn.training.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--mirror", default=os.environ.get("CHARRNN_MIRROR"))
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("rnn", "gru", "lstm"):
            result = {}
            for impl in ("torch", "scratch"):
                s = train({"corpus": "timemachine", "mirror": args.mirror, "data_dir": args.data_dir, "model": kind,
                           "impl": impl, "hidden": args.hidden, "max_steps": args.steps, "eval_every": args.steps,
                           "sample_every": 0, "seed": 1, "out": str(Path(tmp) / f"{kind}-{impl}")})
                result[impl] = s
            t, sc = result["torch"], result["scratch"]
            rows.append((kind, t["val_loss"], sc["val_loss"], (sc["val_loss"] - t["val_loss"]) / t["val_loss"],
                         t["chars"] / t["seconds"], sc["chars"] / sc["seconds"]))
    print(f"timemachine, {args.steps} steps, hidden {args.hidden}, batch 32 x 64, adam 2e-3, seed 1")
    print(f"{'cell':<6}{'val torch':>11}{'val scratch':>13}{'rel diff':>10}{'chars/s torch':>15}{'chars/s scratch':>17}")
    for kind, vt, vs, rel, ct, cs in rows:
        print(f"{kind:<6}{vt:>11.4f}{vs:>13.4f}{rel:>+10.2%}{ct:>15,.0f}{cs:>17,.0f}")


if __name__ == "__main__":
    main()
