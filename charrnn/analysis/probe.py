"""What a trained model tracks: units whose activation follows a property of the text, and whether the
state holds that property at all (a linear probe).

    signals = builtin_signals(text)               # {"depth", "quote", "line-pos", "word-pos"}: (N,) float64
    acts = gather(model, ids)                     # Activations: matrix (N, units), labels, gates
    ranking = rank_units(acts.matrix, signals["depth"])
    ranking.r[ranking.order[0]]                   # the unit that follows depth best, its Pearson r
    acts.labels[ranking.order[0]]                 # (layer, "h" | "c", index)

Activation i is the state *after* reading character i (state carried from zero over the whole text),
so every signal is defined as the property of the text up to and including character i:

    depth     nesting depth of ()[]{} after the character (an opening bracket counts itself, a closing
              one does not); a closing bracket with nothing open leaves the depth at 0
    quote     1 from an opening double quote up to the character before its closing quote, else 0
    line-pos  characters since the last newline (the newline itself is 0)
    word-pos  characters since the last space or newline (the space itself is 0)

Pearson r is computed in float64 over every character. A unit that never changes, or a signal that
never changes, has no correlation: it is reported as constant (r = nan), never divided by zero.

Activations come from `charrnn.analysis.activations.record` for a CharRNN (both engines; every layer's h, the
LSTM's c, the gates). A user's model from --model-factory takes part when it exposes its states (see
`FACTORY_PROTOCOL`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.core.errors import CharRNNError

BUILTIN_SIGNALS = ("depth", "quote", "line-pos", "word-pos")
_OPEN, _CLOSE = "([{", ")]}"
SIGMOID_GATES = ("input", "forget", "output", "reset", "update")  # the gates that saturate at 0 and 1
CHUNK = 2048  # characters recorded per forward call: bounds the memory of one call, state carried across

FACTORY_PROTOCOL = """\
A --model-factory model exposes its states with a method

    record(x, state) -> (layers, new_state)

x is a LongTensor (1, T) of ids, state what begin_state(1, device) returned (or the new_state of the
previous call), and layers a list with one dict per recurrent layer: {"h": (1, T, H)} plus, optionally,
"c": (1, T, H) for a cell state and "gates": {name: (1, T, H)} with sigmoid gates in (0, 1). Tensors or
NumPy arrays. A CharRNN needs nothing: charrnn.analysis.activations.record reads it."""


# ------------------------------------------------------------------------------------------- signals


def builtin_signals(text: str) -> dict[str, np.ndarray]:
    """The four built-in signals of `text`, each (len(text),) float64 (definitions in the module doc)."""
    n = len(text)
    depth = np.zeros(n)
    quote = np.zeros(n)
    line_pos = np.zeros(n)
    word_pos = np.zeros(n)
    d, inside, lp, wp = 0, False, 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            d += 1
        elif ch in _CLOSE:
            d = max(d - 1, 0)
        if ch == '"':
            inside = not inside
        lp = 0 if ch == "\n" else lp + 1
        wp = 0 if ch in " \n" else wp + 1
        depth[i], quote[i], line_pos[i], word_pos[i] = d, float(inside), lp, wp
    return {"depth": depth, "quote": quote, "line-pos": line_pos, "word-pos": word_pos}


# ----------------------------------------------------------------------------------------- recording


@dataclass
class Activations:
    """Every unit's value after each character of a text."""

    matrix: np.ndarray  # (N, units) float64: column j is unit labels[j]
    labels: list[tuple[int, str, int]]  # (layer, "h" | "c", index within the layer)
    gates: list[dict[str, np.ndarray]] = field(default_factory=list)  # per layer {gate: (N, H)}, if asked

    def label(self, j: int) -> str:
        layer, kind, index = self.labels[j]
        return f"L{layer}.{kind}[{index}]"


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def _record_chunk(model, x: torch.Tensor, state):
    """(layers, new_state) for one chunk, from a CharRNN or a model following FACTORY_PROTOCOL."""
    if hasattr(model, "config") and hasattr(model, "rnn"):  # a CharRNN: read through activations.record
        from charrnn.analysis.activations import record

        trace = record(model, x, state)
        return trace.layers, trace.state
    if callable(getattr(model, "record", None)):
        result = model.record(x, state)
        ok = isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[0], (list, tuple)) and result[0]
        if not ok or not all(isinstance(l, dict) and tuple(np.shape(l.get("h"))[:2]) == tuple(x.shape) for l in result[0]):
            raise CharRNNError(f"the model's record(x, state) must return (layers, new_state) with layers a list of "
                               f"{{'h': (1, T, H), ...}} per layer; for x of shape {tuple(x.shape)} it returned something else")
        return result
    raise CharRNNError("this model does not expose its states: give it a method record(x, state) -> (layers, "
                       "new_state) (see `charrnn probe --help` and charrnn.analysis.probe.FACTORY_PROTOCOL)")


