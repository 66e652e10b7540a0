"""The `charrnn` command line: a thin layer over the engine.

Each command parses its options, builds a config, calls one engine function and renders what comes back.
The engine raises `CharRNNError` for anything the user can fix; `main()` prints it as one line on stderr
and exits with its code (2 for bad input, 1 for a failed check, 4 for a refused write, 3 for an internal
error; `charrnn.core.errors` lists them). CHARRNN_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from charrnn import __version__
from charrnn.cli import render
from charrnn.core.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from charrnn.core.errors import EXIT_INTERNAL, CharRNNError

try:  # typer vendors click since 0.20; before, it used click itself
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:
    from click import UsageError as _UsageError


_STARTED = time.perf_counter()  # when the command began (reset by each invocation): --minutes counts from here


def _debug() -> bool:
    return os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")


class _Group(TyperGroup):
    """Turns the engine's CharRNNError into one line on stderr and its exit code, inside the app, so
    that `charrnn ...`, `python -m charrnn` and typer's CliRunner all behave the same."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharRNNError as e:
            if _debug():
                raise
            print(f"charrnn: error: {e}", file=sys.stderr)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside training (which saves and says so itself)
            print("charrnn: interrupted (Ctrl-C)", file=sys.stderr)
            ctx.exit(130)
        except _UsageError as e:  # a bad flag or value: one line and exit 2, as the engine's bad input
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            print(f"charrnn: error: {e.format_message()}{where}", file=sys.stderr)
            ctx.exit(2)


app = typer.Typer(
    name="charrnn",
    cls=_Group,
    help="Train and sample character-level RNN, GRU and LSTM language models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Progress, tables and reports go to stderr so that stdout carries only the product (samples, JSON).
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def _d(name: str) -> str:
    """The help text's "[default: ...]" for option `name`, read from the config dataclasses, so that
    every default is written once, there."""
    value = next(f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls) if f.name == name)
    shown = ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
    return f"  \\[default: {shown}]"


