"""json_mode: a JSON task asks an OpenAI-compatible server for JSON output (response_format),
over real HTTP on loopback; cache keys of other requests do not change."""

from __future__ import annotations

from typing import Any

import promptopt
from promptopt.backends.openai_backend import OpenAIBackend
from promptopt.testing.openai_server import FakeOpenAIServer
from promptopt.types import GenerationRequest, Message


def test_a_json_mode_task_sends_response_format_and_scores_the_object(db_url: str) -> None:
    seen: list[dict[str, Any]] = []

    def responder(request: dict[str, Any]) -> str:
        seen.append(request)
        return '{"city": "London", "year": 1815}'

    rows = [{"text": f"born {i}", "fields": {"city": "London", "year": 1815}} for i in range(6)]
    task = promptopt.Task.from_records(train=rows, test=rows, input_fields=["text"], target_field="fields",
                                       extractor="json", json_mode=True, metric="json_fields")  # fmt: skip
    with FakeOpenAIServer(responder=responder) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        report = promptopt.evaluate(task, "Extract city and year.", backend, split="test", limit=3, db=db_url)
        backend.close()
    assert report.accuracy == 1.0
    assert seen and all(r.get("response_format") == {"type": "json_object"} for r in seen)
    plain = promptopt.Task.from_records(train=rows, test=rows, input_fields=["text"], target_field="fields",
                                        extractor="json", metric="json_fields")  # fmt: skip
    seen.clear()
    with FakeOpenAIServer(responder=responder) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        promptopt.evaluate(plain, "Extract.", backend, split="test", limit=1, db=db_url, cache=False)
        backend.close()
    assert seen and "response_format" not in seen[0]


def test_cache_keys_without_response_format_are_unchanged() -> None:
    request = GenerationRequest(messages=(Message("user", "hi"),))
    assert "response_format" not in request.to_dict()
    assert GenerationRequest(messages=(Message("user", "hi"),), response_format="json").cache_key("m") != (
        request.cache_key("m")
    )


def test_a_task_schema_travels_with_json_mode_requests_as_json_schema(db_url: str) -> None:
    seen: list[dict[str, Any]] = []

    def responder(request: dict[str, Any]) -> str:
        seen.append(request)
        return '{"city": "London", "year": 1815}'

    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    rows = [{"text": f"born {i}", "fields": {"city": "London", "year": 1815}} for i in range(4)]
    task = promptopt.Task.from_records(train=rows, test=rows, input_fields=["text"], target_field="fields",
                                       extractor="json", json_mode=True, json_schema=schema, metric="json_fields")  # fmt: skip
    with FakeOpenAIServer(responder=responder) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        promptopt.evaluate(task, "Extract the city.", backend, split="test", limit=2, db=db_url)
        backend.close()
    assert seen and all(
        r.get("response_format")
        == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        for r in seen
    )


def test_the_schema_is_part_of_the_cache_key() -> None:
    plain = GenerationRequest(messages=(Message("user", "hi"),), response_format="json")
    schema = GenerationRequest(
        messages=(Message("user", "hi"),), response_format="json", json_schema='{"type":"object"}'
    )
    assert "json_schema" not in plain.to_dict()
    assert plain.cache_key("m") != schema.cache_key("m")
