"""The HTTP contract as Pydantic models: what `/v1/completions`, `/v1/models` and `/health` take and
answer. They are OpenAI's completions shapes (as vLLM and the llama.cpp server speak them), with a
token being one character here; FastAPI turns them into the OpenAPI page at /docs.

Values are checked strictly (a string where a number belongs is a 400, not a conversion). Limits that
are flags of `charrnn serve` (prompt length, max_tokens, n) are checked by the route, which knows them.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    include_usage: bool = Field(False, description="Send a last chunk with `usage` (and no choices) before [DONE].")


class CompletionRequest(BaseModel):
    """POST /v1/completions. OpenAI's fields, a token being one character; `top_k` and `beam` are
    charrnn extensions. Fields OpenAI defines that a character model has no use for (`user`,
    `suffix` when null, penalties at 0) are accepted and ignored; anything else unknown is a 400."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model: str = Field(..., description="A served run's name (GET /v1/models lists them).")
    prompt: Union[str, list[str]] = Field("", description="Text to continue, or a list of texts (one batch "
                                          "of choices each). Prepared as the run's training text was; an empty "
                                          "prompt starts from a newline, as `charrnn sample` does.")
    max_tokens: int = Field(16, ge=0, description="Characters to generate per choice (at most; a stop string ends earlier).")
    temperature: float = Field(1.0, ge=0.0, description="0 = greedy; <1 safer, >1 wilder.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling: the smallest set of characters with probability >= top_p.")
    top_k: int = Field(0, ge=0, description="Extension: sample among the k most likely characters; 0 = all.")
    n: int = Field(1, ge=1, description="Choices per prompt, generated together (as `charrnn sample --num-samples`).")
    stop: Union[str, list[str], None] = Field(None, description="End a choice at the first of these strings it "
                                              "generates (not included in the text); up to 16.")
    seed: Optional[int] = Field(None, ge=-(2**63), lt=2**64, description="Same seed and options, same text: the text `charrnn sample "
                                "--seed` writes; it does not depend on other requests.")
    stream: bool = Field(False, description="Server-sent events: `data: {chunk}` as characters come, then `data: [DONE]`.")
    stream_options: Optional[StreamOptions] = None
    echo: bool = Field(False, description="Put the prompt before each choice's text (and, with logprobs, score it).")
    logprobs: Optional[int] = Field(None, ge=0, le=20, description="The log-probability of each character and "
                                    "the `logprobs` most likely characters at each position (temperature 1).")
    beam: Optional[int] = Field(None, ge=1, le=64, description="Extension: beam search with this many beams "
                                "(deterministic, one choice, no streaming; no temperature, top_p, top_k).")
    user: Optional[str] = Field(None, description="Accepted and ignored (OpenAI's end-user id).")
    suffix: Optional[str] = Field(None, description="Only null or empty: a character model does not fill in the middle.")
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Only 0: not supported.")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Only 0: not supported.")

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> list[str]:
        return [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Logprobs(BaseModel):
    """Per character of the choice's text: the character, its log-probability (null for an echoed
    prompt's first character), the most likely characters there, and its offset in the text."""

    tokens: list[str] = []
    token_logprobs: list[Optional[float]] = []
    top_logprobs: list[Optional[dict[str, float]]] = []
    text_offset: list[int] = []


class Choice(BaseModel):
    index: int
    text: str
    logprobs: Optional[Logprobs] = None
    finish_reason: Optional[Literal["stop", "length"]] = Field(
        None, description="`stop`: a stop string ended it; `length`: max_tokens did. Null in a stream until the last chunk.")


class Usage(BaseModel):
    """Counts in characters: the prompts (after preprocessing, once per prompt) and the generated text."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    """The answer, or (with `stream`) each chunk of it: chunks carry a choice's new text."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Optional[Usage] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "charrnn"
    architecture: str = Field(..., description="Extension: e.g. `lstm 2x512`.")
    vocab_size: int = Field(..., description="Extension: characters the model knows.")
    steps: Optional[int] = Field(None, description="Extension: optimizer steps it was trained for.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    models: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    """Every error, OpenAI's shape."""

    error: ErrorDetail
