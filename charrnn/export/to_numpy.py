"""`charrnn export --format numpy`: a directory with `model.npz` and `charrnn_sampler.py`.

model.npz holds every weight under its CharRNN name (float32) and `meta`, a 0-d string array with the
JSON of `Bundle.meta` (cell, sizes, vocabulary, preprocessing, seed character), so `np.load(...,
allow_pickle=False)` reads all of it. charrnn_sampler.py is `charrnn/export/charrnn_sampler.py` copied
as it is: a standalone program importing only NumPy, tested in place as part of charrnn.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.export.bundle import Bundle, write_files_atomic

SAMPLER = "charrnn_sampler.py"


def npz_bytes(b: Bundle) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(b.meta_json()), **b.arrays)
    return buffer.getvalue()


def sampler_source() -> bytes:
    return resources.files("charrnn.export").joinpath(SAMPLER).read_bytes()


def export_numpy(b: Bundle, out: str | Path) -> list[Path]:
    """Write OUT/model.npz and OUT/charrnn_sampler.py (see write_files_atomic); returns their paths."""
    return write_files_atomic(Path(out), {"model.npz": npz_bytes(b), SAMPLER: sampler_source()})
