"""charrnn.watch on PyTorch loops written the way d2l writes them (seed 004: load_data_time_machine's
random and sequential iterators, RNNModel around nn.GRU with one-hot inputs, train_epoch_ch8 with
grad_clipping and SGD), each with one bug a learner makes, and the same loop without it.

Each buggy loop is flagged within 100 steps by the check meant for it and by no other; its healthy twin
by nothing over 1,000 steps. The models are tiny (16 hidden units, B = 8, T = 12) so that 1,000 steps
take seconds.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import charrnn.watch as cw
from helpers import make_text

B, T, H = 8, 12, 16


def load_corpus(max_tokens: int = 20000):
    """d2l's load_corpus_time_machine on the tests' pseudo-English: letters and spaces, lower case."""
    lines = [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in make_text(max_tokens + 2000).splitlines()]
    text = " ".join(lines)[:max_tokens]
    idx_to_token = sorted(set(text))
    token_to_idx = {c: i for i, c in enumerate(idx_to_token)}
    return [token_to_idx[c] for c in text], idx_to_token


def seq_data_iter_random(corpus, batch_size, num_steps):
    corpus = corpus[random.randint(0, num_steps - 1):]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    random.shuffle(initial_indices)
    num_batches = num_subseqs // batch_size
    for i in range(0, batch_size * num_batches, batch_size):
        starts = initial_indices[i: i + batch_size]
        yield torch.tensor([corpus[j: j + num_steps] for j in starts]), torch.tensor([corpus[j + 1: j + 1 + num_steps] for j in starts])


def seq_data_iter_sequential(corpus, batch_size, num_steps):
    offset = random.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = torch.tensor(corpus[offset: offset + num_tokens]).reshape(batch_size, -1)
    Ys = torch.tensor(corpus[offset + 1: offset + 1 + num_tokens]).reshape(batch_size, -1)
    for i in range(0, num_steps * (Xs.shape[1] // num_steps), num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


class RNNModel(nn.Module):
    """d2l's concise model: one-hot inputs (T, B, V) into the recurrent layer, a linear head on (T·B, H)."""

    def __init__(self, rnn_layer, vocab_size):
        super().__init__()
        self.rnn, self.vocab_size = rnn_layer, vocab_size
        self.linear = nn.Linear(rnn_layer.hidden_size, vocab_size)

    def forward(self, inputs, state):
        X = F.one_hot(inputs.T.long(), self.vocab_size).to(torch.float32)
        Y, state = self.rnn(X, state)
        return self.linear(Y.reshape((-1, Y.shape[-1]))), state

    def begin_state(self, batch_size=1):
        if isinstance(self.rnn, nn.LSTM):
            return (torch.zeros((1, batch_size, self.rnn.hidden_size)), torch.zeros((1, batch_size, self.rnn.hidden_size)))
        return torch.zeros((1, batch_size, self.rnn.hidden_size))


def grad_clipping(net, theta):
    params = [p for p in net.parameters() if p.requires_grad]
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


def sgd_data(net, lr):
    """pytorch/examples word_language_model's update: p.data.add_(p.grad, alpha=-lr). Through .data the
    step bumps no version counter, so a graph kept from an earlier batch still runs backward."""
    for p in net.parameters():
        p.data.add_(p.grad, alpha=-lr)


def run(bug: str | None, steps: int, *, lstm: bool = False, lr: float = 1.0, seed: int = 0, data_update: bool = False,
        bare: bool = False, **watch_kw):
    """train_ch8 for `steps` steps with one bug planted, watched; returns the watch (and with `bare` a
    second watch on the same loop that is given only the loss and the model).

    bugs: "no_detach" (state carried with its graph: backward(retain_graph=True) makes it run, and the
    .data update of word_language_model lets the old graph stay valid),
    "carry_random" (random iterator, state never reset), "lr_small" (lr / 1000),
    "sum_T_over_B" (the loss summed over the time steps and divided by B)."""
    random.seed(seed)
    torch.manual_seed(seed)
    corpus, vocab = load_corpus()
    use_random_iter = bug == "carry_random" or (bug is None and seed % 2 == 1)
    layer = nn.LSTM(len(vocab), H) if lstm else nn.GRU(len(vocab), H)
    net = RNNModel(layer, len(vocab))
    data_update = data_update or bug == "no_detach"
    updater = torch.optim.SGD(net.parameters(), lr / 1000 if bug == "lr_small" else lr)
    loss = nn.CrossEntropyLoss(reduction="none")
    w = cw.watch(net, optimizer=updater, vocab_size=len(vocab), output=None, **watch_kw)
    w_bare = cw.watch(net, output=None) if bare else None
    step = 0
    while step < steps:
        state = None
        it = (seq_data_iter_random if use_random_iter else seq_data_iter_sequential)(corpus, B, T)
        for X, Y in it:
            if state is None or (use_random_iter and bug != "carry_random"):
                state = net.begin_state(batch_size=X.shape[0])
            elif bug != "no_detach":
                for s in (state if isinstance(state, tuple) else (state,)):
                    s.detach_()
            y = Y.T.reshape(-1)
            state_in = state
            y_hat, state = net(X, state)
            ls = loss(y_hat, y.long())
            l = ls.sum() / X.shape[0] if bug == "sum_T_over_B" else ls.mean()
            updater.zero_grad()
            l.backward(retain_graph=bug == "no_detach")
            grad_clipping(net, 1)
            sgd_data(net, lr) if data_update else updater.step()
            w.step(l, logits=y_hat, targets=y, inputs=X, state_in=state_in, state_out=state)
            if w_bare is not None:
                w_bare.step(l)
            step += 1
            if step == steps:
                break
    return (w, w_bare) if bare else w


