"""`charrnn export --format web`: one self-contained HTML page that generates text in the browser.

The template `page.html` (inline style and plain JavaScript, nothing fetched) gets `DATA`: the bundle's
metadata and every weight in one base64 blob of little-endian float32 numbers, or float16 with
`half=True` (half the size; the page widens them to float32 as it loads). One-hot models ship layer 0's
W_ih transposed, (V, G*H), so that the page reads one contiguous row per character.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.core.errors import CharRNNError
from charrnn.export.bundle import Bundle, write_atomic

HALF_MAX = float(np.finfo(np.float16).max)  # 65504


def page_tensors(b: Bundle) -> dict[str, np.ndarray]:
    """The arrays the page reads, under the names it reads them by."""
    arrays = dict(b.arrays)
    if b.meta["embed"] == 0:
        arrays["rnn.weight_ih_l0_T"] = np.ascontiguousarray(arrays.pop("rnn.weight_ih_l0").T)  # (V, G*H)
    return arrays


def page_data(b: Bundle, half: bool = False) -> dict:
    dtype = np.float16 if half else np.float32
    tensors, parts, offset = [], [], 0
    for name, a in page_tensors(b).items():
        if half and np.abs(a).max(initial=0.0) > HALF_MAX:
            raise CharRNNError(f"--half: {name} holds a weight of magnitude {np.abs(a).max():.4g}, beyond "
                               f"float16's {HALF_MAX:.0f}; export it without --half")
        tensors.append({"name": name, "shape": list(a.shape), "offset": offset})
        parts.append(a.astype("<f2" if half else "<f4").tobytes())
        offset += a.size
    return {"meta": b.meta, "dtype": np.dtype(dtype).name, "tensors": tensors,
            "blob": base64.b64encode(b"".join(parts)).decode("ascii")}


def render(b: Bundle, half: bool = False) -> str:
    template = resources.files("charrnn.export").joinpath("page.html").read_text(encoding="utf-8")
    m = b.meta
    title = f"{m['layers']}x{m['hidden']} {m['cell'].upper()} from {m['source']}"
    payload = json.dumps(page_data(b, half), ensure_ascii=False).replace("</", "<\\/")  # no text may close the script
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def export_web(b: Bundle, out: str | Path, half: bool = False) -> Path:
    out = Path(out)
    write_atomic(out, render(b, half).encode("utf-8"))
    return out
