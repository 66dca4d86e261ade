"""Any OpenAI-compatible chat-completions server as a backend: vLLM, SGLang, llama.cpp's server, Ollama, OpenAI.

The server owns the model and applies its own chat template; this module only fans the requests of a batch out in
parallel and turns the answers into `Completion` records. Retries (exponential backoff with jitter on connection
errors, timeouts, 408/409/429 and 5xx, honouring ``Retry-After``) are the official client's own, so there is one
retry policy, not two.

Several base URLs (replicas of one model, e.g. one vLLM server per GPU) are balanced: each request goes to the
healthy endpoint with the fewest requests in flight. An endpoint whose request fails for a reason of its own
(unreachable, timed out, HTTP 429 or 5xx, after the client's retries) is skipped for ``cooldown`` seconds and
the request is retried on another; a request every endpoint failed raises `BackendError` naming each.

``openai`` is imported at module level on purpose: `mucode.backends.load_backend` imports
this module only when the backend is chosen, and turns a missing package into an install hint.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from functools import partial

import openai
from openai.types.chat import ChatCompletion

from mucode.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenerationStats,
    SamplingParams,
    sample_seed,
)
from mucode.errors import BackendError, ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_API_KEY = "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) accept any key; the client insists on one
BASE_URL_VARIABLES = ("MUCODE_OPENAI_BASE_URL", "OPENAI_BASE_URL")


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else ``MUCODE_OPENAI_BASE_URL``, else ``OPENAI_BASE_URL``, else OpenAI's own API."""
    candidates = (base_url, *(os.environ.get(name) for name in BASE_URL_VARIABLES), DEFAULT_BASE_URL)
    return next(url for url in candidates if url).rstrip("/")


def resolve_base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """Every endpoint: a list, or a comma-separated string (argument or environment, as `resolve_base_url`)."""
    if base_url is not None and not isinstance(base_url, str):
        urls = [str(url).strip().rstrip("/") for url in base_url]
    else:
        urls = [url.strip().rstrip("/") for url in resolve_base_url(base_url).split(",")]
    urls = [url for url in urls if url]
    if not urls:
        raise ConfigError("openai backend: no base URL given")
    if len(set(urls)) < len(urls):
        raise ConfigError(f"openai backend: a base URL is given twice ({', '.join(urls)})")
    return urls


@dataclass
class _Endpoint:
    """One server: its client, the requests in flight on it, its counts, and until when it is skipped."""

    url: str
    client: openai.OpenAI
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    down_until: float = 0.0


@dataclass(frozen=True)
class _Request:
    """One chat-completions call: ``n`` samples of conversation ``conversation``, numbered from ``first_sample``."""

    conversation: int
    first_sample: int
    n: int


@dataclass(frozen=True)
class _Reply:
    """What one call returned; ``completions`` may hold fewer than ``request.n`` (servers that ignore ``n``)."""

    request: _Request
    completions: list[Completion]
    prompt_tokens: int
    completion_tokens: int


