"""Shipped recipes (`--preset`) and the machine options they and GPU runs rely on (bf16 autocast,
torch.compile), exercised on CPU."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.core.config import load_preset, preset_names
from charrnn.training.train import build_configs, train


def test_the_time_to_quality_presets_ship_inside_the_package():
    assert {"shakespeare-68s", "shakespeare-5min", "d2l-8.5"} <= set(preset_names())
    for name, minutes in (("shakespeare-68s", 68 / 60), ("shakespeare-5min", 5.0)):
        options = load_preset(name)
        mcfg, cfg, _ = build_configs(options)  # every key is known and every value valid
        assert cfg.corpus == "tinyshakespeare" and cfg.val_frac == 0.1
        # a wall-clock budget, leaving room for start-up and the final evaluation
        assert 0 < cfg.minutes < minutes and not cfg.max_steps and not cfg.epochs
    build_configs(load_preset("d2l-8.5"))


@pytest.fixture
def small_corpus(tmp_path):
    p = tmp_path / "small.txt"
    p.write_text("To be, or not to be, that is the question.\n" * 60, encoding="utf-8")
    return p


def test_flags_override_a_preset(small_corpus, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--preset", "shakespeare-68s", "--corpus", str(small_corpus),
                                      "--hidden", "16", "--batch-size", "4", "--seq-len", "8", "--max-steps", "3",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    effective = yaml.safe_load((out / "config.yaml").read_text())
    assert effective["hidden"] == 16 and effective["max_steps"] == 3 and effective["corpus"] == str(small_corpus)
    assert effective["lr"] == load_preset("shakespeare-68s")["lr"] and effective["schedule"] == "cosine"


def _losses(small_corpus, tmp_path, **extra) -> list[float]:
    losses = []
    train({"corpus": str(small_corpus), "model": "lstm", "hidden": 32, "embed": 8, "batch_size": 4, "seq_len": 16,
           "max_steps": 12, "log_every": 3, "eval_every": 12, "sample_every": 0, "lr": 1e-2, "device": "cpu",
           "out": str(tmp_path / "run"), **extra},
          on_event=lambda e: e.kind == "log" and losses.append(e.data["train_loss"]))
    return losses


def test_bf16_autocast_trains_on_cpu(small_corpus, tmp_path, monkeypatch):
    """The autocast path itself, forced on (a tanh RNN has CPU bf16 kernels even without native bf16)."""
    import charrnn.training.train as train_module

    monkeypatch.setattr(train_module, "_no_bf16", lambda device: None)
    losses = _losses(small_corpus, tmp_path, amp=True, model="rnn")
    assert all(l == l and l < 10 for l in losses) and losses[-1] < losses[0]


def test_amp_without_native_bf16_falls_back_to_fp32_with_a_warning(small_corpus, tmp_path, monkeypatch):
    import charrnn.training.train as train_module

    monkeypatch.setattr(train_module, "_no_bf16", lambda device: "--amp: no native bf16; training in fp32")
    warnings = []
    train({"corpus": str(small_corpus), "model": "lstm", "hidden": 16, "batch_size": 4, "seq_len": 8, "max_steps": 2,
           "amp": True, "device": "cpu", "sample_every": 0, "out": str(tmp_path / "run")},
          on_event=lambda e: e.kind == "warning" and warnings.append(e.data["message"]))
    assert warnings == ["--amp: no native bf16; training in fp32"]


def test_compiled_model_trains_on_cpu(small_corpus, tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's CPU backend needs a C compiler, and there is none here")
    try:
        losses = _losses(small_corpus, tmp_path, compile=True)
    except Exception as e:  # inductor or dynamo unable to run on this machine
        if "charrnn" in type(e).__module__:
            raise
        pytest.skip(f"torch.compile cannot run here: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    assert all(l == l and l < 10 for l in losses) and losses[-1] < losses[0]


def test_options_rise_from_preset_to_yaml_to_flags(tmp_path):
    """merge_options: a YAML value beats the preset's, a flag beats both; a flag not given (None) and the
    command's own flags (--json, --resume) change nothing; every config field is a flag key."""
    from dataclasses import fields

    from charrnn.core.config import OPTION_KEYS, ModelConfig, TrainConfig, merge_options

    cfg = tmp_path / "run.yaml"
    cfg.write_text("hidden: 64\nseq-len: 50\nlr: 0.01\n", encoding="utf-8")
    flags = {"--lr": 0.02, "--seq-len": None, "--json": True, "--resume": "x", "--out": "runs/y", "--compile": True}
    options = merge_options(flags, preset="shakespeare-68s", config=cfg)
    preset = load_preset("shakespeare-68s")
    assert options == {**preset, "hidden": 64, "seq_len": 50, "lr": 0.02, "out": "runs/y", "compile": True}
    assert OPTION_KEYS == {f.name for cls in (ModelConfig, TrainConfig) for f in fields(cls)} - {"vocab_size"}
    assert merge_options({"--hidden": None}) == {}
