"""Running a user's own Python code: the one way charrnn imports a file or module the user names
(`gradcheck --user FILE.py[:NAME]`, `diagnose`/`probe --model-factory module:function`) and calls into it.

    module = import_file("my_rnn.py", flag="--user")          # the file run as a fresh module
    module = import_module("my_pkg.models", flag="--model-factory")   # importable from the current directory
    value = call(module.build, "--model-factory: build()")    # the user's exception as one CharRNNError line

While the user's code runs, its prints go to stderr (so they never mix into --json on stdout), and a
failure becomes a CharRNNError naming the exception and the innermost line of the user's code (the CLI
prints it as one line; CHARRNN_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from charrnn.core.errors import CharRNNError


def where(e: Exception) -> str:
    """'ValueError: msg (file.py:12)': the exception and the innermost line of the user's code."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)  # not charrnn's, the library's or import's own
              if not any(part in f.filename.replace("\\", "/") for part in ("/charrnn/", "-packages/", "/lib/python", "<frozen"))]
    at = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{at}"


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
    except Exception as e:  # the user's code failed: their exception, their line
        raise CharRNNError(prefix + where(e)) from None


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
