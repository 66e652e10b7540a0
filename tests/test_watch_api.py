"""charrnn.watch's interface: the layouts it reads (against F.cross_entropy), what it never does (change a
tensor, call backward), what it says and where, the report's not-checked rows, the metrics file that
`charrnn plot` and `charrnn diagnose --log` read, and the checks that the loop tests do not reach
(nonfinite, grad_spike, flat, a negative loss, the update ratio explained by the loss scale)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import charrnn
from charrnn.core.errors import CharRNNError
from charrnn.watch.arrays import CharLoss, batch_time
from charrnn.watch.output import WatchWarning
from helpers import make_text

V, B, T, H = 12, 4, 6, 8


class Tiny(nn.Module):
    """Embedding -> GRU -> linear, batch first: x (B, T) -> logits (B, T, V)."""

    def __init__(self, hidden=H, lstm=False):
        super().__init__()
        self.emb, self.head = nn.Embedding(V, hidden), nn.Linear(hidden, V)
        self.rnn = (nn.LSTM if lstm else nn.GRU)(hidden, hidden, batch_first=True)

    def forward(self, x, state):
        out, state = self.rnn(self.emb(x), state)
        return self.head(out), state


def stream(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, n * T + 1), generator=g)


def test_the_cross_entropy_it_compares_with_is_F_cross_entropy_in_every_layout():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (B, T), generator=g)
    want = float(F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)))
    assert CharLoss(V).of(logits, y) == pytest.approx(want, rel=1e-6)  # (B, T, V) and (B, T)
    tm = logits.transpose(0, 1).reshape(-1, V)  # d2l: (T·B, V) rows time-major
    assert CharLoss(V).of(tm, y.T.reshape(-1)) == pytest.approx(want, rel=1e-6)  # with d2l's y = Y.T.reshape(-1)
    # with Y (B, T) itself the flattening is ambiguous: the one that makes the reported loss exact is kept
    ce = CharLoss(V)
    assert ce.of(tm, y, reported=want) == pytest.approx(want, rel=1e-6) and ce.pick == 1
    assert ce.of(tm, y) == pytest.approx(want, rel=1e-6)
    assert CharLoss(V).of(tm, y, reported=T * want, factors=(T, B)) == pytest.approx(want, rel=1e-6)
    probs = torch.softmax(logits, -1)
    assert CharLoss(V).of(probs, y) == pytest.approx(want, rel=1e-6)  # probabilities
    assert CharLoss(V).of(torch.log_softmax(logits, -1), y) == pytest.approx(want, rel=1e-6)  # log-probabilities
    # NumPy, seed 000's layout: a list of T (V, B) softmax outputs and one-hot targets (T, V, B)
    outputs = [p.T.numpy() for p in probs.transpose(0, 1)]
    one_hot = np.stack([np.eye(V)[:, yt] for yt in y.T.numpy()])  # (T, V, B)
    assert CharLoss(V).of(outputs, one_hot) == pytest.approx(want, rel=1e-5)
    assert CharLoss(V).of(logits, torch.zeros(3, dtype=torch.long)) is None  # cannot be aligned: not compared


def test_inputs_and_targets_are_read_into_streams_whichever_way_they_come():
    xy = stream(1)
    x, y = xy[:, :-1].numpy(), xy[:, 1:].numpy()  # (B, T)
    for inputs, targets in ((x, y), (x, y.T.reshape(-1)), (x.T, y.T), (torch.tensor(x), torch.tensor(y.reshape(-1)))):
        xs, ys, _ = batch_time(inputs, targets, V)
        assert (xs == x).all() and (ys == y).all()
    one_hot = np.stack([np.eye(V)[:, xt] for xt in x.T])  # (T, V, B)
    xs, ys, _ = batch_time(one_hot, y.T, V)
    assert (xs == x).all() and (ys == y).all()
    assert batch_time(x, np.zeros_like(y), V)[0] is None  # targets that are not the inputs moved on: no layout


def _loop(w, model, opt, steps, loss_fn=None, state_kw=True, lstm=False, seed=0):
    data = stream(steps, seed)
    state = None
    for k in range(steps):
        x, y = data[:, k * T:(k + 1) * T], data[:, k * T + 1:(k + 1) * T + 1]
        state_in = state
        logits, state = model(x, state)
        loss = (loss_fn or (lambda lg, t: F.cross_entropy(lg.reshape(-1, V), t.reshape(-1))))(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        kw = dict(state_in=state_in, state_out=state) if state_kw and state_in is not None else {}
        w.step(loss, logits=logits, targets=y, inputs=x, **kw)
        state = tuple(s.detach() for s in state) if lstm else state.detach()
    return w


def test_the_watch_changes_no_tensor_and_never_calls_backward(monkeypatch):
    torch.manual_seed(0)
    model = Tiny(lstm=True)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    w = charrnn.watch(model, optimizer=opt, vocab_size=V, output=None)
    data = stream(3)
    state = None
    for k in range(3):
        x, y = data[:, k * T:(k + 1) * T], data[:, k * T + 1:(k + 1) * T + 1]
        state_in = state
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward(retain_graph=True)
        opt.step()
        watched = [*model.parameters(), *(p.grad for p in model.parameters()), logits, loss, x, y, *state]
        before = [(t._version, t.clone(), t.requires_grad, t.grad_fn) for t in watched]

        def no_backward(*a, **k):
            raise AssertionError("the watch called backward")

        monkeypatch.setattr(torch.Tensor, "backward", no_backward)
        monkeypatch.setattr(torch.autograd, "backward", no_backward)
        w.step(loss, logits=logits, targets=y, inputs=x, state_in=state_in, state_out=state)
        monkeypatch.undo()
        for t, (version, value, rg, fn) in zip(watched, before):
            assert t._version == version and torch.equal(t, value) and t.requires_grad == rg and t.grad_fn is fn
        state = tuple(s.detach() for s in state)
    assert w.steps == 3 and w.findings == []


def test_unchecked_checks_name_the_argument_that_enables_them():
    w = charrnn.watch(output=None)
    for k in range(30):
        w.step(3.0 - 0.01 * k)
    text = w.report()
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "not checked" in rows["watch.loss_scale"] and "needs logits= and targets=" in rows["watch.loss_scale"]
    assert "needs a model or params=" in rows["watch.update_ratio"]
    assert "needs inputs=, targets=, state_in= and state_out=" in rows["watch.state_leak"]
    assert w.statuses["watch.nonfinite"] == "ok"


def test_output_channels_say_each_finding_once(caplog):
    torch.manual_seed(0)

    def summed(lg, t):
        return F.cross_entropy(lg.reshape(-1, V), t.reshape(-1), reduction="sum")

    lines = []
    model = Tiny()
    _loop(charrnn.watch(model, optimizer=torch.optim.Adam(model.parameters()), output=lines.append), model,
          torch.optim.Adam(model.parameters()), 6, summed)
    assert len(lines) == 1 and lines[0].startswith("watch.loss_scale fail at step 2:") and f"B·T = {B * T}" in lines[0]
    with caplog.at_level(logging.WARNING, logger="charrnn.watch"):
        _loop(charrnn.watch(model, output="log"), model, torch.optim.Adam(model.parameters()), 6, summed)
    assert [r.name for r in caplog.records] == ["charrnn.watch"] and "watch.loss_scale" in caplog.records[0].message
    with pytest.warns(WatchWarning, match="watch.loss_scale"):
        _loop(charrnn.watch(model, output="warnings"), model, torch.optim.Adam(model.parameters()), 6, summed)
    with pytest.raises(CharRNNError, match="output must be one of"):
        charrnn.watch(model, output="rich")


def test_as_a_context_manager_it_says_the_table_and_closes(tmp_path):
    said = []
    model = Tiny()
    with charrnn.watch(model, output=said.append, metrics=tmp_path / "m.jsonl") as w:
        _loop(w, model, torch.optim.Adam(model.parameters()), 3)
    assert said and said[-1].startswith("charrnn.watch after 3 steps:")
    with pytest.raises(CharRNNError, match="closed"):
        w.step(1.0)


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(CharRNNError, match="not both"):
        charrnn.watch(Tiny(), params={"a": np.zeros(2)})
    with pytest.raises(CharRNNError, match="vocab_size must be a positive integer"):
        charrnn.watch(vocab_size=0)
    with pytest.raises(CharRNNError, match="params must be"):
        charrnn.watch(params=3)


def test_metrics_jsonl_is_read_by_plot_and_by_diagnose_log_which_finds_the_same_factor(tmp_path):
    """A loop whose loss is summed over each sequence (x T): the watch says so, and `diagnose --log` reading
    the file the watch wrote names the same factor through the same search."""
    from charrnn.analysis.plot import read_curves
    from charrnn.diagnose.log import LogOptions, diagnose_log
    from charrnn.diagnose.training_log import read_log

    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    path = tmp_path / "metrics.jsonl"
    with charrnn.watch(model, optimizer=opt, vocab_size=V, output=None, metrics=path, log_every=5) as w:
        _loop(w, model, opt, 40, lambda lg, t: F.cross_entropy(lg.reshape(-1, V), t.reshape(-1), reduction="sum") / B)
    assert w.findings[0]["values"]["factor"] == T
    curves = read_curves(path)
    assert [x for x, _ in curves.train] == [5, 10, 15, 20, 25, 30, 35, 40]
    log = read_log(path)
    assert log.format == "charrnn metrics.jsonl" and len(log.x) == 8
    scale = next(c for c in diagnose_log(path, LogOptions(batch_size=B, seq_len=T, vocab_size=V)).checks if c.id == "log.scale")
    assert scale.status == "fail" and scale.values["factor"] == T


def test_a_weight_that_turns_inf_is_named_at_its_step():
    params = {"W": np.full((3, 3), 0.5), "b": np.zeros((3, 1))}
    w = charrnn.watch(params=params, output=None)
    for k in range(1, 8):
        if k == 5:
            params["W"][1, 2] = np.inf
        w.step(2.0, grads={"W": np.ones((3, 3)), "b": np.ones((3, 1))}, params=params)
    f = w.findings[0]
    assert (f["id"], f["step"], f["values"]["parameter"], f["values"]["what"]) == ("watch.nonfinite", 5, "W", "value")


def test_a_gradient_spike_names_the_parameter_and_the_step():
    rng = np.random.default_rng(0)
    params = {"U": rng.standard_normal((4, 4)), "V": rng.standard_normal((4, 4))}
    w = charrnn.watch(params=params, output=None)
    for k in range(1, 41):
        grads = {n: rng.standard_normal((4, 4)) * 0.1 for n in params}
        if k == 33:
            grads["V"] *= 1000.0
        w.step(2.0, grads=grads)
        params["U"] -= 0.01 * grads["U"]
        params["V"] -= 0.01 * grads["V"] / 1000.0 if k == 33 else 0.01 * grads["V"]
    f = w.findings[0]
    assert (f["id"], f["step"], f["values"]["parameter"], f["status"]) == ("watch.grad_spike", 33, "V", "warn")
    assert f["values"]["ratio"] > 100


def test_a_model_that_ignores_its_inputs_is_flat_at_the_unigram_entropy():
    """The forward pass fed a constant instead of the embedded inputs: the weights move, but the loss can
    only settle at the entropy of the character frequencies. Expected level: that entropy, from counts."""
    text = make_text(20000)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    n_v = len(chars)
    torch.manual_seed(0)
    head = nn.Linear(8, n_v)
    opt = torch.optim.Adam(head.parameters(), 0.05)
    w = charrnn.watch(head, optimizer=opt, vocab_size=n_v, output=None, flat_after=100)
    for k in range(150):
        y = ids[k * 64: (k + 1) * 64 + 0].reshape(4, 16)
        logits = head(torch.ones(4, 16, 8))  # the bug: a constant where the embedded inputs belong
        loss = F.cross_entropy(logits.reshape(-1, n_v), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss, logits=logits, targets=y)
    assert [f["id"] for f in w.findings] == ["watch.flat"]
    f = w.findings[0]
    counts = np.bincount(ids[: f["step"] * 64].numpy(), minlength=n_v)  # the targets seen up to that step
    p = counts[counts > 0] / counts.sum()
    assert f["values"]["floor"] == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-9)
    assert f["values"]["recent"] >= 0.99 * f["values"]["floor"] and "character frequencies" in f["message"]


def test_nll_on_raw_logits_gives_a_negative_loss_and_is_named():
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    w = _loop(charrnn.watch(model, output=None), model, opt, 4,
              lambda lg, t: F.nll_loss(lg.reshape(-1, V), t.reshape(-1)))
    f = w.findings[0]
    assert f["id"] == "watch.loss_scale" and "negative" in f["message"] and "log_softmax" in f["advice"]


def test_an_update_ratio_the_loss_scale_explains_is_not_stated_twice():
    """SGD on the batch's mean loss divided by len(training_set) = 2000: the gradients and every update are
    2000x too small. One finding, the loss scale; the update ratio's row says what explains it."""
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), 0.5)
    w = charrnn.watch(model, optimizer=opt, vocab_size=V, dataset_size=2000, output=None)
    _loop(w, model, opt, 60, lambda lg, t: F.cross_entropy(lg.reshape(-1, V), t.reshape(-1)) / 2000)
    assert [f["id"] for f in w.findings] == ["watch.loss_scale"]
    assert w.findings[0]["values"]["factor"] == pytest.approx(1 / 2000) and "SGD" in w.findings[0]["advice"]
    ratio = w.checks["watch.update_ratio"]
    assert ratio.status == "fail" and "explained by watch.loss_scale" in ratio.summary


def test_targets_that_are_not_what_the_loss_used_are_named():
    """The loop passes the inputs as targets= (its loss uses the real targets): the ratio of the reported
    loss to the cross-entropy it is compared with drifts as the model learns, and the watch says so."""
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    w = charrnn.watch(model, optimizer=opt, vocab_size=V, output=None)
    data = torch.arange(B * (40 * T + 1)).reshape(B, -1) % V  # a periodic text: learned within a few steps
    state = None
    for k in range(40):
        x, y = data[:, k * T:(k + 1) * T], data[:, k * T + 1:(k + 1) * T + 1]
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = state.detach()
        w.step(loss, logits=logits, targets=x)  # the bug is in the watch call: x, not y
    assert [f["id"] for f in w.findings] == ["watch.loss_scale"] and w.findings[0]["status"] == "warn"
    assert "does not follow these logits and targets" in w.findings[0]["message"]
