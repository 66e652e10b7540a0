"""`charrnn gradcheck` (the engine's gradients, or the user's) and `charrnn diagnose` (a model, or a log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from charrnn.cli import render
from charrnn.cli.app import DATA_DIR_HELP, DEVICE_HELP, app, console
from charrnn.core.errors import CharRNNError


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
    weight_drop: Optional[float] = typer.Option(None, "--weight-drop", help="Check with a fixed DropConnect mask on W_hh (train's --weight-drop) \\[default: 0, or the checkpoint's]."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Check with a fixed locked-dropout mask between layers (train's --dropout-kind locked) \\[default: 0, or the checkpoint's]."),
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
                  "--vocab-size": vocab, "--embed": embed, "--weight-drop": weight_drop, "--dropout": dropout}
        given = [k for k, v in others.items() if v is not None]
        if given:
            raise CharRNNError(f"--user checks your own code: {', '.join(given)} do not apply to it")
        return _gradcheck_user(user, seq_len, seed, samples, json_out)
    given = dict(model=model, layers=layers, hidden=hidden, batch=batch, seq_len=seq_len, vocab=vocab,
                 embed=embed, weight_drop=weight_drop, dropout=dropout, seed=seed, samples=samples)
    if ckpt is not None:
        opts = options_from_checkpoint(ckpt, **given)
    else:
        opts = GradcheckOptions(**{k: v for k, v in given.items() if v is not None})
    with console.status("checking gradients", spinner="dots"):
        report = run_gradcheck(opts)
    if json_out:
        print(report.to_json())
    console.print(render.gradcheck_header(opts))
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
    for line in render.user_gradcheck_report(spec, opts, report):
        console.print(line)
    if report.verdict == "fail":
        raise CharRNNError(report.outcome(), exit_code=1)
    console.print(f"gradcheck --user passed: every tensor within tolerance at T = {', '.join(map(str, opts.lengths))}")


@app.command()
def diagnose(
    ckpt: Optional[str] = typer.Argument(None, metavar="CKPT", help="A run directory or .pt file (its val split is scored unless --text)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Measure on this UTF-8 file (required with --model-factory). With --log: the text your loop trained on (its vocabulary size V and unigram entropy)."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help="module:function or path/file.py:function returning your own model (forward(x, state), begin_state, vocab)."),
    max_chars: int = typer.Option(50_000, "--max-chars", help="Characters scored per check, at most."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Window for reset vs carry \\[default: the run's --seq-len, else 64]. With --log: your loop's sequence length T."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled windows and perturbations."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print {verdict, checks: [{id, section, status, values, message, advice}]} on stdout."),
    log: Optional[Path] = typer.Option(None, "--log", help="Your own training log instead of a model: CSV with a header or JSON lines with epoch (or step), train_loss and optionally val_loss, grad_norm, lr; charrnn's metrics.jsonl works too.", rich_help_panel="Training log"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="With --log: your loop's batch size B (sequences per batch).", rich_help_panel="Training log"),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="With --log: your vocabulary size V \\[default: the distinct characters of --text].", rich_help_panel="Training log"),
    train_size: Optional[int] = typer.Option(None, "--train-size", help="With --log: sequences in your training set (what len(training_set) returns).", rich_help_panel="Training log"),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="With --log: sequences in your validation set (len(validation_set)).", rich_help_panel="Training log"),
):
    """Why is the loss flat or rising? Measure normalisation, hidden-state handling and gradients of a trained model, or read your own training log (--log)."""

    from charrnn.diagnose import SECTIONS, DiagnoseOptions, diagnose_checkpoint, diagnose_factory

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
    for line in render.diagnose_header(report, opts.max_chars):
        console.print(line)
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
    for line in render.log_header(report):
        console.print(line)
    console.print(render.log_curves_table(report.subject))
    console.print(f"[bold]{SECTION[1]}[/]")
    _print_checks(report.checks)
    _fail_on(report)
