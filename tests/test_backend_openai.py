"""The OpenAI-compatible backend against a real server: llama-cpp-python's, serving SmolLM2-135M-Instruct.

llama.cpp's server ignores ``n`` and serialises requests, so these tests also cover the one-request-per-sample
fallback, and check concurrency from the client's side (requests in flight together), not as a speed-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mucode.backends import SamplingParams, load_backend
from mucode.backends.base import derive_seed
from mucode.backends.openai import OpenAIBackend, resolve_base_url, resolve_base_urls
from mucode.errors import BackendError, ConfigError
from tests.backends_server import Server, free_port, llama_cpp_server

QUESTIONS = ["Write a Python function that adds two numbers.", "What is the capital of France?",
             "Name three colours."]
ESSAY = [{"role": "user", "content": "Write a long essay about the history of computers."}]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed, so there is no server to test against")
    with llama_cpp_server(smollm2_gguf, tmp_path_factory.mktemp("llama-server") / "server.log") as running:
        yield running


@pytest.fixture
def backend(server: Server) -> Iterator[OpenAIBackend]:
    with OpenAIBackend(server.model, base_url=server.base_url, max_retries=1, timeout=60) as opened:
        yield opened


def test_batch_of_three_with_n2_gives_each_conversation_its_own_completions_in_order(backend: OpenAIBackend) -> None:
    greedy = SamplingParams(n=2, temperature=0, max_tokens=16)
    batch = backend.generate([ask(question) for question in QUESTIONS], greedy)
    alone = [backend.generate([ask(question)], SamplingParams(temperature=0, max_tokens=16))[0][0].text
             for question in QUESTIONS]
    assert len(set(alone)) == len(QUESTIONS)  # distinct answers, so a mixed-up order would show
    assert [[completion.text for completion in row] for row in batch] == [[text, text] for text in alone]


def test_greedy_decoding_is_deterministic(backend: OpenAIBackend) -> None:
    params = SamplingParams(temperature=0, max_tokens=24)
    conversations = [ask(question) for question in QUESTIONS]
    first, second = (backend.generate(conversations, params) for _ in range(2))
    assert [[(c.text, c.completion_tokens, c.finish_reason) for c in row] for row in first] == \
        [[(c.text, c.completion_tokens, c.finish_reason) for c in row] for row in second]


def test_sampling_with_a_seed_is_reproducible(backend: OpenAIBackend) -> None:
    params = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=7)
    conversations = [ask(question) for question in QUESTIONS]
    first = [[completion.text for completion in row] for row in backend.generate(conversations, params)]
    second = [[completion.text for completion in row] for row in backend.generate(conversations, params)]
    assert first == second
    assert any(row[0] != row[1] for row in first)  # each sample has its own seed


def test_max_tokens_ends_with_length_and_counts_tokens(backend: OpenAIBackend) -> None:
    [[completion]] = backend.generate([ESSAY], SamplingParams(temperature=0, max_tokens=8))
    assert completion.finish_reason == "length"
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= 8
    stats = backend.last_stats
    assert (stats.prompt_tokens, stats.completion_tokens) == (completion.prompt_tokens, completion.completion_tokens)
    assert stats.seconds > 0


def test_a_short_answer_ends_with_stop(backend: OpenAIBackend) -> None:
    [[completion]] = backend.generate([ask("Reply with the single word: yes")], SamplingParams(temperature=0,
                                                                                              max_tokens=200))
    assert completion.finish_reason == "stop"


def test_a_stop_string_truncates_the_completion(backend: OpenAIBackend) -> None:
    params = SamplingParams(temperature=0, max_tokens=32)
    [[full]] = backend.generate([ESSAY], params)
    stop = full.text.split()[3]
    [[cut]] = backend.generate([ESSAY], SamplingParams(temperature=0, max_tokens=32, stop=(stop,)))
    assert stop not in cut.text
    assert full.text.startswith(cut.text.rstrip())
    assert len(cut.text) < len(full.text)
    assert cut.finish_reason == "stop"


def test_requests_are_in_flight_together(server: Server) -> None:
    """Overlap seen from the client: the requests' own wall times add up to well over the call's, which cannot
    happen one request at a time (llama.cpp's server then queues them, so a speed-up is not what to check)."""
    params = SamplingParams(temperature=0, max_tokens=24)
    with OpenAIBackend(server.model, base_url=server.base_url, concurrency=4, max_retries=1) as backend:
        rows = backend.generate([ESSAY] * 4, params)
    request_seconds = sum(row[0].seconds for row in rows)
    assert request_seconds > 1.5 * backend.last_stats.seconds


def test_a_dead_server_raises_backend_error_naming_the_url_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with OpenAIBackend("any", base_url=url, max_retries=1, timeout=5) as backend, \
            pytest.raises(BackendError, match=re.escape(url)) as raised:
        backend.generate([ask("hi")] * 3, SamplingParams(n=2))
    assert time.monotonic() - start < 10
    assert "\n" not in str(raised.value)


def test_a_request_past_its_timeout_raises_backend_error(server: Server) -> None:
    with OpenAIBackend(server.model, base_url=server.base_url, timeout=0.01, max_retries=0) as backend, \
            pytest.raises(BackendError, match=r"did not answer within 0\.01 s"):
        backend.generate([ESSAY], SamplingParams(temperature=0, max_tokens=16))


def test_an_unknown_route_raises_backend_error_with_a_hint(server: Server) -> None:
    with OpenAIBackend(server.model, base_url=server.base_url.removesuffix("/v1"), max_retries=0) as backend, \
            pytest.raises(BackendError, match=r"HTTP 404.*ends in /v1"):
        backend.generate([ask("hi")], SamplingParams(max_tokens=4))


def test_load_backend_builds_it_with_the_served_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    with load_backend("openai", "qwen", base_url="http://localhost:8000/v1/") as backend:
        assert backend.model_id == "openai:http://localhost:8000/v1#qwen"
        assert backend.api_key == "sk-secret"
        assert "sk-secret" not in repr(backend)


def test_base_url_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUCODE_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert resolve_base_url(None) == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://b/v1")
    assert resolve_base_url(None) == "http://b/v1"
    monkeypatch.setenv("MUCODE_OPENAI_BASE_URL", "http://a/v1")
    assert resolve_base_url(None) == "http://a/v1"
    assert resolve_base_url("http://c/v1") == "http://c/v1"


def test_seeds_differ_per_conversation_and_sample_and_fit_in_31_bits() -> None:
    seeds = {derive_seed(0, i, j) for i in range(50) for j in range(8)}
    assert len(seeds) == 400
    assert all(0 <= seed < 2**31 for seed in seeds)
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(1, 1, 2)


@pytest.mark.parametrize("option", [{"concurrency": 0}, {"timeout": 0}, {"max_retries": -1}, {"cooldown": -1}])
def test_bad_options_raise_config_error_naming_the_field(option: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(option))):
        OpenAIBackend("any", base_url="http://localhost/v1", **option)