@dataclass
class OpenAIBackend(Backend):
    """Chat completions from a served model; ``model`` is the id the server knows it by (see ``/v1/models``).

    ``base_url``: one URL, several (a list or a comma-separated string: replicas of the model, balanced with
    failover, see the module docstring). ``concurrency`` bounds the requests in flight *per endpoint*;
    ``timeout`` (seconds) applies to each request and ``max_retries`` to each request on each endpoint.
    ``cooldown``: seconds a failed endpoint is skipped. A server that cannot be reached, or that rejects a
    request, raises `BackendError` naming its URL.
    """

    _: KW_ONLY
    base_url: str | Sequence[str] | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 3
    cooldown: float = 30.0
    name: str = field(init=False, default="openai")
    _endpoints: list[_Endpoint] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _splits_n: bool = field(init=False, default=False, repr=False)  # learnt: the server ignores ``n``

    def __post_init__(self) -> None:
        self._check_options()
        urls = resolve_base_urls(self.base_url)
        self.base_url = ",".join(urls)
        self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or LOCAL_API_KEY
        self.model_id = f"openai:{self.base_url}#{self.model}"
        self._endpoints = [_Endpoint(url, openai.OpenAI(base_url=url, api_key=self.api_key, timeout=self.timeout,
                                                        max_retries=self.max_retries)) for url in urls]

    def endpoint_stats(self) -> list[dict[str, object]]:
        """Per endpoint: its URL, requests sent and in flight, failures, and whether it is skipped now."""
        now = time.monotonic()
        with self._lock:
            return [{"url": e.url, "requests": e.requests, "in_flight": e.in_flight, "failures": e.failures,
                     "down": e.down_until > now} for e in self._endpoints]

    def _check_options(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"openai backend: concurrency must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ConfigError(f"openai backend: timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"openai backend: max_retries must be >= 0, got {self.max_retries}")
        if self.cooldown < 0:
            raise ConfigError(f"openai backend: cooldown must be >= 0 seconds, got {self.cooldown}")

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """Ask for ``n`` choices per request; where the server returns fewer, ask for each missing one separately.

        Once a server has returned fewer choices than asked, later calls send ``n`` single requests straight away.
        Sample j of conversation i always carries the seed `sample_seed(params, seeds, i, j)` (the first request of
        a conversation carries sample 0's), so a call is reproducible wherever the server honours ``seed``.
        """
        start = time.perf_counter()
        replies = self._run(conversations, self._first_requests(len(conversations), params.n), params, seeds)
        missing = _missing_requests(replies, len(conversations), params.n)
        if missing:
            self._splits_n = True
            replies += self._run(conversations, missing, params, seeds)
        self.last_stats = GenerationStats(prompt_tokens=sum(reply.prompt_tokens for reply in replies),
                                          completion_tokens=sum(reply.completion_tokens for reply in replies),
                                          seconds=time.perf_counter() - start)
        completions = _by_sample(replies)
        return [[completions[i, j] for j in range(params.n)] for i in range(len(conversations))]

    def _first_requests(self, count: int, n: int) -> list[_Request]:
        if n > 1 and self._splits_n:
            return [_Request(i, j, 1) for i in range(count) for j in range(n)]
        return [_Request(i, 0, n) for i in range(count)]

    def _run(self, conversations: Sequence[Conversation], requests: list[_Request], params: SamplingParams,
             seeds: Sequence[int] | None) -> list[_Reply]:
        """All ``requests`` in parallel, at most ``concurrency`` at a time; the first failure cancels the queue."""
        if not requests:
            return []
        workers = min(self.concurrency * len(self._endpoints), len(requests))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mucode-openai")
        try:
            return list(pool.map(partial(self._call, conversations, params=params, seeds=seeds), requests))
        finally:
            pool.shutdown(cancel_futures=True)

    def _call(self, conversations: Sequence[Conversation], request: _Request, params: SamplingParams,
              seeds: Sequence[int] | None) -> _Reply:
        """One request on the least busy healthy endpoint; on an endpoint's own failure, on another one."""
        start = time.perf_counter()
        messages = list(conversations[request.conversation])
        failed: list[tuple[_Endpoint, BackendError]] = []
        while (endpoint := self._acquire([e for e, _ in failed])) is not None:
            try:
                response = endpoint.client.chat.completions.create(model=self.model, messages=messages,
                                                                   **_options(params, request, seeds))
            except openai.APIError as error:
                fault = _endpoint_fault(error)
                self._release(endpoint, failed=fault)
                explained = self._explain(error, endpoint.url)
                if not fault or len(self._endpoints) == 1:
                    raise explained from error
                failed.append((endpoint, explained))
                continue
            self._release(endpoint, failed=False)
            if not response.choices:
                raise BackendError(f"OpenAI-compatible server at {endpoint.url} returned no choices for model "
                                   f"{self.model!r}")
            return _reply(request, response, seconds=time.perf_counter() - start)
        raise BackendError(f"every endpoint failed: {'; '.join(str(error) for _, error in failed)}")

    def _acquire(self, exclude: Sequence[_Endpoint]) -> _Endpoint | None:
        """The endpoint with the fewest requests in flight among those not in ``exclude``, preferring endpoints
        not in their cooldown (a cooled-down one is still tried before giving up); None when none is left."""
        now = time.monotonic()
        with self._lock:
            left = [e for e in self._endpoints if e not in exclude]
            if not left:
                return None
            endpoint = min(left, key=lambda e: (e.down_until > now, e.in_flight, e.requests))
            endpoint.in_flight += 1
            endpoint.requests += 1
            return endpoint

    def _release(self, endpoint: _Endpoint, *, failed: bool) -> None:
        with self._lock:
            endpoint.in_flight -= 1
            if failed:
                endpoint.failures += 1
                endpoint.down_until = time.monotonic() + self.cooldown

    def _explain(self, error: openai.APIError, url: str) -> BackendError:
        """One line that names the server and says what to do (the client has already retried what it could)."""
        where = f"OpenAI-compatible server at {url}"
        if isinstance(error, openai.APITimeoutError):
            return BackendError(f"{where} did not answer within {self.timeout:g} s (tried {self.max_retries + 1} "
                                f"times); raise the backend's timeout for long generations")
        if isinstance(error, openai.APIConnectionError):
            return BackendError(f"{where} failed (tried {self.max_retries + 1} times): {_one_line(error)}")
        if isinstance(error, openai.APIStatusError):
            hint = " (check the model id and that the base URL ends in /v1)" if error.status_code == 404 else ""
            return BackendError(f"{where} answered HTTP {error.status_code} for model {self.model!r}: "
                                f"{_one_line(error)}{hint}")
        return BackendError(f"{where}: {_one_line(error)}")

    def close(self) -> None:
        for endpoint in self._endpoints:
            endpoint.client.close()


