"""`charrnn serve` as clients meet it: a real server process on a real 127.0.0.1 socket, driven by httpx
and by the official `openai` client.

Texts are checked against independent references: the `charrnn sample` command run in-process with the
same seed and options, and the model's own log-probabilities computed here by one forward call.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.core.checkpoint import load
from charrnn.generate.beam import beam_search
from charrnn.generate.sample import sample

from helpers import write_corpus
from serve_helpers import Server, metric, sse_events, stream_texts

pytestmark = pytest.mark.slow

TRAIN = ["--max-steps", "30", "--hidden", "32", "--batch-size", "8", "--seq-len", "16", "--eval-every", "30",
         "--sample-every", "0", "--quiet", "--json"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs: `plain`, and `lower`, trained on lower-cased text (prompts are lower-cased too)."""
    d = tmp_path_factory.mktemp("serve")
    corpus = write_corpus(d, 5000)
    for name, extra in (("plain", []), ("lower", ["--lowercase"])):
        r = CliRunner().invoke(app, ["train", "--corpus", str(corpus), "--out", str(d / name), *TRAIN, *extra])
        assert r.exit_code == 0, r.output
    return d


@pytest.fixture(scope="module")
def server(runs):
    with Server(runs / "plain", runs / "lower") as s:
        yield s


def cli_sample(run, prompt, length, seed, *extra) -> list[str]:
    """What `charrnn sample --json` writes: the generated texts, prefix taken off."""
    r = CliRunner().invoke(app, ["sample", str(run), "--prefix", prompt, "--length", str(length), "--seed", str(seed),
                                 "--json", *map(str, extra)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    return [s[len(out["prefix"]):] for s in out["samples"]]


def complete(server, **body) -> dict:
    r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def stream(server, **body) -> list:
    with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r)


def test_health_models_and_metrics(server, runs):
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "models": ["plain", "lower"]}
    cards = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
    ck = load(runs / "plain")
    assert cards["plain"]["vocab_size"] == len(ck.vocab) and cards["plain"]["architecture"] == "lstm 1x32"
    assert cards["plain"]["steps"] == 30 and cards["lower"]["object"] == "model"
    text = httpx.get(server.url + "/metrics").text
    assert 'charrnn_requests_total{path="/health",status="200"}' in text
    assert "charrnn_batch_rows_bucket" in text and 'charrnn_queue_length{model="plain"}' in text


CASES = [  # (server request options, the same as `charrnn sample` flags)
    (dict(), ()),
    (dict(temperature=0.7, top_k=5), ("--temperature", 0.7, "--top-k", 5)),
    (dict(top_p=0.8, n=3), ("--top-p", 0.8, "--num-samples", 3)),
    (dict(temperature=0.0), ("--temperature", 0)),
    (dict(stop=["e ", "\n"], n=2), ("--stop", "e ", "--stop", "\\n", "--num-samples", 2)),
]


@pytest.mark.parametrize("options,flags", CASES, ids=["default", "temp-topk", "topp-n3", "greedy", "stops-n2"])
def test_seeded_texts_equal_charrnn_sample_whole_and_streamed(server, runs, options, flags):
    want = cli_sample(runs / "plain", "The time", 60, 7, *flags)
    body = dict(model="plain", prompt="The time", max_tokens=60, seed=7, **options)
    got = complete(server, **body)
    assert [c["text"] for c in got["choices"]] == want
    assert [c["index"] for c in got["choices"]] == list(range(len(want)))
    events = stream(server, **body)
    assert events[-1] == "[DONE]" and stream_texts(events) == dict(enumerate(want))
    finish = {c["index"]: c["finish_reason"] for e in events[:-1] for c in e["choices"] if c["finish_reason"]}
    assert finish == {i: c["finish_reason"] for i, c in enumerate(got["choices"])}
    assert got["usage"] == {"prompt_tokens": 8, "completion_tokens": sum(map(len, want)),
                            "total_tokens": 8 + sum(map(len, want))}


