"""`charrnn gradcheck --user`: the user's own hand-written backward, checked against their own loss.

The user writes an adapter next to their code (a FILE.py, or an object NAME inside it):

    vocab_size                            int
    params()                              -> {name: array}     the point to check at (NumPy or torch)
    loss_and_grads(params, inputs, targets) -> (loss, {name: grad})
                                          inputs, targets: lists of T ints; grads shaped like params

    report = check_user_gradients(UserGradOptions("examples/numpy_lstm.py"))
    report.verdict                        # "pass" | "fail"
    report.tensors, report.findings       # a row per tensor; what kind of bug, by experiment
    report.to_dict()                      # {"verdict", "tensors": [...], "findings": [...]}

The params are cast to float64 (NumPy arrays stay arrays; torch tensors become float64 leaves that require
grad, their .grad cleared before every call) and every gradient is compared with central differences
(L(p + eps) - L(p - eps)) / 2eps of the user's own loss, on every element (or `samples` random elements
per tensor). The comparison is made at several sequence lengths, T = 1, 2, 3 and --seq-len, on random
inputs and targets; the pattern across lengths is the diagnosis:

    scale      at every length all gradients are one common multiple k of the true ones; k = T, 1/T, V, ...
               is named (k = T: the loss is a mean over time but the gradients are of the sum)
    local      already wrong at T = 1, where nothing flows back from a later step: a per-step derivative
    recurrent  right at T = 1, wrong from T = 2 on: what flows back through time (dh_next, dC_next, h/C index)
    float32    the loss or the gradients were computed in float32 although float64 went in
    shape      a gradient whose shape is not its parameter's

Tolerance, elementwise as in charrnn.gradcheck.engine: an element passes when |g - fd| <= abs_tol or
|g - fd| / max(|g|, |fd|, REL_FLOOR) <= REL_TOL. A central difference has truncation error eps^2 f'''/6
(~1e-12 here) and rounding error ~ k u |L| / eps, with u = 1.1e-16 and k how many roundings of the
size of L pile up in it. k ~ 10 is measured on examples/numpy_lstm.py (errors ~2e-9 at |L| ~ 17); we allow
k = 100: abs_tol = ABS_TOL_PER_LOSS * max(|L|, 1) = 1.1e-8 |L| at eps = 1e-6, the existing gradcheck's
1e-7 for a loss of ten. Real bugs are off by 1e-3 or more.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from charrnn.core.errors import CharRNNError
from charrnn.gradcheck.engine import REL_FLOOR, _fd_indices, check_fd_options
from charrnn.core.userfile import call, import_file
from charrnn.gradcheck.findings import REL_TOL, Finding, errors, findings

ABS_TOL_PER_LOSS = 1e-8  # times max(|loss|, 1): see the module docstring
SWEEP = (1, 2, 3)  # the short lengths the fingerprints compare; --seq-len is added
PROTOCOL = ("vocab_size (int), params() -> {name: array} and "
            "loss_and_grads(params, inputs, targets) -> (loss, {name: grad})")


@dataclass(frozen=True)
class UserGradOptions:
    spec: str  # FILE.py or FILE.py:NAME
    seq_len: int = 8  # the longest length checked (the table's)
    seed: int = 0  # of the random inputs, targets and sampled elements
    samples: int | None = None  # per tensor: None = all up to 512 elements, else 32; 0 = all
    eps: float = 1e-6

    def __post_init__(self):
        if self.seq_len < 1:
            raise CharRNNError("--seq-len must be at least 1")
        check_fd_options(self.samples, self.eps)

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(sorted({T for T in SWEEP if T < self.seq_len} | {self.seq_len}))


@dataclass
class TensorResult:
    """One parameter at the longest length; `wrong_at` lists every checked length where it failed."""

    name: str
    shape: list[int]
    checked: int
    max_abs: float | None  # None: the gradient has the wrong shape, nothing compared
    max_rel: float | None
    abs_tol: float
    rel_tol: float
    passed: bool
    wrong_from: int | None = None  # the shortest length where it is wrong
    wrong_at: list[int] = field(default_factory=list)
    result: str = ""  # "pass" | "fail" | "not concluded" (float32 code: finite differences are noise there)


@dataclass
class UserGradReport:
    options: UserGradOptions
    vocab_size: int
    tensors: list[TensorResult]
    findings: list[Finding]
    evaluations: int  # calls of loss_and_grads
    seconds: float

    @property
    def verdict(self) -> str:
        ok = self.tensors and all(t.passed for t in self.tensors) and not self.findings
        return "pass" if ok else "fail"

    @property
    def concluded(self) -> bool:
        """False when the code computes in float32: then no tensor is known to be right or wrong."""
        return not any(f.id == "float32" for f in self.findings)

    def outcome(self) -> str:
        """The closing line: passed, not concluded (float32), or which tensors are wrong."""
        if self.verdict == "pass":
            return "gradcheck --user passed: every tensor within tolerance"
        wrong = [t.name for t in self.tensors if t.result == "fail"]
        open_ = [t.name for t in self.tensors if t.result == "not concluded"]
        what = ", ".join(f.id for f in self.findings) or "out of tolerance"
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} of {len(self.tensors)} tensors wrong ({', '.join(wrong)})")
        if open_:
            parts.append(f"{len(open_)} of {len(self.tensors)} not concluded: your code computes in float32")
        return f"gradcheck --user FAILED ({what}): " + "; ".join(parts or [f"0 of {len(self.tensors)} tensors wrong"])

    def to_dict(self) -> dict:
        return {"verdict": self.verdict,
                "tensors": [asdict(t) for t in self.tensors],
                "findings": [asdict(f) for f in self.findings],
                "spec": self.options.spec, "vocab_size": self.vocab_size, "lengths": list(self.options.lengths),
                "eps": self.options.eps, "rel_tol": REL_TOL, "rel_floor": REL_FLOOR,
                "evaluations": self.evaluations, "seconds": round(self.seconds, 3)}


# ----------------------------------------------------------------------------------------------------
# the adapter: import it, call it, and say plainly what does not follow the protocol


def load_adapter(spec: str):
    """FILE.py (the module itself is the adapter) or FILE.py:NAME (an object in it)."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file.endswith(".py"):
        file, name = spec, ""
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise CharRNNError(f"--user: no such Python file: {file} (give FILE.py or FILE.py:NAME)")
    module = import_file(path, "--user")
    adapter = getattr(module, name, None) if name else module
    if adapter is None:
        raise CharRNNError(f"--user: {file} has no {name!r}")
    what = f"{file}:{name}" if name else file
    missing = [a for a in ("vocab_size", "params", "loss_and_grads") if not hasattr(adapter, a)]
    if missing:
        raise CharRNNError(f"--user: {what} has no {', '.join(missing)} (an adapter needs {PROTOCOL})")
    for a in ("params", "loss_and_grads"):
        if not callable(getattr(adapter, a)):
            raise CharRNNError(f"--user: {what}: {a} must be a function (an adapter needs {PROTOCOL})")
    V = adapter.vocab_size
    if isinstance(V, bool) or not isinstance(V, (int, np.integer)) or V < 1:
        raise CharRNNError(f"--user: {what}: vocab_size must be a positive int (got {V!r})")
    return adapter


