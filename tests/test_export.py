"""charrnn export: ONNX and the NumPy sampler against torch, and the refusals.

The models are random (weights ~ N(0, 0.5^2), the recurrent ones smaller, so that the next-character distributions are far from
uniform and greedy text wanders over the vocabulary), small and saved as real checkpoints: an RNN of two
one-hot layers, a GRU of two layers over an embedding, an LSTM of two one-hot layers, and an LSTM on the
scratch engine. Every reference is torch's: `charrnn sample -t 0` through the CLI, or the model's
sequence forward (nn.RNN/GRU/LSTM over the whole text, a different path from both the exported step and
charrnn's own single-step sampler).
"""

import ast
import importlib.util
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.core.checkpoint import load, save_checkpoint
from charrnn.core.config import ModelConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.models import CharRNN
from charrnn.core.vocab import preprocess
from charrnn.export.bundle import bundle
from charrnn.export.export import export

from helpers import cli, error_line

ort = pytest.importorskip("onnxruntime", reason="the onnxruntime package is not installed (pip install -e '.[test]')")

# a vocabulary with a non-ASCII and an astral character (two UTF-16 code units in the browser)
CHARS = tuple(sorted(set("\n abcdefghijklmnopqrstuvwxyz,.;!?'ABCDEFGHIJ0123é") | {"😀"}))
MODELS = {  # name -> ModelConfig fields
    "rnn": dict(model="rnn", layers=2, hidden=24, embed=0, impl="torch"),
    "gru": dict(model="gru", layers=2, hidden=24, embed=8, impl="torch", dropout=0.3),
    "lstm": dict(model="lstm", layers=2, hidden=24, embed=0, impl="torch", dropout=0.3),
    "lstm-scratch": dict(model="lstm", layers=1, hidden=20, embed=6, impl="scratch"),
}
PREFIX = "the cat sat; é😀 "