def test_stop_strings_end_choices_and_are_not_shown(server, runs):
    got = complete(server, model="plain", prompt="The ", max_tokens=300, seed=3, n=4, stop="e")
    for c in got["choices"]:
        assert "e" not in c["text"]
        assert c["finish_reason"] == ("stop" if len(c["text"]) < 299 else c["finish_reason"])
    assert any(c["finish_reason"] == "stop" for c in got["choices"])
    long = complete(server, model="plain", prompt="The ", max_tokens=5, seed=3)
    assert long["choices"][0]["finish_reason"] == "length" and len(long["choices"][0]["text"]) == 5


def test_prompts_are_preprocessed_as_charrnn_sample_does(server, runs):
    want = cli_sample(runs / "lower", "The Time", 40, 11)
    got = complete(server, model="lower", prompt="The Time", max_tokens=40, seed=11, echo=True)
    assert got["choices"][0]["text"] == "the time" + want[0]
    assert got["usage"]["prompt_tokens"] == len("the time")


def test_a_list_of_prompts_gives_n_choices_each(server, runs):
    got = complete(server, model="plain", prompt=["The ", "a machine"], n=2, max_tokens=30, seed=5)
    want = cli_sample(runs / "plain", "The ", 30, 5, "--num-samples", 2) + cli_sample(runs / "plain", "a machine", 30, 5,
                                                                                    "--num-samples", 2)
    assert [c["text"] for c in got["choices"]] == want


def test_logprobs_are_the_models_own_and_echo_scores_the_prompt(server, runs):
    got = complete(server, model="plain", prompt="The ", max_tokens=20, seed=2, logprobs=3, echo=True)
    choice = got["choices"][0]
    lp = choice["logprobs"]
    text = choice["text"]
    assert "".join(lp["tokens"]) == text and lp["text_offset"] == list(range(len(text)))
    ck = load(runs / "plain", "cpu")
    index = ck.vocab.index()
    ids = torch.tensor([[index[c] for c in text]])
    with torch.no_grad():
        logits, _ = ck.model(ids[:, :-1])
    ref = logits[0].log_softmax(-1)  # (T - 1, V): the log-probability of each next character
    assert lp["token_logprobs"][0] is None
    for t in range(1, len(text)):
        assert lp["token_logprobs"][t] == pytest.approx(ref[t - 1, ids[0, t]].item(), abs=1e-4)
        top = torch.topk(ref[t - 1], 3)
        assert set(lp["top_logprobs"][t]) == {ck.vocab.chars[i] for i in top.indices.tolist()}
        assert max(lp["top_logprobs"][t].values()) == pytest.approx(top.values[0].item(), abs=1e-4)
    streamed = stream(server, model="plain", prompt="The ", max_tokens=20, seed=2, logprobs=3)
    tokens = [t for e in streamed[:-1] for c in e["choices"] for t in c["logprobs"]["tokens"]]
    assert "".join(tokens) == text[len("The "):]


def test_beam_extension_equals_the_engines_beam_search(server, runs):
    ck = load(runs / "plain", "cpu")
    want = beam_search(ck.model, ck.vocab, "The ", 40, 3, ("\n",)).samples[0]
    got = complete(server, model="plain", prompt="The ", max_tokens=40, beam=3, stop="\n")["choices"][0]
    assert got["text"] == want.text and got["finish_reason"] == ("stop" if want.stop else "length")


def test_stream_usage_chunk_and_echo_first(server):
    events = stream(server, model="plain", prompt="The ", max_tokens=10, seed=1, echo=True,
                    stream_options={"include_usage": True})
    assert events[0]["choices"][0]["text"] == "The " and events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 10


