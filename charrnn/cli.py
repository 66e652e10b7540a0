"""The `charrnn` command line: a thin layer over the engine.

Each command parses its options, builds a config, calls one engine function and renders what comes back.
The engine raises `CharRNNError` for anything the user can fix; `main()` prints it as one line on stderr
and exits with its code (2 for bad input, 1 for a failed check). CHARRNN_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from charrnn import __version__
from charrnn.errors import CharRNNError

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


def _version(value: bool):
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Train and sample character-level RNN, GRU and LSTM language models."""


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

    from charrnn import corpora

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
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Catalog name (timemachine, tinyshakespeare, pystdlib) or a UTF-8 file.", rich_help_panel="Data"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with the same keys as the flags.", rich_help_panel="Run"),
    preset: Optional[str] = typer.Option(None, "--preset", help="A recipe shipped with charrnn (see --list-presets).", rich_help_panel="Run"),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit.", rich_help_panel="Run"),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run in this directory (or .pt) where it stopped.", rich_help_panel="Run"),
    out_dir: Optional[str] = typer.Option(None, "--out", help="Run directory \\[default: runs/<corpus>-<model>].", rich_help_panel="Run"),
    model: Optional[str] = typer.Option(None, "--model", help="rnn | gru | lstm  \\[default: lstm]", rich_help_panel="Model"),
    impl: Optional[str] = typer.Option(None, "--impl", help="auto | torch (fused kernels) | scratch (hand-written BPTT)  \\[default: auto: scratch for rnn and gru on CPU, where it is faster; torch otherwise]", rich_help_panel="Model"),
    hidden: Optional[int] = typer.Option(None, "--hidden", help="Hidden units per layer  \\[default: 512]", rich_help_panel="Model"),
    layers: Optional[int] = typer.Option(None, "--layers", help="Recurrent layers  \\[default: 1]", rich_help_panel="Model"),
    embed: Optional[int] = typer.Option(None, "--embed", help="Embedding width; 0 = one-hot input as d2l  \\[default: 0]", rich_help_panel="Model"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout between layers and before the output  \\[default: 0]", rich_help_panel="Model"),
    init_std: Optional[float] = typer.Option(None, "--init-std", help="0 = torch's default init; >0 = weights ~ N(0, std²), biases 0 (d2l: 0.01).", rich_help_panel="Model"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where corpora live (also CHARRNN_DATA)  \\[default: ./corpora]", rich_help_panel="Data"),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Download corpora from BASE/<name>.txt (also CHARRNN_MIRROR).", rich_help_panel="Data"),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--no-lowercase", help="Lower-case the text.", rich_help_panel="Data"),
    letters_only: Optional[bool] = typer.Option(None, "--letters-only/--no-letters-only", help="d2l's preprocessing: runs of non-letters -> one space, lower-case.", rich_help_panel="Data"),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Keep the first N characters (d2l's max_tokens); 0 = all.", rich_help_panel="Data"),
    encoding_errors: Optional[str] = typer.Option(None, "--encoding-errors", help="strict | replace  \\[default: strict]", rich_help_panel="Data"),
    val_frac: Optional[float] = typer.Option(None, "--val-frac", help="Validation fraction (the end of the text)  \\[default: 0.1]", rich_help_panel="Data"),
    test_frac: Optional[float] = typer.Option(None, "--test-frac", help="Test fraction (after val)  \\[default: 0]", rich_help_panel="Data"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per batch  \\[default: 32]", rich_help_panel="Batches"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Characters per sequence (BPTT length)  \\[default: 64]", rich_help_panel="Batches"),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="random | sequential (d2l 8.3)  \\[default: sequential]", rich_help_panel="Batches"),
    state: Optional[str] = typer.Option(None, "--state", help="auto | reset | carry; auto: reset for random, carry for sequential", rich_help_panel="Batches"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | adamw | sgd  \\[default: adam]", rich_help_panel="Optimisation"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate  \\[default: 0.002]", rich_help_panel="Optimisation"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay  \\[default: 0]", rich_help_panel="Optimisation"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="constant | cosine (over the whole budget)  \\[default: constant]", rich_help_panel="Optimisation"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Linear warm-up steps  \\[default: 0]", rich_help_panel="Optimisation"),
    min_lr_frac: Optional[float] = typer.Option(None, "--min-lr-frac", help="Cosine ends at lr x this  \\[default: 0.1]", rich_help_panel="Optimisation"),
    clip: Optional[float] = typer.Option(None, "--clip", help="Clip the global gradient norm; 0 = off  \\[default: 1.0]", rich_help_panel="Optimisation"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Budget in epochs (10 when no budget is given).", rich_help_panel="Budget"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Budget in optimizer steps.", rich_help_panel="Budget"),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Budget in wall-clock minutes (whichever budget ends first).", rich_help_panel="Budget"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps  \\[default: auto]", rich_help_panel="Machine"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed; CPU runs are reproducible bit for bit  \\[default: 1337]", rich_help_panel="Machine"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads; 0 = torch's default.", rich_help_panel="Machine"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast.", rich_help_panel="Machine"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model.", rich_help_panel="Machine"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate and checkpoint every N steps  \\[default: 200]", rich_help_panel="Reporting"),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log every N steps  \\[default: 20]", rich_help_panel="Reporting"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Print a sample every N evaluations; 0 = never  \\[default: 2]", rich_help_panel="Reporting"),
    sample_prefix: Optional[str] = typer.Option(None, "--sample-prefix", help="Prefix of those samples \\[default: the text's first 16 characters].", rich_help_panel="Reporting"),
    sample_length: Optional[int] = typer.Option(None, "--sample-length", help="Characters per sample  \\[default: 100]", rich_help_panel="Reporting"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors.", rich_help_panel="Reporting"),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end.", rich_help_panel="Reporting"),
):
    from charrnn.config import load_preset, load_yaml, preset_names
    from charrnn.display import TrainDisplay
    from charrnn.distributed import is_main_process
    from charrnn.train import train as run_training

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
    summary = run_training(options, resume=resume, on_event=display)
    if is_main_process():  # under torchrun, rank 0 speaks for every process
        if json_out:
            print(json.dumps(summary))
        if summary["interrupted"]:
            console.print(f"resume with: charrnn train --resume {summary['run_dir']}")
    if summary["interrupted"]:
        raise typer.Exit(130)


