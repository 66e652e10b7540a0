"""`charrnn sample`: text from a checkpoint, streamed, in a batch, by beam search, or in a prompt loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from charrnn.cli import render
from charrnn.cli.app import DEVICE_HELP, IMPL_HELP, app, console, note
from charrnn.core.errors import CharRNNError


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
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    impl: Optional[str] = typer.Option(None, "--impl", help=IMPL_HELP),
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
    from charrnn.core.checkpoint import load
    from charrnn.core.device import resolve_device
    from charrnn.core.vocab import read_text
    from charrnn.generate.sample import prepare_prefix, seeded, unescape

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
    prefix, changed = prepare_prefix(prefix, ck.preprocessing)  # the model only ever saw text prepared so
    if changed is not None:
        console.print(f"note: {changed}", markup=False, highlight=False, soft_wrap=True)
    seed, g = seeded(seed)
    opts = dict(temperature=temperature, top_k=top_k, top_p=top_p, stop=tuple(unescape(s) for s in stop or ()),
                include_stop=include_stop)
    if interactive:
        return _sample_interactive(model, vocab, prefix, length, beam, opts, g, carry, show_logprob,
                                   ck.preprocessing.prefix)
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
            _write(prefix + r.text + "\n")
            if show_logprob:
                note(render.logprob_line(r))


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _sample_stream(model, vocab, prefix, length, generator, opts, show_logprob):
    """One sample, written to stdout as it is generated; returns [its Sample]."""
    from charrnn.generate.sample import Finished, stream

    events = stream(model, vocab, prefix, length, score=show_logprob, generator=generator, **opts)  # checks first
    _write(prefix)
    for event in events:
        if isinstance(event, Finished):
            break
        _write(event[0])
    sys.stdout.write("\n")
    if show_logprob:
        note(render.logprob_line(event.samples[0]))
    return event.samples


def _sample_interactive(model, vocab, start, length, beam, opts, generator, carry, show_logprob, normalize):
    """The prompt loop: a line in, its continuation out, until end of input or Ctrl-C (exit 0)."""
    from charrnn.generate.interactive import HELP, Message, Session, Turns, converse
    from charrnn.generate.sample import Finished

    session = Session(model, vocab, Turns(length=length, beam=beam, score=show_logprob, **opts), carry=carry,
                      start=start, generator=generator, normalize=normalize)
    tty = sys.stdin.isatty()
    if tty:
        note(HELP)
    failed = 0  # piped prompts that could not be continued: the exit code says so at the end
    try:
        for event in converse(session, _typed_lines(tty), echo=not tty):  # piped: a transcript, prefixes included
            if isinstance(event, Message):
                if event.error:  # a typo in one prompt does not end the session
                    print(f"charrnn: error: {event.text}", file=sys.stderr)
                    failed += 1
                else:
                    note(event.text)
            elif isinstance(event, Finished):
                _write("\n")
                if show_logprob:
                    note(render.logprob_line(event.samples[0]))
            else:
                _write(event[0])
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\n")
    if failed and not tty:
        raise CharRNNError(f"{failed} prompt(s) could not be continued (the errors above); the others were")


def _typed_lines(tty: bool):
    """The lines the user types (after a "> " prompt) or pipes in, until end of input."""
    while True:
        line = input("> ") if tty else sys.stdin.readline()
        if not tty and not line:
            return
        yield line