def test_64_concurrent_clients_are_batched_and_each_answered_correctly(server, runs):
    ck = load(runs / "plain", "cpu")
    prompts = ["The ", "a ", "time ", "machine "]

    def reference(i):
        g = torch.Generator().manual_seed(100 + i)
        return sample(ck.model, ck.vocab, prompts[i % 4], 80 + i, generator=g, temperature=0.9).samples[0].text

    async def one(client, i):
        body = dict(model="plain", prompt=prompts[i % 4], max_tokens=80 + i, seed=100 + i, temperature=0.9,
                    stream=bool(i % 2))
        if i % 2:
            async with client.stream("POST", "/v1/completions", json=body) as r:
                text = ""
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        text += "".join(c["text"] for c in json.loads(line[6:])["choices"])
                return text
        r = await client.post("/v1/completions", json=body)
        return r.json()["choices"][0]["text"]

    async def everyone():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(64)))

    texts = asyncio.run(everyone())
    assert texts == [reference(i) for i in range(64)]
    assert metric(server.url, 'charrnn_batch_rows_peak{model="plain"}') > 1


def test_the_official_openai_client_completes_and_streams(server, runs):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    want = cli_sample(runs / "plain", "The ", 50, 9)[0]
    got = client.completions.create(model="plain", prompt="The ", max_tokens=50, seed=9)
    assert got.choices[0].text == want and got.choices[0].finish_reason == "length"
    chunks = list(client.completions.create(model="plain", prompt="The ", max_tokens=50, seed=9, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert [m.id for m in client.models.list()] == ["plain", "lower"]


def test_a_client_that_disconnects_mid_stream_frees_its_row(server):
    before = metric(server.url, 'charrnn_batch_rows_sum{model="plain"}')  # row-steps computed so far
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60,
                      json=dict(model="plain", prompt="The ", max_tokens=4096, seed=1, stream=True)) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
    deadline = time.monotonic() + 10
    while metric(server.url, 'charrnn_active_rows{model="plain"}') > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server.url, 'charrnn_active_rows{model="plain"}') == 0
    assert metric(server.url, 'charrnn_batch_rows_sum{model="plain"}') - before < 4000  # stopped long before 4096


def test_requests_are_logged_one_line_each(runs):
    with Server(runs / "plain") as s:
        complete(s, model="plain", prompt="The ", max_tokens=7)
        code, err = s.stop()
    assert code == 0
    assert "curl http://127.0.0.1:" in err and "/v1/completions" in err.splitlines()[1]
    logged = [l for l in err.splitlines() if "POST /v1/completions" in l]
    assert len(logged) == 1 and " 200 7 chars " in logged[0] and logged[0].endswith(" ms")


def test_sigterm_drains_the_requests_in_flight_then_exits_0(runs):
    s = Server(runs / "plain")
    got, started = {}, threading.Event()

    def client():
        body = dict(model="plain", prompt="The ", max_tokens=3000, seed=4, stream=True)
        with httpx.stream("POST", s.url + "/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            first = next(l for l in lines if l.startswith("data: "))
            started.set()
            got["events"] = [json.loads(first[6:])] + sse_events_from(lines)

    t = threading.Thread(target=client)
    t.start()
    assert started.wait(60)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    code, err = s.stop()
    assert code == 0, err
    assert got["events"][-1] == "[DONE]"
    assert sum(map(len, stream_texts(got["events"]).values())) == 3000
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url + "/health", timeout=2)


def sse_events_from(lines) -> list:
    return [l[6:] if l == "data: [DONE]" else json.loads(l[6:]) for l in lines if l.startswith("data: ")]


def test_cors_is_off_unless_an_origin_is_given_and_workers_each_serve(server, runs):
    origin = {"Origin": "http://editor.test"}
    assert "access-control-allow-origin" not in httpx.get(server.url + "/v1/models", headers=origin).headers
    want = cli_sample(runs / "plain", "The ", 30, 12)[0]
    with Server(runs / "plain", "--workers", "2", "--cors-origin", "http://editor.test") as s:
        r = httpx.options(s.url + "/v1/completions", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert r.headers["access-control-allow-origin"] == "http://editor.test"
        assert "access-control-allow-origin" not in httpx.get(s.url + "/health",
                                                             headers={"Origin": "http://other.test"}).headers
        for _ in range(4):  # whichever worker answers, the same text
            assert complete(s, model="plain", prompt="The ", max_tokens=30, seed=12)["choices"][0]["text"] == want
        code, err = s.stop()
    assert code == 0, err
    assert "2 workers" in err
