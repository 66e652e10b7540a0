"""A newcomer's first run (issue 21): threads that fit a busy machine, a --minutes budget that bounds the
whole command and shows the model learning early, evaluations that say how far they are, and one
validation loss per run that says what it is."""

from __future__ import annotations

import time

import pytest
import torch
import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: seconds on a busy machine, out of the timed runs)

from charrnn.core.checkpoint import load
from charrnn.core.config import TrainConfig, coerce
from charrnn.core.errors import CharRNNError
from charrnn.training import subscribers, threads
from charrnn.training.evaluate import evaluate_ids
from charrnn.training.train import train
from tests.helpers import tiny_options, write_corpus


# ------------------------------------------------------------------------------------------- threads


@pytest.mark.parametrize("cores, busy, expected", [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.3, 1), (2, 6.0, 1),
                                                   (8, 2.6, 5), (1, 0.0, 1)])
def test_auto_takes_the_cores_left_free(cores, busy, expected, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    choice = threads.choose_threads("auto", busy=busy, cores=cores)
    assert choice.count == expected
    assert choice.how == f"auto: {cores} core{'s' * (cores != 1)}, {busy:.1f} busy"


def test_an_explicit_count_and_zero_are_kept(monkeypatch):
    assert threads.choose_threads(3, busy=9.0, cores=2).count == 3
    assert threads.choose_threads("3").how == "--threads 3"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    assert threads.choose_threads(0) == threads.ThreadChoice(7, "torch's default")


def test_auto_keeps_the_users_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert threads.choose_threads("auto", busy=0.0, cores=16) == threads.ThreadChoice(1, "auto: OMP_NUM_THREADS=1")


def test_busy_cores_sees_a_job_that_has_just_started(monkeypatch):
    """The 1-minute load average lags: a look at /proc/stat that finds every CPU busy counts it."""
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    times = iter([(1000, 4000), (1000, 4400)])  # (idle, total): no idle jiffy in between
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(times))
    assert threads.busy_cores(look=0.0 + 1e-6) == pytest.approx(2.0)  # 4 machine CPUs busy, 2 of them ours


def test_busy_cores_forgets_a_job_that_has_ended(monkeypatch):
    """The load average still counts the `pip install` that ended a minute ago; an idle look at /proc/stat
    wins, so a first run on an idle 2-core machine computes with both cores."""
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.4, 1.0, 0.5))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite pins it; a user's shell does not
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    times = iter([(1000, 4000), (1400, 4400)])  # every jiffy in between idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(times))
    busy = threads.busy_cores(look=1e-6)
    assert busy == pytest.approx(0.0)
    assert threads.choose_threads("auto", busy=busy, cores=2).count == 2


@pytest.mark.parametrize("bad", ["-1", "two", "1.5", -2, True])
def test_threads_values_are_checked(bad):
    with pytest.raises(CharRNNError, match="--threads must be auto"):
        TrainConfig(threads=bad)


def test_threads_default_is_auto_and_yaml_counts_are_ints():
    assert TrainConfig().threads == "auto"
    assert TrainConfig(**coerce({"threads": 2})).threads == 2
    assert TrainConfig(**coerce({"threads": "AUTO"})).threads == "auto"


def test_a_run_says_its_threads_and_gives_the_callers_count_back(tmp_path):
    corpus = write_corpus(tmp_path)
    before = torch.get_num_threads()
    seen = {}
    events = []

    def on_event(e):
        events.append(e)
        if e.kind == "start":
            seen["inside"] = torch.get_num_threads()

    train(tiny_options(corpus, tmp_path / "run", max_steps=3, threads=2), on_event=on_event)
    start = next(e for e in events if e.kind == "start").data
    assert (start["threads"], start["threads_how"], seen["inside"]) == (2, "--threads 2", 2)
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------------ --minutes


