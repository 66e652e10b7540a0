"""Diagnose's own fail paths: each check below gets a real faulty input that must make it fire and a
healthy one that must not. A diagnostic that cannot fail is the worst kind of test.

The healthy run is the session's tiny charrnn run on a generated text (no corpus mirror needed);
copies of its metrics.jsonl or checkpoint are then doctored the way a bookkeeping bug writes it. The
reset-vs-carry models are written so that the right answer is known in closed form.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from charrnn.core.checkpoint import load_checkpoint, save_checkpoint
from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint, diagnose_model

OPTS = DiagnoseOptions(max_chars=3000, seed=0, seq_len=16)


def by_id(report) -> dict:
    return {c.id: c for c in report.checks}


@pytest.fixture(scope="module")
def healthy(tiny_run):
    """The session's tiny run (doctored only in copies) and its diagnosis."""
    return tiny_run.run, diagnose_checkpoint(tiny_run.run, options=OPTS)


def doctored(healthy, tmp_path, edit_event=None, edit_ckpt=None):
    """A copy of the healthy run with its metrics (and checkpoint) rewritten by `edit_*`, then diagnosed."""
    run = tmp_path / "doctored"
    shutil.copytree(healthy[0], run)
    if edit_event:
        events = [json.loads(line) for line in open(run / "metrics.jsonl")]
        (run / "metrics.jsonl").write_text("".join(json.dumps(edit_event(e) or e) + "\n" for e in events))
    for name in ("best.pt", "last.pt"):
        if edit_ckpt:
            ckpt = load_checkpoint(run / name)
            edit_ckpt(ckpt)
            save_checkpoint({k: v for k, v in ckpt.items() if k != "path"}, run / name)
    return by_id(diagnose_checkpoint(run, options=OPTS))


def test_healthy_run_passes_the_bookkeeping_checks(healthy):
    checks = by_id(healthy[1])
    assert checks["loss.recorded_match"].status == "ok", checks["loss.recorded_match"].message
    assert checks["loss.curves"].status != "fail", checks["loss.curves"].message
    assert checks["grad.training_record"].status != "fail"
    ratio = checks["loss.curves"].values["first_eval_val_over_train"]
    assert 0.5 <= ratio <= 2.0


def test_first_logged_loss_not_per_character_fails_curves(healthy, tmp_path):
    """÷ sequences instead of characters: the logged losses are seq_len (16) times too large."""
    def per_sequence(e):
        if e["event"] == "log":
            return {**e, "train_loss": e["train_loss"] * 16}

    check = doctored(healthy, tmp_path, per_sequence)["loss.curves"]
    assert check.status == "fail" and "not a per-character loss" in check.message, check.message


def test_train_and_val_on_different_scales_fail_curves(healthy, tmp_path):
    """The eval event's train loss ÷ batches instead of characters: at the first evaluation val and train
    differ by far more than a factor of 2."""
    def train_per_batch(e):
        if e["event"] == "eval" and e.get("train_loss") is not None:
            return {**e, "train_loss": e["train_loss"] * 8}

    check = doctored(healthy, tmp_path, train_per_batch)["loss.curves"]
    assert check.status == "fail" and "different scales" in check.message, check.message


def test_recorded_val_loss_that_is_not_per_character_fails(healthy, tmp_path):
    def times_t(e):
        if e["event"] == "eval" and e.get("val_loss") is not None:
            return {**e, "val_loss": e["val_loss"] * 16}

    def ckpt_times_t(ckpt):
        ckpt["val_loss"] = ckpt["val_loss"] * 16

    check = doctored(healthy, tmp_path, times_t, ckpt_times_t)["loss.recorded_match"]
    assert check.status == "fail" and "per-character" in check.message, check.message


def test_non_finite_recorded_gradient_norms_fail_the_training_record(healthy, tmp_path):
    def overflow(e):
        if e["event"] == "log" and e["step"] == 30:
            return {**e, "grad_norm": float("inf")}

    check = doctored(healthy, tmp_path, overflow)["grad.training_record"]
    assert check.status == "fail", check.message


# ----------------------------------------------------------------------------- reset vs carry, in closed form

TEXT = "aabb" * 600  # the next character depends on the last two: after (a,a) b, (a,b) b, (b,b) a, (b,a) a


class TwoBack(torch.nn.Module):
    """Predicts from the last two characters; the state is the one-hot previous character. From a fresh
    (zero) state the first prediction of a window is uniform, so carrying the state must help: per
    window of T, reset costs ln 2 / T nats/char more than carry."""

    vocab = ["a", "b"]
    vocab_size = 2

    def __init__(self):
        super().__init__()
        table = torch.zeros(2, 2, 2)
        for prev, cur, nxt in [(0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0)]:
            table[prev, cur, nxt] = 20.0
        self.table = torch.nn.Parameter(table)

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, 2, device=device)

    def forward(self, x, state):
        out = []
        for t in range(x.shape[1]):
            cur = F.one_hot(x[:, t], 2).float()
            out.append(torch.einsum("bp,bc,pcn->bn", state, cur, self.table))
            state = cur
        return torch.stack(out, 1), state


