"""diagnose on d2l 1.0's classes behind the adapters learners write (tests/d2l_style.py): each mistake gets
its finding and the right blame (the learner's line, or charrnn's own bug reported as ours); healthy
adapters, with a tuple or a bare state, pass with no fail."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import tests.d2l_style as d2l
from charrnn.cli.app import app
from charrnn.core.errors import CharRNNError
from charrnn.diagnose import DiagnoseOptions, diagnose_model
from tests.helpers import make_text

OPTS = DiagnoseOptions(max_chars=3000, seed=0)
STYLE = Path(d2l.__file__).resolve()


def _line(text: str) -> int:
    """The line of tests/d2l_style.py that holds `text` (the line a message must name)."""
    return next(i for i, line in enumerate(STYLE.read_text().splitlines(), 1) if line.strip().startswith(text))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("d2l") / "text.txt"
    path.write_text(make_text(8000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(text_file) -> dict:
    """Weights of a d2l RNN trained briefly (as the book does: random windows, fresh state, SGD, clip 1), so
    that a healthy model also passes the loss checks."""
    text = text_file.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    model = d2l.model_for(d2l.TupleState, vocab)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(250):
        starts = torch.randint(0, len(ids) - 33, (32,), generator=g)
        xy = ids[starts[:, None] + torch.arange(33)]
        logits, _ = model(xy[:, :-1], model.begin_state(32))
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), xy[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return {"vocab": vocab, "state": model.lm.state_dict()}


def _adapter(cls, trained):
    model = d2l.model_for(cls, trained["vocab"])
    model.lm.load_state_dict(trained["state"])
    return model.eval()


def _checks(report) -> dict:
    return {c.id: c for c in report.checks}


def _never_blames_the_user_for_charrnn(report):
    for c in report.checks:
        if c.values.get("raised_by") == "charrnn":
            assert "your model" not in c.message, c.message


@pytest.mark.parametrize("cls", [d2l.TupleState, d2l.BareState], ids=["tuple", "bare"])
def test_healthy_adapters_in_both_state_shapes_pass(cls, trained, text_file):
    report = diagnose_model(_adapter(cls, trained), text_file, OPTS)
    checks = _checks(report)
    assert not report.failed, [(c.id, c.message) for c in report.failed]
    for cid in ("state.shape", "state.row_independence", "state.call_independence", "loss.batch_invariance"):
        assert checks[cid].status == "ok", checks[cid].message
    assert checks["grad.bptt_norms"].status != "skip", checks["grad.bptt_norms"].message
    assert checks["grad.spectral_radius"].values["matrices"].keys() == {"lm.rnn.W_hh"}
    assert not any(c.status == "skip" and "error" in c.values for c in report.checks)


def test_the_2nd_editions_model_with_its_params_list_is_measured_whole(text_file):
    torch.manual_seed(0)
    vocab = sorted(set(text_file.read_text(encoding="utf-8")))
    checks = _checks(diagnose_model(d2l.Chapter8(vocab), text_file, OPTS))
    for cid in ("state.shape", "state.row_independence", "state.call_independence"):
        assert checks[cid].status == "ok", checks[cid].message
    assert checks["grad.bptt_norms"].status != "skip", checks["grad.bptt_norms"].message
    assert list(checks["grad.spectral_radius"].values["matrices"]) == ["params[1]"]  # W_hh: as wide as the state
    assert not any(c.status == "skip" and "error" in c.values for c in checks.values())


@pytest.mark.parametrize("cls, row", [(d2l.LastRow, "(16,)"), (d2l.FirstRow, "(16,)"), (d2l.RowMean, "(16,)"),
                                      (d2l.Flattened, "(48,)")], ids=["last", "first", "mean", "flattened"])
def test_a_state_that_loses_its_batch_axis_fails_state_shape_and_heads_the_report(cls, row, trained, text_file):
    report = diagnose_model(_adapter(cls, trained), text_file, OPTS)
    checks = _checks(report)
    shape = checks["state.shape"]
    assert shape.status == "fail" and report.headline.id == "state.shape", report.summary
    assert f"state is {row} where begin_state gives (3, 16)" in shape.message  # both shapes named
    assert "in the layout of your begin_state(B): a tensor (B, 16)" in shape.advice  # the learner's own layout
    bptt = checks["grad.bptt_norms"]
    assert bptt.status == "skip" and "state.shape" in bptt.message and "raised" not in bptt.message
    radius = checks["grad.spectral_radius"]  # from the weights: it does not inherit the skip
    assert radius.status in ("ok", "warn") and radius.values["max_spectral_radius"] > 0
    assert radius.values["bptt_max_growth"] is None and "state.shape" in radius.message
    _never_blames_the_user_for_charrnn(report)


def test_a_flattened_state_breaks_the_next_call_in_the_learners_code_and_points_to_state_shape(trained, text_file):
    checks = _checks(diagnose_model(_adapter(d2l.Flattened, trained), text_file, OPTS))
    raised = [c for c in checks.values() if c.values.get("raised_by") == "user"]
    assert raised, "no check reached the learner's failing line"
    line = _line("state = torch.tanh(torch.matmul(X, self.W_xh)")
    for c in raised:
        assert c.status == "skip" and c.message.startswith("your model raised RuntimeError")
        assert f"d2l_style.py:{line}" in c.message, c.message
        assert "symptom of state.shape" in c.message and c.advice.startswith("fix state.shape first")


@pytest.mark.parametrize("cls", [d2l.LastRowKept, d2l.FirstRowKept, d2l.RowMeanKept, d2l.LastRowTuple],
                         ids=["last", "first", "mean", "last-in-tuple"])
def test_one_rows_state_given_to_every_row_fails_row_independence(cls, trained, text_file):
    report = diagnose_model(_adapter(cls, trained), text_file, OPTS)
    checks = _checks(report)
    row = checks["state.row_independence"]
    assert row.status == "fail", row.message
    assert row.values["max_diff_within_call"] == 0.0 and row.values["max_diff_through_state"] > 1e-3
    assert "next call" in row.message
    if cls is d2l.LastRowKept:  # only perturbing the last row can see it
        last = row.values["rows"] - 1
        assert row.values["worst_row"] == last and "(the last)" in row.message
        assert row.values["per_row"][0]["through_state"] == 0.0
    layout = "a tuple of 1 tensor (B, 16)" if cls is d2l.LastRowTuple else "a tensor (B, 16)"
    assert layout in row.advice and "(layers, B, H)" not in row.advice
    if cls is d2l.LastRowTuple:
        assert checks["state.shape"].status == "fail" and report.headline.id == "state.shape"
        assert "symptom of state.shape" in row.message
    else:
        assert checks["state.shape"].status == "ok" and report.headline.id == "state.row_independence"
        assert "symptom of state.row_independence" in checks["loss.batch_invariance"].message or \
            checks["loss.batch_invariance"].status == "ok"


def test_a_bare_state_unpacked_by_d2l_is_the_learners_error_at_their_line(trained, text_file):
    with pytest.raises(CharRNNError) as info:
        diagnose_model(_adapter(d2l.BareUnpacked, trained), text_file, OPTS)
    msg = str(info.value)
    assert msg.startswith("your model fails on a (2, 8) batch: it raised ValueError: too many values to unpack")
    assert f"d2l_style.py:{_line('state, = state')} (`state, = state`)" in msg
    assert "begin_state(B) returns a tensor (B, 16)" in msg and "(zeros(...),)" in msg
    # CHARRNN_DEBUG=1 shows the learner's frames: the chained traceback runs into their file
    assert info.value.__cause__ is not None
    shown = "".join(traceback.format_exception(info.value))
    assert str(STYLE) in shown and "state, = state" in shown


def test_an_exception_in_the_learners_forward_names_their_line(trained, text_file):
    report = diagnose_model(_adapter(d2l.NoSingleSteps, trained), text_file, OPTS)
    bptt = _checks(report)["grad.bptt_norms"]
    line = _line('raise RuntimeError("this model needs at least two time steps")')
    assert bptt.status == "skip" and bptt.values["raised_by"] == "user"
    assert bptt.message.startswith("your model raised RuntimeError: this model needs at least two time steps "
                                   f"at d2l_style.py:{line}")
    assert "CHARRNN_DEBUG=1" in bptt.advice and "a tensor (B, 16)" in bptt.advice
    radius = _checks(report)["grad.spectral_radius"]
    assert radius.status in ("ok", "warn") and "grad.bptt_norms" in radius.message


def _planted_in_charrnn(module, name: str, message: str):
    """A function whose code object says it lives in `module`'s file: an exception it raises has its
    innermost frame in charrnn, as a bug of ours would."""
    scope: dict = {}
    exec(compile(f"def {name}(*args, **kwargs):\n    raise RuntimeError({message!r})\n", module.__file__, "exec"), scope)
    return scope[name]


def test_an_exception_raised_inside_charrnn_is_reported_as_ours(trained, text_file, monkeypatch):
    from charrnn.diagnose import measure_grad

    planted = _planted_in_charrnn(measure_grad, "spectral_radii", "The size of tensor a (8) must match (128)")
    monkeypatch.setattr(measure_grad, "spectral_radii", planted)
    report = diagnose_model(_adapter(d2l.TupleState, trained), text_file, OPTS)
    radius = _checks(report)["grad.spectral_radius"]
    assert radius.status == "skip" and radius.values["raised_by"] == "charrnn"
    assert "internal error in charrnn, not in your model" in radius.message and "measure_grad.py" in radius.message
    assert "CHARRNN_DEBUG=1" in radius.advice
    for c in report.checks:
        assert "your model raised" not in c.message, (c.id, c.message)
    assert _checks(report)["grad.bptt_norms"].status != "skip"  # the others still ran


def test_an_internal_error_at_the_first_call_is_not_turned_into_bad_input(trained, text_file, monkeypatch):
    from charrnn.diagnose import context

    monkeypatch.setattr(context.m, "logits_of", _planted_in_charrnn(context.m, "logits_of", "planted"))
    with pytest.raises(RuntimeError, match="planted") as info:
        diagnose_model(_adapter(d2l.TupleState, trained), text_file, OPTS)
    assert not isinstance(info.value, CharRNNError)  # the CLI reports it as an internal error, exit 3


def test_charrnn_debug_raises_the_learners_own_exception(trained, text_file, monkeypatch):
    monkeypatch.setenv("CHARRNN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="at least two time steps") as info:
        diagnose_model(_adapter(d2l.NoSingleSteps, trained), text_file, OPTS)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert Path(frames[-1].filename).resolve() == STYLE


def test_cli_factory_d2l_adapter_and_its_one_line_error(text_file, monkeypatch):
    monkeypatch.setenv("D2L_TEXT", str(text_file))
    runner = CliRunner()
    result = runner.invoke(app, ["diagnose", "--model-factory", f"{STYLE}:build_tuple", "--text", str(text_file),
                                 "--max-chars", "2000", "--json"])
    assert result.exit_code in (0, 1), result.output  # untrained: the loss checks may fail, nothing else
    report = json.loads(result.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["state.shape"]["status"] == "ok" and checks["state.row_independence"]["status"] == "ok"
    result = runner.invoke(app, ["diagnose", "--model-factory", f"{STYLE}:build_bare_unpacked", "--text", str(text_file)])
    assert result.exit_code == 2
    assert "your model fails on a (2, 8) batch: it raised ValueError" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_charrnn_debug_shows_the_learners_frames(tmp_path, text_file):
    import os
    import subprocess

    env = dict(os.environ, CHARRNN_DEBUG="1", D2L_TEXT=str(text_file), PYTHONPATH=str(STYLE.parents[1]))
    out = subprocess.run([sys.executable, "-m", "charrnn", "diagnose", "--model-factory", f"{STYLE}:build_bare_unpacked",
                          "--text", str(text_file)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    assert f'File "{STYLE}"' in out.stderr and "state, = state" in out.stderr  # the learner's frame, shown


def test_blame_reads_frames_not_file_names(tmp_path):
    """A notebook cell is the user's; a file of the user's inside a folder named charrnn is theirs too; a
    frame of the installed charrnn package is ours."""
    from charrnn.core.userfile import blame
    from charrnn.diagnose import measure

    def raised_in(filename: str) -> BaseException:
        scope: dict = {}
        exec(compile("def f():\n    raise KeyError('k')\n", filename, "exec"), scope)
        try:
            scope["f"]()
        except KeyError as e:
            return e

    folder = tmp_path / "charrnn"
    folder.mkdir()
    assert blame(raised_in("<ipython-input-3-abc>")).party == "user"
    assert blame(raised_in(str(folder / "model.py"))).party == "user"
    b = blame(raised_in(measure.__file__))
    assert b.party == "charrnn" and b.where().startswith("measure.py:2")
