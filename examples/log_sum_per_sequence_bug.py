"""A d2l-style RNN from scratch (chapter 8.5) whose loss is summed over each sequence and reported as if
it were per character, writing a JSON-lines log.

The loss of a minibatch is the cross-entropy summed over the T time steps of each sequence and averaged
over the batch: T times the per-character loss. The log calls it `train_loss`, so a learner compares it
with ln V or with another run at another --seq-len and concludes the model is hopeless. (Gradient
clipping keeps the T-times larger gradient from blowing up, so the model itself still learns.)

    python examples/log_sum_per_sequence_bug.py --text timemachine.txt --out log.jsonl
    charrnn diagnose --log log.jsonl --vocab-size 67 --batch-size 32 --seq-len 35   # the command it prints
    python examples/log_sum_per_sequence_bug.py --text timemachine.txt --out log.jsonl --fixed   # mean per character
"""

import argparse
import json
import math

import torch
from torch.nn import functional as F


def seq_data_iter_sequential(corpus, batch_size, num_steps):
    """d2l's sequential partitioning: B parallel streams, consecutive minibatches continue them."""
    offset = 0
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset: offset + num_tokens].reshape(batch_size, -1)
    Ys = corpus[offset + 1: offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, Xs.shape[1] // num_steps * num_steps, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


def get_params(vocab_size, num_hiddens):
    def normal(shape):
        return torch.randn(size=shape) * 0.01

    W_xh, W_hh, b_h = normal((vocab_size, num_hiddens)), normal((num_hiddens, num_hiddens)), torch.zeros(num_hiddens)
    W_hq, b_q = normal((num_hiddens, vocab_size)), torch.zeros(vocab_size)
    params = [W_xh, W_hh, b_h, W_hq, b_q]
    for p in params:
        p.requires_grad_(True)
    return params


def rnn(inputs, state, params):
    """inputs (T, B, V) one-hot; state (B, H) -> outputs (T*B, V), new state."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, outputs = state, []
    for X in inputs:
        H = torch.tanh(X @ W_xh + H @ W_hh + b_h)
        outputs.append(H @ W_hq + b_q)
    return torch.cat(outputs, dim=0), H


def grad_clipping(params, theta):
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    if norm > theta:
        for p in params:
            p.grad[:] *= theta / norm


def sequence_loss(params, X, Y, state, vocab_size, fixed):
    y_hat, state = rnn(F.one_hot(X.T, vocab_size).float(), state, params)
    l = F.cross_entropy(y_hat, Y.T.reshape(-1), reduction="none").reshape(Y.shape[1], Y.shape[0])  # (T, B)
    if fixed:
        return l.mean(), state
    return l.sum(dim=0).mean(), state  # BUG: summed over the sequence, averaged over the batch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--out", default="log.jsonl", help="where the JSON-lines log goes")
    p.add_argument("--fixed", action="store_true", help="report the mean per character (the fix)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--max-chars", type=int, default=30000, help="use the first N characters")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    text = open(args.text, encoding="utf-8").read()[: args.max_chars]
    vocab = sorted(set(text))
    corpus = torch.tensor([vocab.index(c) for c in text])
    cut = int(len(corpus) * 0.9)
    train_corpus, val_corpus = corpus[:cut], corpus[cut:]
    V, B, T = len(vocab), args.batch_size, args.seq_len
    params = get_params(V, args.hidden)

    with open(args.out, "w") as f:
        for epoch in range(1, args.epochs + 1):
            total, n = 0.0, 0
            state = torch.zeros(B, args.hidden)
            for X, Y in seq_data_iter_sequential(train_corpus, B, T):
                state = state.detach()
                l, state = sequence_loss(params, X, Y, state, V, args.fixed)
                for p_ in params:
                    p_.grad = None
                l.backward()
                grad_clipping(params, 1)
                with torch.no_grad():
                    for p_ in params:
                        p_ -= args.lr * p_.grad
                total, n = total + l.item(), n + 1
            with torch.no_grad():
                val_total, val_n = 0.0, 0
                vb = max(1, min(B, (len(val_corpus) - 1) // T))
                state = torch.zeros(vb, args.hidden)
                for X, Y in seq_data_iter_sequential(val_corpus, vb, T):
                    l, state = sequence_loss(params, X, Y, state, V, args.fixed)
                    val_total, val_n = val_total + l.item(), val_n + 1
            row = {"epoch": epoch, "train_loss": total / n, "val_loss": val_total / val_n}
            f.write(json.dumps(row) + "\n")
            ppl = f" (perplexity {math.exp(row['train_loss']):.1f})" if row["train_loss"] < 50 else ""
            print(f"epoch {epoch}: train loss {row['train_loss']:.3f}, val loss {row['val_loss']:.3f}{ppl}")
    print(f"charrnn diagnose --log {args.out} --vocab-size {V} --batch-size {B} --seq-len {T}")


if __name__ == "__main__":
    main()