class Drifting(torch.nn.Module):
    """The state counts the characters seen and the logits lean towards 'a' as it grows: a fresh state is
    uniform (ln 2 per char), a carried one is ever more wrong on the 'b's, so carrying must hurt."""

    vocab = ["a", "b"]
    vocab_size = 2

    def __init__(self):
        super().__init__()
        self.lean = torch.nn.Parameter(torch.tensor([0.05, 0.0]))

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, 1, device=device)

    def forward(self, x, state):
        out = []
        for _ in range(x.shape[1]):
            state = state + 1
            out.append(state * self.lean)
        return torch.stack(out, 1), state


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("rc") / "aabb.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def test_carry_that_helps_is_measured_as_a_gain(text_file):
    check = by_id(diagnose_model(TwoBack(), text_file, OPTS))["state.reset_vs_carry"]
    v = check.values
    T = v["seq_len"]
    assert v["loss_reset"] == pytest.approx(math.log(2) / T, rel=0.02)  # one uniform guess per window
    assert v["loss_carry"] < 1e-3
    assert v["gain_carry"] == pytest.approx(v["loss_reset"] - v["loss_carry"], rel=1e-6) and v["gain_carry"] > 0
    # (an unrelated state helps this periodic text too, which the check may note; it must not call carry harmful)
    assert "raises the loss" not in check.message and "helps little" not in check.message, check.message


def test_carry_that_hurts_is_flagged(text_file):
    check = by_id(diagnose_model(Drifting(), text_file, OPTS))["state.reset_vs_carry"]
    v = check.values
    assert v["loss_carry"] > v["loss_reset"]  # the carried count is larger, the lean stronger
    assert v["gain_carry"] < 0
    assert check.status == "warn" and "raises the loss" in check.message, check.message


class TanhRNN(torch.nn.Module):
    """A plain tanh RNN with fixed random weights times `scale`: a large scale drives the units to +-1."""

    vocab = ["a", "b"]
    vocab_size = 2

    def __init__(self, scale: float, hidden: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W_xh = torch.nn.Parameter(torch.randn(2, hidden, generator=g) * scale)
        self.W_hh = torch.nn.Parameter(torch.randn(hidden, hidden, generator=g) * scale / hidden**0.5)
        self.W_hq = torch.nn.Parameter(torch.randn(hidden, 2, generator=g) * 0.1)

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.W_hh.shape[0], device=device)

    def forward(self, x, state):
        out = []
        for t in range(x.shape[1]):
            state = torch.tanh(F.one_hot(x[:, t], 2).float() @ self.W_xh + state @ self.W_hh)
            out.append(state @ self.W_hq)
        return torch.stack(out, 1), state


def test_saturated_tanh_units_are_flagged_and_moderate_ones_are_not(text_file):
    saturated = by_id(diagnose_model(TanhRNN(scale=20.0), text_file, OPTS))["grad.saturation"]
    assert saturated.status == "warn" and "saturated" in saturated.message, saturated.message
    moderate = by_id(diagnose_model(TanhRNN(scale=0.3), text_file, OPTS))["grad.saturation"]
    assert moderate.status == "ok", moderate.message


class SlowStart(TwoBack):
    """TwoBack that stays uniform until it has read K characters since its state was zero: after a reset
    it needs exactly K characters of prefix (the carried state has read more than that already)."""

    K = 40

    def begin_state(self, batch_size, device=None):
        return torch.zeros(batch_size, 3, device=device)  # [previous char one-hot (2), characters read]

    def forward(self, x, state):
        out = []
        prev, count = state[:, :2], state[:, 2:]
        for t in range(x.shape[1]):
            cur = F.one_hot(x[:, t], 2).float()
            ready = (count >= self.K).float()  # (B, 1)
            out.append(ready * torch.einsum("bp,bc,pcn->bn", prev, cur, self.table))
            prev, count = cur, count + 1
        return torch.stack(out, 1), torch.cat([prev, count], 1)


@pytest.mark.parametrize("model, needed", [(TwoBack(), 1), (SlowStart(), SlowStart.K)])
def test_warmup_counts_the_characters_a_reset_state_needs(text_file, model, needed):
    """Positions after a reset whose loss is still above the carried one: TwoBack's first (it lacks the
    previous character), SlowStart's first K (it reads K characters before predicting)."""
    check = by_id(diagnose_model(model, text_file, OPTS))["state.warmup"]
    assert check.values["warmup_chars"] == needed, check.message
    assert check.status == "ok"