def _version(value: bool):
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Train and sample character-level RNN, GRU and LSTM language models."""
    global _STARTED
    _STARTED = time.perf_counter()


@app.command()
def download(
    names: list[str] = typer.Argument(None, metavar="NAME", help="Catalog corpora to fetch (see --list).", show_default=False),
    list_: bool = typer.Option(False, "--list", help="Show the catalog and which corpora are present and verified."),
    directory: str | None = typer.Option(None, "--dir", help="Data directory (default: $CHARRNN_DATA, else ./corpora)."),
    mirror: str | None = typer.Option(None, "--mirror", help="Fetch BASE/<name>.txt instead of the origin; BASE is http(s)://, file:// or a directory (default: $CHARRNN_MIRROR)."),
    source: str | None = typer.Option(None, "--from", help="Import a local copy of the one corpus named (its checksum is still checked)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even when a verified copy is present."),
):
    """Download corpora into the data directory and verify their checksums."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table

    from charrnn.data import corpora

    root = corpora.data_dir(directory)
    names = list(dict.fromkeys(names or []))
    if not names and not list_:
        raise CharRNNError(f"name a corpus to download ({', '.join(corpora.CATALOG)}) or use --list")
    entries = [corpora.lookup(n) for n in names]  # every name checked before any transfer starts
    if source is not None and len(entries) != 1:
        raise CharRNNError("--from imports one corpus: name exactly one")
    for entry in entries:
        path = corpora.corpus_path(entry.name, root)
        if not force and corpora.verify(path, entry):
            console.print(f"{entry.name}: already present and verified at {path}")
            continue
        if path.exists() and not force:
            console.print(f"{entry.name}: {path} failed its checksum; fetching it again")
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(entry.name, total=None)
            # force=True: we have just found the file missing or corrupt, no need to hash it again.
            path = corpora.download(entry.name, root, mirror=mirror, source=source, force=True,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        how = "built" if entry.url is None else "imported" if source else "downloaded"
        console.print(f"{entry.name}: {how} and verified, {path.stat().st_size:,} bytes at {path}")
    if list_:
        wide = console.width >= 120  # descriptions only where they fit without squeezing the paths
        table = Table(title=f"corpora in {root}", title_justify="left")
        for column in ("name", "bytes", "sha1", "status", "path") + (("description",) if wide else ()):
            # The short columns never wrap; a long path folds rather than squeezing them to nothing.
            table.add_column(column, no_wrap=column not in ("path", "description"), overflow="fold" if column == "path" else "ellipsis")
        for entry, path, ok in corpora.status(root):
            state = "[green]verified[/]" if ok else "[red]corrupt[/]" if path.exists() else "[dim]missing[/]"
            size = f"{entry.size:,}" if entry.size else f"{path.stat().st_size:,}" if ok else "-"
            row = [entry.name, size, (entry.sha1 or "local")[:8], state, str(path)]
            table.add_row(*row + ([entry.description] if wide else []))
        console.print(table)


# --------------------------------------------------------------------------------------------- train

_TRAIN_HELP = """Train a character-level RNN / GRU / LSTM.

Bare `charrnn train` trains an LSTM on the Time Machine (downloaded when needed; without network it
falls back to the Python standard library's source). Options come from, in rising priority: --preset,
--config FILE.yaml (same keys as the flags, with underscores), the flags. Ctrl-C saves last.pt; continue
with --resume RUN_DIR."""


@app.command(help=_TRAIN_HELP)
def train(
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Catalog name (timemachine, tinyshakespeare, pystdlib), a UTF-8 file, or many: a directory or a quoted glob ('texts/**/*.txt'), joined in path order.", rich_help_panel="Data"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with the same keys as the flags.", rich_help_panel="Run"),
    preset: Optional[str] = typer.Option(None, "--preset", help="A recipe shipped with charrnn (see --list-presets).", rich_help_panel="Run"),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit.", rich_help_panel="Run"),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Fine-tune: a new run starting from this checkpoint's weights (its architecture; new characters get new rows; fresh optimizer).", rich_help_panel="Run"),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run in this directory (or .pt) where it stopped.", rich_help_panel="Run"),
    out_dir: Optional[str] = typer.Option(None, "--out", help="Run directory \\[default: runs/<corpus>-<model>].", rich_help_panel="Run"),
    model: Optional[str] = typer.Option(None, "--model", help="rnn | gru | lstm" + _d("model"), rich_help_panel="Model"),
    impl: Optional[str] = typer.Option(None, "--impl", help="auto | torch (fused kernels) | scratch (hand-written BPTT)  \\[default: auto: scratch for rnn and gru on CPU, where it is faster; torch otherwise]", rich_help_panel="Model"),
    hidden: Optional[int] = typer.Option(None, "--hidden", help="Hidden units per layer" + _d("hidden"), rich_help_panel="Model"),
    layers: Optional[int] = typer.Option(None, "--layers", help="Recurrent layers" + _d("layers"), rich_help_panel="Model"),
    embed: Optional[int] = typer.Option(None, "--embed", help="Embedding width; 0 = one-hot input as d2l" + _d("embed"), rich_help_panel="Model"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout between layers and before the output" + _d("dropout"), rich_help_panel="Model"),
    init_std: Optional[float] = typer.Option(None, "--init-std", help="0 = torch's default init; >0 = weights ~ N(0, std²), biases 0 (d2l: 0.01)." + _d("init_std"), rich_help_panel="Model"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where corpora live (also CHARRNN_DATA)  \\[default: ./corpora]", rich_help_panel="Data"),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Download corpora from BASE/<name>.txt (also CHARRNN_MIRROR).", rich_help_panel="Data"),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--no-lowercase", help="Lower-case the text." + _d("lowercase"), rich_help_panel="Data"),
    letters_only: Optional[bool] = typer.Option(None, "--letters-only/--no-letters-only", help="d2l's preprocessing: runs of non-letters -> one space, lower-case." + _d("letters_only"), rich_help_panel="Data"),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Keep the first N characters (d2l's max_tokens); 0 = all." + _d("max_chars"), rich_help_panel="Data"),
    newline: Optional[str] = typer.Option(None, "--newline", help="keep | normalize: Windows (\\r\\n) and old Mac (\\r) line endings to \\n." + _d("newline"), rich_help_panel="Data"),
    encoding_errors: Optional[str] = typer.Option(None, "--encoding-errors", help="strict | replace" + _d("encoding_errors"), rich_help_panel="Data"),
    val_frac: Optional[float] = typer.Option(None, "--val-frac", help="Validation fraction (the end of the text)" + _d("val_frac"), rich_help_panel="Data"),
    test_frac: Optional[float] = typer.Option(None, "--test-frac", help="Test fraction (after val)" + _d("test_frac"), rich_help_panel="Data"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per batch" + _d("batch_size"), rich_help_panel="Batches"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Characters per sequence (BPTT length)" + _d("seq_len"), rich_help_panel="Batches"),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="random | sequential (d2l 8.3)" + _d("sampling"), rich_help_panel="Batches"),
    state: Optional[str] = typer.Option(None, "--state", help="auto | reset | carry; auto: reset for random, carry for sequential" + _d("state"), rich_help_panel="Batches"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | adamw | sgd" + _d("optimizer"), rich_help_panel="Optimisation"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate" + _d("lr"), rich_help_panel="Optimisation"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay" + _d("weight_decay"), rich_help_panel="Optimisation"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="constant | cosine (over the whole budget)" + _d("schedule"), rich_help_panel="Optimisation"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Linear warm-up steps" + _d("warmup"), rich_help_panel="Optimisation"),
    min_lr_frac: Optional[float] = typer.Option(None, "--min-lr-frac", help="Cosine ends at lr x this" + _d("min_lr_frac"), rich_help_panel="Optimisation"),
    clip: Optional[float] = typer.Option(None, "--clip", help="Clip the global gradient norm; 0 = off" + _d("clip"), rich_help_panel="Optimisation"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Budget in epochs; 0 = none ({DEFAULT_EPOCHS} when no budget is given).", rich_help_panel="Budget"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Budget in optimizer steps; 0 = none.", rich_help_panel="Budget"),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Budget in wall-clock minutes (whichever budget ends first); 0 = none.", rich_help_panel="Budget"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps" + _d("device"), rich_help_panel="Machine"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed; CPU runs are reproducible bit for bit" + _d("seed"), rich_help_panel="Machine"),
    threads: Optional[str] = typer.Option(None, "--threads", help="CPU threads: auto (the cores free at the start), N, or 0 (torch's default: one per core)." + _d("threads"), rich_help_panel="Machine"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast." + _d("amp"), rich_help_panel="Machine"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model." + _d("compile"), rich_help_panel="Machine"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate and checkpoint every N steps" + _d("eval_every"), rich_help_panel="Reporting"),
    eval_chars: Optional[int] = typer.Option(None, "--eval-chars", help="Validation characters scored per evaluation during training (a fixed, evenly spread part of a longer split; all of it at the end); 0 = all every time" + _d("eval_chars"), rich_help_panel="Reporting"),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log every N steps" + _d("log_every"), rich_help_panel="Reporting"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Print a sample every N evaluations; 0 = never" + _d("sample_every"), rich_help_panel="Reporting"),
    sample_prefix: Optional[str] = typer.Option(None, "--sample-prefix", help="Prefix of those samples \\[default: the text's first 16 characters].", rich_help_panel="Reporting"),
    sample_length: Optional[int] = typer.Option(None, "--sample-length", help="Characters per sample" + _d("sample_length"), rich_help_panel="Reporting"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors.", rich_help_panel="Reporting"),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end.", rich_help_panel="Reporting"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Log scalars and samples for TensorBoard to RUN/tensorboard (needs 'charrnn\\[tensorboard]').", rich_help_panel="Reporting"),
    tensorboard_dir: Optional[Path] = typer.Option(None, "--tensorboard-dir", help="Write the TensorBoard logs here instead (implies --tensorboard).", rich_help_panel="Reporting"),
):
    from charrnn.core.config import load_preset, load_yaml, preset_names
    from charrnn.cli.progress import TrainDisplay
    from charrnn.training.distributed import is_main_process
    from charrnn.training.train import train as run_training

    if list_presets:
        for name in preset_names():
            out.print(name)
        return
    flags = {k: v for k, v in locals().items() if k in _TRAIN_FLAG_KEYS and v is not None}
    flags = {_FLAG_RENAMES.get(k, k): v for k, v in flags.items()}
    options: dict = {}
    if preset:
        options.update(load_preset(preset))
    if config:
        options.update(load_yaml(config))
    options.update(flags)
    display = TrainDisplay(console, quiet=quiet)
    board = None
    if tensorboard or tensorboard_dir is not None:
        from charrnn.training.tensorboard import TensorBoardLogger

        board = TensorBoardLogger(tensorboard_dir)  # fails here, before training, if the extra is missing
    from charrnn.training.tensorboard import fan_out

    try:
        summary = run_training(options, resume=resume, on_event=fan_out(display, board), started=_STARTED)
    finally:
        if board is not None:
            board.close()
    if is_main_process():  # under torchrun, rank 0 speaks for every process
        if json_out:
            print(json.dumps(summary))
        if summary["interrupted"]:
            console.print(f"resume with: charrnn train --resume {summary['run_dir']}")
    if summary["interrupted"]:
        raise typer.Exit(130)


_FLAG_RENAMES = {"out_dir": "out", "compile_": "compile"}
_TRAIN_FLAG_KEYS = {
    "corpus", "init_from", "out_dir", "model", "impl", "hidden", "layers", "embed", "dropout", "init_std", "data_dir", "mirror", "lowercase",
    "letters_only", "max_chars", "encoding_errors", "newline", "val_frac", "test_frac", "batch_size", "seq_len", "sampling",
    "state", "optimizer", "lr", "weight_decay", "schedule", "warmup", "min_lr_frac", "clip", "epochs", "max_steps",
    "minutes", "device", "seed", "threads", "amp", "compile_", "eval_every", "eval_chars", "log_every", "sample_every",
    "sample_prefix", "sample_length",
}


# -------------------------------------------------------------------------------------------- sample


@app.command()
def sample(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory (its best.pt, else last.pt) or a .pt file."),
    prefix: str = typer.Option("", "--prefix", "-p", help="Text that warms the state up; generation continues it."),
    length: int = typer.Option(500, "--length", "-n", "--max-length", min=0, help="Characters to generate (with --stop: at most)."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", min=0.0, help="0 = greedy; <1 safer, >1 wilder."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample among the k most likely characters; 0 = all."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling: the smallest set with probability >= p."),
    num_samples: int = typer.Option(1, "--num-samples", min=1, help="Independent samples, generated together as one batch."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same seed, same text  \\[default: random]"),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    impl: Optional[str] = typer.Option(None, "--impl", help="Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."),
    json_out: bool = typer.Option(False, "--json", help="Print {prefix, samples, scores, seed, ...} as JSON instead of streaming."),
    stop: Optional[list[str]] = typer.Option(None, "--stop", metavar="STR", help="End each sample at the first STR it generates (repeatable; escapes such as \\n\\n understood). STR itself is not printed unless --include-stop."),
    include_stop: bool = typer.Option(False, "--include-stop", help="Print the stop string that ended a sample as its last characters."),
    beam: int = typer.Option(0, "--beam", min=0, metavar="K", help="Beam search with K beams: the continuation with the best log-probability per character; deterministic (no --temperature/--top-k/--top-p). 1 = greedy; 0 = sample."),
    prefix_file: Optional[Path] = typer.Option(None, "--prefix-file", metavar="FILE", help="Read the prefix from this UTF-8 file (a long prime), instead of --prefix."),
    show_logprob: bool = typer.Option(False, "--show-logprob", help="After each sample, print on stderr its log-probability per character under the model (temperature 1)."),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="A prompt loop: type a prefix, get a continuation (/help lists its commands; Ctrl-D leaves)."),
    carry: bool = typer.Option(False, "--carry", help="--interactive: each prefix continues the text so far instead of starting afresh (/carry, /fresh, /reset switch in the loop)."),
):
    """Generate text from a checkpoint, continuing --prefix."""
    import torch

    from charrnn.core.checkpoint import load
    from charrnn.core.vocab import read_text
    from charrnn.core.device import resolve_device
    from charrnn.generate.sample import unescape

    if prefix_file is not None:
        if prefix:
            raise CharRNNError("give either --prefix or --prefix-file, not both")
        prefix = read_text(prefix_file)
    if not 0.0 < top_p <= 1.0:
        raise CharRNNError(f"--top-p must be in (0, 1]; 1 keeps every character (got {top_p:g})")
    if beam and (temperature != 1.0 or top_k or top_p != 1.0 or num_samples > 1):
        raise CharRNNError("--beam is deterministic and returns one text: it takes no --temperature, --top-k, "
                           "--top-p or --num-samples")
    if interactive and (json_out or num_samples > 1):
        raise CharRNNError("--interactive writes one continuation per prompt: it takes no --json or --num-samples")
    if carry and not interactive:
        raise CharRNNError("--carry continues the text from one prompt to the next: it needs --interactive (-i)")
    ck = load(ckpt, resolve_device(device), impl=impl)
    model, vocab = ck.model, ck.vocab
    normalize = ck.preprocessing.prefix  # the model only ever saw text prepared as its corpus was
    seen = normalize(prefix)
    if seen != prefix:
        console.print(f"note: the prefix was preprocessed as the training corpus was: {seen!r}", markup=False, highlight=False, soft_wrap=True)
        prefix = seen
    if seed is None:
        seed = int(torch.seed() % (2**31))
    g = torch.Generator().manual_seed(seed)
    opts = dict(temperature=temperature, top_k=top_k, top_p=top_p, stop=tuple(unescape(s) for s in stop or ()),
                include_stop=include_stop)
    if interactive:
        return _sample_interactive(model, vocab, prefix, length, beam, opts, g, carry, show_logprob, normalize)
    if beam:
        from charrnn.generate.beam import beam_search

        result = beam_search(model, vocab, prefix, length, beam, opts["stop"], include_stop).samples
    elif json_out or num_samples > 1:
        from charrnn.generate.sample import sample as run

        result = run(model, vocab, prefix, length, num_samples=num_samples, score=True, generator=g, **opts).samples
    else:
        result = _sample_stream(model, vocab, prefix, length, g, opts, show_logprob)
    if json_out:
        print(json.dumps({"checkpoint": ck.path, "prefix": prefix, "length": length, "temperature": temperature,
                          "top_k": top_k, "top_p": top_p, "beam": beam, "stop": list(opts["stop"]), "seed": seed,
                          "samples": [prefix + r.text for r in result], "scores": [r.as_dict() for r in result]},
                         ensure_ascii=False))
    elif num_samples > 1 or beam:
        for i, r in enumerate(result):
            if num_samples > 1:
                console.print(f"[dim]--- sample {i + 1}/{num_samples} (seed {seed})[/]")
            sys.stdout.write(prefix + r.text + "\n")
            sys.stdout.flush()
            if show_logprob:
                _print_logprob(r)


def _sample_stream(model, vocab, prefix, length, generator, opts, show_logprob):
    """One sample, written to stdout as it is generated; returns [its Sample]."""
    from charrnn.generate.sample import Finished, stream

    events = stream(model, vocab, prefix, length, score=show_logprob, generator=generator, **opts)  # checks first
    sys.stdout.write(prefix)
    sys.stdout.flush()
    for event in events:
        if isinstance(event, Finished):
            break
        sys.stdout.write(event[0])
        sys.stdout.flush()
    sys.stdout.write("\n")
    if show_logprob:
        _print_logprob(event.samples[0])
    return event.samples


def _print_logprob(s) -> None:
    d = s.as_dict()
    ended = f", ended by {s.stop!r}" if s.stop else ""
    _note(f"log-probability {d['logprob_per_char']:.4f} nats/char ({d['bits_per_char']:.3f} bits/char) "
          f"over {d['chars_scored']} generated characters{ended}")


def _note(text: str) -> None:
    """A dim line on stderr, printed as it is (no markup: it may quote what the user typed)."""
    console.print(text, style="dim", markup=False, highlight=False, soft_wrap=True)


def _sample_interactive(model, vocab, start, length, beam, opts, generator, carry, show_logprob, normalize):
    """The prompt loop: a line in, its continuation out, until end of input or Ctrl-C (exit 0)."""
    from charrnn.generate.interactive import HELP, Session, Turns
    from charrnn.generate.sample import Finished

    session = Session(model, vocab, Turns(length=length, beam=beam, score=show_logprob, **opts), carry=carry,
                      start=start, generator=generator, normalize=normalize)
    tty = sys.stdin.isatty()
    if tty:
        _note(HELP)
    failed = 0  # piped prompts that could not be continued: the exit code says so at the end
    try:
        while True:
            line = input("> ") if tty else sys.stdin.readline()
            if not tty and not line:
                break
            message = session.command(line)
            if message is not None:
                _note(message)
                continue
            try:
                for event in session.turn(line, echo=not tty):  # piped: a transcript, prefixes included
                    if isinstance(event, Finished):
                        break
                    sys.stdout.write(event[0])
                    sys.stdout.flush()
            except CharRNNError as e:  # a typo in one prompt does not end the session
                print(f"charrnn: error: {e}", file=sys.stderr)
                failed += 1
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            if show_logprob:
                _print_logprob(event.samples[0])
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\n")
    if failed and not tty:
        raise CharRNNError(f"{failed} prompt(s) could not be continued (the errors above); the others were")


# ---------------------------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    text: Optional[Path] = typer.Option(None, "--text", help="Score this UTF-8 file (preprocessed as in training)."),
    split_name: Optional[str] = typer.Option(None, "--split", help="train | val | test of the training corpus  \\[default: val]"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    impl: Optional[str] = typer.Option(None, "--impl", help="Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the training corpus lives, if not where it was."),
    ngram: int = typer.Option(0, "--ngram", help="Also score Kneser-Ney 1..N-gram models fitted on the run's training split, and split the model's advantage by where it comes from; 0 = off."),
    json_out: bool = typer.Option(False, "--json", help="Print {loss, bpc, perplexity, chars, ...} as JSON (with --show or --html: also every character's surprisal and top-5 guesses)."),
    by_position: bool = typer.Option(False, "--by-position", help="Also show the loss against characters since the state was reset, with the run's trained horizon marked."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --by-position: save the curve as a PNG here (needs pip install 'charrnn\\[plot]') \\[default: by_position.png in the run directory when matplotlib is installed]."),
    show: bool = typer.Option(False, "--show", help="Show the text coloured by each character's surprisal (bits) and list the most surprising characters.", rich_help_panel="Surprisal map"),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the surprisal map as a self-contained HTML page (hover a character for the model's top-5 guesses).", rich_help_panel="Surprisal map"),
    max_chars: int = typer.Option(2000, "--max-chars", help="With --show or --html: score the first N characters, as one stream from a zero state.", rich_help_panel="Surprisal map"),
):
    """Per-character loss, bits per character and perplexity of a checkpoint on a text.

    --show and --html score the same text character by character (a map of where the model is surprised);
    they belong to eval because they split its one number into the characters it is made of: the
    surprisals, in nats, sum to the loss x characters printed above the map."""
    from charrnn.analysis.texts import evaluate_text

    if text is not None and split_name is not None:
        raise CharRNNError("give either --text or --split, not both")
    if plot is not None and not by_position:
        raise CharRNNError("--plot needs --by-position")
    views = [name for name, on in (("--ngram", ngram), ("--show/--html", show or html is not None),
                                   ("--by-position", by_position)) if on]
    if len(views) > 1:  # each is its own report; one would be dropped in silence
        raise CharRNNError(f"{' and '.join(views)} are separate reports: ask for one at a time")
    if ngram:
        return _eval_ngram(ckpt, ngram, text, split_name or ("val" if text is None else None), device, impl, data_dir, json_out)
    if show or html is not None:
        return _surprisal_map(ckpt, text, split_name, device, impl, data_dir, max_chars, show, html, json_out)
    with console.status("scoring", spinner="dots") as status:  # a long split: how far it is
        result = evaluate_text(ckpt, text=text, split=split_name or ("val" if text is None else None), device=device, impl=impl,
                               data_dir=data_dir, by_position=by_position, progress=lambda f: status.update(f"scoring: {f:.0%}"))
    if json_out:
        print(json.dumps(result))
    else:
        lay = result["layout"]
        out.print(f"{escape(result['source'])} ({Path(result['checkpoint']).name} step {result['step']}): loss {result['loss']:.4f} nats/char, {result['bpc']:.4f} bits/char, "
                  f"perplexity {result['perplexity']:.3f} over {result['chars']:,} characters "
                  f"({lay['streams']} stream(s) of {lay['stream_chars']:,} characters, each from a zero state)")
    if result["warning"]:
        console.print(f"[yellow]warning:[/] {escape(result['warning'])}")
    if by_position:
        _show_by_position(result, plot, quiet=json_out)


def _show_by_position(result: dict, plot: Path | None, quiet: bool) -> None:
    """The --by-position table (stderr when --json holds stdout) and, with matplotlib, the picture."""
    from charrnn.analysis.horizon import save_position_plot

    prof = result["by_position"]
    horizon = prof["horizon"]
    (console if quiet else out).print(render.position_table(prof))
    if horizon:
        within, beyond = prof["loss_within_horizon"], prof["loss_beyond_horizon"]
        tail = f", past it {beyond:.4f} (perplexity {math.exp(beyond):.3f})" if beyond is not None else ""
        (console if quiet else out).print(f"trained horizon {horizon:,} characters ({result['horizon']['layout']}): loss within it "
                                          f"{within:.4f} (perplexity {math.exp(within):.3f}){tail}")
    path = plot or Path(result["checkpoint"]).parent / "by_position.png"
    written = save_position_plot(prof, path, required=plot is not None)
    if written:
        console.print(f"picture: {written}")
    elif plot is None:
        _note("for a picture of this curve: pip install 'charrnn[plot]'")  # no markup: [plot] is not a style


def _eval_ngram(ckpt, order, text, split_name, device, impl, data_dir, json_out) -> None:
    from charrnn.analysis.ngram import compare

    with console.status(f"fitting 1..{order}-grams and scoring", spinner="dots"):
        r = compare(ckpt, order, text=text, split=split_name, device=device, impl=impl, data_dir=data_dir)
    if json_out:
        print(json.dumps(r))
        return
    for line in render.ngram_report(r, order):
        out.print(line)


def _surprisal_map(ckpt, text, split_name, device, impl, data_dir, max_chars, show, html, json_out):
    """`eval --show/--html`: one scoring (charrnn.analysis.surprisal), drawn in the terminal and/or as a page."""
    from charrnn.cli.progress import surprisal_legend, surprisal_map, worst_table
    from charrnn.analysis.explore import page_data, render_page, write_page
    from charrnn.analysis.surprisal import load_for_scoring

    model, dev, ids, source, ck = load_for_scoring(ckpt, text, split_name or ("val" if text is None else None),
                                                     device, impl, data_dir, max_chars)
    vocab = ck.vocab
    data = page_data(model, vocab, ids, dev, source=source, checkpoint=ck.path, units=False)
    if html is not None:
        path = write_page(html, render_page(data, title=f"charrnn eval: {source}"))
        console.print(f"wrote the surprisal map of {len(ids):,} characters to {path}")
    if show:
        screen = console if json_out else out  # stdout carries the JSON when both are asked for
        screen.print(f"{escape(source)}: {data['summary']}")
        screen.print(surprisal_legend())
        screen.print(surprisal_map(data["chars"], data["bits"]))
        screen.print(worst_table(data["worst"], data["top"]))
    if json_out:
        chars = [{"char": c, "bits": b, "top": t} for c, b, t in zip(data["chars"], data["bits"], data["top"])]
        loss = data["loss"]
        print(json.dumps({"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(min(loss, 700.0)),
                          "chars": data["scored_chars"], "source": source, "checkpoint": ck.path,
                          "characters": chars, "worst": data["worst"]}, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------- info


@app.command()
def info(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON."),
):
    """What a checkpoint holds: config, vocabulary, parameter count, steps, best validation loss."""
    from charrnn.core.checkpoint import describe

    d = describe(ckpt)
    if json_out:
        print(json.dumps(d, ensure_ascii=False))
        return
    out.print(render.info_table(d))


# ---------------------------------------------------------------------------------------------- plot


@app.command()
def plot(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run directories (or their metrics.jsonl), overlaid in one picture."),
    x: str = typer.Option("step", "--x", help="x axis: step | chars | time | epoch"),
    metric: str = typer.Option("loss", "--metric", help="y axis: loss (nats/char) | bpc | perplexity"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="A .png or .svg file  \\[default: RUN/curves-METRIC.png; several runs: beside the first]"),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the picture  \\[default: the run's name]"),
    terminal: bool = typer.Option(False, "--terminal", help="Draw in the terminal instead of writing a file (plotext)."),
):
    """Train and val curves of one or several runs in one picture (e.g. random vs sequential batches)."""
    from charrnn.analysis.plot import read_runs, save_figure, terminal_plot

    curves = read_runs(runs, x, metric)
    if terminal:
        text = terminal_plot(curves, x, metric, width=min(out.width, 120), height=25, color=out.is_terminal)
        sys.stdout.write(text + "\n")
        return
    path = save_figure(curves, out_path, x, metric, title)
    console.print(f"wrote {path}")


# ----------------------------------------------------------------------------------------- gradcheck


@app.command()
def gradcheck(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="Check this checkpoint's architecture (a run directory or .pt file)."),
    model: Optional[str] = typer.Option(None, help="rnn, gru, lstm or all \\[default: all, or the checkpoint's]."),
    layers: Optional[int] = typer.Option(None, help="Recurrent layers \\[default: 2, or the checkpoint's]."),
    hidden: Optional[int] = typer.Option(None, help="Hidden units \\[default: 5, or the checkpoint's]."),
    batch: Optional[int] = typer.Option(None, "--batch-size", help="Sequences in the batch (train's --batch-size) \\[default: 3]."),
    seq_len: Optional[int] = typer.Option(None, help="Time steps \\[default: 4]."),
    vocab: Optional[int] = typer.Option(None, "--vocab-size", help="Vocabulary size \\[default: 6, or the checkpoint's]."),
    embed: Optional[int] = typer.Option(None, help="Embedding width, 0 = one-hot \\[default: 0, or the checkpoint's]."),
    seed: int = typer.Option(0, help="Seed of the weights, state, input and targets."),
    samples: Optional[int] = typer.Option(None, help="Finite differences on this many random elements per tensor; 0 = all \\[default: all up to 512 elements, else 32]."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    batch_alias: Optional[int] = typer.Option(None, "--batch", hidden=True, help="Old spelling of --batch-size."),
    vocab_alias: Optional[int] = typer.Option(None, "--vocab", hidden=True, help="Old spelling of --vocab-size."),
    user: Optional[str] = typer.Option(None, "--user", metavar="FILE.py[:NAME]", help="Check YOUR backward instead: an adapter with vocab_size, params() and loss_and_grads(params, inputs, targets); --seq-len (default 8), --seed, --samples apply (see the README)."),
):
    """Check the scratch engine's hand-written gradients against finite differences and autograd; --user: your own."""
    from charrnn.gradcheck.engine import TOLERANCES, GradcheckOptions, options_from_checkpoint, run_gradcheck

    batch = batch if batch is not None else batch_alias
    vocab = vocab if vocab is not None else vocab_alias
    if user is not None:
        others = {"CKPT": ckpt, "--model": model, "--layers": layers, "--hidden": hidden, "--batch-size": batch,
                  "--vocab-size": vocab, "--embed": embed}
        given = [k for k, v in others.items() if v is not None]
        if given:
            raise CharRNNError(f"--user checks your own code: {', '.join(given)} do not apply to it")
        return _gradcheck_user(user, seq_len, seed, samples, json_out)
    given = dict(model=model, layers=layers, hidden=hidden, batch=batch, seq_len=seq_len, vocab=vocab,
                 embed=embed, seed=seed, samples=samples)
    if ckpt is not None:
        opts = options_from_checkpoint(ckpt, **given)
    else:
        opts = GradcheckOptions(**{k: v for k, v in given.items() if v is not None})
    with console.status("checking gradients", spinner="dots"):
        report = run_gradcheck(opts)
    if json_out:
        print(report.to_json())
    console.print(f"gradcheck: {', '.join(opts.models)}, {opts.layers} layer(s), hidden {opts.hidden}, batch {opts.batch}, "
                  f"seq-len {opts.seq_len}, vocab {opts.vocab}, embed {opts.embed}, float64")
    console.print(render.gradcheck_table(report))
    bad = report.failures
    if bad:
        names = ", ".join(dict.fromkeys(r.tensor for r in bad))
        raise CharRNNError(f"gradcheck FAILED: {len(bad)} of {len(report.rows)} comparisons out of tolerance ({names})",
                           exit_code=1)
    tols = "; ".join(f"{m} abs {a:g} or rel {r:g}" for m, (a, r) in TOLERANCES.items())
    console.print(f"gradcheck passed: all {len(report.rows)} comparisons within tolerance ({tols})")


def _gradcheck_user(spec: str, seq_len: Optional[int], seed: int, samples: Optional[int], json_out: bool) -> None:
    """gradcheck --user: run charrnn.gradcheck.user on the user's adapter, print the table and the findings."""
    from charrnn.gradcheck.user import UserGradOptions, check_user_gradients

    opts = UserGradOptions(spec, **({"seq_len": seq_len} if seq_len is not None else {}), seed=seed, samples=samples)
    with console.status("checking your gradients", spinner="dots") as status:
        report = check_user_gradients(opts, on_length=lambda T: status.update(f"checking your gradients at T = {T}"))
    if json_out:
        print(json.dumps(report.to_dict()))
    lengths = ", ".join(map(str, opts.lengths))
    checked, total = sum(t.checked for t in report.tensors), sum(math.prod(t.shape) for t in report.tensors)
    console.print(f"gradcheck --user {escape(spec)}: vocab {report.vocab_size}, {len(report.tensors)} tensors; your "
                  f"loss_and_grads at T = {lengths} against central differences of your loss (float64, eps "
                  f"{opts.eps:g}) on {checked} of {total} elements; {report.evaluations} calls, {report.seconds:.1f}s")
    console.print(render.user_gradcheck_table(report))
    console.print(f"[dim]abs err, rel err and n at T = {opts.seq_len}; an element passes within abs tol or rel "
                  f"{report.to_dict()['rel_tol']:g}[/]")
    for f in report.findings:
        console.print(f"[bold]{f.id}[/]: {escape(f.message)}")
    if report.verdict == "fail":
        bad = [t.name for t in report.tensors if not t.passed]
        what = ", ".join(f.id for f in report.findings) or "out of tolerance"
        raise CharRNNError(f"gradcheck --user FAILED ({what}): {len(bad)} of {len(report.tensors)} tensors wrong"
                           + (f" ({', '.join(bad)})" if bad else ""), exit_code=1)
    console.print(f"gradcheck --user passed: every tensor within tolerance at T = {lengths}")


# ------------------------------------------------------------------------------------------ diagnose


@app.command()
def diagnose(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="A run directory or .pt file (its val split is scored unless --text)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Measure on this UTF-8 file (required with --model-factory). With --log: the text your loop trained on (its vocabulary size V and unigram entropy)."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help="module:function or path/file.py:function returning your own model (forward(x, state), begin_state, vocab)."),
    max_chars: int = typer.Option(50_000, "--max-chars", help="Characters scored per check, at most."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Window for reset vs carry \\[default: the run's --seq-len, else 64]. With --log: your loop's sequence length T."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled windows and perturbations."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the training corpus lives, if not where it was."),
    json_out: bool = typer.Option(False, "--json", help="Print {verdict, checks: [{id, section, status, values, message, advice}]} on stdout."),
    log: Optional[Path] = typer.Option(None, "--log", help="Your own training log instead of a model: CSV with a header or JSON lines with epoch (or step), train_loss and optionally val_loss, grad_norm, lr; charrnn's metrics.jsonl works too.", rich_help_panel="Training log"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="With --log: your loop's batch size B (sequences per batch).", rich_help_panel="Training log"),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="With --log: your vocabulary size V \\[default: the distinct characters of --text].", rich_help_panel="Training log"),
    train_size: Optional[int] = typer.Option(None, "--train-size", help="With --log: sequences in your training set (what len(training_set) returns).", rich_help_panel="Training log"),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="With --log: sequences in your validation set (len(validation_set)).", rich_help_panel="Training log"),
):
    """Why is the loss flat or rising? Measure normalisation, hidden-state handling and gradients of a trained model, or read your own training log (--log)."""

    from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint, diagnose_factory
    from charrnn.diagnose import SECTIONS

    if log is not None:
        if ckpt is not None or model_factory is not None:
            raise CharRNNError("--log reads a training log on its own: give no checkpoint or --model-factory with it")
        return _diagnose_log(log, batch_size, seq_len, vocab_size, text, train_size, val_size, json_out)
    if (ckpt is None) == (model_factory is None):
        raise CharRNNError("give a checkpoint or --model-factory module:function (one of them)")
    if model_factory is not None and text is None:
        raise CharRNNError("--model-factory needs --text FILE to measure on")
    opts = DiagnoseOptions(max_chars=max_chars, device=device, seed=seed, seq_len=seq_len, data_dir=data_dir)
    with console.status("diagnosing", spinner="dots") as status:
        def progress(check):
            status.update(f"diagnosing: {check.id} {check.status}")

        if model_factory is not None:
            report = diagnose_factory(model_factory, text, opts, on_check=progress)
        else:
            report = diagnose_checkpoint(ckpt, text, opts, on_check=progress)
    if json_out:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    subj = report.subject
    console.print(f"[{render.STATUS_COLOUR[report.verdict]}]{escape(report.summary)}[/]")
    what = subj.get("checkpoint") or subj.get("factory")
    console.print(f"[dim]{escape(str(what))}: {escape(str(subj.get('model')))}, vocab {subj.get('vocab_size')}; "
                  f"text {escape(str(subj.get('text')))} ({subj.get('text_chars'):,} chars, up to {opts.max_chars:,} scored per check); "
                  f"{report.seconds:.1f}s[/]")
    for section, title in SECTIONS.items():
        console.print(f"\n[bold]{title}[/]")
        _print_checks(c for c in report.checks if c.section == section)
    _fail_on(report)


def _print_checks(checks) -> None:
    for line in render.check_lines(checks):
        console.print(line)


def _fail_on(report) -> None:
    """A diagnosis with a failed check exits 1, naming the checks."""
    if report.failed:
        raise CharRNNError(f"diagnose: {len(report.failed)} check(s) failed: {', '.join(c.id for c in report.failed)}", exit_code=1)


def _diagnose_log(log, batch_size, seq_len, vocab_size, text, train_size, val_size, json_out) -> None:
    """`diagnose --log`: the checks of the user's own log, with the recorded curves next to the corrected ones."""
    from charrnn.diagnose.log import SECTION, LogOptions, diagnose_log

    opts = LogOptions(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size, text=str(text) if text else None,
                      train_size=train_size, val_size=val_size)
    report = diagnose_log(log, opts)
    if json_out:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    subj = report.subject
    console.print(f"[{render.STATUS_COLOUR[report.verdict]}]{escape(report.summary)}[/]")
    known = ", ".join(f"{k} {subj[k]}" for k in ("batch_size", "seq_len", "train_size", "val_size") if subj[k] is not None)
    unigram = f", unigram entropy {subj['unigram_entropy']:.3f}" if subj["unigram_entropy"] is not None else ""
    console.print(f"[dim]{escape(subj['log'])} ({subj['format']}, {subj['rows']} row{'s' if subj['rows'] != 1 else ''}); vocab {subj['vocab_size']}: "
                  f"ln V = {subj['ln_vocab']:.3f}{unigram}; {escape(known) or 'no --batch-size / --seq-len given'}[/]")
    console.print(render.log_curves_table(subj))
    console.print(f"[bold]{SECTION[1]}[/]")
    _print_checks(report.checks)
    _fail_on(report)


# --------------------------------------------------------------------------------------------- probe

_PROBE_HELP = """What did the model learn? Rank its units by how closely they follow a property of the text.

The model reads --text as one stream from a zero state. For each signal: the units ranked by |Pearson r|
(layer, h or c, index), and a linear probe (ridge regression from every unit, fitted on the first part
of the text, R^2 on the rest). Built-in signals: depth (nesting of ()[]{}), quote (inside double
quotes), line-pos, word-pos. --gates: how often each LSTM/GRU gate is saturated. A --model-factory model
takes part when it has record(x, state) -> (layers, new_state), layers = [{"h": (1,T,H), "c"?, "gates"?}]."""


@app.command(help=_PROBE_HELP)
def probe(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="A run directory or .pt file."),
    text: Path = typer.Option(..., "--text", help="The UTF-8 text to probe on (preprocessed as in training)."),
    signal: list[str] = typer.Option([], "--signal", help="Built-in signal: depth, quote, line-pos or word-pos (repeatable)."),
    signal_regex: list[str] = typer.Option([], "--signal-regex", help="NAME=PATTERN: 1 on characters inside a match, 0 elsewhere (repeatable)."),
    signal_file: list[str] = typer.Option([], "--signal-file", help="NAME=FILE: one number per character of the text, one per line (repeatable)."),
    gates: bool = typer.Option(False, "--gates", help="Per layer, how often each gate is saturated (< 0.1 or > 0.9)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --gates: save the saturation picture (PNG/SVG/PDF; needs pip install 'charrnn\\[plot]')."),
    top: int = typer.Option(10, "--top", help="Units shown per signal."),
    max_chars: int = typer.Option(20_000, "--max-chars", help="Probe the first N characters of the text."),
    fit_frac: float = typer.Option(0.8, "--fit-frac", help="The linear probe is fitted on this first fraction of the text, scored on the rest."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help="module:function or file.py:function returning your own model (see above)."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    impl: Optional[str] = typer.Option(None, "--impl", help="Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."),
    json_out: bool = typer.Option(False, "--json", help="Print the ranked units, probes and gate fractions as JSON."),
):
    from charrnn.analysis.probe import ProbeOptions, probe as run_probe, save_gate_picture

    if (ckpt is None) == (model_factory is None):
        raise CharRNNError("give a checkpoint or --model-factory module:function (one of them)")
    if plot is not None and not gates:
        raise CharRNNError("--plot draws the gate saturation: add --gates")
    opts = ProbeOptions(signals=tuple(signal), regexes=tuple(signal_regex), files=tuple(signal_file), gates=gates, top=top,
                        max_chars=max_chars, fit_frac=fit_frac, device=device, impl=impl)
    with console.status("recording activations", spinner="dots"):
        report = run_probe(ckpt, text, opts, factory=model_factory)
    if plot is not None:
        save_gate_picture(report["gates"], plot)
    if json_out:
        print(json.dumps(report))
    else:
        for line in render.probe_report(report):
            out.print(line)
    if plot is not None:
        console.print(f"gate picture written to {plot}")


# ------------------------------------------------------------------------------------------- explore


@app.command()
def explore(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    text: Optional[Path] = typer.Option(None, "--text", help="Explore this UTF-8 file (preprocessed as in training) \\[default: the run's val split]."),
    split_name: Optional[str] = typer.Option(None, "--split", help="train | val | test of the training corpus, instead of --text."),
    out_file: Path = typer.Option(Path("explore.html"), "--out", help="Where to write the page."),
    max_chars: int = typer.Option(3000, "--max-chars", help="Characters explored at most: the first N of the text; with --serve, the longest text a user may submit."),
    serve: bool = typer.Option(False, "--serve", help="Serve the page instead of writing it, with a box to type or paste a text and score it; Ctrl-C stops."),
    host: str = typer.Option("127.0.0.1", "--host", help="With --serve: the address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="With --serve: the port; 0 picks a free one."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    impl: Optional[str] = typer.Option(None, "--impl", help="Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the training corpus lives, if not where it was."),
):
    """A page to explore a model on a text: surprisal colours, top-5 guesses on hover, one unit's activation,
    and the units that follow brackets, quotes, line and word position. One self-contained HTML file."""
    from charrnn.analysis.explore import page_data, render_page, write_page
    from charrnn.analysis.surprisal import load_for_scoring

    if text is not None and split_name is not None:
        raise CharRNNError("give either --text or --split, not both")
    if serve:
        return _serve_explore(ckpt, text, split_name, max_chars, host, port, device, impl, data_dir)
    model, dev, ids, source, ck = load_for_scoring(ckpt, text, split_name or ("val" if text is None else None),
                                                     device, impl, data_dir, max_chars)
    with console.status(f"scoring {len(ids):,} characters and recording the units", spinner="dots"):
        data = page_data(model, ck.vocab, ids, dev, source=source, checkpoint=ck.path)
    path = write_page(out_file, render_page(data))
    console.print(f"{escape(source)}: {data['summary']}")
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")


def _serve_explore(ckpt, text, split_name, max_chars, host, port, device, impl, data_dir):
    from charrnn.core.checkpoint import load
    from charrnn.core.device import resolve_device
    from charrnn.analysis.explore import empty_data, page_data, render_page
    from charrnn.analysis.explore_server import make_server
    from charrnn.analysis.surprisal import load_for_scoring

    if max_chars < 2:
        raise CharRNNError(f"--max-chars must be at least 2 (got {max_chars})")
    if text is not None or split_name is not None:
        model, dev, ids, source, ck = load_for_scoring(ckpt, text, split_name, device, impl, data_dir, max_chars)
        first = page_data(model, ck.vocab, ids, dev, source=source, checkpoint=ck.path)
    else:
        dev = resolve_device(device)
        ck = load(ckpt, dev, impl=impl)
        model = ck.model
        first = empty_data(f"{ck.path}: type or paste a text above and press Score")

    def score(raw: str) -> dict:
        ids = ck.vocab.encode(ck.preprocessing.text(raw))
        if len(ids) < 2:
            raise CharRNNError("type at least 2 characters (after the model's preprocessing)")
        return page_data(model, ck.vocab, ids, dev, source="your text", checkpoint=ck.path)

    server = make_server(score, render_page(first, serve=True, max_chars=max_chars), host, port, max_chars)
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can score texts with the model")
    console.print(f"serving {ck.path} on http://{bound_host}:{bound_port}/ (texts up to {max_chars:,} characters); Ctrl-C stops", soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script. Click reports usage errors itself (exit 2), the app turns
    CharRNNError into one line and its code; anything unexpected is a bug: one line and exit code 3
    (CHARRNN_DEBUG=1: the traceback). The codes are listed in `charrnn.core.errors`."""
    try:
        app(args=argv, prog_name="charrnn")
    except Exception as e:
        if _debug():
            raise
        print(f"charrnn: internal error: {type(e).__name__}: {e} (set CHARRNN_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
