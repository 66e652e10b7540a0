"""The entry point `charrnn export` calls: one checkpoint, one format, one output path.

    report = export("runs/x", "onnx", "model.onnx")          # -> Exported(format, files, sizes)
    export("runs/x", "numpy", "sampler/")                    # sampler/model.npz + sampler/charrnn_sampler.py
    export("runs/x", "web", "page.html", half=True)          # float16 weights, half the size

Everything is checked before anything is written; each file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.core.errors import CharRNNError
from charrnn.export.bundle import bundle

FORMATS = ("onnx", "numpy", "web")


@dataclass(frozen=True)
class Exported:
    format: str
    files: list[Path]

    @property
    def sizes(self) -> dict[Path, int]:
        return {p: p.stat().st_size for p in self.files}


def check_out(fmt: str, out: Path, half: bool) -> None:
    if fmt not in FORMATS:
        raise CharRNNError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if half and fmt != "web":
        raise CharRNNError("--half is for the web page (--format web); the other formats keep float32")
    if fmt != "numpy" and out.is_dir():
        raise CharRNNError(f"--out {out} is a directory; --format {fmt} writes one file")


def export(target: str | Path, fmt: str, out: str | Path, half: bool = False) -> Exported:
    out = Path(out)
    check_out(fmt, out, half)
    b = bundle(target)
    if fmt == "onnx":
        from charrnn.export.to_onnx import export_onnx

        files = [export_onnx(b, out)]
    elif fmt == "numpy":
        from charrnn.export.to_numpy import export_numpy

        files = export_numpy(b, out)
    else:
        from charrnn.export.to_web import export_web

        files = [export_web(b, out, half)]
    return Exported(fmt, files)