_FLAG_RENAMES = {"out_dir": "out", "compile_": "compile"}
_TRAIN_FLAG_KEYS = {
    "corpus", "out_dir", "model", "impl", "hidden", "layers", "embed", "dropout", "init_std", "data_dir", "mirror", "lowercase",
    "letters_only", "max_chars", "encoding_errors", "val_frac", "test_frac", "batch_size", "seq_len", "sampling",
    "state", "optimizer", "lr", "weight_decay", "schedule", "warmup", "min_lr_frac", "clip", "epochs", "max_steps",
    "minutes", "device", "seed", "threads", "amp", "compile_", "eval_every", "log_every", "sample_every",
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

    from charrnn.checkpoint import load_model
    from charrnn.data import Vocab, preprocess, read_text
    from charrnn.sample import unescape
    from charrnn.train import resolve_device

    if prefix_file is not None:
        if prefix:
            raise CharRNNError("give either --prefix or --prefix-file, not both")
        prefix = read_text(prefix_file)
    if beam and (temperature != 1.0 or top_k or top_p != 1.0 or num_samples > 1):
        raise CharRNNError("--beam is deterministic and returns one text: it takes no --temperature, --top-k, "
                           "--top-p or --num-samples")
    if interactive and (json_out or num_samples > 1):
        raise CharRNNError("--interactive writes one continuation per prompt: it takes no --json or --num-samples")
    model, meta = load_model(ckpt, resolve_device(device), impl=impl)
    vocab = Vocab(tuple(meta["vocab"]))
    pre = meta.get("preprocessing") or {}
    # the model only ever saw text preprocessed as its corpus was (lower-cased, non-letters to spaces)
    def normalize(text: str) -> str:  # also for --prefix-file and the prompts of --interactive
        return preprocess(text, pre.get("lowercase", False), pre.get("letters_only", False))

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
        from charrnn.beam import beam_search

        result = beam_search(model, vocab, prefix, length, beam, opts["stop"], include_stop).samples
    elif json_out or num_samples > 1:
        from charrnn.sample import sample as run

        result = run(model, vocab, prefix, length, num_samples=num_samples, score=True, generator=g, **opts).samples
    else:
        result = _sample_stream(model, vocab, prefix, length, g, opts, show_logprob)
    if json_out:
        print(json.dumps({"checkpoint": meta["path"], "prefix": prefix, "length": length, "temperature": temperature,
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
    from charrnn.sample import Finished, stream

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
    from charrnn.interactive import HELP, Session, Turns
    from charrnn.sample import Finished

    session = Session(model, vocab, Turns(length=length, beam=beam, score=show_logprob, **opts), carry=carry,
                      start=start, generator=generator, normalize=normalize)
    tty = sys.stdin.isatty()
    if tty:
        _note(HELP)
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
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            if show_logprob:
                _print_logprob(event.samples[0])
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\n")


# ---------------------------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    text: Optional[Path] = typer.Option(None, "--text", help="Score this UTF-8 file (preprocessed as in training)."),
    split_name: Optional[str] = typer.Option(None, "--split", help="train | val | test of the training corpus  \\[default: val]"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    impl: Optional[str] = typer.Option(None, "--impl", help="Run the checkpoint with torch, scratch or auto layers \\[default: the one it was trained with]."),
    init_std: Optional[float] = typer.Option(None, "--init-std", help="0 = torch's default init; >0 = weights ~ N(0, std²), biases 0 (d2l: 0.01).", rich_help_panel="Model"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the training corpus lives, if not where it was."),
    json_out: bool = typer.Option(False, "--json", help="Print {loss, bpc, perplexity, chars, ...} as JSON."),
):
    """Per-character loss, bits per character and perplexity of a checkpoint on a text."""
    from charrnn.evaluate import evaluate_text

    if text is not None and split_name is not None:
        raise CharRNNError("give either --text or --split, not both")
    result = evaluate_text(ckpt, text=text, split=split_name or ("val" if text is None else None), device=device,
                           impl=impl, data_dir=data_dir)
    if json_out:
        print(json.dumps(result))
        return
    out.print(f"{result['source']}: loss {result['loss']:.4f} nats/char, {result['bpc']:.4f} bits/char, "
              f"perplexity {result['perplexity']:.3f} over {result['chars']:,} characters")


# ---------------------------------------------------------------------------------------------- info


@app.command()
def info(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="A run directory or a .pt file."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON."),
):
    """What a checkpoint holds: config, vocabulary, parameter count, steps, best validation loss."""
    from charrnn.checkpoint import describe

    d = describe(ckpt)
    if json_out:
        print(json.dumps(d, ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    for key, value in d.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        t.add_row(f"[bold]{key}[/]", str(value))
    out.print(t)


# ----------------------------------------------------------------------------------------- gradcheck


@app.command()
def gradcheck(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="Check this checkpoint's architecture (a run directory or .pt file)."),
    model: Optional[str] = typer.Option(None, help="rnn, gru, lstm or all \\[default: all, or the checkpoint's]."),
    layers: Optional[int] = typer.Option(None, help="Recurrent layers \\[default: 2, or the checkpoint's]."),
    hidden: Optional[int] = typer.Option(None, help="Hidden units \\[default: 5, or the checkpoint's]."),
    batch: Optional[int] = typer.Option(None, help="Sequences in the batch \\[default: 3]."),
    seq_len: Optional[int] = typer.Option(None, help="Time steps \\[default: 4]."),
    vocab: Optional[int] = typer.Option(None, help="Vocabulary size \\[default: 6, or the checkpoint's]."),
    embed: Optional[int] = typer.Option(None, help="Embedding width, 0 = one-hot \\[default: 0, or the checkpoint's]."),
    seed: int = typer.Option(0, help="Seed of the weights, state, input and targets."),
    samples: Optional[int] = typer.Option(None, help="Finite differences on this many random elements per tensor; 0 = all \\[default: all up to 512 elements, else 32]."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
):
    """Check the scratch engine's hand-written gradients against finite differences and autograd."""
    from rich import box
    from rich.table import Table

    from charrnn.gradcheck import TOLERANCES, GradcheckOptions, options_from_checkpoint, run_gradcheck

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
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "tensor", "method"):
        table.add_column(col, no_wrap=True)
    for col in ("abs err", "rel err", "n", "result"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in report.rows:
        result = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        tensor = r.tensor.split("/", 1)[-1]  # the model has its own column
        table.add_row(r.model, tensor, r.method, f"{r.max_abs:.1e}", f"{r.max_rel:.1e}", str(r.checked), result)
    console.print(table)
    bad = report.failures
    if bad:
        names = ", ".join(dict.fromkeys(r.tensor for r in bad))
        raise CharRNNError(f"gradcheck FAILED: {len(bad)} of {len(report.rows)} comparisons out of tolerance ({names})",
                           exit_code=1)
    tols = "; ".join(f"{m} abs {a:g} or rel {r:g}" for m, (a, r) in TOLERANCES.items())
    console.print(f"gradcheck passed: all {len(report.rows)} comparisons within tolerance ({tols})")


# ------------------------------------------------------------------------------------------ diagnose


@app.command()
def diagnose(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="A run directory or .pt file (its val split is scored unless --text)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Measure on this UTF-8 file (required with --model-factory)."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help="module:function or path/file.py:function returning your own model (forward(x, state), begin_state, vocab)."),
    max_chars: int = typer.Option(50_000, "--max-chars", help="Characters scored per check, at most."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Window for reset vs carry \\[default: the run's --seq-len, else 64]."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda | mps"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled windows and perturbations."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the training corpus lives, if not where it was."),
    json_out: bool = typer.Option(False, "--json", help="Print {verdict, checks: [{id, section, status, values, message, advice}]} on stdout."),
):
    """Why is the loss flat or rising? Measure normalisation, hidden-state handling and gradients of a trained model."""
    from rich.markup import escape

    from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint, diagnose_factory
    from charrnn.diagnose_checks import SECTIONS

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
    colour = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
    subj = report.subject
    console.print(f"[{colour[report.verdict]}]{escape(report.summary)}[/]")
    what = subj.get("checkpoint") or subj.get("factory")
    console.print(f"[dim]{escape(str(what))}: {escape(str(subj.get('model')))}, vocab {subj.get('vocab_size')}; "
                  f"text {escape(str(subj.get('text')))} ({subj.get('text_chars'):,} chars, up to {opts.max_chars:,} scored per check); "
                  f"{report.seconds:.1f}s[/]")
    for section, title in SECTIONS.items():
        console.print(f"\n[bold]{title}[/]")
        for c in (c for c in report.checks if c.section == section):
            console.print(f"  [{colour[c.status]}]{c.status.upper():4}[/] [bold]{c.id}[/]  {escape(c.message)}")
            if c.status in ("warn", "fail") and c.advice:
                console.print(f"        [italic]→ {escape(c.advice)}[/]")
    if report.failed:
        raise CharRNNError(f"diagnose: {len(report.failed)} check(s) failed: {', '.join(c.id for c in report.failed)}", exit_code=1)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script. Click reports usage errors itself (exit 2), the app turns
    CharRNNError into one line; anything unexpected also becomes one line (CHARRNN_DEBUG=1: traceback)."""
    try:
        app(args=argv, prog_name="charrnn")
    except Exception as e:
        if _debug():
            raise
        print(f"charrnn: internal error: {type(e).__name__}: {e} (set CHARRNN_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
