"""d2l's training loop (chapter 8: random or sequential minibatches, RNNModel around nn.GRU, SGD with
gradient clipping) with charrnn.watch in it: two lines. Plant one of a learner's bugs and watch it named.

    python examples/watch_d2l_loop.py --text ../shared/corpora/timemachine.txt                 # healthy
    python examples/watch_d2l_loop.py --text timemachine.txt --bug carry_random                # state across random windows
    python examples/watch_d2l_loop.py --text timemachine.txt --bug sum_T_over_B                # loss summed over T, / B
    python examples/watch_d2l_loop.py --text timemachine.txt --bug lr_small                    # lr 1000x too small
    python examples/watch_d2l_loop.py --text timemachine.txt --bug no_detach                   # state never detached

Findings are printed (through the logger "charrnn.watch") the step they become certain; the table at
the end; --metrics FILE also writes a metrics.jsonl for `charrnn plot FILE` and `charrnn diagnose --log FILE`.
"""

from __future__ import annotations

import argparse
import random
import re

import torch
from torch import nn
from torch.nn import functional as F

import charrnn


def load_corpus(path, max_tokens):
    with open(path, encoding="utf-8") as f:
        lines = [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in f]
    text = " ".join(line for line in lines if line)[:max_tokens]
    vocab = sorted(set(text))
    return [vocab.index(c) for c in text], vocab


def seq_data_iter_random(corpus, batch_size, num_steps):
    corpus = corpus[random.randint(0, num_steps - 1):]
    starts = list(range(0, (len(corpus) - 1) // num_steps * num_steps, num_steps))
    random.shuffle(starts)
    for i in range(0, len(starts) // batch_size * batch_size, batch_size):
        b = starts[i: i + batch_size]
        yield torch.tensor([corpus[j: j + num_steps] for j in b]), torch.tensor([corpus[j + 1: j + 1 + num_steps] for j in b])


def seq_data_iter_sequential(corpus, batch_size, num_steps):
    offset = random.randint(0, num_steps)
    n = (len(corpus) - offset - 1) // batch_size * batch_size
    Xs = torch.tensor(corpus[offset: offset + n]).reshape(batch_size, -1)
    Ys = torch.tensor(corpus[offset + 1: offset + 1 + n]).reshape(batch_size, -1)
    for i in range(0, Xs.shape[1] // num_steps * num_steps, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


class RNNModel(nn.Module):
    def __init__(self, vocab_size, num_hiddens):
        super().__init__()
        self.vocab_size, self.rnn = vocab_size, nn.GRU(vocab_size, num_hiddens)
        self.linear = nn.Linear(num_hiddens, vocab_size)

    def forward(self, inputs, state):
        Y, state = self.rnn(F.one_hot(inputs.T.long(), self.vocab_size).float(), state)  # (T, B, H)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state  # (T·B, V)

    def begin_state(self, batch_size):
        return torch.zeros(1, batch_size, self.rnn.hidden_size)


def grad_clipping(net, theta):
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in net.parameters()))
    if norm > theta:
        for p in net.parameters():
            p.grad[:] *= theta / norm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", required=True)
    ap.add_argument("--bug", choices=["carry_random", "sum_T_over_B", "lr_small", "no_detach"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-steps", type=int, default=35)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--metrics")
    args = ap.parse_args(argv)
    random.seed(0)
    torch.manual_seed(0)
    corpus, vocab = load_corpus(args.text, 10000 if args.bug == "no_detach" else 10 ** 9)
    use_random_iter = args.bug == "carry_random"
    net = RNNModel(len(vocab), args.hidden)
    lr = 1e-3 if args.bug == "lr_small" else 1.0
    updater = torch.optim.SGD(net.parameters(), lr)
    loss = nn.CrossEntropyLoss(reduction="none")

    with charrnn.watch(net, optimizer=updater, vocab_size=len(vocab), metrics=args.metrics) as w:   # line 1
        step = 0
        while step < args.steps:
            state = None
            batches = (seq_data_iter_random if use_random_iter else seq_data_iter_sequential)(corpus, args.batch_size, args.num_steps)
            for X, Y in batches:
                if state is None:
                    state = net.begin_state(X.shape[0])
                elif args.bug != "no_detach":
                    state.detach_()
                y = Y.T.reshape(-1)
                state_in = state
                y_hat, state = net(X, state)
                ls = loss(y_hat, y)
                l = ls.sum() / X.shape[0] if args.bug == "sum_T_over_B" else ls.mean()
                updater.zero_grad()
                l.backward(retain_graph=args.bug == "no_detach")
                grad_clipping(net, 1)
                if args.bug == "no_detach":  # word_language_model's update: the old graph stays usable
                    for p in net.parameters():
                        p.data.add_(p.grad, alpha=-lr)
                else:
                    updater.step()
                w.step(l, logits=y_hat, targets=y, inputs=X, state_in=state_in, state_out=state)   # line 2
                step += 1
                if step == args.steps:
                    break


if __name__ == "__main__":
    main()