def make_checkpoint(path: Path, chars=CHARS, seed: int = 0, std: float = 0.5, preprocessing=None, **cfg) -> Path:
    """A checkpoint of a random CharRNN, written by charrnn's own saver; returns its path."""
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(chars), **cfg)
    model = CharRNN(config)
    with torch.no_grad():  # recurrent weights of spectral radius about 0.9: long runs do not turn chaotic,
        for name, p in model.named_parameters():  # where float32 rounding alone would decide the text
            p.normal_(0.0, 0.9 / config.hidden**0.5 if "weight_hh" in name else std)
    save_checkpoint({"model_config": asdict(config), "model": model.state_dict(), "vocab": list(chars),
                     "preprocessing": preprocessing or {}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("export-models")
    return {name: make_checkpoint(d / f"{name}.pt", seed=i, **cfg) for i, (name, cfg) in enumerate(MODELS.items())}


def greedy_cli(ckpt, prefix: str, length: int) -> str:
    """What `charrnn sample -t 0` prints, without its final newline."""
    out = cli("sample", ckpt, "-t", "0", "-n", length, "-p", prefix).stdout
    assert out.endswith("\n")
    return out[:-1]


def torch_probs(ckpt, text: str) -> np.ndarray:
    """(len(text) - 1, V) float64: p(next character | text so far) after each character but the last,
    from one sequence forward of the checkpoint's own engine."""
    ck = load(ckpt, "cpu")
    ids = torch.as_tensor(ck.vocab.encode(text).astype(np.int64))[None]  # (1, n)
    with torch.no_grad():
        logits, _ = ck.model(ids[:, :-1])
    return logits[0].double().softmax(-1).numpy()


def load_sampler(path: Path):
    """The exported charrnn_sampler.py as a module, imported from where export wrote it."""
    spec = importlib.util.spec_from_file_location(f"exported_sampler_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_logits_follow_torch_for_1000_steps_at_batch_3(checkpoints, tmp_path, name):
    from charrnn.export.to_onnx import OnnxModel

    path = export(checkpoints[name], "onnx", tmp_path / "m.onnx").files[0]
    om = OnnxModel(path)
    ck = load(checkpoints[name], "cpu")
    ids = torch.randint(0, len(CHARS), (3, 1000), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, ref_state = ck.model(ids)  # (3, 1000, V): the sequence engine, not a step loop
    state, worst = om.zero_state(3), 0.0
    for t in range(ids.shape[1]):
        logits, state = om.run(ids[:, t].numpy(), state)
        worst = max(worst, float(np.abs(logits - ref[:, t].numpy()).max()))
    assert worst < 1e-4, f"ONNX logits drift from torch's by {worst:.2e}"
    h = ref_state[0] if isinstance(ref_state, tuple) else ref_state
    assert np.abs(state["h"] - h.numpy()).max() < 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_greedy_text_is_charrnn_sample_t0(checkpoints, tmp_path, name):
    from charrnn.export.charrnn_sampler import generate
    from charrnn.export.to_onnx import OnnxModel

    model = OnnxModel(export(checkpoints[name], "onnx", tmp_path / "m.onnx").files[0])
    for prefix in (PREFIX, ""):  # "" starts from the seed character, as charrnn does
        ours = prefix + "".join(ch for ch, _ in generate(model, prefix, 500, temperature=0))
        assert ours == greedy_cli(checkpoints[name], prefix, 500)


def test_onnx_carries_the_vocabulary_and_preprocessing_and_a_dynamic_batch(tmp_path):
    import onnx

    ckpt = make_checkpoint(tmp_path / "c.pt", chars=tuple(" abcdefgh"), preprocessing={"letters_only": True},
                           model="gru", layers=1, hidden=8)
    path = export(ckpt, "onnx", tmp_path / "m.onnx").files[0]
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["vocab"]) == list(" abcdefgh")
    assert json.loads(meta["preprocessing"]) == {"lowercase": False, "letters_only": True}
    assert meta["seed_char"] == " "
    ids = m.graph.input[0]
    assert ids.name == "ids" and ids.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in m.graph.output] == ["logits", "h_out"]


# -------------------------------------------------------------------------------------------- NumPy


@pytest.mark.parametrize("name", list(MODELS))
def test_numpy_sampler_greedy_text_is_charrnn_sample_t0(checkpoints, tmp_path, name):
    files = export(checkpoints[name], "numpy", tmp_path / "np").files
    assert [f.name for f in files] == ["model.npz", "charrnn_sampler.py"]
    sampler = load_sampler(files[1])
    model = sampler.CharModel(files[0])
    for prefix in (PREFIX, ""):
        ours = prefix + "".join(ch for ch, _ in sampler.generate(model, prefix, 500, temperature=0))
        assert ours == greedy_cli(checkpoints[name], prefix, 500)


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_numpy_sampler_draws_from_torchs_probabilities(checkpoints, tmp_path, name):
    """A seeded T=1 sample: the distribution it drew each character from is torch's for the text so far
    (within 1e-5), the same seed gives the same text, and the draws are not just the argmax."""
    files = export(checkpoints[name], "numpy", tmp_path / "np").files
    sampler = load_sampler(files[1])
    model = sampler.CharModel(files[0])
    steps = list(sampler.generate(model, PREFIX, 300, temperature=1.0, seed=7))
    text = "".join(ch for ch, _ in steps)
    ref = torch_probs(checkpoints[name], PREFIX + text)[len(PREFIX) - 1 :]  # (300, V)
    ours = np.stack([p for _, p in steps])
    assert np.abs(ours - ref).max() < 1e-5
    assert text == "".join(ch for ch, _ in sampler.generate(model, PREFIX, 300, temperature=1.0, seed=7))
    picked = np.array([CHARS.index(ch) for ch in text])
    assert (picked != ref.argmax(1)).sum() > 30, "a T=1 sample should often not be the argmax"


def test_numpy_sampler_top_k_and_temperature_match_charrnns_rule(checkpoints, tmp_path):
    from charrnn.generate.sample import next_ids

    sampler = load_sampler(export(checkpoints["gru"], "numpy", tmp_path / "np").files[1])
    logits = torch.randn(5, len(CHARS), generator=torch.Generator().manual_seed(3)) * 3
    for t, k in ((0.7, 5), (1.3, 0), (1.0, 1)):
        p = np.stack([sampler.distribution(row, t, k) for row in logits.numpy()])
        assert ((p > 0).sum(1) == (k or len(CHARS))).all()
        ref = (logits.double() / t).softmax(-1).numpy() if k == 0 else None
        if ref is not None:
            assert np.abs(p - ref).max() < 1e-9
        g = torch.Generator().manual_seed(0)  # charrnn's draws only ever land inside the sampler's support
        drawn = torch.stack([next_ids(logits, t, k, 1.0, g) for _ in range(200)])  # (200, 5)
        assert all(p[r, i] > 0 for r in range(5) for i in drawn[:, r].tolist())


def test_numpy_sampler_preprocesses_as_charrnn_does():
    from charrnn.export import charrnn_sampler

    for text in ("Hello, World!\nSecond LINE 42\r\nthird_one  ", "ÉCOLE ²3 ½\u2028x", "", "\n\n", "日本語 テキスト!"):
        for lowercase, letters_only in ((False, False), (True, False), (False, True)):
            assert charrnn_sampler.preprocess(text, lowercase, letters_only) == preprocess(text, lowercase, letters_only)


def test_the_exported_sampler_is_the_packaged_file_and_imports_only_numpy(checkpoints, tmp_path):
    files = export(checkpoints["rnn"], "numpy", tmp_path / "np").files
    packaged = Path(__file__).parents[1] / "charrnn" / "export" / "charrnn_sampler.py"
    assert files[1].read_bytes() == packaged.read_bytes()
    tops = set()
    for node in ast.walk(ast.parse(files[1].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            tops.add(node.module.split(".")[0])
    assert tops - {"__future__", "argparse", "json", "re", "sys", "pathlib"} == {"numpy"}
    with np.load(files[0], allow_pickle=False) as npz:  # readable without pickle, weights as saved
        assert json.loads(str(npz["meta"]))["vocab"] == list(CHARS)
        sd = torch.load(checkpoints["rnn"], weights_only=True)["model"]
        assert np.array_equal(npz["rnn.weight_hh_l1"], sd["rnn.weight_hh_l1"].numpy())


# ------------------------------------------------------------------------------------------- refusals


def test_export_refusals_are_one_line(checkpoints, tmp_path):
    ck = checkpoints["rnn"]
    assert "--half is for the web page" in error_line(cli("export", ck, "--format", "onnx", "--out", tmp_path / "x.onnx", "--half", code=2))
    assert "unknown format 'tflite'" in error_line(cli("export", ck, "--format", "tflite", "--out", tmp_path / "x", code=2))
    assert "is a directory" in error_line(cli("export", ck, "--format", "web", "--out", tmp_path, code=2))
    (tmp_path / "file").write_text("x")
    assert "is a file" in error_line(cli("export", ck, "--format", "numpy", "--out", tmp_path / "file", code=2))
    line = error_line(cli("export", ck, "--format", "web", "--out", tmp_path / "file" / "page.html", code=4))
    assert "cannot write" in line and "nothing was written" in line
    assert "checkpoint not found" in error_line(cli("export", tmp_path / "nope", "--format", "web", "--out", tmp_path / "p.html", code=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_refuses_weights_it_cannot_carry(tmp_path):
    big = make_checkpoint(tmp_path / "big.pt", std=1.0, model="rnn", layers=1, hidden=4)
    sd = torch.load(big, weights_only=True)
    sd["model"]["head.bias"][0] = 1e5  # beyond float16's 65504
    torch.save(sd, big)
    assert "beyond float16" in error_line(cli("export", big, "--format", "web", "--half", "--out", tmp_path / "p.html", code=2))
    cli("export", big, "--format", "web", "--out", tmp_path / "p.html")  # float32 carries it
    sd["model"]["rnn.weight_hh_l0"][1, 2] = float("nan")
    torch.save(sd, big)
    assert "not finite" in error_line(cli("export", big, "--format", "numpy", "--out", tmp_path / "np", code=2))
    assert not (tmp_path / "np").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous export")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CharRNNError) as e:
        export(checkpoints["rnn"], "onnx", out)
    assert e.value.exit_code == 4 and "No space left" in str(e.value) and "unchanged" in str(e.value)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_missing_onnx_package_is_one_line_with_the_install_hint(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    line = error_line(cli("export", checkpoints["rnn"], "--format", "onnx", "--out", tmp_path / "m.onnx", code=2))
    assert "pip install 'charrnn[export]'" in line
    assert not (tmp_path / "m.onnx").exists()


def test_both_engines_export_the_same_bundle(tmp_path):
    a = make_checkpoint(tmp_path / "a.pt", seed=5, model="gru", layers=2, hidden=12, impl="torch")
    b = make_checkpoint(tmp_path / "b.pt", seed=5, model="gru", layers=2, hidden=12, impl="scratch")
    ba, bb = bundle(a), bundle(b)
    assert ba.arrays.keys() == bb.arrays.keys()
    assert all(np.array_equal(ba.arrays[k], bb.arrays[k]) for k in ba.arrays)


@pytest.mark.slow
def test_the_sampler_runs_alone_with_charrnn_and_torch_unimportable(tmp_path):
    """The copied program's command line, in a fresh interpreter that cannot import charrnn or torch,
    prints what `charrnn sample -t 0` prints, the prefix preprocessed as the model's corpus was."""
    import subprocess

    ckpt = make_checkpoint(tmp_path / "c.pt", chars=tuple(" abcdefghijklmnopqrstuvwxyz"), preprocessing={"letters_only": True},
                           model="lstm", layers=2, hidden=16, embed=5)
    sampler = export(ckpt, "numpy", tmp_path / "np").files[1]
    prefix = "The Time-Machine,\n by H. G. Wells"
    blocked = ("import runpy, sys; sys.modules['charrnn'] = sys.modules['torch'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", blocked, str(sampler), "-p", prefix, "-t", "0", "-n", "300"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == greedy_cli(ckpt, prefix, 300) + "\n"
    assert r.stdout.startswith("the time machineby h g wells")  # d2l joins the lines with nothing
    bad = subprocess.run([sys.executable, str(sampler), "-p", "42 Ω", "-n", "5"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "charrnn_sampler: error: the prefix has character(s) the model never saw: 'ω'"


def test_numpy_export_into_an_existing_directory_replaces_only_its_files(checkpoints, tmp_path):
    out = tmp_path / "np"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model.npz").write_bytes(b"an older export")
    r = cli("export", checkpoints["gru"], "--format", "numpy", "--out", out)
    assert f"wrote {out / 'model.npz'} (" in r.stdout and f"python {out / 'charrnn_sampler.py'}" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["charrnn_sampler.py", "model.npz", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    with np.load(out / "model.npz", allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["cell"] == "gru"
    assert [p.name for p in tmp_path.iterdir()] == ["np"]  # no temporary directory left beside it