BUGS = {"no_detach": "watch.state_not_detached", "carry_random": "watch.state_across_random",
        "lr_small": "watch.update_ratio", "sum_T_over_B": "watch.loss_scale"}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_is_flagged_within_100_steps_by_its_check_only(bug):
    w, bare = run(bug, 100, bare=bug == "no_detach") if bug == "no_detach" else (run(bug, 100), None)
    assert [f["id"] for f in w.findings] == [BUGS[bug]], [f["message"] for f in w.findings]
    assert w.findings[0]["step"] <= 100 and w.findings[0]["status"] == "fail"
    if bare is not None:  # given only the loss and the model, the watch sees the steps slow down
        assert [f["id"] for f in bare.findings] == ["watch.state_not_detached"], [f["message"] for f in bare.findings]
        assert bare.findings[0]["values"]["last_ms"] > 4 * bare.findings[0]["values"]["first_ms"]
        assert "needs logits= and targets=" in bare.report()


@pytest.mark.parametrize("seed, lstm, data_update", [(0, False, False), (1, False, False), (2, True, False), (4, False, True)])
def test_the_healthy_loops_are_flagged_by_nothing_over_1000_steps(seed, lstm, data_update):
    """Sequential with the state carried and detached (seed 0; LSTM: seed 2; the .data update of the
    no_detach loop: seed 4), random with the state reset (seed 1)."""
    w, bare = run(None, 1000, lstm=lstm, seed=seed, data_update=data_update, bare=True)
    assert w.findings == [] and bare.findings == [], [f["message"] for f in w.findings + bare.findings]
    statuses = w.statuses
    assert all(v == "ok" for v in statuses.values()), statuses


def test_summed_loss_factor_is_T_against_an_independent_cross_entropy():
    w = run("sum_T_over_B", 3)
    f = w.findings[0]
    assert f["values"]["factor"] == T and f["values"]["corresponds_to"].startswith(f"T = {T}")
    # the per-character loss it compared with, recomputed here with F.cross_entropy on the same model's logits
    assert f["values"]["reported"] / f["values"]["per_char"] == pytest.approx(T, rel=1e-5)
    assert "divide each sequence's summed loss by T" in f["advice"] and "SGD" in f["advice"]


def test_the_lr_finding_names_the_learning_rate_and_the_ratio():
    f = run("lr_small", 100).findings[0]
    assert f["values"]["lr"] == pytest.approx(1e-3)
    assert f["values"]["typical"] < 1e-4 and "raise the learning rate" in f["advice"]


def test_the_example_prints_the_finding_the_readme_shows(tmp_path, caplog):
    """examples/watch_d2l_loop.py, as in README "Watch your own loop", on the tests' pseudo-English."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "watch_d2l_loop.py"
    spec = importlib.util.spec_from_file_location("_watch_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    text = tmp_path / "text.txt"
    text.write_text(make_text(20000), encoding="utf-8")
    with caplog.at_level("WARNING", logger="charrnn.watch"):
        example.main(["--text", str(text), "--bug", "sum_T_over_B", "--steps", "3", "--hidden", "16"])
    lines = [r.message for r in caplog.records]
    assert lines[0].startswith("watch.loss_scale fail at step 2:") and "factor 35 = T = 35" in lines[0]
    assert lines[-1].startswith("charrnn.watch after 3 steps:")
