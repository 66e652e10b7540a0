"""charrnn: character-level RNN, GRU and LSTM language models.

The package is an engine with a thin command-line interface on top (`charrnn.cli`). Every stage lives
in the module named after it:

    config      -> ModelConfig / TrainConfig: flags, YAML keys and checkpoint entries alike
    corpora     -> find, download and verify text corpora
    dataset     -> a run's corpus: located, read, encoded and split
    data        -> decode, preprocess, build the vocabulary, split, batch (cache: big corpora)
    models      -> the CharRNN model and its interface (forward / begin_state)
    scratch     -> from-scratch RNN/GRU/LSTM layers with hand-written BPTT
    train       -> sets a training run up and runs it: configs -> corpus -> model -> loop
    loop        -> the training loop: train_step, and the events its subscribers act on
    subscribers -> metrics, log lines, evaluation, checkpoints and samples around the loop
    runstate    -> where a run is (the checkpoint's position) and its budget
    optim       -> optimizer and learning-rate schedule
    rundir      -> the run directory: lock, stale temporary files, config.yaml
    checkpoint  -> saving checkpoints, and the one loader (tensors and plain values only)
    evaluate    -> per-character loss of a model on a text
    sample      -> text generation after a warm-up prefix
    gradcheck   -> proof that the scratch gradients are right
    diagnose    -> measurements that find silent training bugs
"""

__version__ = "0.1.0"
