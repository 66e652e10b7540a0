"""The command line as a user meets it: exit codes, one-line errors, JSON outputs, nothing lost."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch


from helpers import cli as run, error_line, write_corpus


TINY = ["--hidden", "32", "--batch-size", "8", "--seq-len", "16", "--eval-every", "10", "--sample-every", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(d, 5000)
    r = run("train", "--corpus", corpus, "--out", d / "run", "--max-steps", "20", "--json", "--quiet", *TINY)
    return d, corpus, json.loads(r.stdout)


def test_train_json_summary_and_run_directory(trained):
    d, corpus, summary = trained
    assert summary["steps"] == 20 and summary["model"] == "lstm" and summary["val_loss"] > 0
    assert Path(summary["checkpoint"]).name == "best.pt"
    assert torch.load(d / "run" / "best.pt", weights_only=True)["format"] == "charrnn-checkpoint"


def test_sample_same_seed_prints_the_same_text_starting_with_the_prefix(trained):
    d, _, _ = trained
    a = run("sample", d / "run", "--prefix", "The ", "--seed", "1", "--length", "60").stdout
    b = run("sample", d / "run", "--prefix", "The ", "--seed", "1", "--length", "60").stdout
    assert a == b and a.startswith("The ") and len(a.rstrip("\n")) >= 64
    js = json.loads(run("sample", d / "run", "--prefix", "The", "--seed", "1", "-n", "20", "--num-samples", "3", "--json").stdout)
    assert len(js["samples"]) == 3 and all(s.startswith("The") and len(s) == 23 for s in js["samples"])


def test_sample_unknown_prefix_character(trained):
    d, _, _ = trained
    r = run("sample", d / "run", "--prefix", "Жx", code=2)
    assert "never saw: 'Ж'" in error_line(r) and r.stdout == ""


def test_eval_and_info_json(trained):
    d, corpus, summary = trained
    js = json.loads(run("eval", d / "run", "--json").stdout)
    assert {"loss", "bpc", "perplexity", "chars"} <= set(js)
    assert js["loss"] == pytest.approx(summary["best_val_loss"], rel=1e-6)
    assert js["chars"] == 499  # the whole val split (10% of 5,000) but its first character
    txt = json.loads(run("eval", d / "run", "--text", corpus, "--json").stdout)
    assert txt["chars"] == 4999
    info = json.loads(run("info", d / "run", "--json").stdout)
    assert info["steps"] == 20 and info["model"]["hidden"] == 32 and info["parameters"] > 0
    r = run("eval", d / "run", "--text", corpus, "--split", "val", code=2)
    assert "either --text or --split" in error_line(r)
    r = run("eval", d / "run", "--split", "test", code=2)
    assert "test split" in error_line(r) and "empty" in error_line(r)


def test_config_file_with_flags_overriding(tmp_path):
    corpus = write_corpus(tmp_path, 4000)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"corpus: {corpus}\nmodel: gru\nhidden: 16\nbatch-size: 4\nseq_len: 8\nmax_steps: 4\nlr: 1e-3\n")
    run("train", "--config", cfg, "--hidden", "24", "--out", tmp_path / "run", "--quiet", "--sample-every", "0")
    import yaml

    eff = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (eff["model"], eff["hidden"], eff["batch_size"], eff["lr"]) == ("gru", 24, 4, 0.001)
    cfg.write_text("hiden: 3\n")
    assert "unknown config key(s): hiden" in error_line(run("train", "--config", cfg, code=2))


def _corrupt_files(tmp_path, good: Path):
    raw = good.read_bytes()
    files = {
        "missing": (tmp_path / "absent.pt", "checkpoint not found"),
        "random bytes": (tmp_path / "junk.pt", "not a readable charrnn checkpoint"),
        "truncated": (tmp_path / "half.pt", "not a readable charrnn checkpoint"),
        "not a checkpoint": (tmp_path / "tensor.pt", "is not a charrnn checkpoint"),
        "newer format": (tmp_path / "future.pt", "newer than this charrnn"),
        "empty dir": (tmp_path / "emptydir", "without a checkpoint"),
    }
    files["random bytes"][0].write_bytes(os.urandom(3000))
    files["truncated"][0].write_bytes(raw[: len(raw) // 2])
    torch.save({"weights": torch.zeros(3)}, files["not a checkpoint"][0])
    ck = torch.load(good, weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, files["newer format"][0])
    files["empty dir"][0].mkdir()
    return files


@pytest.mark.parametrize("command", ["sample", "eval", "info"])
def test_bad_checkpoints_are_one_line_errors(trained, tmp_path, command):
    d, _, _ = trained
    for what, (path, message) in _corrupt_files(tmp_path, d / "run" / "best.pt").items():
        r = run(command, path, code=2)
        assert message in error_line(r), what


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {EVIL_MARK}",))


EVIL_MARK = Path("/tmp/charrnn-evil-pickle-ran")


def test_loading_a_checkpoint_never_runs_code(tmp_path):
    EVIL_MARK.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"format": "charrnn-checkpoint", "format_version": 1, "payload": Evil()}, path)
    r = run("info", path, code=2)
    assert "not a readable charrnn checkpoint" in error_line(r)
    assert not EVIL_MARK.exists()


def test_invalid_utf8_corpus(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"x" * 100 + b"\xc3\x28" + b"y" * 5000)
    r = run("train", "--corpus", bad, "--out", tmp_path / "r", *TINY, code=2)
    assert "byte 0xc3 at offset 100" in error_line(r)
    run("train", "--corpus", bad, "--out", tmp_path / "r", "--encoding-errors", "replace", "--max-steps", "2", "--quiet", *TINY)


def test_bad_usage_is_exit_2(tmp_path):
    assert "--batch-size must be at least 1" in error_line(run("train", "--batch-size", "0", code=2))
    assert "--optimizer must be one of" in error_line(run("train", "--optimizer", "lbfgs", code=2))
    assert "unknown preset" in error_line(run("train", "--preset", "nope", code=2))
    assert "no such corpus or file: nope.txt" in error_line(run("train", "--corpus", "nope.txt", "--out", tmp_path / "r", code=2))
    run("train", "--no-such-flag", code=2)


def test_explicit_corpus_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_MIRROR", (tmp_path / "no-mirror").as_uri())
    r = run("train", "--corpus", "tinyshakespeare", "--out", tmp_path / "r", code=2)
    assert "tinyshakespeare" in error_line(r)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_bare_train_without_network_falls_back_to_pystdlib(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_MIRROR", (tmp_path / "no-mirror").as_uri())
    monkeypatch.chdir(tmp_path)
    r = run("train", "--max-steps", "2", "--hidden", "16", "--sample-every", "0", "--json")
    assert "pystdlib" in r.stderr and "charrnn download timemachine" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["corpus"] == "pystdlib" and Path(summary["run_dir"]) == Path("runs/pystdlib-lstm")


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_and_exits_cleanly(tmp_path):
    corpus = write_corpus(tmp_path, 20000)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "charrnn", "train", "--corpus", str(corpus), "--out", str(run_dir), "--epochs", "1000",
           "--hidden", "32", "--batch-size", "8", "--seq-len", "16", "--log-every", "1", "--eval-every", "100000", "--quiet"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "resume with: charrnn train --resume" in err
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    assert ck["position"]["step"] >= 3


def test_sample_different_seeds_print_different_text(trained):
    d, _, _ = trained
    texts = {run("sample", d / "run", "--prefix", "The ", "--seed", s, "--length", "60").stdout for s in (1, 2, 3)}
    assert len(texts) == 3, "--seed does not change the text"


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """Three whole epochs, evaluated after every step (so also at each epoch's last step)."""
    d = tmp_path_factory.mktemp("epochs")
    corpus = write_corpus(d, 800)
    run("train", "--corpus", corpus, "--out", d / "run", "--epochs", "3", "--eval-every", "1", "--log-every", "1",
        "--batch-size", "4", "--seq-len", "16", "--hidden", "16", "--sample-every", "0", "--quiet")
    return d / "run", [json.loads(line) for line in open(d / "run" / "metrics.jsonl")]


def test_eval_at_an_epochs_end_reports_that_epochs_train_perplexity(three_epochs):
    _, events = three_epochs
    ends = [e for e in events if e["event"] == "epoch"]
    assert len(ends) == 3
    start = 0
    for end in ends:
        logs = [e["train_loss"] for e in events if e["event"] == "log" and start < e["step"] <= end["step"]]
        epoch_loss = sum(logs) / len(logs)  # every step scores the same number of characters
        ev = next(e for e in events if e["event"] == "eval" and e["step"] == end["step"])
        assert ev["train_loss"] == pytest.approx(epoch_loss, rel=1e-6), f"eval at step {end['step']}: not this epoch's train loss"
        assert ev["train_perplexity"] == pytest.approx(math.exp(epoch_loss), rel=1e-6)
        start = end["step"]


def test_info_counts_epochs_completed(three_epochs):
    run_dir, _ = three_epochs
    info = json.loads(run("info", run_dir / "last.pt", "--json").stdout)
    assert info["epoch"] == 3, f"a finished 3-epoch run shows epoch {info['epoch']}"


@pytest.fixture(scope="module")
def letters_only(tmp_path_factory):
    d = tmp_path_factory.mktemp("letters")
    corpus = write_corpus(d, 3000)
    run("train", "--corpus", corpus, "--out", d / "run", "--letters-only", "--max-steps", "5", "--quiet", *TINY)
    return d / "run"


def test_sample_prefix_on_a_letters_only_model_is_preprocessed_like_the_corpus(letters_only):
    r = run("sample", letters_only, "--prefix", "The Time-Traveller, 1895!", "--seed", "0", "-n", "5", "--json")
    assert json.loads(r.stdout)["prefix"] == "the time traveller"  # lower-cased, non-letters to one space, stripped
    assert "preprocessed" in r.stderr and "'the time traveller'" in r.stderr
    quiet = run("sample", letters_only, "--prefix", "the time", "--seed", "0", "-n", "5")
    assert "preprocessed" not in quiet.stderr  # nothing changed, nothing said


def test_eval_text_on_a_letters_only_model_scores_the_preprocessed_text(letters_only, tmp_path):
    from charrnn.core.checkpoint import load_model
    from charrnn.core.vocab import Vocab

    raw = "The Time-Traveller said (that) a machine could move through time, as we move through space! 42\n" * 3
    (tmp_path / "raw.txt").write_text(raw, encoding="utf-8")
    got = json.loads(run("eval", letters_only, "--text", tmp_path / "raw.txt", "--json", "--device", "cpu").stdout)
    clean = "".join(" ".join("".join(c if c.isalpha() else " " for c in line).split()).lower() for line in raw.splitlines())
    model, ckpt = load_model(letters_only)
    ids = torch.tensor(Vocab(tuple(ckpt["vocab"])).encode(clean), dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(ids[None, :-1], model.begin_state(1))
    want = torch.nn.functional.cross_entropy(logits[0], ids[1:]).item()
    assert got["chars"] == len(clean) - 1
    assert got["loss"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("flags", [["--ngram", "3", "--show"], ["--ngram", "3", "--by-position"],
                                   ["--html", "m.html", "--by-position"]])
def test_eval_refuses_two_reports_at_once(flags):
    # each of these used to win over the other and drop it in silence; the check comes before any loading
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    r = CliRunner().invoke(app, ["eval", "no-such-run", *flags])
    assert r.exit_code == 2 and "separate reports" in r.stderr, r.output


def test_a_file_name_with_brackets_is_printed_as_it_is(trained, tmp_path):
    # rich read "[draft]" in a user's file name as a style tag and printed "notes.txt" for "notes[draft].txt"
    d, corpus, _ = trained
    text = tmp_path / "notes[draft].txt"
    text.write_text(Path(corpus).read_text()[:400])
    assert "notes[draft].txt" in run("eval", d / "run", "--text", text).stdout
    assert "notes[draft].txt" in run("eval", d / "run", "--text", text, "--show", "--max-chars", "50").stdout
    assert "notes[draft].txt" in run("eval", d / "run", "--text", text, "--ngram", "2").stdout
    assert "notes[draft].txt" in run("probe", d / "run", "--text", text, "--signal", "line-pos").stdout
    assert "notes[draft].txt" in run("explore", d / "run", "--text", text, "--out", tmp_path / "x.html").stderr


def test_resume_and_init_from_together_is_one_clear_error(tmp_path):
    # it used to load the run and then say "cannot change --init-from when resuming"
    r = run("train", "--resume", tmp_path / "nowhere", "--init-from", tmp_path / "elsewhere", code=2)
    assert "--resume" in error_line(r) and "--init-from" in error_line(r) and "not both" in error_line(r)


def test_eval_reports_bits_and_perplexity_of_its_loss_in_every_view(trained):
    """bpc = loss / ln 2 and perplexity = exp(loss), whether the loss came from eval or from the map."""
    d, corpus, _ = trained
    for args in ([], ["--show", "--max-chars", "300"]):
        js = json.loads(run("eval", d / "run", "--text", corpus, "--json", *args).stdout)
        assert js["bpc"] == pytest.approx(js["loss"] / math.log(2), rel=1e-12)
        assert js["perplexity"] == pytest.approx(math.exp(js["loss"]), rel=1e-12)
