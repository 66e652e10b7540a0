"""Greedy generation speed of each export format, side by side in one run, and the size of each file.

    python benchmarks/export.py                  # 1x512 LSTM, 1x256 GRU, 1x512 GRU (the 5-minute preset's)
    python benchmarks/export.py --chars 1000 --only lstm512

For each model (random weights: the speed does not depend on their values) on tinyshakespeare's 65
characters, characters per second of batch-1 greedy generation after a 40-character prefix:

    torch        charrnn.generate.sample.generate, what `charrnn sample -t 0` runs (no printing)
    onnxruntime  the exported graph, stepped by charrnn_sampler.generate through OnnxModel
                 (both at torch's default thread count, then both at 1 thread: "1t")
    numpy        the exported charrnn_sampler.py's CharModel, OpenBLAS on one thread: on this busy machine a
                 batch-1 512-wide matvec split over two threads measured as slow as a tenth of one thread's
    web          the exported page in headless Chromium, Generate pressed, its own chars/s read back

Rounds interleave the formats and keep each one's best (on a shared machine the best of a few runs is
the least disturbed one). The onnxruntime / torch ratios are printed (target >= 1), and the web page's
speed on the 1x512 LSTM is checked against 300 chars/s. Load average and thread counts are printed:
the absolute numbers are only as steady as the machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's matvecs on one core, like the web page (see below)

import argparse
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from charrnn.core.checkpoint import load, save_checkpoint
from charrnn.core.config import ModelConfig
from charrnn.core.models import CharRNN
from charrnn.export import charrnn_sampler
from charrnn.export.export import export
from charrnn.export.to_onnx import OnnxModel
from charrnn.generate.sample import generate

SHAKESPEARE = tuple(sorted("\n !$&',-.3:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"))
PREFIX = "First Citizen:\nBefore we proceed any fur"
MODELS = {  # name -> ModelConfig fields
    "lstm512": dict(model="lstm", hidden=512, layers=1, embed=0),  # charrnn train's default model
    "gru256": dict(model="gru", hidden=256, layers=1, embed=64),
    "gru512": dict(model="gru", hidden=512, layers=1, embed=64, dropout=0.25),  # presets/shakespeare-5min.yaml
}
WEB_TARGET = 300.0


def make_run(directory: Path, fields: dict) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(SHAKESPEARE), impl="torch", **fields)
    path = directory / "model.pt"
    save_checkpoint({"model_config": asdict(cfg), "model": CharRNN(cfg).state_dict(), "vocab": list(SHAKESPEARE)}, path)
    return path


def rate(run, n: int) -> float:
    t0 = time.perf_counter()
    done = run(n)
    return done / (time.perf_counter() - t0)


def torch_runner(ckpt: Path, threads: int):
    ck = load(ckpt, "cpu")

    def run(n: int) -> int:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return sum(1 for _ in generate(ck.model, ck.vocab, PREFIX, n, temperature=0))
        finally:
            torch.set_num_threads(before)

    return run


def sampler_runner(model):
    return lambda n: sum(1 for _ in charrnn_sampler.generate(model, PREFIX, n, temperature=0))


class WebRunner:
    """One Chromium for the run; each call opens the page, presses Generate and reads its chars/s."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])

    def runner(self, page: Path):
        def run(n: int) -> float:
            tab = self.browser.new_page()
            errors = []
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(page.as_uri())
            tab.wait_for_selector("body[data-state=ready]", timeout=60_000)
            tab.fill("#prefix", PREFIX)
            tab.fill("#temperature", "0")
            tab.fill("#length", str(n))
            tab.click("#generate")
            tab.wait_for_selector("body[data-state=done]", timeout=600_000)
            speed = float(tab.get_attribute("#rate", "data-rate"))
            tab.close()
            if errors:
                raise RuntimeError(f"the page failed: {errors}")
            return speed

        return run

    def close(self):
        self.browser.close()
        self.pw.stop()


