"""charrnn.watch on a NumPy RNN loop written the way seed 000's learner writes it: one-hot sequences of
shape (seq_len, vocab_size, batch_size), hidden_state (hidden_size, batch_size), forward_pass returning
softmax outputs and the hidden states, backward_pass returning (loss, grads), update_parameters
returning new arrays, one sentence of the training set per step.

The two bugs of seed 000: the loss (and with it the gradients) divided by len(training_set), and the
hidden state carried from one sentence into the next. Each is flagged within 100 steps by its check
alone; the loop without them by nothing over 1,000 steps. Expected values are computed here by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import charrnn.watch as cw
from helpers import make_text

HIDDEN = 32


def training_set(n_chars: int = 30000):
    """Sentences (one per line of the pseudo-English) as (inputs, targets) id lists; and the vocabulary."""
    text = make_text(n_chars)
    vocab = sorted(set(text))
    idx = {c: i for i, c in enumerate(vocab)}
    data = []
    for line in text.splitlines():
        ids = [idx[c] for c in line + "\n"]
        if len(ids) > 2:
            data.append((ids[:-1], ids[1:]))
    return data, len(vocab)


def one_hot_encode_sequence(sequence, vocab_size):
    """(seq_len, vocab_size, 1): the seed's layout, batch last."""
    out = np.zeros((len(sequence), vocab_size, 1))
    out[np.arange(len(sequence)), sequence, 0] = 1.0
    return out


def init_params(vocab_size, rng):
    return {"U": rng.standard_normal((HIDDEN, vocab_size)) * 0.1, "V": rng.standard_normal((HIDDEN, HIDDEN)) * 0.1,
            "W": rng.standard_normal((vocab_size, HIDDEN)) * 0.1, "b_hidden": np.zeros((HIDDEN, 1)),
            "b_out": np.zeros((vocab_size, 1))}


def softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def forward_pass(inputs, hidden_state, params):
    outputs, hidden_states = [], [hidden_state]
    for t in range(len(inputs)):
        hidden_state = np.tanh(params["U"] @ inputs[t] + params["V"] @ hidden_state + params["b_hidden"])
        outputs.append(softmax(params["W"] @ hidden_state + params["b_out"]))  # (vocab_size, 1)
        hidden_states.append(hidden_state)
    return outputs, hidden_states


def backward_pass(inputs, outputs, hidden_states, targets, params, norm):
    """The summed NLL of the sequence and its gradients, both divided by `norm`."""
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    d_h_next = np.zeros_like(hidden_states[0])
    loss = 0.0
    for t in reversed(range(len(outputs))):
        loss += -np.sum(targets[t] * np.log(outputs[t] + 1e-12))
        d_o = outputs[t] - targets[t]
        grads["W"] += d_o @ hidden_states[t + 1].T
        grads["b_out"] += d_o
        d_h = params["W"].T @ d_o + d_h_next
        d_f = (1 - hidden_states[t + 1] ** 2) * d_h
        grads["U"] += d_f @ inputs[t].T
        grads["V"] += d_f @ hidden_states[t].T
        grads["b_hidden"] += d_f
        d_h_next = params["V"].T @ d_f
    return loss / norm, {k: g / norm for k, g in grads.items()}


def clip_gradients(grads, max_norm=5.0):
    total = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    return {k: g * (max_norm / total) for k, g in grads.items()} if total > max_norm else grads


def update_parameters(params, grads, lr):
    return {k: params[k] - lr * grads[k] for k in params}


