"""The training maths checked against independent computations: the logged loss is F.cross_entropy summed
over the batch / characters, one SGD step is p - lr*g (clipped or not), AdamW decays the weights by
lr*wd*p, dropout sits before the head, --amp really trains in bf16 where the CPU has it.

The runs train on a periodic text ("abcdefghij" repeated), where the target of every input character is
simply the next letter of the cycle, so a test knows every batch's targets from its inputs alone. A
global forward pre-hook (torch's public API, no charrnn internals patched) records what each training
forward received: the input ids, the state and the weights before that step.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from charrnn.core.checkpoint import load_checkpoint, model_config
from charrnn.core.models import CharRNN
from charrnn.training.train import train

CYCLE = "abcdefghij"
BASE = dict(model="lstm", hidden=16, layers=1, batch_size=4, seq_len=8, eval_every=1000, log_every=1,
            sample_every=0, seed=3, device="cpu", threads=1)


@pytest.fixture
def periodic(tmp_path):
    p = tmp_path / "cycle.txt"
    p.write_text(CYCLE * 300, encoding="utf-8")
    return p


@pytest.fixture
def spy():
    """Every forward of a CharRNN in training mode: (input ids, state, weights before the step)."""
    calls = []

    def hook(module, args):
        if isinstance(module, CharRNN) and module.training and not getattr(module, "independent", False):
            x, state = args[0], args[1] if len(args) > 1 else None
            state = tuple(s.detach().clone() for s in state) if isinstance(state, tuple) else \
                None if state is None else state.detach().clone()
            calls.append((x.clone(), state, {k: v.detach().clone() for k, v in module.state_dict().items()}))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield calls
    handle.remove()


def run(corpus, out, **over) -> dict:
    summary = train({**BASE, "corpus": str(corpus), "out": str(out), **over})
    return load_checkpoint(summary["run_dir"], prefer="last")


def targets(x: torch.Tensor, vocab: list[str]) -> torch.Tensor:
    """In the periodic text every character is followed by the next letter of the cycle."""
    nxt = {vocab.index(c): vocab.index(CYCLE[(i + 1) % len(CYCLE)]) for i, c in enumerate(CYCLE)}
    return x.clone().apply_(nxt.__getitem__)


def fresh_model(ckpt, weights) -> CharRNN:
    model = CharRNN(model_config(ckpt))
    model.load_state_dict(weights)
    model.independent = True  # not recorded by the spy
    return model.train()


def loss_and_grads(ckpt, call):
    """Independent: sum of F.cross_entropy over every character of the batch / characters, and its gradient."""
    x, state, weights = call
    model = fresh_model(ckpt, weights)
    logits, _ = model(x, state)
    y = targets(x, ckpt["vocab"])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum") / y.numel()
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def logged_losses(run_dir) -> list[float]:
    events = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [e["train_loss"] for e in events if e["event"] == "log"]


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_logged_loss_is_cross_entropy_sum_over_characters(periodic, tmp_path, spy, impl, sampling):
    ckpt = run(periodic, tmp_path / "run", impl=impl, sampling=sampling, max_steps=4, model="gru")
    assert len(spy) == 4
    want = [loss_and_grads(ckpt, call)[0] for call in spy]
    got = logged_losses(tmp_path / "run")
    assert got == pytest.approx(want, rel=1e-5), "the logged train_loss is not total NLL / characters of the batch"


def test_one_sgd_step_is_p_minus_lr_times_gradient_without_momentum(periodic, tmp_path, spy):
    """Three steps with --warmup 2: the learning rates are lr/2, lr, lr; no momentum, no stale gradient."""
    lr = 0.5
    ckpt = run(periodic, tmp_path / "run", optimizer="sgd", lr=lr, clip=0, max_steps=3, warmup=2)
    after = [call[2] for call in spy[1:]] + [ckpt["model"]]
    for k, (call, lr_k) in enumerate(zip(spy, [lr / 2, lr, lr])):
        _, grads = loss_and_grads(ckpt, call)
        for name, g in grads.items():
            expected = call[2][name] - lr_k * g
            torch.testing.assert_close(after[k][name], expected, rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"SGD step {k + 1}, {name}: not p - lr*g (momentum?) {m}")


def test_clip_scales_the_gradient_to_the_clip_norm(periodic, tmp_path, spy):
    lr, clip = 0.5, 1e-3
    ckpt = run(periodic, tmp_path / "run", optimizer="sgd", lr=lr, clip=clip, max_steps=1)
    _, grads = loss_and_grads(ckpt, spy[0])
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    assert norm > 10 * clip  # the tiny clip really binds
    scale = clip / (float(norm) + 1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(ckpt["model"][name], spy[0][2][name] - lr * scale * g, rtol=1e-5, atol=1e-7,
                                   msg=lambda m: f"{name}: the update is not lr * g * clip / ||g|| {m}")
    events = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    log = next(e for e in events if e["event"] == "log")
    assert log["grad_norm"] == pytest.approx(float(norm), rel=1e-4) and log["clipped"] == 1.0


def test_adamw_decays_the_weight_matrices_by_lr_times_decay_and_not_the_biases(periodic, tmp_path, spy):
    """AdamW is decoupled: after one step the decayed weights differ from the undecayed ones by -lr*wd*p0
    (the Adam part of the step is the same: same weights, same batch). Matrices (and the embedding) are
    decayed; biases are not (decaying the LSTM forget-gate bias would pull it towards forgetting)."""
    lr, wd = 0.01, 0.5
    plain = run(periodic, tmp_path / "plain", optimizer="adamw", lr=lr, weight_decay=0.0, max_steps=1)
    decayed = run(periodic, tmp_path / "decayed", optimizer="adamw", lr=lr, weight_decay=wd, max_steps=1)
    before = spy[0][2]
    assert all(torch.equal(before[n], spy[1][2][n]) for n in before)  # both runs started from the same weights
    assert any(p0.dim() < 2 for p0 in before.values()) and any(p0.dim() >= 2 for p0 in before.values())
    for name, p0 in before.items():
        want = -lr * wd * p0 if p0.dim() >= 2 else torch.zeros_like(p0)
        torch.testing.assert_close(decayed["model"][name] - plain["model"][name], want, rtol=1e-4, atol=1e-7,
                                   msg=lambda m: f"{name}: AdamW decay is not lr * weight_decay on matrices only {m}")
    assert sorted(g["weight_decay"] for g in decayed["optimizer"]["param_groups"]) == [0.0, wd]


def test_first_adam_step_is_lr_times_the_sign_of_the_l2_regularised_gradient(periodic, tmp_path, spy):
    """Adam's first step, bias-corrected, is lr * g' / (|g'| + eps) with g' = g + wd * p (Adam's coupled L2)
    on the weight matrices, g' = g on the biases (they are not decayed)."""
    lr, wd = 0.01, 0.5
    ckpt = run(periodic, tmp_path / "run", optimizer="adam", lr=lr, weight_decay=wd, clip=0, max_steps=1)
    _, grads = loss_and_grads(ckpt, spy[0])
    for name, g in grads.items():
        p0 = spy[0][2][name]
        g2 = g + (wd if p0.dim() >= 2 else 0.0) * p0
        torch.testing.assert_close(ckpt["model"][name], spy[0][2][name] - lr * g2 / (g2.abs() + 1e-8), rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"{name}: not Adam's first step with L2 weight decay {m}")


def test_evaluation_scores_with_dropout_off_and_restores_training_mode(periodic):
    from charrnn.core.config import ModelConfig
    from charrnn.training.evaluate import evaluate_ids

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(model="gru", vocab_size=10, hidden=32, dropout=0.5)).train()
    ids = torch.randint(0, 10, (300,))
    report = evaluate_ids(model, ids.numpy(), "cpu", streams=1, chunk=1000)
    assert model.training
    with torch.no_grad():
        logits, _ = model.eval()(ids[None, :-1])
    want = F.cross_entropy(logits[0], ids[1:], reduction="sum").item()
    assert report.chars == 299 and report.nll == pytest.approx(want, rel=1e-5)


def test_dropout_before_the_head_is_on_in_training_and_off_in_eval():
    torch.manual_seed(0)
    # one layer: the head's dropout is the only one; a mask per character, for the count below
    cfg_kw = dict(model="lstm", vocab_size=7, hidden=64, layers=1, dropout_kind="elementwise")
    from charrnn.core.config import ModelConfig

    model = CharRNN(ModelConfig(**cfg_kw, dropout=0.5))
    plain = CharRNN(ModelConfig(**cfg_kw, dropout=0.0))
    plain.load_state_dict(model.state_dict())
    x = torch.randint(0, 7, (8, 16))
    seen = []
    handle = model.head.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        model.train()
        model(x)
        model.eval()
        torch.testing.assert_close(model(x)[0], plain.eval()(x)[0], msg="dropout is not off in eval mode")
    finally:
        handle.remove()
    zeros = float((seen[0] == 0).double().mean())
    # 8*16*64 = 8192 Bernoulli(0.5) draws: standard error 0.0055; the band is 18 standard errors wide
    assert 0.45 < zeros < 0.55, f"{zeros:.3f} of the head's inputs are zero in training with --dropout 0.5"
    assert not (seen[1] == 0).any()


def test_training_forwards_run_in_training_mode_with_dropout(periodic, tmp_path, spy):
    """The loop's forward passes see dropout: the same weights and batch give a different loss than in eval."""
    ckpt = run(periodic, tmp_path / "run", dropout=0.5, max_steps=2, lr=1e-3)
    assert len(spy) == 2
    x, state, weights = spy[0]
    model = fresh_model(ckpt, weights).eval()
    y = targets(x, ckpt["vocab"])
    with torch.no_grad():
        eval_loss = float(F.cross_entropy(model(x, state)[0].flatten(0, 1), y.flatten()))
    assert abs(logged_losses(tmp_path / "run")[0] - eval_loss) > 1e-4


def _bf16_ok() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _amp_run(periodic, out):
    dtypes, events = [], []

    def hook(module, args, output):
        if isinstance(module, CharRNN) and module.training:
            dtypes.append(output[0].dtype)  # the logits as the forward produced them

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train({**BASE, "corpus": str(periodic), "out": str(out), "amp": True, "max_steps": 2}, on_event=events.append)
    finally:
        handle.remove()
    start = next(e.data for e in events if e.kind == "start")
    assert start["precision"] == ("bf16 autocast" if dtypes == [torch.bfloat16] * 2 else "fp32")  # what the start line says
    return dtypes, [e.data["message"] for e in events if e.kind == "warning"]


@pytest.mark.skipif(not _bf16_ok(), reason="this CPU has no native bf16; the fallback test covers it")
def test_amp_trains_in_bf16_where_the_cpu_has_it(periodic, tmp_path):
    dtypes, warnings = _amp_run(periodic, tmp_path / "run")
    assert dtypes == [torch.bfloat16] * 2, f"--amp on a bf16 CPU: the forward ran in {dtypes}"
    assert not any("--amp" in w for w in warnings)


def test_amp_without_bf16_warns_and_trains_in_fp32(periodic, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)  # a CPU without bf16
    dtypes, warnings = _amp_run(periodic, tmp_path / "run")
    assert dtypes == [torch.float32] * 2
    assert any("--amp" in w and "fp32" in w for w in warnings), warnings


@pytest.mark.skipif(not _bf16_ok(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("hidden, told", [(16, True), (256, False)])
def test_amp_says_when_narrow_scratch_layers_keep_fp32(periodic, tmp_path, hidden, told):
    events = []
    train({**BASE, "corpus": str(periodic), "out": str(tmp_path / "run"), "amp": True, "max_steps": 1,
           "model": "gru", "impl": "scratch", "hidden": hidden}, on_event=events.append)
    notes = [e.data["message"] for e in events if e.kind == "notice" and "--amp" in e.data["message"]]
    assert bool(notes) == told, notes
    if told:
        assert "16-wide scratch GRU layers keep fp32" in notes[0] and "256 units" in notes[0]