@torch.no_grad()
def gather(model, ids, device="cpu", gates: bool = False, chunk: int = CHUNK) -> Activations:
    """Run `model` over ids (N,) as one stream from a zero state, chunk by chunk with the state carried,
    and collect each layer's h (and c) into an (N, units) float64 matrix; sigmoid gates when asked."""
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if len(ids) < 1:
        raise CharRNNError("the text is empty")
    if hasattr(model, "eval"):
        model.eval()
    state = model.begin_state(1, device)
    columns: list[list[np.ndarray]] = []  # per unit block: chunks of (T, H)
    labels: list[tuple[int, str, int]] = []
    gate_parts: list[dict[str, list[np.ndarray]]] = []
    for s in range(0, len(ids), chunk):
        x = ids[s : s + chunk].unsqueeze(0).to(device)  # (1, T)
        layers, state = _record_chunk(model, x, state)
        blocks = [(k, kind, layer[kind]) for k, layer in enumerate(layers) for kind in ("h", "c") if kind in layer]
        if not columns:
            columns = [[] for _ in blocks]
            labels = [(k, kind, j) for k, kind, t in blocks for j in range(t.shape[-1])]
            gate_parts = [{g: [] for g in layer.get("gates", {}) if g in SIGMOID_GATES} for layer in layers]
        for parts, (_, _, t) in zip(columns, blocks):
            parts.append(_np(t)[0])  # (T, H)
        if gates:
            for parts, layer in zip(gate_parts, layers):
                for g in parts:
                    parts[g].append(_np(layer["gates"][g])[0])
    matrix = np.concatenate([np.concatenate(parts, axis=0) for parts in columns], axis=1)  # (N, units)
    gate_arrays = [{g: np.concatenate(p, axis=0) for g, p in parts.items()} for parts in gate_parts] if gates else []
    return Activations(matrix, labels, gate_arrays)


# ---------------------------------------------------------------------------------------- unit ranking


@dataclass
class Ranking:
    """Pearson r of every unit with one signal, and the units in order of |r| (constant ones last)."""

    r: np.ndarray  # (units,) float64; nan for a constant unit, all nan for a constant signal
    order: np.ndarray  # (units,) unit indices, largest |r| first, constant units at the end
    constant_units: np.ndarray  # indices of units that never change on this text
    signal_constant: bool  # the signal never changes: no unit can correlate with it


