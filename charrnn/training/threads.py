"""How many CPU threads a run computes with: `--threads auto` (the default), `--threads N`, or
`--threads 0` (torch's own default, one per core).

    choice = choose_threads("auto")      # ThreadChoice(count=1, how="auto: 2 cores, 1.3 busy")
    with using_threads(choice.count):    # set for the run, restored after it
        ...

Why auto: torch's OpenMP and MKL threads spin while they wait for one another. On cores another process
is using, one descheduled thread holds all the others up, so torch's default of one thread per core can
be several times slower than fewer threads (issue 21 measured 7.5x on a busy 2-core machine). Auto takes
the cores that are free when the run starts: the usable cores minus what /proc/stat shows busy on them
over a short look (the 1-minute load average where /proc/stat cannot be read), rounded, at least 1. A
load that changes after the start is not followed. OMP_NUM_THREADS or MKL_NUM_THREADS, when set, is the user's choice: auto
keeps it. Different thread counts may round differently, so a run that must repeat bit for bit on
another machine or load pins `--threads N`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.core.config import threads_value

AUTO = "auto"
LOOK_SECONDS = 0.3  # how long /proc/stat is watched for what is busy now


@dataclass(frozen=True)
class ThreadChoice:
    count: int  # threads torch computes with
    how: str  # why: "auto: 2 cores, 1.3 busy", "--threads 4", "torch's default"


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask, bounded by a cgroup (v2) CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return values[3] + (values[4] if len(values) > 4 else 0), sum(values[:8])  # idle + iowait, total


def busy_cores(look: float = LOOK_SECONDS) -> float:
    """How many of this process's usable cores other work occupies now: the busy share of the CPUs over
    `look` seconds of /proc/stat, scaled from the machine's CPUs to ours (in a container given 2 of 64
    CPUs, 32 busy host CPUs are about 1 of ours). The 1-minute load average stands in only where
    /proc/stat cannot be read: it lags both ways, still counting a job that ended a minute ago (such as
    the `pip install` before a first run, which made auto pick 1 thread of 2 on an idle machine) and
    missing one that has just started."""
    machine = os.cpu_count() or 1
    first = _cpu_times()
    if first is not None and look > 0:
        time.sleep(look)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            busy = machine * (1 - (second[0] - first[0]) / (second[1] - first[1]))
            return max(0.0, busy) * min(1.0, usable_cores() / machine)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return load * min(1.0, usable_cores() / machine)


def choose_threads(spec, busy: float | None = None, cores: int | None = None) -> ThreadChoice:
    """The thread count for a run asked to use `spec` threads (see the module docstring). `busy` and
    `cores` stand in for the machine's (for tests)."""
    spec = threads_value(spec)
    if spec == 0:  # whatever torch computes with now: one per core unless the caller set it
        return ThreadChoice(torch.get_num_threads(), "torch's default")
    if spec != AUTO:
        return ThreadChoice(spec, f"--threads {spec}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").strip():
            return ThreadChoice(torch.get_num_threads(), f"auto: {var}={os.environ[var].strip()}")
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    count = max(1, min(cores, math.floor(cores - busy + 0.5)))
    return ThreadChoice(count, f"auto: {cores} core{'s' * (cores != 1)}, {busy:.1f} busy")


@contextlib.contextmanager
def using_threads(count: int):
    """torch computes with `count` threads inside the block; the caller's count is restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