def _slow_scoring(monkeypatch, chars_per_second: float):
    """Scoring as slow as on a loaded machine: each evaluation sleeps for the characters it scores."""
    real = subscribers.evaluate_ids

    def slow(model, ids, device, **kw):
        report = real(model, ids, device, **kw)
        time.sleep(report.chars / chars_per_second)
        return report

    monkeypatch.setattr(subscribers, "evaluate_ids", slow)


def test_minutes_bounds_the_run_with_its_final_evaluation(tmp_path, monkeypatch):
    """The whole val split would take ~5 s to score at the end of a 4 s budget: the time is kept back and
    the final evaluation bounded, so the run ends within its budget and says its val loss is of a part."""
    corpus = write_corpus(tmp_path, 40000)
    _slow_scoring(monkeypatch, 4000.0)  # the 20,000-character val split: 5 s; the 1,024-character part: 0.26 s
    events = []
    t0 = time.perf_counter()
    summary = train(tiny_options(corpus, tmp_path / "run", max_steps=0, minutes=4 / 60, val_frac=0.5, eval_chars=1024,
                                 eval_every=25), on_event=events.append)
    wall = time.perf_counter() - t0
    assert wall < 4.0 + 0.8, f"the run took {wall:.1f}s of a 4 s budget"
    final = [e.data for e in events if e.kind == "eval"][-1]
    assert final["val_scope"] == "part" and 1024 < final["val_chars"] < 20000 - 1
    assert any("--minutes left time to score" in e.data["message"] for e in events if e.kind == "notice")
    assert load(str(tmp_path / "run" / "last.pt")).raw["val_scope"] == "part"
    assert summary["val_scope"] == "part" and summary["val_loss"] == final["val_loss"]  # the summary says so too


def test_minutes_evaluates_and_samples_by_the_clock(tmp_path, monkeypatch):
    """Under --minutes an evaluation comes by the clock, whatever --eval-every says, with a sample at the
    first and then every --sample-every evaluations, so a slow machine shows the model learning early."""
    monkeypatch.setattr(subscribers, "EVAL_SECONDS", (0.5, 300.0))
    corpus = write_corpus(tmp_path)
    events = []
    train(tiny_options(corpus, tmp_path / "run", max_steps=0, minutes=2.6 / 60, eval_every=10**6, sample_every=2),
          on_event=events.append)
    evals = [e.data for e in events if e.kind == "eval"]
    assert len(evals) >= 4, [round(e["time"], 2) for e in evals]
    assert all(0.4 < b["time"] - a["time"] < 1.0 for a, b in zip(evals[:3], evals[1:3]))
    samples = [e.data["step"] for e in events if e.kind == "sample"]
    assert samples[:2] == [evals[0]["step"], evals[1]["step"]]  # the first evaluation's, then every second's


