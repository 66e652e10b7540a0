"""charrnn: character-level RNN, GRU and LSTM language models.

From Python (the README's "From Python" section shows each call run):

    run = charrnn.train(corpus="input.txt", out="runs/x", hidden=64, max_steps=300)   # -> Trained
    run.run_dir, run.summary["val_loss"]
    m = charrnn.load("runs/x")                     # -> Model: the model on its device, vocabulary, preprocessing
    m.sample("The ", 200, temperature=0.8, seed=0) # prefix + continuation, as `charrnn sample` prints it
    for piece in m.stream("The ", 200): ...        # the continuation as it is generated
    m.beam("The ", 100, width=5)                   # beam search: the most likely continuation per character
    s = m.score("some text")                       # per-character surprisal; s.report.loss is eval's loss
    s                                              # in Jupyter: the text coloured by surprisal
    m.diagnose()                                   # -> diagnose's Diagnosis (verdict, summary, checks)
    m.probe("text.txt", signals=["depth"])         # -> probe's report (what `probe --json` prints)
    charrnn.diagnose_model(my_model, "input.txt")  # a model of your own (or "my_rnn.py:build")

Nothing heavy is imported until one of these is called: `import charrnn` stays cheap.

The package is an engine with a thin command-line interface on top (`charrnn.cli`). The stages, in the
order data flows through them (each imports only from the ones above it in this list):

    core/       the ground floor: errors, config (ModelConfig / TrainConfig), device, vocab (text -> ids),
                models (CharRNN), regularise (masks and penalties inside the network), scratch (hand-written
                BPTT layers), checkpoint (the one loader), userfile,
                presets/ (the YAML recipes `train --preset` reads)
    data/       corpora, many-file documents, the encoded-corpus cache, splits and batches, a run's corpus
    generate/   sampling, beam search, stop strings, the interactive session
    training/   run set-up, the loop and its subscribers, run state, optimiser, evaluation, run directory,
                the weight average (--ema), fine-tuning, DDP, TensorBoard
    analysis/   the one subject loader (a checkpoint or a --model-factory model on a text), eval's report,
                surprisal, horizon, n-gram yardstick, activations, signals, probe, the explore page and its
                server, curves and pictures
    gradcheck/  the engine's gradient check, the user's, and what a failure means
    diagnose/   why a loss is flat or rising: checks on a trained model, and on a learner's own log
    watch/      checks inside a learner's own training loop (charrnn.watch), and train --watch
    serve/      a trained run behind OpenAI's /v1/completions, with continuous batching (charrnn serve)
    export/     ONNX, a NumPy-only sampler and a self-contained web page (charrnn export)
    charrnn/__init__.py   this Python API, over every stage above
    cli/        the `charrnn` command: parsing and rendering only
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__version__ = "0.1.0"

__all__ = ["Model", "Trained", "diagnose_model", "load", "train", "watch", "__version__"]


def load(target: str | Path, device: str = "cpu", impl: str | None = None) -> "Model":
    """A run directory (its best.pt, else last.pt) or a .pt file, loaded on `device` (auto | cpu | cuda |
    mps); `impl` runs it with torch, scratch or auto layers instead of the ones it was trained with."""
    from charrnn.analysis.subject import open_checkpoint

    return Model(open_checkpoint(target, device, impl))


def train(config: dict[str, Any] | str | Path | None = None, *, preset: str | None = None, resume: str | Path | None = None,
          on_event: Callable[[Any], None] | None = None, **options) -> "Trained":
    """Train as `charrnn train` does and return the run. Options are the flags' names with underscores
    (`corpus`, `model`, `hidden`, `max_steps`, `out`, ...), taken, in rising priority, from `preset` (a
    recipe shipped with charrnn), `config` (a dict, or a YAML file as for `--config`) and the keywords.
    `resume` continues the run in that directory; `on_event` receives the training events (the CLI draws
    them; by default nothing is printed)."""
    from charrnn.core.config import merge_options
    from charrnn.training.train import train as run_training

    # keywords go on top as given, not through merge_options' flag filter: an unknown one is refused by name
    merged = {**merge_options({}, preset=preset, config=config), **options}
    summary = run_training(merged, resume=str(resume) if resume is not None else None, on_event=on_event)
    return Trained(Path(summary["run_dir"]), summary)


def diagnose_model(model, text: str | Path, **options):
    """`charrnn diagnose` on a model of your own, on a text file: `model` is an object with forward(x,
    state) -> (logits, state), begin_state(batch_size, device) and vocab (PyTorch or NumPy), or the
    "module:function" / "file.py:function" that builds one. Options: max_chars, device, seed, seq_len.
    Returns the Diagnosis (verdict, summary, headline, checks, to_dict())."""
    from charrnn.diagnose import DiagnoseOptions, diagnose_factory
    from charrnn.diagnose import diagnose_model as run

    opts = DiagnoseOptions(**options)
    return diagnose_factory(model, text, opts) if isinstance(model, str) else run(model, text, opts)


@dataclass(frozen=True)
class Trained:
    """A finished (or interrupted) training run: its directory and the summary `train --json` prints."""

    run_dir: Path
    summary: dict[str, Any]

    def load(self, device: str = "cpu") -> "Model":
        return load(self.run_dir, device)


class Model:
    """A trained model, loaded (`charrnn.load`): generate from it, score texts with it, look inside it.

    Every text it is given is prepared as its training text was (lower-cased, letters only, ... as the
    run recorded), so a prefix or a text means what it meant in training."""

    def __init__(self, subject):
        self.subject = subject  # charrnn.analysis.subject.Subject: model, device, vocabulary, preprocessing

    @property
    def path(self) -> str:
        return self.subject.checkpoint.path

    @property
    def module(self):
        """The torch module (CharRNN), in eval mode on its device."""
        return self.subject.model

    @property
    def vocab(self):
        return self.subject.vocab

    @property
    def config(self):
        """The ModelConfig the run was trained with (`train_config`: its TrainConfig)."""
        return self.subject.checkpoint.model_config

    @property
    def train_config(self):
        return self.subject.checkpoint.train_config

    def __repr__(self) -> str:
        cfg = self.config
        return f"<charrnn.Model {self.path}: {cfg.model} {cfg.layers}x{cfg.hidden}, {len(self.vocab)} characters, {self.subject.device}>"

    def _prefix(self, prefix: str) -> str:
        """The prefix prepared and checked as `charrnn sample` prepares it (an unseen character: one error)."""
        from charrnn.generate.sample import prepare_prefix

        return prepare_prefix(prefix, self.subject.preprocessing, self.vocab)[0]

    @staticmethod
    def _generator(seed: int | None):
        from charrnn.generate.sample import seeded

        return seeded(seed)[1]

    def sample(self, prefix: str = "", length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> str:
        """The prefix and `length` generated characters (fewer when a `stop` string ends it; the stop
        string is left out), as `charrnn sample` prints them. Temperature 0 is greedy; the same seed
        gives the same text."""
        from charrnn.generate.sample import sample

        prefix = self._prefix(prefix)
        done = sample(self.module, self.vocab, prefix, length, temperature=temperature, top_k=top_k, top_p=top_p,
                      stop=tuple(stop), generator=self._generator(seed))
        return prefix + done.samples[0].text

    def stream(self, prefix: str = "", length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> Iterator[str]:
        """The continuation of `prefix`, piece by piece as it is generated (the prefix itself is not
        repeated); joined, it is what `sample` with the same arguments appends to the prefix."""
        from charrnn.generate.sample import Finished, stream

        events = stream(self.module, self.vocab, self._prefix(prefix), length, temperature=temperature, top_k=top_k,
                        top_p=top_p, stop=tuple(stop), generator=self._generator(seed))
        return (shown[0] for shown in events if not isinstance(shown, Finished) and shown[0])

    def beam(self, prefix: str = "", length: int = 200, width: int = 5, *, stop: Sequence[str] = ()) -> str:
        """The prefix and the continuation beam search finds most likely per character (deterministic;
        width 1 is greedy)."""
        from charrnn.generate.beam import beam_search

        prefix = self._prefix(prefix)
        return prefix + beam_search(self.module, self.vocab, prefix, length, width, tuple(stop)).samples[0].text

    def score(self, text: str):
        """Every character's surprisal under the model, the text read as one stream from a zero state
        (`eval --show`): `.bits`, `.top_ids`, `.worst(n)`, `.report` (loss, bpc, perplexity), `.text`;
        a notebook shows it as the text coloured by surprisal."""
        from charrnn.analysis.surprisal import score_ids
        from charrnn.core.errors import CharRNNError

        ids = self.subject.encode(text)
        if len(ids) < 2:
            raise CharRNNError(f"the text has {len(ids)} character(s) after the model's preprocessing; scoring needs at least 2")
        return score_ids(self.module, ids, self.subject.device, tokens=self.subject.tokens)

    def diagnose(self, text: str | Path | None = None, **options):
        """`charrnn diagnose` on this run: on its val split, or on the file `text`. Options: max_chars,
        seed, seq_len, data_dir. Returns the Diagnosis (verdict, summary, headline, checks, to_dict())."""
        from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint

        return diagnose_checkpoint(self.path, text, DiagnoseOptions(**{"device": str(self.subject.device), **options}))

    def probe(self, text: str | Path, signals: Sequence[str] = ("depth",), **options) -> dict:
        """`charrnn probe` on this run and the file `text`: the units that follow each signal and a linear
        probe of the state. Options as ProbeOptions: regexes, files, gates, top, max_chars, fit_frac.
        Returns the report `probe --json` prints."""
        from charrnn.analysis.probe import ProbeOptions, probe

        opts = ProbeOptions(signals=tuple(signals), **{"device": str(self.subject.device), **options})
        return probe(self.path, text, opts)


def watch(*args, **kwargs):
    """Checks inside your own training loop, NumPy or PyTorch, that name the bug while it trains.

        w = charrnn.watch(model, optimizer=opt, vocab_size=V)     # or charrnn.watch(params=params_dict)
        w.step(loss, logits=logits, targets=y, state_in=h0, state_out=h, inputs=x)

    Returns a `charrnn.watch.core.Watch` (see its docstring and README "Watch your own loop")."""
    from charrnn.watch.core import watch as _watch

    return _watch(*args, **kwargs)
