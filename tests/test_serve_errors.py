"""Every bad input, limit and missing key sent over HTTP to a real `charrnn serve`, answered with its
status and OpenAI's error shape {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import threading
import time

import httpx
import pytest


from serve_helpers import Server, metric, sse_events

pytestmark = pytest.mark.slow

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = ["--max-rows", "4", "--max-n", "4", "--queue", "1", "--max-prompt", "50", "--max-tokens", "1000000",
          "--max-body", "3000", "--timeout", "3"]


@pytest.fixture(scope="module")
def server(tiny_run):
    """The session's shared tiny run, served as "tiny" with tight limits and an API key."""
    with Server(f"tiny={tiny_run.run}", *LIMITS, env={"CHARRNN_API_KEY": KEY}) as s:  # the key from the environment
        yield s


def error_of(r: httpx.Response, status: int) -> dict:
    """The error object, after checking the status and that the body is exactly OpenAI's shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message
    return body["error"]


def post(server, body=None, content=None, headers=AUTH, **kw):
    return httpx.post(server.url + "/v1/completions", json=body, content=content,
                      headers={**headers, **({"Content-Type": "application/json"} if content is not None else {})},
                      timeout=30, **kw)


OK = dict(model="tiny", prompt="The ", max_tokens=5)

BAD = [  # (request body, param, code) -> 400
    (b'{"model": "tiny", "prompt": ', None, "invalid_json"),
    ([1, 2], None, "invalid_body"),
    ({"prompt": "The "}, "model", "missing_field"),
    ({**OK, "model": "nope"}, "model", "model_not_found"),
    ({**OK, "max_tokens": "10"}, "max_tokens", "invalid_value"),
    ({**OK, "temperature": "hot"}, "temperature", "invalid_value"),
    ({**OK, "stream": "yes"}, "stream", "invalid_value"),
    ({**OK, "prompt": 5}, "prompt", "invalid_value"),
    ({**OK, "prompt": [1, 2]}, "prompt", "invalid_value"),
    ({**OK, "stop": 3}, "stop", "invalid_value"),
    ({**OK, "n": 1.5}, "n", "invalid_value"),
    ({**OK, "seed": "x"}, "seed", "invalid_value"),
    ({**OK, "seed": 2**64}, "seed", "invalid_value"),
    ({**OK, "temperature": -1}, "temperature", "invalid_value"),
    ({**OK, "top_p": 1.5}, "top_p", "invalid_value"),
    ({**OK, "top_p": 0}, "top_p", "invalid_value"),
    ({**OK, "top_k": -2}, "top_k", "invalid_value"),
    ({**OK, "n": 0}, "n", "invalid_value"),
    ({**OK, "max_tokens": -1}, "max_tokens", "invalid_value"),
    ({**OK, "logprobs": 21}, "logprobs", "invalid_value"),
    ({**OK, "beam": 0}, "beam", "invalid_value"),
    ({**OK, "max_tokens": 1000001}, "max_tokens", "over_limit"),
    ({**OK, "n": 5}, "n", "over_limit"),
    ({**OK, "prompt": ["The ", "a ", "b "], "n": 2}, "prompt", "over_limit"),
    ({**OK, "prompt": "x" * 51}, "prompt", "prompt_too_long"),
    ({**OK, "prompt": []}, "prompt", "invalid_value"),
    ({**OK, "stop": ["\u2603"]}, "stop", "invalid_value"),
    ({**OK, "stop": [""]}, "stop", "invalid_value"),
    ({**OK, "stop": ["a"] * 17}, "stop", "over_limit"),
    ({**OK, "beam": 2, "stream": True}, "stream", "invalid_value"),
    ({**OK, "beam": 2, "temperature": 0.5}, "temperature", "invalid_value"),
    ({**OK, "suffix": "end"}, "suffix", "unsupported"),
    ({**OK, "frequency_penalty": 1}, "frequency_penalty", "invalid_value"),
    ({**OK, "best_of": 3}, "best_of", "unknown_field"),
]


@pytest.mark.parametrize("body,param,code", BAD, ids=[f"{i}-{b[1]}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_requests_answer_400_in_the_error_shape(server, body, param, code):
    r = post(server, content=body) if isinstance(body, bytes) else post(server, body)
    e = error_of(r, 400)
    assert (e["param"], e["code"], e["type"]) == (param, code, "invalid_request_error")


def test_characters_outside_the_vocabulary_are_listed(server):
    e = error_of(post(server, {**OK, "prompt": "The \u2603 and \u00fc\u00fc"}), 400)
    assert e["code"] == "unknown_characters" and e["param"] == "prompt"
    assert "2 character(s)" in e["message"] and "'\u2603'" in e["message"] and "'\u00fc'" in e["message"]


def test_body_over_the_limit_is_413_declared_or_streamed(server):
    big = {**OK, "prompt": "x" * 4000}
    e = error_of(post(server, big), 413)
    assert e["code"] == "body_too_large" and "3,000 bytes" in e["message"]

    def chunks():  # no Content-Length: the limit is found while the body arrives
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    e = error_of(post(server, content=chunks()), 413)
    assert e["code"] == "body_too_large"


def test_unknown_paths_and_methods(server):
    assert error_of(httpx.get(server.url + "/v1/nothing", headers=AUTH), 404)["code"] == "not_found"
    assert error_of(httpx.get(server.url + "/v1/completions", headers=AUTH), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": f"Basic {KEY}"}], ids=["none", "wrong", "no-scheme", "basic"])
def test_the_api_key_is_required_except_for_health(server, headers):
    for path in ("/v1/models", "/metrics"):
        e = error_of(httpx.get(server.url + path, headers=headers), 401)
        assert e["code"] == "invalid_api_key"
    e = error_of(post(server, OK, headers=headers), 401)  # before the body is even looked at
    assert e["type"] == "authentication_error"
    assert httpx.get(server.url + "/health").status_code == 200
    assert post(server, OK).status_code == 200


def test_a_full_queue_answers_429_with_retry_after_and_a_slow_request_times_out(server):
    """4 rows busy with one long stream, one request waiting (the queue holds 1): the next is refused.
    The stream's time runs out (a timeout error event, then [DONE]); the waiting request, admitted then,
    runs out of its own (504)."""
    long = dict(model="tiny", prompt="The ", max_tokens=1000000, n=4, stream=True)
    out = {}
    with httpx.stream("POST", server.url + "/v1/completions", json=long, headers=AUTH, timeout=60) as running:
        lines = running.iter_lines()
        assert next(l for l in lines if l.startswith("data: "))
        waiting = threading.Thread(target=lambda: out.setdefault("r", post(server, dict(OK, max_tokens=1000000))))
        waiting.start()
        deadline = time.monotonic() + 10
        while metric(server.url, 'charrnn_queue_length{model="tiny"}', AUTH) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = post(server, OK)
        e = error_of(r, 429)
        assert e["type"] == "rate_limit_error" and r.headers["Retry-After"] == "1"
        events = [l for l in lines if l.startswith("data: ")]
    waiting.join(30)
    e = error_of(out["r"], 504)
    assert e["code"] == "timeout" and "--timeout" in e["message"]
    assert events[-1] == "data: [DONE]" and '"code":"timeout"' in events[-2]


def test_stream_error_events_are_in_the_error_shape_too(server):
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, timeout=30,
                      json=dict(OK, stream=True, max_tokens=3)) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]" and all("error" not in e for e in events[:-1])