def measure(name: str, fields: dict, chars: int, web_chars: int, rounds: int, web: WebRunner | None, tmp: Path) -> dict:
    d = tmp / name
    d.mkdir()
    ckpt = make_run(d, fields)
    files = {"weights .pt": ckpt,
             "onnx": export(ckpt, "onnx", d / "model.onnx").files[0],
             "npz": export(ckpt, "numpy", d / "numpy").files[0],
             "web": export(ckpt, "web", d / "page.html").files[0],
             "web --half": export(ckpt, "web", d / "page-half.html", half=True).files[0]}
    threads = torch.get_num_threads()
    runners = {"torch": torch_runner(ckpt, threads), "onnxruntime": sampler_runner(OnnxModel(files["onnx"], threads)),
               "torch 1t": torch_runner(ckpt, 1), "onnxruntime 1t": sampler_runner(OnnxModel(files["onnx"], 1)),
               "numpy": sampler_runner(charrnn_sampler.CharModel(files["npz"]))}
    best = {k: 0.0 for k in runners}
    for fn in runners.values():
        fn(50)  # warm-up: first calls allocate, JIT and fault pages in
    for _ in range(rounds):
        for k, fn in runners.items():
            best[k] = max(best[k], rate(fn, chars))
    if web is not None:
        run = web.runner(files["web"])
        best["web"] = max(run(web_chars) for _ in range(rounds))
    return {"speeds": best, "sizes": {k: p.stat().st_size for k, p in files.items()}}


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load1, load5, _ = os.getloadavg()
    import onnxruntime

    return (f"{os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}; load average {load1:.1f} / {load5:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=2000, help="characters per timed run (torch, onnxruntime, numpy)")
    ap.add_argument("--web-chars", type=int, default=3000, help="characters per timed run of the web page")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help=f"comma-separated models: {', '.join(MODELS)}")
    ap.add_argument("--no-web", action="store_true", help="skip Chromium")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    print(describe_machine(), flush=True)
    web = None if args.no_web else WebRunner()
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
            for name in names:
                results[name] = measure(name, MODELS[name], args.chars, args.web_chars, args.rounds, web, Path(tmp))
                print(f"  {name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in results[name]["speeds"].items()) + " chars/s", flush=True)
    finally:
        if web is not None:
            web.close()
    report(results)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    ok = all(r["speeds"][f"onnxruntime{t}"] >= r["speeds"][f"torch{t}"] for r in results.values() for t in ("", " 1t"))
    if "lstm512" in results and "web" in results["lstm512"]["speeds"]:
        ok &= results["lstm512"]["speeds"]["web"] >= WEB_TARGET
    return 0 if ok else 1


def report(results: dict) -> None:
    kinds = ["torch", "onnxruntime", "torch 1t", "onnxruntime 1t", "numpy", "web"]
    print("\n| model | " + " | ".join(kinds) + " | onnxruntime / torch | same, 1 thread |")
    print("|---" * (len(kinds) + 3) + "|")
    for name, r in results.items():
        s = r["speeds"]
        cells = [f"{s[k]:,.0f}" if k in s else "-" for k in kinds]
        print(f"| {name} | " + " | ".join(cells) + f" | {s['onnxruntime'] / s['torch']:.2f} | {s['onnxruntime 1t'] / s['torch 1t']:.2f} |")
    print(f"(greedy characters per second, batch 1, best of the rounds; torch and onnxruntime at {torch.get_num_threads()} "
          "threads, then at 1 (1t); numpy and the web page use one core)\n")
    files = ["weights .pt", "onnx", "npz", "web", "web --half"]
    print("| model | " + " | ".join(files) + " |")
    print("|---" * (len(files) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['sizes'][f] / 1e6:.2f} MB" for f in files) + " |")
    if "lstm512" in results and "web" in results["lstm512"]["speeds"]:
        w = results["lstm512"]["speeds"]["web"]
        print(f"\nweb page, 1x512 LSTM: {w:,.0f} chars/s ({'meets' if w >= WEB_TARGET else 'MISSES'} the {WEB_TARGET:.0f} target)")


if __name__ == "__main__":
    sys.exit(main())