def run(bug: str | None, steps: int, lr: float = 0.3, seed: int = 0, **watch_kw):
    """The seed's training loop, watched. bugs: "len_dataset" (loss / len(training_set)), "leak" (the
    hidden state of one sentence starts the next)."""
    rng = np.random.default_rng(seed)
    data, vocab_size = training_set()
    params = init_params(vocab_size, rng)
    w = cw.watch(params=params, vocab_size=vocab_size, output=None, **watch_kw)
    w.by_hand = []  # (T, per-character NLL) of each step, computed here from the outputs
    hidden_state = np.zeros((HIDDEN, 1))
    step = 0
    while step < steps:
        for i in rng.permutation(len(data)):
            inputs, targets = data[i]
            inputs_one_hot = one_hot_encode_sequence(inputs, vocab_size)
            targets_one_hot = one_hot_encode_sequence(targets, vocab_size)
            if bug != "leak":
                hidden_state = np.zeros((HIDDEN, inputs_one_hot.shape[2]))
            outputs, hidden_states = forward_pass(inputs_one_hot, hidden_state, params)
            norm = len(data) if bug == "len_dataset" else len(inputs)
            loss, grads = backward_pass(inputs_one_hot, outputs, hidden_states, targets_one_hot, params, norm)
            grads = clip_gradients(grads)
            w.by_hand.append((len(targets), -np.mean(np.log([outputs[t][c, 0] for t, c in enumerate(targets)]))))
            w.step(loss, logits=outputs, targets=targets_one_hot, inputs=inputs_one_hot, state_in=hidden_state,
                   state_out=hidden_states[-1], grads=grads, params=params)
            params = update_parameters(params, grads, lr)
            hidden_state = hidden_states[-1]  # the leak's carry; the healthy loop resets it above
            step += 1
            if step == steps:
                break
    return w, len(data)


@pytest.mark.parametrize("bug, check", [("len_dataset", "watch.loss_scale"), ("leak", "watch.state_leak")])
def test_each_bug_of_seed_000_is_flagged_within_100_steps_by_its_check_only(bug, check):
    w, size = run(bug, 100, dataset_size=None if bug == "leak" else training_set()[0].__len__())
    assert [f["id"] for f in w.findings] == [check], [f["message"] for f in w.findings]
    assert w.findings[0]["step"] <= 100 and w.findings[0]["status"] == "fail"


def test_the_len_training_set_factor_is_named_and_its_values_checked_by_hand():
    size = len(training_set()[0])
    w, _ = run("len_dataset", 5, dataset_size=size)
    f = w.findings[0]
    T, by_hand = w.by_hand[f["step"] - 1]
    assert f["values"]["B"] == 1 and f["values"]["T"] == T and f["values"]["factor"] == pytest.approx(T / size)
    assert f["values"]["corresponds_to"].startswith(f"T/len(dataset) = {T}/{size}")
    assert "len(training_set)" in f["advice"] and "SGD" not in f["advice"]  # no optimizer object: nothing said of it
    assert f["values"]["per_char"] == pytest.approx(by_hand, rel=1e-5)  # -mean log p[target], by hand in the loop
    assert f["values"]["reported"] == pytest.approx(by_hand * T / size, rel=1e-5)


def test_without_dataset_size_the_divisor_is_inferred_from_sentences_of_different_lengths():
    """Every sentence has its own T; only one constant N makes T/N every step's exact ratio."""
    w, size = run("len_dataset", 10)
    assert [f["id"] for f in w.findings] == ["watch.loss_scale"] and w.findings[0]["status"] == "fail"
    values = w.findings[0]["values"]
    assert values["dataset_size_inferred"] == size and "pass dataset_size= to confirm" in values["corresponds_to"]


def test_the_leak_is_told_from_shuffled_windows_by_the_sentence_lengths():
    f = run("leak", 40)[0].findings[0]
    assert "sequence length changes between batches" in f["message"] and "np.zeros" in f["advice"]
    assert f["values"]["rows_carried"] == 1.0 and f["values"]["rows_continuing"] < 0.3


def test_the_healthy_loop_is_flagged_by_nothing_over_1000_steps():
    w, size = run(None, 1000, dataset_size=len(training_set()[0]))
    assert w.findings == [], [f["message"] for f in w.findings]
    assert w.statuses["watch.flat"] == "ok" and w.statuses["watch.loss_scale"] == "ok"
    assert w.statuses["watch.state_leak"] == "ok" and w.statuses["watch.state_not_detached"] == "not checked"
