"""charrnn: character-level RNN, GRU and LSTM language models.

The package is an engine with a thin command-line interface on top (`charrnn.cli`). The stages, in the
order data flows through them (each imports only from the ones above it in this list):

    core/       the ground floor: errors, config (ModelConfig / TrainConfig), device, vocab (text -> ids),
                models (CharRNN), scratch (hand-written BPTT layers), checkpoint (the one loader), userfile
    data/       corpora, many-file documents, the encoded-corpus cache, splits and batches, a run's corpus
    generate/   sampling, beam search, stop strings, the interactive session
    training/   run set-up, the loop and its subscribers, run state, optimiser, evaluation, run directory,
                fine-tuning, DDP, TensorBoard
    analysis/   a checkpoint's text, surprisal, horizon, n-gram yardstick, activations, probe, the explore
                page and its server, curves and pictures
    gradcheck/  the engine's gradient check, the user's, and what a failure means
    diagnose/   why a loss is flat or rising: checks on a trained model, and on a learner's own log
    cli/        the `charrnn` command: parsing and rendering only
    presets/    the YAML recipes `train --preset` reads
"""

__version__ = "0.1.0"


def watch(*args, **kwargs):
    """Checks inside your own training loop, NumPy or PyTorch, that name the bug while it trains.

        w = charrnn.watch(model, optimizer=opt, vocab_size=V)     # or charrnn.watch(params=params_dict)
        w.step(loss, logits=logits, targets=y, state_in=h0, state_out=h, inputs=x)

    Returns a `charrnn.watch.core.Watch` (see its docstring and README "Watch your own loop")."""
    from charrnn.watch.core import watch as _watch

    return _watch(*args, **kwargs)