# --------------------------------------------------------------------------------------------- endpoints


def test_two_endpoints_share_the_requests_and_a_killed_one_loses_nothing(smollm2_gguf: Path, server: Server,
                                                                         tmp_path: Path) -> None:
    """Greedy answers from two replicas, one killed while it holds requests, equal one server's answers, in
    order: every request the dead server did not finish is sent again to the live one, none twice."""
    questions = [ask(f"Count from {i} to {i + 5}.") for i in range(10)]
    params = SamplingParams(temperature=0, max_tokens=24)
    with OpenAIBackend(server.model, base_url=server.base_url, max_retries=0) as alone:
        expected = [row[0].text for row in alone.generate(questions, params)]
    with llama_cpp_server(smollm2_gguf, tmp_path / "second.log") as second, \
            OpenAIBackend(server.model, base_url=[server.base_url, second.base_url], concurrency=2, max_retries=0,
                          cooldown=60) as backend:
        assert backend.model_id == f"openai:{server.base_url},{second.base_url}#{server.model}"
        warm = backend.generate(questions[:4], params)
        assert [stats["requests"] for stats in backend.endpoint_stats()] == [2, 2]  # least in flight first
        assert [row[0].text for row in warm] == expected[:4]
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(backend.generate, questions, params)
            deadline = time.monotonic() + 60
            while backend.endpoint_stats()[1]["in_flight"] == 0:
                assert time.monotonic() < deadline, "the second endpoint never got a request"
                time.sleep(0.01)
            second.kill()
            rows = running.result(timeout=120)
        assert [row[0].text for row in rows] == expected
        first, dead = backend.endpoint_stats()
        assert dead["failures"] >= 1 and dead["down"] and not first["failures"]
        before = first["requests"]
        backend.generate(questions[:2], params)  # the dead one is skipped during its cooldown
        assert backend.endpoint_stats()[0]["requests"] == before + 2


def test_every_endpoint_down_is_one_backend_error_naming_each() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with OpenAIBackend("any", base_url=",".join(urls), max_retries=0, timeout=5) as backend, \
            pytest.raises(BackendError, match="every endpoint failed") as raised:
        backend.generate([ask("hi")], SamplingParams(max_tokens=4))
    assert all(url in str(raised.value) for url in urls) and "\n" not in str(raised.value)


def test_base_urls_split_on_commas_and_refuse_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUCODE_OPENAI_BASE_URL", "http://a/v1, http://b/v1/")
    assert resolve_base_urls(None) == ["http://a/v1", "http://b/v1"]
    assert resolve_base_urls(["http://c/v1"]) == ["http://c/v1"]
    with pytest.raises(ConfigError, match="given twice"):
        resolve_base_urls("http://a/v1,http://a/v1/")
