"""Running a user's own Python code: the one way charrnn imports a file or module the user names
(`gradcheck --user FILE.py[:NAME]`, `diagnose`/`probe --model-factory module:function`) and calls into it.

    module = import_file("my_rnn.py", flag="--user")          # the file run as a fresh module
    module = import_module("my_pkg.models", flag="--model-factory")   # importable from the current directory
    value = call(module.build, "--model-factory: build()")    # the user's exception as one CharRNNError line

While the user's code runs, its prints go to stderr (so they never mix into --json on stdout), and a
failure becomes a CharRNNError naming the exception and the innermost line of the user's code (the CLI
prints it as one line; CHARRNN_DEBUG=1 shows the traceback, the user's frames included).

Who raised an exception is read from its traceback (`blame`): the innermost frame that is neither a
library's (torch, NumPy, d2l, the standard library) nor charrnn's own is the user's; a library frame is
charged to whoever called the library. A call into the user's code goes through `call_user`, so an
exception raised by the call itself (a forward that takes other arguments) is charged to the user too.

    b = blame(e)          # Blame(party "user" | "charrnn", frame, inside)
    b.where()             # "adapter.py:14 (`state, = state`), inside d2l/torch.py:1021"
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from charrnn.core.errors import CharRNNError


_PACKAGE = Path(__file__).resolve().parents[1]  # charrnn/
_STDLIB = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib")}
_BOUNDARY = ("call_user", "_guarded")  # this file's functions that call into the user's code


def _resolved(filename: str) -> Path | None:
    if filename.startswith("<"):
        return None
    try:
        return Path(filename).resolve()
    except (OSError, RuntimeError):
        return None


def is_charrnn(filename: str) -> bool:
    path = _resolved(filename)
    return path is not None and path.is_relative_to(_PACKAGE)


def is_library(filename: str) -> bool:
    """torch, NumPy, d2l and the standard library: code neither the user nor charrnn wrote here."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>: the interpreter's; <ipython-input-3>: the user's
        return filename.startswith("<frozen")
    path = _resolved(filename)
    if path is None or path.is_relative_to(_PACKAGE):
        return False
    return (any(part in ("site-packages", "dist-packages") for part in path.parts)
            or any(path.is_relative_to(lib) for lib in _STDLIB))


def _short(frame: traceback.FrameSummary) -> str:
    """file.py:12, a library's as package/file.py:12."""
    path = Path(frame.filename)
    name = f"{path.parent.name}/{path.name}" if is_library(frame.filename) and path.parent.name else path.name
    return f"{name}:{frame.lineno}"


@dataclass(frozen=True)
class Blame:
    """Whose code an exception came from. `frame`: the innermost frame of that party's code (None when the
    user is blamed for the call itself, e.g. forward() given arguments it does not take); `inside`: the
    innermost frame of all when it is a library's, called from `frame`."""

    party: str  # "user" | "charrnn"
    frame: traceback.FrameSummary | None
    inside: traceback.FrameSummary | None = None

    def where(self) -> str:
        """'adapter.py:14 (`state, = state`)', with ', inside torch/functional.py:98' when a library raised."""
        if self.frame is None:
            return f"the call into your code{f', inside {_short(self.inside)}' if self.inside else ''}"
        line = f" (`{self.frame.line.strip()}`)" if self.frame.line and self.frame.line.strip() else ""
        return f"{_short(self.frame)}{line}" + (f", inside {_short(self.inside)}" if self.inside else "")


def blame(e: BaseException) -> Blame:
    """Walk the traceback from the innermost frame out, past library frames, to the first frame that is
    the user's or charrnn's; a charrnn frame that is a call into the user's code (`call_user`) charges the
    call itself to the user."""
    frames = traceback.extract_tb(e.__traceback__)
    for f in reversed(frames):
        if is_library(f.filename):
            continue
        inside = frames[-1] if frames[-1] is not f else None
        if not is_charrnn(f.filename):
            return Blame("user", f, inside)
        if Path(f.filename).resolve() == Path(__file__).resolve() and f.name in _BOUNDARY:
            return Blame("user", None, inside)
        return Blame("charrnn", f, inside)
    return Blame("charrnn", None, frames[-1] if frames else None)


def where(e: Exception) -> str:
    """'ValueError: msg (file.py:12)': the exception and the innermost line of the user's code."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not is_library(f.filename) and not is_charrnn(f.filename)]
    at = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{at}"


def call_user(fn: Callable, *args) -> Any:
    """fn(*args), where fn is the user's code (a model's forward or begin_state): the frame `blame` reads
    as the call into it. Nothing is caught here."""
    return fn(*args)


def call(fn: Callable, what: str, *args) -> Any:
    """fn(*args) with the user's prints on stderr; an exception from their code -> CharRNNError
    '{what} raised ValueError: msg (file.py:12)'. A CharRNNError passes through unchanged."""
    return _guarded(f"{what} raised ", fn, *args)


def _guarded(prefix: str, fn: Callable, *args) -> Any:
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return fn(*args)
    except CharRNNError:
        raise
    except Exception as e:  # the user's code failed: their exception, their line (CHARRNN_DEBUG=1: their frames)
        if blame(e).party == "charrnn":
            raise  # charrnn's own code failed under the user's call: an internal error, reported as ours
        raise CharRNNError(prefix + where(e)) from e


def import_file(path: str | Path, flag: str) -> ModuleType:
    """Run a .py file as a fresh module (a new one on every call: a re-run sees the user's edits), with
    the file's folder on sys.path meanwhile so that its `import utils` next to it works."""
    path = Path(path)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        mod_spec = importlib.util.spec_from_file_location(f"_charrnn_user_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        _guarded(f"{flag}: cannot import {path}: ", mod_spec.loader.exec_module, module)
    finally:
        sys.path.remove(folder)
    return module


def import_module(name: str, flag: str) -> ModuleType:
    """Import a dotted module name, the current directory first on the path (as `python -m` would)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return _guarded(f"{flag}: cannot import {name}: ", importlib.import_module, name)