def test_a_long_evaluation_reports_its_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(subscribers, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(subscribers, "PROGRESS_EVERY", 0.0)
    corpus = write_corpus(tmp_path, 30000)
    events = []
    train(tiny_options(corpus, tmp_path / "run", max_steps=10, eval_every=10, val_frac=0.5, eval_chars=2048),
          on_event=events.append)
    scoring = [e.data for e in events if e.kind == "scoring"]
    whole = [d["fraction"] for d in scoring if d["what"] == "the validation split"]
    assert whole and whole == sorted(whole) and whole[-1] == 1.0 and whole[0] < 0.5
    assert {d["what"] for d in scoring} == {"part of the validation split", "the validation split"}


def test_evaluate_ids_progress_counts_the_columns():
    torch.manual_seed(0)
    from charrnn.core.config import ModelConfig
    from charrnn.core.models import CharRNN

    model = CharRNN(ModelConfig(model="gru", vocab_size=5, hidden=8))
    ids = torch.randint(0, 5, (5001,)).numpy()
    seen = []
    evaluate_ids(model, ids, torch.device("cpu"), streams=2, chunk=1000, progress=seen.append)
    assert seen == [0.4, 0.8, 1.0]  # 2 streams of 2,500 columns in chunks of 1,000


# ---------------------------------------------------------------------- one val loss, labelled


def test_checkpoints_say_what_their_val_loss_is_of(tmp_path):
    """best.pt is chosen on the fixed part, and says so; the last evaluation scores the whole split."""
    corpus = write_corpus(tmp_path, 30000)
    train(tiny_options(corpus, tmp_path / "run", max_steps=20, eval_every=10, val_frac=0.5, eval_chars=2048))
    last = load(str(tmp_path / "run" / "last.pt")).raw
    assert (last["val_scope"], last["val_chars"], last["best_val_scope"]) == ("full", 15000 - 1, "part")
    best = load(str(tmp_path / "run" / "best.pt")).raw
    if best["position"]["step"] == 10:  # saved by an evaluation during training: its val loss is the part's
        assert (best["val_scope"], best["val_chars"]) == ("part", 2048)


def test_diagnose_compares_a_recorded_part_loss_with_the_same_part(tmp_path):
    """A checkpoint saved during training records the loss of the fixed part of the val split; diagnose
    recomputes that part, not the whole split (which differs, and raised a false warning)."""
    import shutil

    from charrnn.diagnose import DiagnoseOptions, diagnose_checkpoint

    corpus = write_corpus(tmp_path, 30000)
    snap = tmp_path / "snap"
    snap.mkdir()

    def keep_step_10(e):  # last.pt of step 10's evaluation, before the final one replaces it
        if e.kind == "log" and e.data["step"] == 15:
            shutil.copy(tmp_path / "run" / "last.pt", snap / "step10.pt")

    train(tiny_options(corpus, tmp_path / "run", max_steps=20, eval_every=10, val_frac=0.5, eval_chars=4096,
                       threads=1), on_event=keep_step_10)
    assert load(str(snap / "step10.pt")).raw["val_scope"] == "part"
    check = next(c for c in diagnose_checkpoint(snap / "step10.pt", options=DiagnoseOptions(max_chars=4000)).checks
                 if c.id == "loss.recorded_match")
    assert check.status == "ok", check.message
    assert check.values["rel_diff"] < 1e-5 and "part of the val split" in check.values["mode"]


# ------------------------------------------------------------------------------------------- paths


def test_a_relative_corpus_is_stored_absolute_and_resumes_from_another_folder(tmp_path, monkeypatch):
    """D3: a run started in one folder with a relative --corpus resumes, and evaluates, from another."""
    from charrnn.analysis.texts import evaluate_text

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    write_corpus(work / "data", 8000, name="c.txt")
    monkeypatch.chdir(work)
    train(tiny_options("data/c.txt", "runs/x", max_steps=10, eval_every=10))
    saved = load(str(work / "runs" / "x" / "last.pt")).raw
    assert saved["train_config"]["corpus"] == str(work / "data" / "c.txt")
    assert saved["corpus"]["path"] == str(work / "data" / "c.txt")
    assert saved["corpus"]["as_typed"] == "data/c.txt"  # for display
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    summary = train({"max_steps": 20}, resume="../work/runs/x")
    assert summary["steps"] == 20
    assert evaluate_text("../work/runs/x", split="val", device="cpu")["chars"] > 0


def test_tilde_is_expanded_in_out_and_corpus(tmp_path, monkeypatch):
    """D8: --out '~/runs/x' is the home folder's runs/x, not a folder named ~ here."""
    home = tmp_path / "home"
    home.mkdir()
    write_corpus(home, 6000, name="c.txt")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    train(tiny_options("~/c.txt", "~/runs/x", max_steps=3))
    assert (home / "runs" / "x" / "last.pt").is_file() and not (tmp_path / "~").exists()
    assert load("~/runs/x").raw["train_config"]["out"] == str(home / "runs" / "x")


def test_a_directory_corpus_caches_in_the_user_cache_not_the_users_folder(tmp_path, monkeypatch):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        write_corpus(texts, 3000, name=f"{i}.txt", seed=i)
    cache_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    train(tiny_options(str(texts), tmp_path / "run", max_steps=3))
    assert sorted(p.name for p in texts.iterdir()) == ["0.txt", "1.txt", "2.txt"]
    assert [p.name for p in (cache_home / "charrnn").iterdir() if p.name.startswith("texts-joined-")]


# -------------------------------------------------------------------------------- inputs at the door


@pytest.mark.parametrize("args, message", [
    (["train", "--weight-decay", "-0.1"], "--weight-decay must be 0 (off) or positive"),
    (["train", "--sample-length", "-1"], "--sample-length must be at least 1"),
    (["train", "--min-lr-frac", "1.5"], "--min-lr-frac must be in [0, 1]"),
    (["train", "--sample-every", "-2"], "--sample-every must be 0 (never) or positive"),
    (["train", "--threads", "-1"], "--threads must be auto"),
    (["train", "--minutes", "abc"], "Invalid value for '--minutes'"),
    (["train", "--no-such-flag"], "No such option"),
    (["trian"], "No such command 'trian'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    """D7, D10: a meaningless value or a usage error is one line on stderr and exit code 2, before training."""
    from tests.helpers import cli, error_line

    corpus = write_corpus(tmp_path)  # should a check be missing, the run is tiny, not a default training
    tiny = ("--corpus", corpus, "--out", tmp_path / "r", "--max-steps", "1", "--hidden", "8")
    r = cli("train", *tiny, *args[1:], code=2) if args[0] == "train" else cli(*args, code=2)
    assert message in error_line(r)
    assert not (tmp_path / "r").exists()


def test_top_p_zero_is_refused_not_off(tmp_path):
    """D6: --top-p 0 meant "off" in silence, the same as 1."""
    from tests.helpers import cli, error_line

    corpus = write_corpus(tmp_path)
    train(tiny_options(corpus, tmp_path / "run", max_steps=2))
    assert "--top-p must be in (0, 1]" in error_line(cli("sample", tmp_path / "run", "--top-p", "0", code=2))
    cli("sample", tmp_path / "run", "--top-p", "1", "-n", "5")


def test_quiet_keeps_only_warnings_and_errors(tmp_path):
    """--quiet printed notes (here: fine-tuning's) and the rest of the run's reports; warnings stay."""
    from tests.helpers import cli

    corpus = write_corpus(tmp_path)
    train(tiny_options(corpus, tmp_path / "first", max_steps=2))
    r = cli("train", "--init-from", tmp_path / "first", "--corpus", corpus, "--out", tmp_path / "run", "--max-steps", "3",
            "--quiet", "--sampling", "random", "--state", "carry")  # a warning: carried state across random windows
    assert "warning:" in r.stderr
    for chatter in ("note:", "fine-tuning", "done:", "training", "checkpoint:"):
        assert chatter not in r.stderr


# ----------------------------------------------------------------------------- diagnose --log (D9)

LEARNER_ROWS = [(1, 3.1, 3.2), (2, 2.6, 2.7), (3, 2.3, 2.45), (4, 2.1, 2.3)]


@pytest.mark.parametrize("header", ["Epoch,Train Loss,Val Loss", "epoch,train_loss,val_loss",
                                    "EPOCH;loss/train;loss/val", "epoch\ttrain-loss\tvalid loss",
                                    "Iteration,Loss,Validation Loss"])
def test_learners_headers_are_read_whatever_their_case_and_separators(header, tmp_path):
    from charrnn.diagnose.training_log import read_log

    sep = ";" if ";" in header else "\t" if "\t" in header else ","
    p = tmp_path / "log.csv"
    p.write_text(header + "\n" + "".join(f"{e}{sep}{t}{sep}{v}\n" for e, t, v in LEARNER_ROWS), encoding="utf-8")
    log = read_log(p)
    assert log.x.tolist() == [1, 2, 3, 4] and log.train.tolist() == [3.1, 2.6, 2.3, 2.1]
    assert log.val.tolist() == [3.2, 2.7, 2.45, 2.3]
    assert log.x_name == header.split(sep)[0].lower()


@pytest.mark.parametrize("above", ["My char-RNN run, lr=0.01", "# trained on tiny shakespeare\n# seed 0"])
def test_a_title_or_comment_above_the_header_is_skipped(above, tmp_path):
    from charrnn.diagnose.training_log import read_log

    p = tmp_path / "log.csv"
    p.write_text(above + "\nepoch,loss\n" + "".join(f"{e},{t}\n" for e, t, _ in LEARNER_ROWS), encoding="utf-8")
    log = read_log(p)
    assert log.train.tolist() == [3.1, 2.6, 2.3, 2.1] and log.val is None


def test_a_header_without_rows_says_so(tmp_path):
    from charrnn.diagnose.training_log import read_log

    p = tmp_path / "log.csv"
    p.write_text("epoch,loss\n", encoding="utf-8")
    with pytest.raises(CharRNNError, match=r"has a header \(epoch, loss\) but no rows"):
        read_log(p)


def test_accuracy_columns_are_not_taken_for_losses(tmp_path):
    from charrnn.diagnose.training_log import read_log

    p = tmp_path / "log.csv"
    p.write_text("step,train_acc,val_acc,loss\n1,0.1,0.1,3.0\n2,0.2,0.2,2.5\n", encoding="utf-8")
    log = read_log(p)
    assert log.train.tolist() == [3.0, 2.5] and log.val is None


# ----------------------------------------------------------------------------------------- surprises


def test_no_help_text_loses_a_bracket_to_rich_markup():
    """D5: rich reads "[tensorboard]" in a help text as a style tag and drops it ("needs 'charrnn'")."""
    import re

    import typer

    from charrnn.cli.app import app

    def commands(cmd, path="charrnn"):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, f"{path} {name}")

    swallowed = [f"{path} {p.opts[0]}: {m.group(0)}" for path, cmd in commands(typer.main.get_command(app))
                 for p in cmd.params for m in re.finditer(r"(?<!\\)\[[a-z][a-z_-]*\]", getattr(p, "help", None) or "")]
    assert not swallowed


def test_train_and_eval_help_name_their_extras():
    from tests.helpers import cli

    assert "charrnn[tensorboard]" in " ".join(cli("train", "--help").stdout.split())
    assert "charrnn[plot]" in " ".join(cli("eval", "--help").stdout.split())


@pytest.fixture
def tiny_run(tmp_path):
    corpus = write_corpus(tmp_path)
    train(tiny_options(corpus, tmp_path / "run", max_steps=2))
    return tmp_path / "run"


def test_piped_interactive_sampling_exits_non_zero_after_a_failed_prompt(tiny_run):
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    r = CliRunner().invoke(app, ["sample", str(tiny_run), "-i", "-n", "5", "--seed", "1"], input="the\nЖЖ\nmachine\n")
    assert r.exit_code == 2, r.output
    assert r.stdout.count("the") >= 1 and "machine" in r.stdout  # the prompts around the failed one ran
    assert "1 prompt(s) could not be continued" in r.stderr
    ok = CliRunner().invoke(app, ["sample", str(tiny_run), "-i", "-n", "5", "--seed", "1"], input="the\nmachine\n")
    assert ok.exit_code == 0, ok.output


def test_ctrl_c_during_sample_says_so(tiny_run, monkeypatch):
    from typer.testing import CliRunner

    from charrnn.cli.app import app
    from charrnn.core import checkpoint

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "load", interrupted)
    r = CliRunner().invoke(app, ["sample", str(tiny_run)])
    assert r.exit_code == 130 and "charrnn: interrupted (Ctrl-C)" in r.stderr


def test_eval_html_page_is_titled_by_what_it_scored(tiny_run, tmp_path):
    from tests.helpers import cli

    cli("eval", tiny_run, "--html", tmp_path / "page.html", "--max-chars", "200")
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "<title>charrnn eval: corpus val split" in page and "<title>charrnn explore</title>" not in page


def _crlf_corpus(tmp_path):
    from tests.helpers import make_text

    p = tmp_path / "windows.txt"
    p.write_bytes(make_text(6000).replace("\n", "\r\n").encode("utf-8"))
    return p


def test_windows_line_endings_get_a_note_and_normalize_drops_the_carriage_return(tmp_path):
    corpus = _crlf_corpus(tmp_path)
    notes = []
    train(tiny_options(corpus, tmp_path / "keep", max_steps=2),
          on_event=lambda e: notes.append(e.data["message"]) if e.kind == "notice" else None)
    assert "\r" in load(str(tmp_path / "keep")).vocab.chars
    assert any("carriage returns" in n and "--newline normalize" in n for n in notes)
    notes.clear()
    train(tiny_options(corpus, tmp_path / "norm", max_steps=2, newline="normalize"),
          on_event=lambda e: notes.append(e.data["message"]) if e.kind == "notice" else None)
    ck = load(str(tmp_path / "norm"))
    assert "\r" not in ck.vocab.chars and "\n" in ck.vocab.chars and not notes
    assert ck.preprocessing.prefix("a\r\nb\rc") == "a\nb\nc"  # prompts are prepared as the corpus was


def test_the_cache_normalizes_line_endings_exactly_as_in_memory(tmp_path, monkeypatch):
    from charrnn.core.vocab import preprocess, read_text
    from charrnn.data import cache

    corpus = _crlf_corpus(tmp_path)
    monkeypatch.setattr(cache, "CHUNK_BYTES", 29)
    vocab, ids = cache.cached_ids(corpus, newline="normalize")
    assert vocab.decode(ids) == preprocess(read_text(corpus), newline="normalize")
    assert "\r" not in vocab.chars


def test_newline_values_are_checked():
    with pytest.raises(CharRNNError, match="--newline must be keep or normalize"):
        TrainConfig(newline="crlf")


def test_the_summary_and_info_say_which_val_loss_they_show(tmp_path):
    """D4: one run showed 1.6180 (summary), 1.6209 (info) and 1.6073 (eval) without saying what each was."""
    from charrnn.core.checkpoint import describe

    corpus = write_corpus(tmp_path, 30000)
    summary = train(tiny_options(corpus, tmp_path / "run", max_steps=20, eval_every=10, val_frac=0.5, eval_chars=2048))
    last = load(str(tmp_path / "run" / "last.pt")).raw
    best = load(str(tmp_path / "run" / "best.pt")).raw
    assert summary["val_loss"] == last["val_loss"] and (summary["val_scope"], summary["val_chars"]) == ("full", 14999)
    assert summary["best_step"] == best["position"]["step"] and summary["best_val_scope"] == "part"
    assert summary["best_val_loss"] == best["best_val_loss"]
    assert summary["train_loss_of"] in ("epoch 1", "the first 20 steps of epoch 1")
    d = describe(tmp_path / "run")
    assert d["path"].endswith("best.pt") and (d["val_scope"], d["best_val_scope"]) == (best["val_scope"], "part")
    assert set(d["run_checkpoints"]) == {"best.pt", "last.pt"}
    assert d["run_checkpoints"]["last.pt"] == f"step 20, val loss {last['val_loss']:.4f} (whole split)"


def test_eval_reports_how_far_it_has_scored(tiny_run):
    from charrnn.analysis.texts import evaluate_text

    seen = []
    evaluate_text(tiny_run, split="val", device="cpu", progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