def _endpoint_fault(error: openai.APIError) -> bool:
    """Whether a failed request says the endpoint is unwell (unreachable, timed out, overloaded, 5xx) rather than
    that the request itself is wrong (other 4xx): only the first kind moves the request to another endpoint."""
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(error, openai.APIStatusError) and (error.status_code == 429 or error.status_code >= 500)


def _options(params: SamplingParams, request: _Request, seeds: Sequence[int] | None) -> dict:
    """Request fields; ``stop`` and ``seed`` only when set, as some servers reject explicit nulls."""
    options: dict = {"n": request.n, "temperature": params.temperature, "top_p": params.top_p,
                     "max_tokens": params.max_tokens}
    if params.stop:
        options["stop"] = list(params.stop)
    if params.seed is not None or seeds is not None:
        options["seed"] = sample_seed(params, seeds, request.conversation, request.first_sample)
    return options


def _reply(request: _Request, response: ChatCompletion, seconds: float) -> _Reply:
    """Completions of one response. ``usage`` counts all choices together, so their completion tokens are split
    evenly (exact for n = 1); every choice shares the prompt count and the request's wall time."""
    choices = sorted(response.choices, key=lambda choice: choice.index or 0)[:request.n]  # stable: keeps server order
    prompt_tokens = response.usage.prompt_tokens if response.usage else 0
    completion_tokens = response.usage.completion_tokens if response.usage else 0
    completions = [
        Completion(text=choice.message.content or "", prompt_tokens=prompt_tokens, completion_tokens=share,
                   finish_reason="length" if choice.finish_reason == "length" else "stop", seconds=seconds)
        for choice, share in zip(choices, _split(completion_tokens, len(choices)), strict=True)
    ]
    return _Reply(request, completions, prompt_tokens, completion_tokens)


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal integers that add up to it."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _by_sample(replies: list[_Reply]) -> dict[tuple[int, int], Completion]:
    """Completions keyed by (conversation, sample), so out-of-order replies re-join deterministically."""
    return {(reply.request.conversation, reply.request.first_sample + k): completion
            for reply in replies for k, completion in enumerate(reply.completions)}


def _missing_requests(replies: list[_Reply], count: int, n: int) -> list[_Request]:
    """One single-sample request for each (conversation, sample) the replies lack."""
    have = _by_sample(replies)
    return [_Request(i, j, 1) for i in range(count) for j in range(n) if (i, j) not in have]


def _one_line(error: BaseException) -> str:
    """The error and its cause (e.g. "Connection error. ([Errno 111] Connection refused)") on one line."""
    text = str(error) if error.__cause__ is None else f"{error} ({error.__cause__})"
    return " ".join(text.split())
