"""POST /v1/completions: check the request against the model and the limits, hand its prompts to the
model's batcher as jobs, and answer with the whole completion or a stream of server-sent events.

Choice `i * n + j` is row `j` of prompt `i`. With a `seed`, every prompt's job draws from its own
generator seeded with it, so each prompt's choices are what `charrnn sample --prefix PROMPT --seed SEED
--num-samples n` writes. `beam` runs `charrnn.generate.beam.beam_search` on a worker thread instead.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import time

import anyio
import torch
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from charrnn.core.errors import CharRNNError
from charrnn.generate.beam import beam_search
from charrnn.generate.sample import check_stops
from charrnn.serve.config import ServedRun, ServeOptions
from charrnn.serve.engine import CharLogprob, Delta, Job, QueueFull, Sampling, prompt_logprobs
from charrnn.serve.errors import APIError, error_body
from charrnn.serve.schema import Choice, Completion, CompletionRequest, ErrorResponse, Logprobs, Usage

router = APIRouter()
MAX_STOPS = 16


@router.post("/v1/completions", response_model=Completion,
             responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        429: {"model": ErrorResponse}, 504: {"model": ErrorResponse}})
async def create_completion(body: CompletionRequest, request: Request):
    """OpenAI's text completion, one token being one character. With `stream`, `data: {chunk}` events
    (each carrying new text of one or more choices) and last `data: [DONE]`."""
    options: ServeOptions = request.app.state.options
    run = _run(request.app.state.runs, body.model)
    prompts, stops = _check(body, run, options)
    reply = Reply(body, run, prompts, request)
    if body.beam is not None:
        return await reply.beam(stops, options.timeout)
    reply.submit(stops)
    if body.stream:
        return StreamingResponse(reply.events(options.timeout, options.stream_interval), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await reply.whole(options.timeout)


def _run(runs: dict[str, ServedRun], name: str) -> ServedRun:
    if name not in runs:
        raise APIError(400, f"unknown model {name!r}; served: {', '.join(runs)}", "model", "model_not_found")
    return runs[name]


def _check(body: CompletionRequest, run: ServedRun, options: ServeOptions) -> tuple[list[str], tuple[str, ...]]:
    """The prompts prepared as the run's training text was (as `charrnn sample` prepares --prefix), and
    the stop strings, longest first; an APIError (400) for anything outside the model or the limits."""
    vocab, prepare = run.checkpoint.vocab, run.checkpoint.preprocessing.prefix
    limits = [("max_tokens", body.max_tokens, options.max_tokens, "--max-tokens"), ("n", body.n, options.max_n, "--max-n")]
    for param, value, cap, flag in limits:
        if value > cap:
            raise APIError(400, f"{param} is {value}, over this server's limit of {cap} ({flag})", param, "over_limit")
    raw = body.prompts()
    if not raw:
        raise APIError(400, "prompt is an empty list: give a string or a list of strings", "prompt", "invalid_value")
    if len(raw) * body.n > options.max_rows:
        raise APIError(400, f"{len(raw)} prompts x n={body.n} choices is over the {options.max_rows} rows a batch "
                       "holds (--max-rows)", "prompt", "over_limit")
    prompts = [prepare(p) for p in raw]
    for p in prompts:
        if len(p) > options.max_prompt:
            raise APIError(400, f"a prompt has {len(p):,} characters, over this server's limit of "
                           f"{options.max_prompt:,} (--max-prompt)", "prompt", "prompt_too_long")
        missing = vocab.unknown(p)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:40]) + (" ..." if len(missing) > 40 else "")
            raise APIError(400, f"the prompt has {len(missing)} character(s) the model {body.model!r} never saw: "
                           f"{shown} (its vocabulary has {len(vocab)} characters)", "prompt", "unknown_characters")
    if len(body.stops()) > MAX_STOPS:
        raise APIError(400, f"{len(body.stops())} stop strings; at most {MAX_STOPS}", "stop", "over_limit")
    try:
        stops = check_stops(vocab, body.stops())
    except CharRNNError as e:
        raise APIError(400, str(e), "stop", "invalid_value") from None
    _check_options(body)
    return prompts, stops


def _check_options(body: CompletionRequest) -> None:
    if body.suffix:
        raise APIError(400, "suffix is not supported: a character model continues text, it does not fill in the middle",
                       "suffix", "unsupported")
    if body.beam is not None:
        for param, bad in (("stream", body.stream), ("n", body.n > 1), ("temperature", body.temperature != 1.0),
                           ("top_p", body.top_p != 1.0), ("top_k", body.top_k != 0),
                           ("logprobs", body.logprobs is not None)):
            if bad:
                raise APIError(400, f"beam search is deterministic and answers once: it takes no {param}", param,
                               "invalid_value")


class Reply:
    """One request's jobs (one per prompt) and the answer built from what they generate."""

    def __init__(self, body: CompletionRequest, run: ServedRun, prompts: list[str], request: Request):
        self.body, self.run, self.prompts, self.request = body, run, prompts, request
        self.id, self.created, self.start = f"cmpl-{secrets.token_hex(12)}", int(time.time()), time.perf_counter()
        self.seed = body.seed if body.seed is not None else secrets.randbits(63)
        self.jobs: list[Job] = []
        self.pending: collections.deque = collections.deque()  # (job, deltas) from the engine thread
        self.arrived = asyncio.Event()
        self.woken = False  # a wake-up is scheduled on the loop and has not run yet
        self.texts = [""] * (len(prompts) * body.n)  # each choice's text so far, echo included
        self.chars = 0
        self.first_char: float | None = None

    def submit(self, stops: tuple[str, ...]) -> None:
        """One job per prompt into the model's batcher; 429 with Retry-After when its queue is full."""
        loop, b = asyncio.get_running_loop(), self.body
        sampling = Sampling(b.temperature, b.top_k, b.top_p)

        def on_update(job: Job, deltas: list[Delta]) -> None:  # the engine thread
            self.pending.append((job, deltas))
            if not self.woken:  # one wake-up of the event loop however many steps arrive before it runs
                self.woken = True
                loop.call_soon_threadsafe(self._wake)

        for i, prompt in enumerate(self.prompts):
            job = Job(prompt, b.n, b.max_tokens, sampling, stops, b.logprobs, torch.Generator().manual_seed(self.seed),
                      stream=b.stream, on_update=on_update, index=i)
            try:
                self.run.batcher.submit(job)
            except QueueFull as e:
                self.cancel()
                raise APIError(429, f"the server is busy ({e}); retry shortly", None, "queue_full",
                               {"Retry-After": "1"}) from None
            self.jobs.append(job)

    def _wake(self) -> None:
        self.woken = False
        self.arrived.set()

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    async def deltas(self, timeout: float, interval: float = 0.0):
        """Yield lists of (choice index, Delta) as the jobs produce them, until every row has finished;
        APIError 504 past the timeout, 500 if the engine failed. A request whose client went away
        (checked while waiting) is cancelled. After each yield, wait `interval` seconds: what arrives
        meanwhile goes out together (fewer, larger stream chunks at high concurrency)."""
        deadline = self.start + timeout
        rows_left = len(self.texts)
        while rows_left:
            if time.perf_counter() >= deadline:
                raise APIError(504, f"the request took longer than this server's {timeout:g} s (--timeout)",
                               None, "timeout")
            try:
                await asyncio.wait_for(self.arrived.wait(), min(1.0, max(0.0, deadline - time.perf_counter())))
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    raise APIError(499, "the client closed the connection", None, "client_closed")
                continue
            self.arrived.clear()
            items = [self.pending.popleft() for _ in range(len(self.pending))]
            out = []
            for job, ds in items:
                if job.error is not None:
                    raise APIError(500, f"the model failed: {job.error}", None, "internal_error")
                out.extend((job.index * self.body.n + d.row, d) for d in ds)
                rows_left -= sum(d.finish is not None for d in ds)
            if out:
                yield out
                if interval and rows_left:
                    await asyncio.sleep(interval)

    def choice(self, index: int, text: str, lps: list[CharLogprob] | None, finish: str | None) -> Choice:
        """A choice (or a chunk of one): its new text, and that text's log-probabilities when asked for."""
        offset = len(self.texts[index])
        self.texts[index] += text
        logprobs = None
        if self.body.logprobs is not None:
            lps = lps or []
            logprobs = Logprobs(tokens=[lp.char for lp in lps], token_logprobs=[lp.logprob for lp in lps],
                                top_logprobs=[lp.top for lp in lps], text_offset=[offset + k for k in range(len(lps))])
        return Choice(index=index, text=text, logprobs=logprobs, finish_reason=finish)

    def echoes(self) -> list[tuple[str, list[CharLogprob] | None]]:
        """Per choice, the prompt as its first text (`echo`), scored when logprobs are asked for."""
        out = []
        for prompt in self.prompts:
            lps = None
            if self.body.logprobs is not None:
                ck = self.run.checkpoint
                lps = prompt_logprobs(ck.model, ck.vocab, prompt, self.body.logprobs)
            out.extend([(prompt, lps)] * self.body.n)
        return out

    def usage(self) -> Usage:
        prompt = sum(len(p) for p in self.prompts)
        return Usage(prompt_tokens=prompt, completion_tokens=self.chars, total_tokens=prompt + self.chars)

    def count(self, text: str) -> None:
        """Characters generated and sent: the log line, the metrics, the first-character latency."""
        if text and self.first_char is None:
            self.first_char = time.perf_counter() - self.start
            self.request.app.state.metrics.first_char.labels(self.run.name).observe(self.first_char)
        self.chars += len(text)
        self.request.app.state.metrics.characters.labels(self.run.name).inc(len(text))
        self.request.scope.setdefault("state", {})["chars"] = self.chars

    def completion(self, choices: list[Choice], usage: bool = True) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.body.model, choices=choices,
                          usage=self.usage() if usage else None)

    async def whole(self, timeout: float) -> Completion:
        """Wait for every choice, then answer them together."""
        echoed = await anyio.to_thread.run_sync(self.echoes) if self.body.echo else [("", [])] * len(self.texts)
        texts = [[text] for text, _ in echoed]
        lps = [list(lp or []) for _, lp in echoed]
        finish: list[str | None] = [None] * len(texts)
        try:
            async for batch in self.deltas(timeout):
                for index, d in batch:
                    self.count(d.text)
                    texts[index].append(d.text)
                    lps[index].extend(d.logprobs)
                    finish[index] = d.finish or finish[index]
        finally:
            self.cancel()
        return self.completion([self.choice(i, "".join(t), lp, f) for i, (t, lp, f) in enumerate(zip(texts, lps, finish))])

    async def events(self, timeout: float, interval: float):
        """Server-sent events: the echoed prompts, then each batch of new text as one chunk, an error
        event if the request fails midway, the usage chunk when asked for, and `data: [DONE]`."""
        try:
            if self.body.echo:
                echoed = await anyio.to_thread.run_sync(self.echoes)
                yield _sse(self.completion([self.choice(i, t, lp, None) for i, (t, lp) in enumerate(echoed)], usage=False))
            async for batch in self.deltas(timeout, interval):
                merged: dict[int, list] = {}  # one entry per choice: steps that arrived together are joined
                for index, d in batch:
                    self.count(d.text)
                    text, lps, finish = merged.setdefault(index, ["", [], None])
                    merged[index] = [text + d.text, lps + d.logprobs, d.finish or finish]
                choices = [self.choice(i, *merged[i]) for i in sorted(merged)]
                if choices:
                    yield _sse(self.completion(choices, usage=False))
            if self.body.stream_options is not None and self.body.stream_options.include_usage:
                yield _sse(self.completion([]))
        except APIError as e:  # the status line has gone out: the error travels as an event
            yield f"data: {_json(error_body(e.status, e.message, e.param, e.code))}\n\n"
        finally:
            self.cancel()  # a client that went away frees its rows at the next step
        yield "data: [DONE]\n\n"

    async def beam(self, stops: tuple[str, ...], timeout: float) -> Completion:
        """Beam search per prompt on a worker thread (deterministic; no batching, no stream)."""
        ck, b = self.run.checkpoint, self.body
        echoed = await anyio.to_thread.run_sync(self.echoes) if b.echo else [("", [])] * len(self.prompts)
        choices = []
        for i, prompt in enumerate(self.prompts):
            work = lambda p=prompt: beam_search(ck.model, ck.vocab, p, b.max_tokens, b.beam, stops)
            try:
                found = (await asyncio.wait_for(anyio.to_thread.run_sync(work), timeout)).samples[0]
            except asyncio.TimeoutError:
                raise APIError(504, f"beam search took longer than {timeout:g} s (--timeout)", None, "timeout") from None
            self.count(found.text)
            text, lps = echoed[i]
            choices.append(self.choice(i, text + found.text, lps, "stop" if found.stop else "length"))
        return self.completion(choices)


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _sse(completion: Completion) -> str:
    return f"data: {completion.model_dump_json()}\n\n"