def start_point(adapter) -> dict:
    """params() cast to float64 copies: arrays stay arrays, tensors become leaves that require grad."""
    raw = call(adapter.params, "--user: params()")
    if not isinstance(raw, dict) or not raw:
        raise CharRNNError(f"--user: params() must return a non-empty dict {{name: array}} (got {type(raw).__name__})")
    out = {}
    for name, v in raw.items():
        if isinstance(v, torch.Tensor):
            out[name] = v.detach().to("cpu", torch.float64).clone().requires_grad_(True)
        elif isinstance(v, np.ndarray):
            out[name] = np.array(v, dtype=np.float64)  # a contiguous copy
        else:
            raise CharRNNError(f"--user: params()[{name!r}] is a {type(v).__name__}: give NumPy arrays or torch tensors")
    return out


def _number(loss) -> tuple[float, str]:
    """The user's loss as a float and the dtype it came in."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return float(loss.detach().item()), str(loss.dtype).replace("torch.", "")
    if isinstance(loss, (np.ndarray, np.generic)) and loss.size == 1:
        return float(loss.reshape(-1)[0]), str(loss.dtype)
    if isinstance(loss, (float, int)) and not isinstance(loss, bool):
        return float(loss), "float64"
    raise CharRNNError(f"--user: loss_and_grads must return (loss, grads) with loss a number (got {type(loss).__name__})")


def evaluate(adapter, params: dict, inputs: list[int], targets: list[int]):
    """One call of loss_and_grads -> (loss, its dtype, {name: float64 array}, {name: dtype})."""
    for p in params.values():
        if isinstance(p, torch.Tensor):
            p.grad = None  # an adapter that calls loss.backward() must not accumulate across our calls
    out = call(adapter.loss_and_grads, f"--user: loss_and_grads (T = {len(inputs)})", params, list(inputs), list(targets))
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], dict):
        raise CharRNNError(f"--user: loss_and_grads must return (loss, {{name: grad}}) (got {type(out).__name__})")
    loss, dtype = _number(out[0])
    missing = [n for n in params if out[1].get(n) is None]
    if missing:
        raise CharRNNError(f"--user: loss_and_grads returned no gradient for {', '.join(missing)} "
                           f"(grads must have a key for every name of params(): {', '.join(params)})")
    grads, dtypes = {}, {}
    for n in params:
        g = out[1][n]
        if isinstance(g, torch.Tensor):
            dtypes[n], g = str(g.dtype).replace("torch.", ""), g.detach().cpu().numpy()
        else:
            g = np.asarray(g)
            dtypes[n] = str(g.dtype)
        if not np.issubdtype(g.dtype, np.number):
            raise CharRNNError(f"--user: the gradient of {n} is not numeric (dtype {g.dtype})")
        grads[n] = g.astype(np.float64)
    return loss, dtype, grads, dtypes


# ----------------------------------------------------------------------------------------------------
# one length: the user's gradients and central differences of the user's loss


@dataclass
class _Measure:
    T: int
    loss: float
    losses: list[float]  # every loss seen (for the float32 test)
    loss_dtype: str
    user: dict  # name -> the user's gradient at the checked elements
    fd: dict  # name -> central differences at the same elements
    full: dict  # name -> the user's whole gradient
    dtypes: dict
    bad_shapes: dict  # name -> (got, want)
    abs_tol: float


def _flat(p):
    """A flat view sharing p's memory (set an element, the user's next call sees it)."""
    return p.detach().view(-1) if isinstance(p, torch.Tensor) else p.reshape(-1)


def _numpy(p) -> np.ndarray:
    return p.detach().numpy() if isinstance(p, torch.Tensor) else p


def measure(adapter, params: dict, T: int, opts: UserGradOptions, rng: np.random.Generator,
            gen: torch.Generator) -> _Measure:
    V = int(adapter.vocab_size)
    inputs, targets = rng.integers(0, V, T).tolist(), rng.integers(0, V, T).tolist()
    before = {n: _numpy(p).copy() for n, p in params.items()}
    loss, loss_dtype, grads, dtypes = evaluate(adapter, params, inputs, targets)
    changed = [n for n, p in params.items() if not np.array_equal(_numpy(p), before[n])]
    if changed:
        raise CharRNNError(f"--user: loss_and_grads changed {', '.join(changed)} in place (an update step?): it must "
                           "only compute the loss and the gradients at the params it is given")
    if not np.isfinite(loss):
        raise CharRNNError(f"your loss is {loss} at T = {T} at the start point of params(): nothing to differentiate "
                           "(a log of 0? an overflowing exp?)", exit_code=1)
    m = _Measure(T, loss, [loss], loss_dtype, {}, {}, grads, dtypes, {}, ABS_TOL_PER_LOSS * max(abs(loss), 1.0))
    for name, p in params.items():
        want = tuple(p.shape)
        if grads[name].shape != want:
            m.bad_shapes[name] = (list(grads[name].shape), list(want))
            continue
        idx = _fd_indices(int(np.prod(want, dtype=int)), opts.samples, gen).tolist()
        flat, fd = _flat(p), np.empty(len(idx))
        for j, i in enumerate(idx):  # not under no_grad: an adapter may call loss.backward()
            orig = float(flat[i])
            flat[i] = orig + opts.eps
            plus = evaluate(adapter, params, inputs, targets)[0]
            flat[i] = orig - opts.eps
            minus = evaluate(adapter, params, inputs, targets)[0]
            flat[i] = orig
            m.losses += [plus, minus]
            fd[j] = (plus - minus) / (2 * opts.eps)
        m.user[name], m.fd[name] = grads[name].reshape(-1)[idx], fd
    return m


# ----------------------------------------------------------------------------------------------------
# the whole check


def check_user_gradients(opts: UserGradOptions, on_length=None) -> UserGradReport:
    """Measure at every length of opts.lengths, build the table and the findings. `on_length(T)` is
    called before each length (for progress display)."""

    start = time.perf_counter()
    adapter = load_adapter(opts.spec)
    params = start_point(adapter)
    rng, gen = np.random.default_rng(opts.seed), torch.Generator().manual_seed(opts.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is as fast and does not fight a busy machine
    measures = {}
    try:
        for T in opts.lengths:
            if on_length is not None:
                on_length(T)
            measures[T] = measure(adapter, params, T, opts, rng, gen)
    finally:
        torch.set_num_threads(threads)
    found = findings(measures, int(adapter.vocab_size))
    tensors = _table(params, measures, concluded=not any(f.id == "float32" for f in found))
    evaluations = sum(len(m.losses) for m in measures.values())
    return UserGradReport(opts, int(adapter.vocab_size), tensors, found, evaluations, time.perf_counter() - start)


def _table(params: dict, measures: dict, concluded: bool = True) -> list[TensorResult]:
    """A row per tensor at the longest length, with the lengths where it is wrong. Not `concluded` (the
    code computes in float32): a row compared is "not concluded", with no length where it is wrong, as the
    float32 finding says; a gradient of the wrong shape is wrong whatever the precision."""
    last = measures[max(measures)]
    rows = []
    for name, p in params.items():
        wrong = [T for T, m in measures.items() if name in m.bad_shapes
                 or not errors(m.user[name], m.fd[name], m.abs_tol)[2]]
        if name in last.bad_shapes:
            row = TensorResult(name, list(p.shape), 0, None, None, last.abs_tol, REL_TOL, False)
        else:
            e = errors(last.user[name], last.fd[name], last.abs_tol)
            row = TensorResult(name, list(p.shape), len(last.fd[name]), *e[:2], last.abs_tol, REL_TOL, e[2])
        row.wrong_at, row.wrong_from = wrong, (min(wrong) if wrong else None)
        row.passed = row.passed and not wrong
        row.result = "pass" if row.passed else "fail"
        if not concluded and row.max_abs is not None:
            row.passed, row.result, row.wrong_at, row.wrong_from = False, "not concluded", [], None
        rows.append(row)
    return rows
