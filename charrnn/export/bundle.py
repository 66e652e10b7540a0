"""What every exporter starts from: a checkpoint as plain float32 arrays plus the metadata that travels
with them, and the atomic writes every format ends with.

    b = bundle("runs/x")                 # the one checkpoint loader, nothing executed
    b.arrays["rnn.weight_hh_l0"]         # (G*H, H) float32, torch's names, shapes and gate order
    b.meta                               # JSON-ready: cell, sizes, vocabulary, preprocessing, seed char

The names are CharRNN's state-dict keys, the same for the torch and the scratch engine:
`embedding.weight` (V, E) when the input is an embedding (absent for one-hot input),
`rnn.weight_ih_l{k}` (G*H, I_k), `rnn.weight_hh_l{k}` (G*H, H), `rnn.bias_ih_l{k}`, `rnn.bias_hh_l{k}`
(G*H,), `head.weight` (V, H), `head.bias` (V,), with G = 1 (rnn), 3 (gru: r, z, n), 4 (lstm: i, f, g, o).
Dropout is training-only and has no weights; an exported model is the model in eval mode.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import __version__
from charrnn.core.checkpoint import load
from charrnn.core.errors import CharRNNError, write_failed
from charrnn.generate.sample import seed_char

FORMAT = "charrnn-export"
FORMAT_VERSION = 1
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class Bundle:
    """A model ready to leave charrnn: `arrays` (name -> float32 array) and `meta` (plain JSON values)."""

    arrays: dict[str, np.ndarray]
    meta: dict

    @property
    def cell(self) -> str:
        return self.meta["cell"]

    def layer(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(W_ih (G*H, I_k), W_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)) of layer k."""
        return tuple(self.arrays[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def meta_json(self) -> str:
        return json.dumps(self.meta, ensure_ascii=False)


def bundle(target: str | Path) -> Bundle:
    """The checkpoint at `target` (a run directory or a .pt file) as a Bundle; refuses what no format
    can carry (non-finite weights, a cell other than rnn/gru/lstm) with one line."""
    ck = load(target)
    cfg = ck.model_config
    if cfg.model not in GATES:
        raise CharRNNError(f"{ck.path}: cannot export a {cfg.model!r} model (rnn, gru and lstm only)")
    arrays = {}
    for name, t in ck.raw["model"].items():
        a = t.detach().cpu().float().numpy()
        if not np.isfinite(a).all():
            raise CharRNNError(f"{ck.path}: the weights {name} are not finite (NaN or inf): nothing to export")
        arrays[name] = np.ascontiguousarray(a)
    pre = ck.preprocessing
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "charrnn_version": __version__,
        "cell": cfg.model, "layers": cfg.layers, "hidden": cfg.hidden, "embed": cfg.embed,
        "vocab": list(ck.vocab.chars),
        # what `charrnn sample` does to a prefix (Preprocessing.prefix), and what an empty one starts from
        "preprocessing": {"lowercase": pre.lowercase, "letters_only": pre.letters_only},
        "seed_char": seed_char(ck.vocab),
        "source": f"{Path(ck.path).parent.name}/{Path(ck.path).name}",  # run and file, not the local path
    }
    return Bundle(arrays, meta)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename: a failure
    leaves whatever was at `path` before. An OS error is one CharRNNError with exit code 4."""
    tmp, existed = None, path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; an exported model is meant to be shared
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, e, "the file there is unchanged" if existed else "nothing was written there") from None


def write_files_atomic(directory: Path, files: dict[str, bytes]) -> list[Path]:
    """Write several files into `directory`: all of them into a fresh temporary directory beside it
    first, then renamed into place, the whole directory at once when it did not exist (all or nothing),
    else file by file (each rename atomic: no file is ever half-written)."""
    if directory.exists() and not directory.is_dir():
        raise CharRNNError(f"--out {directory} is a file; this format writes a directory")
    tmpdir = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        for name, data in files.items():
            (tmpdir / name).write_bytes(data)
            os.chmod(tmpdir / name, 0o644)
        if directory.exists():
            for name in files:
                os.replace(tmpdir / name, directory / name)
            tmpdir.rmdir()
        else:
            os.chmod(tmpdir, 0o755)
            os.replace(tmpdir, directory)
        tmpdir = None
    except OSError as e:
        raise write_failed(directory, e, "nothing was written there") from None
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return [directory / name for name in files]
