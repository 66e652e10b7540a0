"""The run directory: choosing it, holding it while a run writes to it, and keeping it clean.

    with hold(run_dir):                 # a second train / resume into run_dir is one clear error
        remove_stale_temps(run_dir)     # partial .last.pt.*.tmp files of a save killed mid-way
        write_config(run_dir, effective)

The hold is an flock on run_dir/.lock: the kernel releases it when the process ends, however it ends
(kill -9 included), so a directory is never left locked and can be resumed at once.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from charrnn.core.errors import CharRNNError, write_failed

LOCK_NAME = ".lock"
STALE_TEMPS = ".*.pt.*.tmp"  # what checkpoint.save_checkpoint writes before its atomic rename


def default_run_dir(corpus: str, model: str) -> Path:
    """runs/<corpus>-<model>, or the first of -2, -3, ... that holds no run yet and is not in use."""
    base = Path("runs") / f"{corpus}-{model}"
    candidate, i = base, 1
    while holds_run(candidate) or in_use(candidate):
        i += 1
        candidate = Path(f"{base}-{i}")
    return candidate


def holds_run(run_dir: Path) -> bool:
    return (run_dir / "last.pt").exists() or (run_dir / "best.pt").exists()


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds `run_dir` (see `hold`); reading never blocks or creates anything."""
    try:
        import fcntl

        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
    except (ImportError, OSError):  # no fcntl, or no lock file: nobody holds it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` (created if needed) for the duration of the block, or raise if another process
    holds it. Without fcntl (Windows) there is no lock and the block just runs."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_failed(run_dir / LOCK_NAME, e, "nothing was written") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise CharRNNError(f"{run_dir} is in use by another charrnn run (pid {holder}); "
                               f"wait for it to end, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # only for the message above
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint saves that never finished (the process was killed
    between creating and renaming them). Only call this while holding the directory."""
    stale = sorted(run_dir.glob(STALE_TEMPS))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_config(run_dir: Path, effective: dict) -> None:
    path = run_dir / "config.yaml"
    try:
        path.write_text(yaml.safe_dump(effective, sort_keys=False, allow_unicode=True), encoding="utf-8")
    except OSError as e:
        raise write_failed(path, e, "no checkpoint was touched") from None


def read_metrics(path: str | Path, strict: bool = False) -> list[dict]:
    """The events of a run's metrics.jsonl, in order (what `subscribers.MetricsLog` wrote). A line that is
    not a JSON object is skipped, or with `strict` is an error naming it (path:line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CharRNNError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    events = []
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 in a sample is not a line end
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            events.append(event)
        elif strict:
            raise CharRNNError(f"{path}:{lineno}: not a JSON line")
    return events


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint's step (they will be written again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    try:
        path.write_text("".join(l + "\n" for l in kept), encoding="utf-8")
    except OSError as e:
        raise write_failed(path, e, "the checkpoint is intact") from None