def pearson(acts: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """r of each column of acts (N, U) with signal (N,), float64; nan where a column or the signal is
    constant (it has no correlation; nothing is divided by zero)."""
    a = np.asarray(acts, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    if a.ndim != 2 or s.shape != (a.shape[0],):
        raise CharRNNError(f"activations {a.shape} and signal {s.shape} do not line up character for character")
    r = np.full(a.shape[1], np.nan)
    if len(s) < 2 or np.ptp(s) == 0:
        return r
    live = np.ptp(a, axis=0) > 0  # (U,): a unit with one value throughout has no correlation
    ac = a[:, live] - a[:, live].mean(axis=0)
    sc = s - s.mean()
    # Normalised before the product so that neither sum of squares can overflow or underflow.
    ac /= np.sqrt((ac * ac).sum(axis=0))
    sc /= np.sqrt(sc @ sc)
    r[live] = np.clip(sc @ ac, -1.0, 1.0)
    return r


def rank_units(acts: np.ndarray, signal: np.ndarray) -> Ranking:
    """Rank the units of acts (N, U) by |Pearson r| with signal (N,)."""
    r = pearson(acts, signal)
    s = np.asarray(signal, dtype=np.float64)
    constant_signal = len(s) < 2 or np.ptp(s) == 0
    constant_units = np.flatnonzero(np.ptp(np.asarray(acts), axis=0) == 0)
    key = np.where(np.isnan(r), -1.0, np.abs(r))  # constant units sort after every real r
    order = np.argsort(-key, kind="stable")
    return Ranking(r, order, constant_units, bool(constant_signal))


# ------------------------------------------------------------------------------------------ user signals


def regex_signal(text: str, spec: str) -> tuple[str, np.ndarray]:
    """`NAME=PATTERN` -> (NAME, 1.0 on every character inside a match of PATTERN, 0.0 elsewhere)."""
    import re

    name, pattern = _split_spec(spec, "--signal-regex", "NAME=PATTERN")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise CharRNNError(f"--signal-regex {name}: {pattern!r} is not a valid regular expression: {e}") from None
    values = np.zeros(len(text))
    for m in compiled.finditer(text):
        values[m.start() : m.end()] = 1.0
    return name, values


def file_signal(spec: str, n_chars: int) -> tuple[str, np.ndarray]:
    """`NAME=F` -> (NAME, the numbers in F, one per line, one per character of the probed text)."""
    from pathlib import Path

    name, path = _split_spec(spec, "--signal-file", "NAME=FILE")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise CharRNNError(f"--signal-file {name}: cannot read {path}: {e.strerror or e}") from None
    values = np.empty(len(lines))
    for i, line in enumerate(lines):
        try:
            values[i] = float(line)
        except ValueError:
            raise CharRNNError(f"--signal-file {name}: line {i + 1} of {path} is not a number: {line[:40]!r}") from None
    if len(values) != n_chars:
        raise CharRNNError(f"--signal-file {name}: {path} has {len(values):,} numbers but the text has {n_chars:,} characters "
                           "(after the model's preprocessing); give one number per character, one per line")
    if not np.isfinite(values).all():
        raise CharRNNError(f"--signal-file {name}: {path} holds nan or infinite values")
    return name, values


def _split_spec(spec: str, flag: str, form: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise CharRNNError(f"{flag} takes {form} (got {spec!r})")
    return name, value


# ---------------------------------------------------------------------------------------- linear probe

RIDGE_GRID = tuple(10.0 ** k for k in range(-6, 1))  # ridge penalty as a fraction of the rows fitted
PROBE_FIT_FRAC = 0.8  # the probe is fitted on the first 80% of the text and scored on the rest


@dataclass
class ProbeFit:
    """A ridge regression from every unit to one signal, scored on text it was not fitted on."""

    r2: float | None  # held-out R^2 (None when the held-out signal is constant)
    penalty: float  # the ridge penalty chosen, as a fraction of the rows fitted (features standardised)
    fit_chars: int
    test_chars: int


def _ridge_solve(x: np.ndarray, y: np.ndarray, fracs) -> list[np.ndarray]:
    """Weights of ridge regressions of y on x (both centred) for each penalty frac * rows, through one
    eigendecomposition of x^T x (units x units)."""
    evals, evecs = np.linalg.eigh(x.T @ x)
    xty = evecs.T @ (x.T @ y)
    return [evecs @ (xty / (evals + f * len(x))) for f in fracs]


def _r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    sst = ((y - y.mean()) ** 2).sum()
    return None if sst == 0 else float(1.0 - ((y - pred) ** 2).sum() / sst)


def linear_probe(acts: np.ndarray, signal: np.ndarray, fit_frac: float = PROBE_FIT_FRAC) -> ProbeFit:
    """Ridge regression from all units (standardised on the fitted part) to the signal, fitted on the
    first `fit_frac` of the text and scored on the rest (contiguous: the held-out text is unseen text,
    not interleaved characters). The penalty is chosen from RIDGE_GRID on the last quarter of the fitted
    part (fitted on its first three quarters), then the probe is refitted on the whole fitted part."""
    a = np.asarray(acts, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    n_fit = int(len(s) * fit_frac)
    if n_fit < 8 or len(s) - n_fit < 2:
        raise CharRNNError(f"the text has {len(s)} characters: too few for a probe fitted on {fit_frac:.0%} of it")
    mean, std = a[:n_fit].mean(axis=0), a[:n_fit].std(axis=0)
    std[std == 0] = 1.0  # a unit constant on the fitted part contributes nothing
    x = (a - mean) / std  # (N, U)
    inner = n_fit * 3 // 4
    y_in = s[:inner] - s[:inner].mean()
    scores = [_r2(s[inner:n_fit], x[inner:n_fit] @ w + s[:inner].mean()) for w in _ridge_solve(x[:inner], y_in, RIDGE_GRID)]
    scores = [-np.inf if v is None else v for v in scores]
    best = RIDGE_GRID[int(np.argmax(scores))]
    y_mean = s[:n_fit].mean()
    (w,) = _ridge_solve(x[:n_fit], s[:n_fit] - y_mean, [best])
    return ProbeFit(_r2(s[n_fit:], x[n_fit:] @ w + y_mean), best, n_fit, len(s) - n_fit)


# ------------------------------------------------------------------------------------- gate saturation

SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9  # Karpathy et al. 2015, Figure 3


def gate_saturation(gates: list[dict[str, np.ndarray]]) -> list[dict[str, dict[str, np.ndarray]]]:
    """Per layer and sigmoid gate, each unit's fraction of characters with the gate below 0.1 (left-
    saturated) and above 0.9 (right-saturated): {"left": (H,), "right": (H,)}."""
    return [{g: {"left": (v < SATURATED_LOW).mean(axis=0), "right": (v > SATURATED_HIGH).mean(axis=0)}
             for g, v in layer.items()} for layer in gates]


# ------------------------------------------------------------------------------------------- the command

MAX_CHARS = 20_000  # characters probed by default: (chars x units) float64 must fit in memory


@dataclass(frozen=True)
class ProbeOptions:
    """What `charrnn probe` computes: built-in signals by name, user signals as NAME=PATTERN / NAME=FILE."""

    signals: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    gates: bool = False
    top: int = 10
    max_chars: int = MAX_CHARS
    fit_frac: float = PROBE_FIT_FRAC
    device: str = "cpu"
    impl: str | None = None

    def __post_init__(self):
        unknown = [s for s in self.signals if s not in BUILTIN_SIGNALS]
        if unknown:
            raise CharRNNError(f"--signal {unknown[0]!r} is not a built-in signal (choose from {', '.join(BUILTIN_SIGNALS)}; "
                               "use --signal-regex or --signal-file for your own)")
        if not (self.signals or self.regexes or self.files or self.gates):
            raise CharRNNError("name something to probe: --signal NAME, --signal-regex NAME=PATTERN, --signal-file NAME=F or --gates")
        if self.top < 1 or self.max_chars < 100:
            raise CharRNNError("--top must be at least 1 and --max-chars at least 100")
        if not 0.1 <= self.fit_frac <= 0.95:
            raise CharRNNError("--fit-frac must be between 0.1 and 0.95")


def _load(target, factory, text_path, options: ProbeOptions):
    """(model, device, text as the model sees it, its ids, a description) for a checkpoint or a factory."""
    from charrnn.core.vocab import read_text
    from charrnn.core.device import resolve_device

    device = resolve_device(options.device)
    if factory is not None:
        from charrnn.diagnose.subjects import load_factory, user_model_on

        raw = read_text(text_path)
        model, _, ids, _ = user_model_on(load_factory(factory), device, raw)
        return model, device, raw, ids, {"factory": factory, "model": type(model).__name__}
    from charrnn.core.checkpoint import load

    ck = load(target, device, impl=options.impl)
    text = ck.preprocessing.read(text_path)  # decoded and prepared as the training text was
    cfg = ck.model.config
    return ck.model, device, text, ck.vocab.encode(text), {"checkpoint": ck.path, "model": f"{cfg.model}, {cfg.layers} layer(s) x {cfg.hidden}"}


def probe(target=None, text=None, options: ProbeOptions = ProbeOptions(signals=("depth",)), factory: str | None = None) -> dict:
    """`charrnn probe`: rank the units and fit a linear probe for each signal; gate saturation on request.
    Returns plain values (what --json prints)."""
    model, device, chars, ids, subject = _load(target, factory, text, options)
    n = min(len(ids), options.max_chars)  # the first n characters are probed
    builtin = builtin_signals(chars[:n]) if options.signals else {}
    signals = {name: builtin[name] for name in options.signals}
    for spec in options.regexes:
        name, values = regex_signal(chars, spec)
        signals[name] = values
    for spec in options.files:
        name, values = file_signal(spec, len(chars))
        signals[name] = values
    acts = gather(model, ids[:n], device, gates=options.gates)
    report = {**subject, "text": str(text), "chars": n, "text_chars": len(ids), "units": acts.matrix.shape[1], "signals": []}
    for name, values in signals.items():
        report["signals"].append(_signal_report(name, acts, values[:n], options))
    if options.gates:
        report["gates"] = _gates_report(acts)
    return report


def _signal_report(name: str, acts: Activations, values: np.ndarray, options: ProbeOptions) -> dict:
    ranking = rank_units(acts.matrix, values)
    entry = {"name": name, "constant": ranking.signal_constant, "constant_units": len(ranking.constant_units),
             "mean": float(values.mean()), "std": float(values.std()), "top": [], "probe": None}
    if ranking.signal_constant:
        return entry
    for j in ranking.order[: options.top]:
        if np.isnan(ranking.r[j]):
            break
        layer, part, index = acts.labels[j]
        entry["top"].append({"layer": layer, "part": part, "index": index, "r": float(ranking.r[j])})
    fit = linear_probe(acts.matrix, values, options.fit_frac)
    entry["probe"] = {"r2": fit.r2, "penalty": fit.penalty, "fit_chars": fit.fit_chars, "test_chars": fit.test_chars}
    return entry


def _gates_report(acts: Activations) -> list[dict]:
    if not any(acts.gates):
        raise CharRNNError("--gates: this model has no sigmoid gates (a plain rnn has none; lstm and gru do)")
    rows = []
    for k, layer in enumerate(gate_saturation(acts.gates)):
        for g, fr in layer.items():
            rows.append({"layer": k, "gate": g, "left": float(fr["left"].mean()), "right": float(fr["right"].mean()),
                         "units_mostly_left": int((fr["left"] > 0.5).sum()), "units_mostly_right": int((fr["right"] > 0.5).sum()),
                         "units": len(fr["left"]), "unit_left": fr["left"].tolist(), "unit_right": fr["right"].tolist()})
    return rows


def save_gate_picture(rows: list[dict], path) -> None:
    """The paper's Figure 3: one panel per layer, each unit of each gate a point at (fraction of characters
    left-saturated, fraction right-saturated). Needs matplotlib (the plot extra)."""
    from charrnn.analysis.plot import pyplot, write_figure

    plt = pyplot("the gate picture")
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4), squeeze=False)
    for ax, k in zip(axes[0], layers):
        for r in (r for r in rows if r["layer"] == k):
            ax.scatter(r["unit_left"], r["unit_right"], s=12, alpha=0.7, label=r["gate"])
        ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)  # the points cannot lie above this line
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=f"layer {k}",
               xlabel=f"fraction left-saturated (< {SATURATED_LOW})", ylabel=f"fraction right-saturated (> {SATURATED_HIGH})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    write_figure(fig, path, dpi=120)
