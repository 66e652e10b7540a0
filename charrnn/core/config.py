"""Typed configuration: what a run is, validated on construction, saved into checkpoints as plain dicts.

A command-line flag, a YAML key and a dataclass field have the same name (flag `--batch-size` is key
`batch_size`). `ModelConfig` is exactly what rebuilds the network; `TrainConfig` is everything else a run
needs (data, optimisation, budgets, output). A YAML file is one flat mapping whose keys belong to either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from charrnn.core.errors import CharRNNError

MODELS = ("rnn", "gru", "lstm")
IMPLS = ("auto", "torch", "scratch")
SAMPLINGS = ("random", "sequential")
STATES = ("auto", "reset", "carry")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
DROPOUT_KINDS = ("elementwise", "locked")  # charrnn.core.regularise
DEFAULT_EPOCHS = 10  # the budget when none of --epochs, --max-steps, --minutes is given


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise CharRNNError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"--{name.replace('_', '-')} must be one of {', '.join(choices)} (got {value!r})")


def threads_value(value) -> str | int:
    """A --threads value as TrainConfig keeps it: "auto", or a count >= 0 (0 = torch's default)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = None if isinstance(value, (bool, float)) else int(str(value).strip())
    except ValueError:
        n = None
    _check(n is not None and n >= 0, f"--threads must be auto, 0 (torch's default) or a positive count (got {value!r})")
    return n


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: enough to rebuild the network from a checkpoint, nothing more."""

    model: str = "lstm"  # rnn (tanh) | gru | lstm
    impl: str = "auto"  # torch's fused modules | scratch (hand-written BPTT) | auto; same parameters either way
    vocab_size: int = 0  # set from the corpus
    hidden: int = 512
    layers: int = 1
    embed: int = 0  # 0 = one-hot input, as d2l; N = a learned N-wide embedding
    dropout: float = 0.0  # between layers and before the output layer
    dropout_kind: str = "locked"  # locked: one mask per sequence (measured better and cheaper, README) |
    # elementwise: a mask per character (every run before the option existed)
    weight_drop: float = 0.0  # DropConnect on the recurrent matrices W_hh, one mask per batch
    embed_dropout: float = 0.0  # drop whole characters from the input, one mask per batch
    init_std: float = 0.0  # 0 = torch's default init; >0 = weights ~ N(0, std^2), biases 0 (d2l uses 0.01)

    def __post_init__(self):
        _choice("model", self.model, MODELS)
        _choice("impl", self.impl, IMPLS)
        _check(self.hidden >= 1, "--hidden must be at least 1")
        _check(self.layers >= 1, "--layers must be at least 1")
        _check(self.embed >= 0, "--embed must be 0 (one-hot) or a positive width")
        _check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        _choice("dropout_kind", self.dropout_kind, DROPOUT_KINDS)
        _check(0.0 <= self.weight_drop < 1.0, "--weight-drop must be in [0, 1)")
        _check(0.0 <= self.embed_dropout < 1.0, "--embed-dropout must be in [0, 1)")
        _check(self.init_std >= 0.0, "--init-std must be 0 (torch's default init) or positive")
        _check(self.vocab_size >= 0, "vocab_size must not be negative")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run except the architecture."""

    # data
    corpus: str | None = None  # a catalog name or a path to a UTF-8 file; None = timemachine, else pystdlib
    data_dir: str | None = None
    mirror: str | None = None
    lowercase: bool = False
    letters_only: bool = False
    max_chars: int = 0  # 0 = the whole corpus (d2l's max_tokens)
    encoding_errors: str = "strict"  # strict | replace
    newline: str = "keep"  # keep the text's line endings | normalize \r\n and \r to \n
    val_frac: float = 0.1
    test_frac: float = 0.0
    # batches
    batch_size: int = 32
    seq_len: int = 64
    sampling: str = "sequential"
    state: str = "auto"  # auto: reset for random windows, carry (detached) for sequential streams
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0  # steps of linear warm-up (always steps, whatever the budget's kind)
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac
    clip: float = 1.0  # global gradient-norm clip; 0 = off
    ar: float = 0.0  # activation regularisation: + ar * mean(h^2) of the last layer's dropped-out outputs
    tar: float = 0.0  # temporal activation regularisation: + tar * mean((h_t - h_{t-1})^2)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off), which evaluation,
    # best.pt, last.pt's "model" and sampling use
    # budgets: whichever ends first; none given = DEFAULT_EPOCHS epochs (see runstate.Budget.of)
    epochs: int = 0
    max_steps: int = 0
    minutes: float = 0.0
    # machine
    device: str = "auto"
    seed: int = 1337
    threads: str | int = "auto"  # auto: the cores free at the start (charrnn.training.threads); N; 0 = torch's default
    amp: bool = False  # bf16 autocast (CUDA, or CPU where it helps)
    compile: bool = False  # torch.compile the model
    # reporting
    eval_every: int = 200
    eval_chars: int = 16384  # validation characters scored per evaluation during training (a fixed,
    # evenly spread part of a longer split; the whole split at the end); 0 = the whole split every time
    log_every: int = 20
    sample_every: int = 2  # a sample every this many evaluations; 0 = never
    sample_prefix: str = ""
    sample_length: int = 100
    # output
    out: str | None = None  # run directory; None = runs/<corpus>-<model>
    # fine-tuning: a new run that starts from this checkpoint's weights (charrnn.training.finetune)
    init_from: str | None = None

    def __post_init__(self):
        _check(self.encoding_errors in ("strict", "replace"), "--encoding-errors must be strict or replace")
        _check(self.newline in ("keep", "normalize"), f"--newline must be keep or normalize (got {self.newline!r})")
        _check(0.0 <= self.val_frac < 1.0 and 0.0 <= self.test_frac < 1.0, "--val-frac and --test-frac must be in [0, 1)")
        _check(self.val_frac + self.test_frac < 1.0, "--val-frac plus --test-frac must leave some text to train on")
        _check(self.max_chars >= 0, "--max-chars must not be negative")
        _check(self.batch_size >= 1, "--batch-size must be at least 1")
        _check(self.seq_len >= 1, "--seq-len must be at least 1")
        _choice("sampling", self.sampling, SAMPLINGS)
        _choice("state", self.state, STATES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _check(self.lr > 0, "--lr must be positive")
        _check(self.weight_decay >= 0, f"--weight-decay must be 0 (off) or positive (got {self.weight_decay:g})")
        _check(0.0 <= self.min_lr_frac <= 1.0, f"--min-lr-frac must be in [0, 1] (got {self.min_lr_frac:g})")
        _check(self.sample_every >= 0, "--sample-every must be 0 (never) or positive")
        _check(self.sample_length >= 1, f"--sample-length must be at least 1 (got {self.sample_length}); "
                                        "--sample-every 0 turns the samples off")
        _check(self.warmup >= 0, "--warmup must not be negative")
        _check(self.clip >= 0, "--clip must be 0 (off) or positive")
        _check(self.ar >= 0 and self.tar >= 0, "--ar and --tar must be 0 (off) or positive")
        _check(0.0 <= self.ema < 1.0, f"--ema must be a decay in [0, 1), 0 = off (got {self.ema:g}); 0.999 is usual")
        _check(self.epochs >= 0 and self.max_steps >= 0 and self.minutes >= 0, "budgets must not be negative")
        _check(self.eval_every >= 1 and self.log_every >= 1, "--eval-every and --log-every must be at least 1")
        _check(self.eval_chars >= 0, "--eval-chars must be 0 (the whole split) or positive")
        object.__setattr__(self, "threads", threads_value(self.threads))

    def state_policy(self) -> str:
        """The effective state policy: 'reset' or 'carry'."""
        if self.state != "auto":
            return self.state
        return "reset" if self.sampling == "random" else "carry"

    def state_mismatch(self) -> str | None:
        """A warning when the state policy contradicts the sampling scheme (allowed, for experiments)."""
        policy = self.state_policy()
        if self.sampling == "random" and policy == "carry":
            return ("carrying state across random windows: each window starts at an unrelated place in the "
                    "text, so the carried state is noise to it (d2l resets state for random sampling)")
        if self.sampling == "sequential" and policy == "reset":
            return ("resetting state between sequential batches: each stream continues the last batch, so "
                    "the model loses context it could have used (d2l carries state for sequential sampling)")
        return None


MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
OPTION_KEYS = MODEL_KEYS | TRAIN_KEYS  # what a flag, a YAML key or a preset may set


def option_key(name: str) -> str:
    """The config key of a flag or YAML key: `--batch-size`, `batch-size` and `batch_size` are `batch_size`."""
    return str(name).lstrip("-").replace("-", "_")


def merge_options(flags: dict[str, Any], preset: str | None = None,
                  config: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat options of one run, in rising priority: the preset, the YAML file (or a mapping, from
    Python), the flags.

    `flags` maps flag names (`--batch-size` or `batch_size`) to values, None for a flag not given; the
    keys that are no config field (--quiet, --json, ...) belong to the command and are left out here.
    Unknown keys from the YAML file or the preset stay in, for `split_options` to refuse by name."""
    options: dict[str, Any] = {}
    if preset:
        options.update(load_preset(preset))
    if isinstance(config, dict):
        options.update(config)
    elif config:
        options.update(load_yaml(config))
    given = {option_key(k): v for k, v in flags.items() if v is not None}
    options.update({k: v for k, v in given.items() if k in OPTION_KEYS})
    return options


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split one flat mapping of options into (model kwargs, train kwargs); unknown keys are an error."""
    unknown = sorted(set(options) - MODEL_KEYS - TRAIN_KEYS)
    _check(not unknown, f"unknown config key(s): {', '.join(unknown)}")
    model = {k: v for k, v in options.items() if k in MODEL_KEYS}
    train = {k: v for k, v in options.items() if k in TRAIN_KEYS}
    return model, train


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML mapping of options (`--config FILE`)."""
    p = Path(path).expanduser()
    _check(p.is_file(), f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CharRNNError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    _check(isinstance(data, dict), f"config file {p} must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("charrnn.core.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """Options of a recipe shipped inside the package (`--preset NAME`)."""
    names = preset_names()
    _check(name in names, f"unknown preset {name!r}; presets: {', '.join(names) or 'none'}")
    text = resources.files("charrnn.core.presets").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def coerce(options: dict[str, Any]) -> dict[str, Any]:
    """Give YAML values the dataclass field types (YAML reads 1e-3 as a string, for instance)."""
    types = {f.name: f.type for f in fields(ModelConfig)} | {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for k, v in options.items():
        t = str(types.get(k, ""))
        try:
            if v is None or t.endswith("| None") and v is None:
                out[k] = v
            elif t == "bool":
                if isinstance(v, str):
                    _check(v.lower() in ("true", "false", "yes", "no", "1", "0"), f"config key {k}: expected true or false, got {v!r}")
                    v = v.lower() in ("true", "yes", "1")
                out[k] = bool(v)
            elif t == "int":
                _check(float(v) == int(float(v)), f"config key {k}: expected an integer, got {v!r}")
                out[k] = int(float(v))
            elif t == "float":
                out[k] = float(v)
            elif t.startswith("str"):
                out[k] = str(v)
            else:
                out[k] = v
        except (TypeError, ValueError):
            raise CharRNNError(f"config key {k}: cannot use {v!r}") from None
    return out


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
