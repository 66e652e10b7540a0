"""charrnn: character-level RNN, GRU and LSTM language models.

The package is an engine with a thin command-line interface on top (`charrnn.cli`). Every stage lives
in the module named after it:

    corpora     -> find, download and verify text corpora
    data        -> decode, preprocess, build the vocabulary, split, batch
    models      -> the CharRNN model and its interface (forward / begin_state)
    scratch     -> from-scratch RNN/GRU/LSTM layers with hand-written BPTT
    train       -> the training loop, its budgets, metrics and checkpoints
    checkpoint  -> saving and loading checkpoints (tensors and plain values only)
    evaluate    -> per-character loss of a model on a text
    sample      -> text generation after a warm-up prefix
    gradcheck   -> proof that the scratch gradients are right
    diagnose    -> measurements that find silent training bugs
"""

__version__ = "0.1.0"
