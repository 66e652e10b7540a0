"""`charrnn train`: the flags, a preset and a YAML file merged into one run's options, and the run drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from charrnn.cli.app import app, console, default, flag_values, out, started
from charrnn.core.config import DEFAULT_EPOCHS

_TRAIN_HELP = """Train a character-level RNN / GRU / LSTM.

Bare `charrnn train` trains an LSTM on the Time Machine (downloaded when needed; without network it
falls back to the Python standard library's source). Options come from, in rising priority: --preset,
--config FILE.yaml (same keys as the flags, with underscores), the flags. Ctrl-C saves last.pt; continue
with --resume RUN_DIR."""


@app.command(help=_TRAIN_HELP)
def train(
    ctx: typer.Context,
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Catalog name (timemachine, tinyshakespeare, pystdlib), a UTF-8 file, or many: a directory or a quoted glob ('texts/**/*.txt'), joined in path order.", rich_help_panel="Data"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with the same keys as the flags.", rich_help_panel="Run"),
    preset: Optional[str] = typer.Option(None, "--preset", help="A recipe shipped with charrnn (see --list-presets).", rich_help_panel="Run"),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit.", rich_help_panel="Run"),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Fine-tune: a new run starting from this checkpoint's weights (its architecture; new characters get new rows; fresh optimizer).", rich_help_panel="Run"),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run in this directory (or .pt) where it stopped.", rich_help_panel="Run"),
    out_dir: Optional[str] = typer.Option(None, "--out", help="Run directory \\[default: runs/<corpus>-<model>].", rich_help_panel="Run"),
    model: Optional[str] = typer.Option(None, "--model", help="rnn | gru | lstm" + default("model"), rich_help_panel="Model"),
    impl: Optional[str] = typer.Option(None, "--impl", help="auto | torch (fused kernels) | scratch (hand-written BPTT)  \\[default: auto: scratch for rnn and gru on CPU, where it is faster; torch otherwise]", rich_help_panel="Model"),
    hidden: Optional[int] = typer.Option(None, "--hidden", help="Hidden units per layer" + default("hidden"), rich_help_panel="Model"),
    layers: Optional[int] = typer.Option(None, "--layers", help="Recurrent layers" + default("layers"), rich_help_panel="Model"),
    embed: Optional[int] = typer.Option(None, "--embed", help="Embedding width; 0 = one-hot input as d2l" + default("embed"), rich_help_panel="Model"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout between layers and before the output" + default("dropout"), rich_help_panel="Regularisation"),
    dropout_kind: Optional[str] = typer.Option(None, "--dropout-kind", help="elementwise (a mask per character) | locked (one mask per sequence, the same at every step)" + default("dropout_kind"), rich_help_panel="Regularisation"),
    weight_drop: Optional[float] = typer.Option(None, "--weight-drop", help="DropConnect on the recurrent matrices W_hh, one mask per batch" + default("weight_drop"), rich_help_panel="Regularisation"),
    embed_dropout: Optional[float] = typer.Option(None, "--embed-dropout", help="Drop whole characters from the input, one mask per batch" + default("embed_dropout"), rich_help_panel="Regularisation"),
    ar: Optional[float] = typer.Option(None, "--ar", help="Activation regularisation: + AR x mean(h²) of the last layer's dropped-out outputs" + default("ar"), rich_help_panel="Regularisation"),
    tar: Optional[float] = typer.Option(None, "--tar", help="Temporal activation regularisation: + TAR x mean((h_t - h_t-1)²)" + default("tar"), rich_help_panel="Regularisation"),
    ema: Optional[float] = typer.Option(None, "--ema", help="Average the weights (exponential moving average with this decay, e.g. 0.999; 0 = off): evaluation, best.pt and samples use the average" + default("ema"), rich_help_panel="Regularisation"),
    init_std: Optional[float] = typer.Option(None, "--init-std", help="0 = torch's default init; >0 = weights ~ N(0, std²), biases 0 (d2l: 0.01)." + default("init_std"), rich_help_panel="Model"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where corpora live (also CHARRNN_DATA)  \\[default: ./corpora]", rich_help_panel="Data"),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Download corpora from BASE/<name>.txt (also CHARRNN_MIRROR).", rich_help_panel="Data"),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--no-lowercase", help="Lower-case the text." + default("lowercase"), rich_help_panel="Data"),
    letters_only: Optional[bool] = typer.Option(None, "--letters-only/--no-letters-only", help="d2l's preprocessing: runs of non-letters -> one space, lower-case." + default("letters_only"), rich_help_panel="Data"),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Keep the first N characters (d2l's max_tokens); 0 = all." + default("max_chars"), rich_help_panel="Data"),
    newline: Optional[str] = typer.Option(None, "--newline", help="keep | normalize: Windows (\\r\\n) and old Mac (\\r) line endings to \\n." + default("newline"), rich_help_panel="Data"),
    encoding_errors: Optional[str] = typer.Option(None, "--encoding-errors", help="strict | replace" + default("encoding_errors"), rich_help_panel="Data"),
    val_frac: Optional[float] = typer.Option(None, "--val-frac", help="Validation fraction (the end of the text)" + default("val_frac"), rich_help_panel="Data"),
    test_frac: Optional[float] = typer.Option(None, "--test-frac", help="Test fraction (after val)" + default("test_frac"), rich_help_panel="Data"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per batch" + default("batch_size"), rich_help_panel="Batches"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Characters per sequence (BPTT length)" + default("seq_len"), rich_help_panel="Batches"),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="random | sequential (d2l 8.3)" + default("sampling"), rich_help_panel="Batches"),
    state: Optional[str] = typer.Option(None, "--state", help="auto | reset | carry; auto: reset for random, carry for sequential" + default("state"), rich_help_panel="Batches"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | adamw | sgd" + default("optimizer"), rich_help_panel="Optimisation"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate" + default("lr"), rich_help_panel="Optimisation"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay" + default("weight_decay"), rich_help_panel="Optimisation"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="constant | cosine (over the whole budget)" + default("schedule"), rich_help_panel="Optimisation"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Linear warm-up steps" + default("warmup"), rich_help_panel="Optimisation"),
    min_lr_frac: Optional[float] = typer.Option(None, "--min-lr-frac", help="Cosine ends at lr x this" + default("min_lr_frac"), rich_help_panel="Optimisation"),
    clip: Optional[float] = typer.Option(None, "--clip", help="Clip the global gradient norm; 0 = off" + default("clip"), rich_help_panel="Optimisation"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Budget in epochs; 0 = none ({DEFAULT_EPOCHS} when no budget is given).", rich_help_panel="Budget"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Budget in optimizer steps; 0 = none.", rich_help_panel="Budget"),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Budget in wall-clock minutes (whichever budget ends first); 0 = none.", rich_help_panel="Budget"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps" + default("device"), rich_help_panel="Machine"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed; CPU runs are reproducible bit for bit" + default("seed"), rich_help_panel="Machine"),
    threads: Optional[str] = typer.Option(None, "--threads", help="CPU threads: auto (the cores free at the start), N, or 0 (torch's default: one per core)." + default("threads"), rich_help_panel="Machine"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast." + default("amp"), rich_help_panel="Machine"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model." + default("compile"), rich_help_panel="Machine"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate and checkpoint every N steps" + default("eval_every"), rich_help_panel="Reporting"),
    eval_chars: Optional[int] = typer.Option(None, "--eval-chars", help="Validation characters scored per evaluation during training (a fixed, evenly spread part of a longer split; all of it at the end); 0 = all every time" + default("eval_chars"), rich_help_panel="Reporting"),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log every N steps" + default("log_every"), rich_help_panel="Reporting"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Print a sample every N evaluations; 0 = never" + default("sample_every"), rich_help_panel="Reporting"),
    sample_prefix: Optional[str] = typer.Option(None, "--sample-prefix", help="Prefix of those samples \\[default: the text's first 16 characters].", rich_help_panel="Reporting"),
    sample_length: Optional[int] = typer.Option(None, "--sample-length", help="Characters per sample" + default("sample_length"), rich_help_panel="Reporting"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors.", rich_help_panel="Reporting"),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end.", rich_help_panel="Reporting"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Log scalars and samples for TensorBoard to RUN/tensorboard (needs 'charrnn\\[tensorboard]').", rich_help_panel="Reporting"),
    tensorboard_dir: Optional[Path] = typer.Option(None, "--tensorboard-dir", help="Write the TensorBoard logs here instead (implies --tensorboard).", rich_help_panel="Reporting"),
    watch: bool = typer.Option(False, "--watch", help="Run charrnn.watch's checks on this loop (loss scale, update ratio, gradient spikes, non-finite values, state carried or reset against the batches); each finding is a warning, the table a note at the end.", rich_help_panel="Reporting"),
):
    from charrnn.cli.progress import TrainDisplay
    from charrnn.core.config import merge_options, preset_names
    from charrnn.training.distributed import is_main_process
    from charrnn.training.tensorboard import fan_out
    from charrnn.training.train import train as run_training

    if list_presets:
        for name in preset_names():
            out.print(name)
        return
    # the flags that name a config field, read by flag name (--out is `out`); preset < YAML < flags
    options = merge_options(flag_values(ctx), preset=preset, config=config)
    display = TrainDisplay(console, quiet=quiet)
    board = None
    if tensorboard or tensorboard_dir is not None:
        from charrnn.training.tensorboard import TensorBoardLogger

        board = TensorBoardLogger(tensorboard_dir)  # fails here, before training, if the extra is missing
    extra = []
    if watch:  # the watch's subscriber, handed to the engine (training never imports the watch)
        from charrnn.watch.subscriber import TrainWatch

        extra = [TrainWatch]
    try:
        summary = run_training(options, resume=resume, on_event=fan_out(display, board), started=started(),
                               subscribers=extra)
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
