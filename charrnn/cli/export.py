"""`charrnn export`: parsing only; the work is `charrnn.export.export.export`."""

from __future__ import annotations

from pathlib import Path

import typer

from charrnn.cli.app import app


@app.command("export")
def export_command(
    ckpt: str = typer.Argument(..., metavar="RUN", help="A run directory (its best.pt, else last.pt) or a .pt file."),
    fmt: str = typer.Option(..., "--format", "-f", metavar="onnx|numpy|web",
                            help="onnx: a one-step graph for onnxruntime (needs charrnn\\[export]); numpy: OUT/model.npz "
                                 "and OUT/charrnn_sampler.py, NumPy only; web: one HTML page that generates in the browser."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (a directory for --format numpy)."),
    half: bool = typer.Option(False, "--half", help="--format web: float16 weights, half the page's size."),
):
    """Write a trained model for use without charrnn or torch: ONNX, a NumPy-only sampler, or a web page.
    The vocabulary and preprocessing travel with the weights, so a prefix is prepared as `charrnn sample` does."""
    from charrnn.export.export import export

    report = export(ckpt, fmt.lower(), out, half)
    for path, size in report.sizes.items():
        typer.echo(f"wrote {path} ({_size(size)})")
    if report.format == "numpy":
        typer.echo(f"run it: python {report.files[-1]} --prefix 'ROMEO:' --length 300")
    elif report.format == "web":
        typer.echo("open it in a browser; it fetches nothing")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
