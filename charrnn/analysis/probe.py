"""What a trained model tracks: units whose activation follows a property of the text, and whether the
state holds that property at all (a linear probe); with --gates, how often each gate saturates.

    report = probe("runs/x", "text.txt", ProbeOptions(signals=("depth",), gates=True))   # what --json prints
    fit = linear_probe(acts.matrix, signal)       # ridge regression from every unit, scored on held-out text
    fit.r2                                        # held-out R^2: the state holds the signal linearly

The signals and the unit ranking live in `charrnn.analysis.signals`, the recording of every unit in
`charrnn.analysis.activations`, the model and its text come from `charrnn.analysis.subject` (a checkpoint,
or a --model-factory model that exposes its states: `activations.FACTORY_PROTOCOL`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.analysis.activations import Activations, gather
from charrnn.analysis.signals import BUILTIN_SIGNALS, builtin_signals, file_signal, rank_units, regex_signal
from charrnn.analysis.subject import open_checkpoint, open_factory
from charrnn.core.errors import CharRNNError

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
    """The subject on the text (charrnn.analysis.subject) and a description of its model."""
    if factory is not None:
        s = open_factory(factory, options.device).with_text(text_path)
        return s, {"factory": factory, "model": type(s.model).__name__}
    s = open_checkpoint(target, options.device, options.impl).with_text(text_path)  # prepared as the training text was
    cfg = s.model.config
    return s, {"checkpoint": s.checkpoint.path, "model": f"{cfg.model}, {cfg.layers} layer(s) x {cfg.hidden}"}


def probe(target=None, text=None, options: ProbeOptions = ProbeOptions(signals=("depth",)), factory: str | None = None) -> dict:
    """`charrnn probe`: rank the units and fit a linear probe for each signal; gate saturation on request.
    Returns plain values (what --json prints)."""
    s, subject = _load(target, factory, text, options)
    model, device, chars, ids = s.model, s.device, s.text, s.ids
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
